package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// SinkHostname is the name the sink greets with. It must differ from
// Postfix's myhostname: Postfix's smtp client refuses to deliver to a
// server that greets with its own name ("mail loops back to myself").
const SinkHostname = "sink.pfharness.test"

// Envelope is one mail transaction the sink accepted.
type Envelope struct {
	From string   // MAIL FROM address, without <>; "" for the null sender
	To   []string // accepted RCPT TO addresses, in the order given
	// Data is the message as received: CRLF line endings, dot-stuffing
	// removed, including the Received: header Postfix prepended.
	Data     []byte
	Received time.Time
}

// Sink is an in-process SMTP server that stands in for every remote mail
// server: the private Postfix relays all non-list mail to it, and tests
// read back what arrived. Its methods are safe for concurrent use.
type Sink struct {
	// Addr is the "127.0.0.1:port" the sink listens on.
	Addr string

	srv *smtp.Server

	mu        sync.Mutex
	envelopes []Envelope
	changed   chan struct{} // closed and replaced whenever envelopes changes
	rcptHook  func(from, to string) *smtp.SMTPError
	dataHook  func(env Envelope) *smtp.SMTPError
	closed    bool
	inHook    sync.WaitGroup
}

// StartSink starts a Sink on a free loopback port; it is closed when the
// test ends.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: sink: listen: %v", err)
	}
	s := &Sink{Addr: ln.Addr().String(), changed: make(chan struct{})}

	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s}, nil
	}))
	srv.Domain = SinkHostname
	// A non-zero limit makes go-smtp advertise SIZE, which Postfix uses.
	srv.MaxMessageBytes = 50 << 20
	srv.MaxRecipients = 1000
	// Bounded so that a half-open connection cannot make Close hang.
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	logger := &tbLogger{t: t}
	srv.ErrorLog = logger
	s.srv = srv

	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("testenv: sink: close: %v", err)
		}
		s.close()
		if err := <-done; err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("testenv: sink: serve: %v", err)
		}
		logger.stop()
	})
	return s
}

// Envelopes returns a copy of every transaction accepted so far.
func (s *Sink) Envelopes() []Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyEnvelopes(s.envelopes)
}

// WaitFor waits until at least n transactions were accepted and returns
// them all. On timeout it fails the test, listing what did arrive.
func (s *Sink) WaitFor(t testing.TB, n int, timeout time.Duration) []Envelope {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got := copyEnvelopes(s.envelopes)
		changed := s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("testenv: sink: waited %v for %d message(s), got %d:\n%s",
				timeout, n, len(got), describeEnvelopes(got))
			return nil
		}
	}
}

// Reset forgets every recorded transaction. Hooks stay installed.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.envelopes = nil
	s.notifyLocked()
}

// SetRcptHook installs a function called for every RCPT TO. Returning a
// non-nil error makes the sink reply with exactly that code and text for
// that recipient, which is how delivery tests simulate a remote server
// that rejects or defers some recipients. nil removes the hook.
func (s *Sink) SetRcptHook(hook func(from, to string) *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcptHook = hook
}

// SetDataHook installs a function called once a message has been read,
// before it is recorded. Returning a non-nil error rejects the whole
// transaction with that reply, and the transaction is then not recorded.
// nil removes the hook.
func (s *Sink) SetDataHook(hook func(env Envelope) *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dataHook = hook
}

// errSinkClosed answers transactions still in flight while the test ends.
var errSinkClosed = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "sink shutting down"}

// enterHook reports whether hooks may still run and, if so, counts the
// caller as in flight, so that cleanup can wait for hooks to return: a
// hook that calls t.Errorf after its test ended would panic.
func (s *Sink) enterHook() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.inHook.Add(1)
	return true
}

func (s *Sink) callRcptHook(from, to string) *smtp.SMTPError {
	if !s.enterHook() {
		return errSinkClosed
	}
	defer s.inHook.Done()
	s.mu.Lock()
	hook := s.rcptHook
	s.mu.Unlock()
	if hook == nil {
		return nil
	}
	return hook(from, to)
}

func (s *Sink) callDataHook(env Envelope) *smtp.SMTPError {
	if !s.enterHook() {
		return errSinkClosed
	}
	defer s.inHook.Done()
	s.mu.Lock()
	hook := s.dataHook
	s.mu.Unlock()
	if hook == nil {
		return nil
	}
	return hook(env)
}

func (s *Sink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.inHook.Wait()
}

func (s *Sink) record(env Envelope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.envelopes = append(s.envelopes, env)
	s.notifyLocked()
}

func (s *Sink) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func copyEnvelopes(in []Envelope) []Envelope {
	out := make([]Envelope, len(in))
	for i, e := range in {
		out[i] = e.clone()
	}
	return out
}

func (e Envelope) clone() Envelope {
	e.To = append([]string(nil), e.To...)
	e.Data = bytes.Clone(e.Data)
	return e
}

func describeEnvelopes(envs []Envelope) string {
	if len(envs) == 0 {
		return "  (nothing)"
	}
	var b strings.Builder
	for i, e := range envs {
		subject := "(no Subject)"
		for line := range strings.SplitSeq(string(e.Data), "\r\n") {
			if line == "" {
				break
			}
			if strings.HasPrefix(strings.ToLower(line), "subject:") {
				subject = strings.TrimSpace(line[len("subject:"):])
				break
			}
		}
		fmt.Fprintf(&b, "  %d: from=<%s> to=%v %d bytes, Subject: %s\n", i, e.From, e.To, len(e.Data), subject)
	}
	return b.String()
}

type sinkSession struct {
	sink *Sink
	from string
	to   []string
}

func (ss *sinkSession) Reset() {
	ss.from = ""
	ss.to = nil
}

func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	ss.to = nil
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	// Checked as a pointer: a nil *SMTPError returned as error is non-nil.
	if err := ss.sink.callRcptHook(ss.from, to); err != nil {
		return err
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("sink: read message: %w", err)
	}
	env := Envelope{From: ss.from, To: append([]string(nil), ss.to...), Data: data, Received: time.Now()}
	if err := ss.sink.callDataHook(env.clone()); err != nil {
		return err
	}
	ss.sink.record(env)
	return nil
}

// tbLogger forwards go-smtp's server log to the test log while the test
// runs. Logging through a testing.TB after its test finished panics, and
// server goroutines may still say something while shutting down, so the
// logger goes quiet once stopped.
type tbLogger struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *tbLogger) Printf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("testenv: sink: "+format, v...)
	}
}

func (l *tbLogger) Println(v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Log(append([]any{"testenv: sink:"}, v...)...)
	}
}

func (l *tbLogger) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}
