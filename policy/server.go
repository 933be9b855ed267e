// Package policy is postlist's Postfix SMTPD access policy delegation
// server (Postfix's SMTPD_POLICY_README): it decides every RCPT TO for a
// list domain while the remote client is still connected, from the same
// in-memory index and with the same decision as the milter
// (index.Snapshot.DecideRcpt), so an address that does not exist is
// refused by Postfix and bounced by the sender's own server, never by
// postlist.
//
// Postfix reaches it through a restriction class selected by a map of
// list domains (genaliases' postfix_policy), so mail for every other
// domain never waits on postlist and never fails when postlist is down;
// contrib/postfix/main.cf and docs/postfix.md show the hookup.
//
// The protocol: Postfix writes "name=value" lines ending with an empty
// line and reads "action=VALUE" and an empty line, and keeps the
// connection for further requests. The answers:
//
//   - not a list domain, not the RCPT stage, or accepted: action=DUNNO,
//     so the rest of Postfix's restrictions still apply;
//   - refused: the reply's code, enhanced code and text, e.g.
//     action=550 5.1.1 <x@lists.example.org>: no such list address here;
//   - a declared SIZE above the list's or the site's limit: 552 5.3.4;
//   - the index not loaded, a malformed request or a bug: 451 4.3.0,
//     so that the sender retries rather than bounces.
package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/index"
	"postlist/internal/connserver"
	"postlist/metrics"
	"postlist/reply"
)

// Verdicts, the `verdict` field of the log lines, as the milter's.
const (
	VerdictAccept   = "accept"   // ours, and taken (DUNNO: the rest of the restrictions run)
	VerdictReject   = "reject"   // 5xx
	VerdictTempFail = "tempfail" // 4xx
	VerdictContinue = "continue" // not ours: left to Postfix
)

// Reasons beside the index's.
const (
	ReasonTooBig    = "too_big"     // the declared SIZE exceeds a limit
	ReasonNotRcpt   = "not_rcpt"    // asked at another stage than RCPT
	ReasonBadReq    = "bad_request" // not a well-formed smtpd_access_policy request
	ReasonPanic     = "internal_error"
	actionDUNNO     = "DUNNO"
	protocolRequest = "smtpd_access_policy"
)

// Defaults for Options.
const (
	// DefaultIdleTimeout is above Postfix's smtpd_policy_service_max_idle
	// (300 s), after which Postfix closes an unused connection itself, so
	// only a connection Postfix forgot reaches it.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultReadTimeout bounds the rest of a request once its first
	// line arrived: Postfix writes a request in one go.
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds writing one answer.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxRequest bounds one request. Postfix 3.7 sends about 35
	// attributes of which only certificate subjects and issuers can be
	// long; a real request is one or two kilobytes.
	DefaultMaxRequest = 16 << 10
	// DefaultMaxAttrs bounds the number of attributes of one request.
	DefaultMaxAttrs = 128
	// DefaultMaxConns bounds open connections: one per smtpd process that
	// reaches the policy class, default_process_limit (100) per listener.
	DefaultMaxConns = 1000
)

// Snapshotter is the index as the server reads it (*index.Index).
type Snapshotter interface {
	// Fresh decides on a snapshot that is caught up with the store
	// when the first answer may be stale (index.Index.Fresh).
	Fresh(decide func(*index.Snapshot) index.Decision) (*index.Snapshot, index.Decision)
}

// Options configures New.
type Options struct {
	Index Snapshotter
	Log   *zap.Logger
	// MaxMessageSize is the site-wide limit in bytes ([mta]
	// max_message_size); a declared SIZE above it is refused with 552 at
	// RCPT. 0: no limit.
	MaxMessageSize int64
	IdleTimeout    time.Duration
	ReadTimeout    time.Duration
	WriteTimeout   time.Duration
	MaxRequest     int
	MaxAttrs       int
	MaxConns       int
}

// Server is a policy server. Create it with New.
type Server struct {
	o        Options
	log      *zap.Logger
	cs       *connserver.Server
	requests atomic.Uint64
}

