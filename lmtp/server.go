// Package lmtp is postlist's LMTP server: the door through which Postfix
// hands over list mail it has queued.
//
// A 250 from this server is a promise that the message is on disk: each
// message is committed to SQLite with synchronous=FULL before any
// recipient gets its reply, and a message that cannot be committed gets a
// temporary failure for every recipient, so that Postfix keeps it and
// retries. Commits of concurrent sessions are grouped (see
// store.IntakeCommitter) so that one fsync serves many messages.
//
// Every recipient is resolved again at RCPT time with the same resolver
// the milter uses: Postfix may queue mail the milter never saw (a listener
// without the milter, milter_default_action=accept) or for a list removed
// since. After DATA each accepted recipient gets its own reply, as RFC 2033
// requires, whatever the outcome. Our own failures are always a 4xx
// *smtp.SMTPError: go-smtp would turn a bare error into a permanent 554
// that bounces the mail and shows internals to the sender.
//
// What gets stored is the message as received, with one exception: a
// message without Message-ID gets one, prepended to the header, as Mailman
// does (it appends it), because threading, duplicate detection and
// moderation all key on it. Each accepted recipient becomes one intake
// row, tagged with the subaddress kind that routes it to a processing
// stage (post, bounces, confirm, join, leave, owner, request); until such
// a stage takes it, the row waits in state new.
package lmtp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"postlist/address"
	"postlist/reply"
	"postlist/store"
)

// Defaults for Options fields left zero; they match config.Default.
const (
	DefaultMaxMessageBytes = 10 << 20
	DefaultMaxRecipients   = 1000
	DefaultMaxSessions     = 64
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultSessionWait     = 30 * time.Second
)

// Options configures a Server.
type Options struct {
	Store *store.Store
	Log   *zap.Logger
	// Resolve decides a recipient: a nil reply accepts it as target, a
	// non-nil reply is given to the client. It must be the resolver the
	// milter uses, so that the two never disagree.
	Resolve func(rcpt string) (address.Target, *reply.Reply)

	// Hostname is used in the greeting and in Message-IDs we add;
	// default: the system host name.
	Hostname string
	// MaxMessageBytes is the largest message accepted; it is advertised
	// as SIZE.
	MaxMessageBytes int64
	// MaxRecipients bounds RCPTs per transaction. Postfix sends up to
	// lmtp_destination_recipient_limit (default 50) per transaction.
	MaxRecipients int
	// MaxSessions bounds concurrent connections. A connection beyond it
	// waits, without a greeting, up to SessionWait for a free slot and
	// is then refused with 421 4.3.2.
	MaxSessions int
	// IdleTimeout closes a connection that sends nothing for that long
	// (421 4.4.2). It also bounds the transfer of one message, since
	// go-smtp arms the read deadline per command line, not per DATA chunk.
	IdleTimeout time.Duration
	// SessionWait is how long a connection over MaxSessions waits for a
	// free slot before the 421; default 30s, well within the 300s that
	// Postfix waits for a greeting.
	SessionWait time.Duration
	// Committed, if set, is called after each message was committed, so
	// the processing stages start on it at once instead of at their next
	// poll. It must not block.
	Committed func()
}

// Server is an LMTP server. Create it with New.
type Server struct {
	o       Options
	log     *zap.Logger
	smtp    *smtp.Server
	commit  *store.IntakeCommitter
	slots   chan struct{}
	waiting atomic.Int64 // connections waiting for a slot
	nextID  atomic.Uint64

	// ctx is cancelled when Shutdown gives up waiting, which aborts
	// sessions still waiting for a commit.
	ctx    context.Context
	cancel context.CancelFunc

	draining atomic.Bool
	mu       sync.Mutex
	conns    map[*conn]struct{}
	lns      []*listener

	shutOnce sync.Once
	shutErr  error
}

