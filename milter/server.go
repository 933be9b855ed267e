// Package milter is postlist's Postfix milter: it decides every recipient
// in a list domain while the remote client is still connected, so that an
// address that does not exist is refused with 550 by Postfix and bounced by
// the sender's own server, never by us (no backscatter).
//
// It also applies the SMTP-time part of the posting policy: a list that
// rejects non-members refuses their posts at RCPT (for that recipient
// only), and at end of message a post is refused (too big, a loop, a
// non-member header From) only when every recipient of the transaction
// would refuse it, so mail for a recipient that accepts it is never lost.
//
// The milter protocol is negotiated down to what these decisions need,
// because every event Postfix sends costs it a write and every reply it
// waits for costs a round trip per message; docs/milter.md has the
// measurements. Decisions come from the in-memory index (package index)
// and never wait on the disk.
package milter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"postlist/index"
)

// Protocol is what postlist asks Postfix for. Left out: CONNECT, HELO and
// MAIL events (the client address and the sender arrive as macros, with no
// event of their own), unknown commands, and end-of-header. The DATA event
// is kept, with a reply: it is where a transaction that has nothing to
// check at end of message is accepted, which stops Postfix from streaming
// its headers and body to us. Headers and body chunks, when they do come,
// need no reply, so Postfix writes them without waiting.
const Protocol = gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom |
	gomilter.OptNoUnknown | gomilter.OptNoEOH |
	gomilter.OptNoHeaderReply | gomilter.OptNoBodyReply | gomilter.OptHeaderLeadingSpace

// Defaults for Options.
const (
	// DefaultIdleTimeout is above Postfix's smtpd_timeout (300 s) and
	// milter_content_timeout (300 s): Postfix keeps the milter connection
	// as long as the SMTP session, so only a connection Postfix forgot
	// should ever hit it.
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultWriteTimeout = 10 * time.Second
)

// Options configures New.
type Options struct {
	Index *index.Index
	Log   *zap.Logger
	// MaxMessageSize is the site-wide limit in bytes (max_message_size
	// in [mta]), which the LMTP server enforces after queueing. Refusing
	// at end of message instead, when every recipient is postlist's, lets
	// the sender's server bounce rather than Postfix. 0: no limit.
	MaxMessageSize int64
	// IdleTimeout bounds the wait for Postfix's next command.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing a reply to Postfix.
	WriteTimeout time.Duration
}

// Server is the milter server.
type Server struct {
	ix      *index.Index
	log     *zap.Logger
	maxSize int64
	srv     *gomilter.Server
}

// New returns a server; Serve starts it.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	s := &Server{ix: o.Index, log: o.Log, maxSize: o.MaxMessageSize}
	s.srv = gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return &session{srv: s} }),
		gomilter.WithProtocols(Protocol),
		gomilter.WithActions(0),
		// Requesting macros replaces Postfix's milter_*_macros for this
		// milter: only these are sent, and the defaults that would make
		// Postfix resolve the sender and every recipient through
		// trivial-rewrite ({mail_host}, {rcpt_mailer}, ...) are not.
		gomilter.WithMacroRequest(gomilter.StageConnect, []gomilter.MacroName{gomilter.MacroClientAddr}),
		gomilter.WithMacroRequest(gomilter.StageMail, []gomilter.MacroName{gomilter.MacroMailAddr}),
		gomilter.WithMacroRequest(gomilter.StageRcpt, []gomilter.MacroName{gomilter.MacroQueueId}),
		gomilter.WithMacroRequest(gomilter.StageEOM, []gomilter.MacroName{gomilter.MacroQueueId}),
		gomilter.WithNegotiationCallback(negotiate),
		gomilter.WithReadTimeout(o.IdleTimeout),
		gomilter.WithWriteTimeout(o.WriteTimeout),
	)
	return s
}

// negotiate takes what the MTA offers of what we ask for, where go-milter
// would refuse the connection outright. With milter_protocol below 6 (or
// another MTA) some events then arrive that Protocol declines, and the
// session answers them with "continue"; the decisions stay the same. A
// refused negotiation would instead make Postfix apply
// milter_default_action to all mail.
func negotiate(mtaVersion, milterVersion uint32, mtaActions, milterActions gomilter.OptAction,
	mtaProtocol, milterProtocol gomilter.OptProtocol, offered gomilter.DataSize,
) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	if mtaVersion < 2 {
		return 0, 0, 0, 0, fmt.Errorf("milter: MTA offers protocol version %d, need at least 2", mtaVersion)
	}
	protocol := milterProtocol & mtaProtocol
	if mtaActions&gomilter.OptSetMacros == 0 {
		// {client_addr} cannot be asked for; the CONNECT event carries it.
		protocol &^= gomilter.OptNoConnect
	}
	return min(mtaVersion, milterVersion), milterActions & mtaActions, protocol, offered, nil
}

// Serve accepts milter connections on ln until Shutdown or Close, and then
// returns nil.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, gomilter.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits until Postfix has ended
// every open session (at the end of its SMTP session) or ctx is done, when
// the remaining sessions are closed; Postfix then applies
// milter_default_action to them.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// Close stops at once, closing open sessions.
func (s *Server) Close() error {
	return s.srv.Close()
}

// Sessions is the number of milter connections served so far.
func (s *Server) Sessions() uint64 { return s.srv.MilterCount() }

// RouteLibraryLogs sends go-milter's own warnings (protocol errors from the
// MTA side) to log instead of the standard logger. The library has one
// global hook, so the daemon calls this once at start.
func RouteLibraryLogs(log *zap.Logger) {
	sugar := log.Sugar()
	gomilter.LogWarning = func(format string, v ...interface{}) { sugar.Warnf(format, v...) }
}