// New returns a server; Serve starts it.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxRequest <= 0 {
		o.MaxRequest = DefaultMaxRequest
	}
	if o.MaxAttrs <= 0 {
		o.MaxAttrs = DefaultMaxAttrs
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	s := &Server{o: o, log: o.Log}
	s.cs = connserver.New(connserver.Options{
		Name:        "policy",
		Log:         o.Log,
		IdleTimeout: o.IdleTimeout,
		// Above it Postfix retries after smtpd_policy_service_retry_delay
		// and then applies the class's default_action (a 4xx).
		MaxConns:     o.MaxConns,
		Handle:       s.serveConn,
		PanicMessage: "panic while serving a policy connection; closed",
	})
	return s
}

// Requests is the number of requests answered so far.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Serve accepts connections on ln until Shutdown, then returns nil. ln is
// closed when Serve returns.
func (s *Server) Serve(ln net.Listener) error { return s.cs.Serve(ln) }

// Shutdown stops accepting, lets every connection finish the request it
// is answering and closes it, and returns when all are closed or ctx is
// done, when the remaining ones are closed at once. Postfix reconnects
// (to the next postlist) after smtpd_policy_service_retry_delay, and
// answers the class's default_action, a 4xx, if nobody listens by then.
func (s *Server) Shutdown(ctx context.Context) error { return s.cs.Shutdown(ctx) }

// serveConn answers the requests of one connection; Answer recovers from
// its own bugs, connserver from those of the rest of this code.
func (s *Server) serveConn(c *connserver.Conn) {
	log := s.log.With(zap.Stringer("remote", c.RemoteAddr()))
	r := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriterSize(c, 1024)
	started := func() { c.Busy(s.o.ReadTimeout) }
	for {
		if !c.Idle() {
			return
		}
		req, err := ReadRequest(r, s.o.MaxRequest, s.o.MaxAttrs, started)
		if err != nil {
			s.readFailed(log, c, w, err)
			return
		}
		a := s.Answer(req)
		s.requests.Add(1)
		_ = c.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		_, err = w.WriteString("action=" + a.Action + "\n\n")
		if err == nil && r.Buffered() == 0 {
			err = w.Flush()
		}
		if err != nil {
			log.Info("policy answer not written; closing", zap.Error(err))
			return
		}
	}
}

// readFailed logs why a connection ends. A request that is too long,
// has too many attributes or does not parse gets a 451 first, so that
// Postfix defers that recipient with a reason instead of retrying on a
// lost connection; the stream cannot be resynchronised afterwards.
func (s *Server) readFailed(log *zap.Logger, c net.Conn, w *bufio.Writer, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		// Postfix closed an idle connection: the normal end.
	case errors.As(err, &ne) && ne.Timeout():
		log.Debug("policy connection idle or stalled; closing", zap.Error(err))
	case errors.Is(err, ErrTooLong), errors.Is(err, ErrTooMany), errors.Is(err, ErrMalformed):
		log.Warn("policy request refused; closing", zap.String("verdict", VerdictTempFail),
			zap.String("reason", ReasonBadReq), zap.Error(err))
		_ = c.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		_, _ = w.WriteString("action=" + action(reply.TempFail()) + "\n\n")
		_ = w.Flush()
	default:
		log.Info("policy connection lost", zap.Error(err))
	}
}

// Answer is one decision: the action Postfix is told and why.
type Answer struct {
	Action  string // the value after "action="
	Verdict string
	Reason  string
	List    string
	Kind    string
	Policy  string // the sender check's reason of an accepted post
}

// Answer decides one request and logs the decision. It never panics: a
// bug in a decision answers 451 4.3.0 for that request only.
func (s *Server) Answer(req Request) (a Answer) {
	rcpt := req.Value("recipient")
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("policy decision failed", zap.String("rcpt", address.Redact(clip(rcpt), "")), zap.String("verdict", VerdictTempFail),
				zap.String("reason", ReasonPanic), zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			a = Answer{Action: action(reply.TempFail()), Verdict: VerdictTempFail, Reason: ReasonPanic}
			metrics.PolicyDecision(a.Verdict, a.Reason)
		}
	}()
	a = s.decide(req)
	s.logAnswer(req, a)
	metrics.PolicyDecision(a.Verdict, a.Reason)
	return a
}