// New builds a Server; it panics if Store or Resolve is missing, which is
// a programming error, never a runtime condition.
func New(o Options) *Server {
	if o.Store == nil || o.Resolve == nil {
		panic("lmtp.New: Options.Store and Options.Resolve are required")
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			o.Hostname = h
		} else {
			o.Hostname = "localhost"
		}
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = DefaultMaxRecipients
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.SessionWait <= 0 {
		o.SessionWait = DefaultSessionWait
	}
	s := &Server{
		o:      o,
		log:    o.Log,
		commit: o.Store.NewIntakeCommitter(),
		slots:  make(chan struct{}, o.MaxSessions),
		conns:  make(map[*conn]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.LMTP = true
	srv.Domain = o.Hostname
	// go-smtp advertises SIZE from this and enforces it while reading
	// DATA; its ErrDataTooLarge is turned into our 552 per recipient.
	srv.MaxMessageBytes = o.MaxMessageBytes
	// Zero: the recipient limit is checked in Rcpt so that the reply is
	// ours (reply.TooManyRecipients) rather than go-smtp's text.
	srv.MaxRecipients = 0
	srv.ReadTimeout = o.IdleTimeout
	srv.WriteTimeout = o.IdleTimeout
	srv.ErrorLog = errorLog{o.Log.Named("smtp")}
	s.smtp = srv
	return s
}

// Serve accepts LMTP connections on ln until Shutdown; it returns nil after
// Shutdown and the accept error otherwise. ln is closed when Serve returns.
func (s *Server) Serve(ln net.Listener) error {
	l := newListener(s, ln)
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.lns = append(s.lns, l)
	s.mu.Unlock()
	s.log.Info("LMTP limits", zap.Stringer("addr", ln.Addr()),
		zap.Int64("max_message_bytes", s.o.MaxMessageBytes), zap.Int("max_recipients", s.o.MaxRecipients),
		zap.Int("max_sessions", s.o.MaxSessions), zap.Duration("idle_timeout", s.o.IdleTimeout))
	err := s.smtp.Serve(l)
	l.Close()
	if err != nil && !s.draining.Load() {
		return fmt.Errorf("lmtp: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections and drains the open ones: a
// session in the middle of a transaction finishes it (its message is
// committed and answered), an idle session and any new connection get
// 421 4.3.2. If ctx ends first, the remaining connections are closed, and
// sessions waiting for a commit give up (their recipients get no reply,
// so Postfix retries). The committer is stopped last.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() { s.shutErr = s.shutdown(ctx) })
	return s.shutErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	lns := s.lns
	for c := range s.conns {
		c.wake()
	}
	s.mu.Unlock()
	s.log.Info("LMTP server shutting down")

	// go-smtp closes its listeners (ours, among them) and waits for its
	// connections; closing ours first as well covers a Serve that had
	// not yet registered with go-smtp.
	done := make(chan error, 1)
	go func() { done <- s.smtp.Shutdown(ctx) }()
	for _, l := range lns {
		l.Close()
	}
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		// Out of time: abort commits still waiting and close every
		// connection. go-smtp's Close does nothing once Shutdown has
		// begun, so the connections are closed here.
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.Conn.Close()
		}
		s.mu.Unlock()
		<-done
	} else {
		err = nil
	}
	for _, l := range lns {
		l.wait()
	}
	s.cancel()
	s.commit.Close()
	st := s.commit.Stats()
	s.log.Info("LMTP server stopped", zap.Uint64("messages", st.Messages), zap.Uint64("commits", st.Commits))
	return err
}

// Stats reports the group committer's counters, for the benchmark and for
// metrics: commits per message shows how well fsyncs are shared.
func (s *Server) Stats() store.IntakeStats { return s.commit.Stats() }

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	sess := &session{srv: s, id: s.nextID.Add(1)}
	if tc, ok := c.Conn().(*conn); ok {
		sess.conn = tc
		tc.setSession(sess)
	}
	remote := ""
	if a := c.Conn().RemoteAddr(); a != nil {
		remote = a.String()
	}
	sess.log = s.log.With(zap.Uint64("session", sess.id), zap.String("remote", remote), zap.String("lhlo", c.Hostname()))
	return sess, nil
}

func (s *Server) track(c *conn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}
