package lmtp

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"postlist/metrics"
	"postlist/reply"
)

// listener hands go-smtp only connections that hold a session slot.
//
// A connection beyond MaxSessions is accepted at once (so the kernel
// backlog never fills and hides the overload) and waits for a slot,
// without a greeting, for up to SessionWait; only then is it refused with
// 421 4.3.2. Waiting is kinder to Postfix than refusing at once: a refused
// connection defers the mail for a whole retry interval and counts against
// the destination, while a short wait costs nothing (Postfix waits 300s
// for a greeting). The number of waiting connections is bounded by
// MaxSessions too, so a flood cannot exhaust file descriptors.
type listener struct {
	net.Listener
	srv       *Server
	ready     chan net.Conn
	errc      chan error
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

func newListener(s *Server, ln net.Listener) *listener {
	l := &listener{
		Listener: ln,
		srv:      s,
		ready:    make(chan net.Conn),
		errc:     make(chan error, 1),
		closed:   make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if transientAcceptError(err) {
				// Out of file descriptors or buffers: back off, as
				// net/http does, instead of failing the whole server.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.srv.log.Warn("LMTP accept failed, retrying", zap.Error(err), zap.Duration("delay", delay))
				select {
				case <-time.After(delay):
					continue
				case <-l.closed:
					return
				}
			}
			l.errc <- err
			return
		}
		delay = 0
		l.wg.Add(1)
		go l.admit(c)
	}
}

func transientAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// admit waits for a session slot for c and hands it to Accept, or refuses
// it.
func (l *listener) admit(c net.Conn) {
	defer l.wg.Done()
	s := l.srv
	select {
	case s.slots <- struct{}{}:
	default:
		if s.waiting.Add(1) > int64(s.o.MaxSessions) {
			s.waiting.Add(-1)
			l.refuse(c, reply.TooBusy(), "no session slot and too many connections waiting")
			return
		}
		t := time.NewTimer(s.o.SessionWait)
		select {
		case s.slots <- struct{}{}:
			t.Stop()
			s.waiting.Add(-1)
		case <-t.C:
			s.waiting.Add(-1)
			l.refuse(c, reply.TooBusy(), "no session slot within the wait")
			return
		case <-l.closed:
			t.Stop()
			s.waiting.Add(-1)
			l.refuse(c, reply.ShuttingDown(), "shutting down")
			return
		}
	}
	if s.draining.Load() {
		// The slot was freed by a session ending for the shutdown.
		<-s.slots
		l.refuse(c, reply.ShuttingDown(), "shutting down")
		return
	}
	tc := &conn{Conn: c, srv: s}
	s.track(tc)
	select {
	case l.ready <- tc:
	case <-l.closed:
		s.untrack(tc)
		<-s.slots
		l.refuse(c, reply.ShuttingDown(), "shutting down")
	}
}

// refuse answers c with r instead of a greeting and closes it.
func (l *listener) refuse(c net.Conn, r reply.Reply, why string) {
	l.srv.log.Warn("LMTP connection refused", zap.Stringer("remote", c.RemoteAddr()),
		zap.Int("smtp_code", r.Code), zap.String("reason", why))
	metrics.LMTPReplies(metrics.StageConnect, r.Code, 1)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, r.String()+"\r\n")
	_ = c.Close()
}

// Accept returns the next connection that holds a session slot.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // later calls fail the same way
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections waiting for a slot get 421.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// wait returns once the accept loop and every waiting connection are done.
func (l *listener) wait() { l.wg.Wait() }

// conn is a connection that holds a session slot. It also lets Shutdown
// end idle sessions: go-smtp has no hook for that, but every command it
// reads comes through Read.
type conn struct {
	net.Conn
	srv *Server

	mu      sync.Mutex
	sess    *session
	hungUp  bool
	closeMu sync.Once
}

func (c *conn) setSession(s *session) {
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
}

// idle reports that no transaction is open, so closing loses nothing.
func (c *conn) idle() bool {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	return s == nil || !s.inTransaction()
}

// wake interrupts a read that is waiting for the next command of an idle
// session; Read then says goodbye. A session inside a transaction is left
// alone and says goodbye when the transaction ends.
func (c *conn) wake() {
	if c.idle() {
		_ = c.Conn.SetReadDeadline(time.Now())
	}
}

// Read ends an idle session while the server drains: it writes our 421
// and reports EOF, which go-smtp takes as the client leaving. It only
// runs on go-smtp's connection goroutine between commands (inside a
// transaction the session is not idle), when go-smtp writes nothing, so
// the 421 cannot interleave with another reply.
func (c *conn) Read(b []byte) (int, error) {
	if c.srv.draining.Load() && c.idle() {
		return 0, c.hangUp()
	}
	n, err := c.Conn.Read(b)
	if err != nil && n == 0 && c.srv.draining.Load() && c.idle() {
		return 0, c.hangUp()
	}
	return n, err
}

func (c *conn) hangUp() error {
	c.mu.Lock()
	said := c.hungUp
	c.hungUp = true
	c.mu.Unlock()
	if !said {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c.Conn, reply.ShuttingDown().String()+"\r\n")
	}
	return io.EOF
}

// saidGoodbye records that go-smtp already sent a 421 for us (a MAIL
// refused while draining), so Read must not send a second one.
func (c *conn) saidGoodbye() {
	c.mu.Lock()
	c.hungUp = true
	c.mu.Unlock()
}

// Close frees the session slot.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeMu.Do(func() {
		c.srv.untrack(c)
		<-c.srv.slots
	})
	return err
}