func (s *Server) decide(req Request) Answer {
	if v, _ := req.Get("request"); v != protocolRequest {
		// Another kind of client, or a main.cf pointing something else
		// here: a guess either way could let mail through unchecked.
		return Answer{Action: action(reply.TempFail()), Verdict: VerdictTempFail, Reason: ReasonBadReq}
	}
	if st := req.Value("protocol_state"); !strings.EqualFold(st, "RCPT") {
		// Only RCPT names one recipient; at DATA or END-OF-MESSAGE
		// recipient is empty and the decision was taken already.
		return Answer{Action: actionDUNNO, Verdict: VerdictContinue, Reason: ReasonNotRcpt}
	}
	rcpt := req.Value("recipient")
	sender, senderKnown := req.Get("sender")
	// A confirmation answered, or a post to a list created, within the
	// index's poll interval is checked against the store before it is
	// refused.
	var pol string
	snap, d := s.o.Index.Fresh(func(snap *index.Snapshot) index.Decision {
		var d index.Decision
		d, pol = snap.DecideRcpt(rcpt, sender, senderKnown)
		return d
	})
	a := Answer{Reason: d.Reason, List: d.Target.List, Kind: string(d.Target.Kind), Policy: pol}
	switch {
	case !d.Ours:
		a.Action, a.Verdict = actionDUNNO, VerdictContinue
		return a
	case d.Reply != nil:
		a.Action, a.Verdict = action(*d.Reply), verdictOf(*d.Reply)
		return a
	}
	if r, ok := s.tooBig(snap, req, d); ok {
		a.Action, a.Verdict, a.Reason, a.Policy = action(r), verdictOf(r), ReasonTooBig, ""
		return a
	}
	a.Action, a.Verdict = actionDUNNO, VerdictAccept
	return a
}

// tooBig applies the size the client declared with MAIL FROM SIZE= (0
// when it declared none), as the milter applies the real size at end of
// message: the site's limit to every recipient of ours, the list's only
// to a post, since a bounce for -bounces quotes the mail it bounces.
func (s *Server) tooBig(snap *index.Snapshot, req Request, d index.Decision) (reply.Reply, bool) {
	size, err := strconv.ParseInt(req.Value("size"), 10, 64)
	if err != nil || size <= 0 {
		return reply.Reply{}, false
	}
	if s.o.MaxMessageSize > 0 && size > s.o.MaxMessageSize {
		return reply.TooBig(s.o.MaxMessageSize), true
	}
	if d.Target.Kind != address.Post {
		return reply.Reply{}, false
	}
	l, ok := snap.List(d.Target.List)
	if ok && l.MaxMessageSize > 0 && size > l.MaxMessageSize {
		return reply.TooBig(l.MaxMessageSize), true
	}
	return reply.Reply{}, false
}

func (s *Server) logAnswer(req Request, a Answer) {
	level := zap.InfoLevel
	if a.Verdict == VerdictContinue {
		level = zap.DebugLevel
	}
	ce := s.log.Check(level, "rcpt decision")
	if ce == nil {
		return
	}
	f := make([]zap.Field, 0, 12)
	if q := req.Value("queue_id"); q != "" {
		f = append(f, zap.String("queue_id", clip(q)))
	}
	f = append(f, zap.String("client", clip(req.Value("client_address"))),
		zap.String("sender", address.Redact(senderForLog(req), "")), zap.String("rcpt", address.Redact(clip(req.Value("recipient")), "")))
	if a.List != "" {
		f = append(f, zap.String("list", a.List))
	}
	f = append(f, zap.String("verdict", a.Verdict), zap.String("reason", a.Reason))
	if a.Kind != "" && a.Verdict == VerdictAccept {
		f = append(f, zap.String("kind", a.Kind))
	}
	if a.Policy != "" {
		f = append(f, zap.String("policy", a.Policy))
	}
	if a.Action != actionDUNNO {
		f = append(f, zap.String("reply", address.RedactText(a.Action, "")))
	}
	if sz := req.Value("size"); sz != "" && sz != "0" {
		f = append(f, zap.String("size", clip(sz)))
	}
	ce.Write(f...)
}

func senderForLog(req Request) string {
	v, ok := req.Get("sender")
	switch {
	case !ok:
		return ""
	case v == "":
		return "<>"
	}
	return clip(v)
}

func verdictOf(r reply.Reply) string {
	if r.Temporary() {
		return VerdictTempFail
	}
	return VerdictReject
}

// action renders a reply as an access(5) action: "CODE X.Y.Z text" on
// one line. The reply package already keeps texts printable; this also
// guards against a reply value built elsewhere, since a newline here
// would end the answer early and desynchronise the connection.
func action(r reply.Reply) string {
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return '?'
		}
		return c
	}, r.String())
}
