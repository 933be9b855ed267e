// Package connserver is the connection half of postlist's small
// request/response servers for Postfix (the policy service and the
// socketmap server): accepting with back-off on resource exhaustion,
// tracking connections, refusing above a connection limit, containing a
// panic to its connection, and a graceful Shutdown that lets a request
// being answered finish while idle connections end at once. Those
// servers differ only in their protocol, and this logic is subtle enough
// (the ordering of the idle deadline against Shutdown's) to be written
// once.
package connserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Options configures New. Name, IdleTimeout, MaxConns and Handle are
// required.
type Options struct {
	// Name starts the server's log messages and errors ("policy").
	Name string
	Log  *zap.Logger
	// IdleTimeout bounds the wait for the next request (Conn.Idle).
	IdleTimeout time.Duration
	// MaxConns is the most connections served at once; more are closed
	// as soon as they are accepted.
	MaxConns int
	// Handle serves one connection until it returns; the connection is
	// closed afterwards. It calls Conn.Idle before reading each request
	// and Conn.Busy once a request has begun to arrive.
	Handle func(*Conn)
	// PanicMessage is logged when Handle panics; the default names the
	// server.
	PanicMessage string
}

// Server accepts and tracks connections for a protocol's Handle.
type Server struct {
	o   Options
	log *zap.Logger

	mu    sync.Mutex // guards lns and conns
	lns   map[net.Listener]struct{}
	conns map[*Conn]struct{}
	wg    sync.WaitGroup
	open  atomic.Int64
	// draining is set once, by Shutdown, while it holds mu.
	draining atomic.Bool
}

// New returns a server; Serve starts it. It panics on missing options,
// which is a programming error.
func New(o Options) *Server {
	if o.Name == "" || o.Handle == nil || o.IdleTimeout <= 0 || o.MaxConns <= 0 {
		panic("connserver.New: Name, Handle, IdleTimeout and MaxConns are required")
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.PanicMessage == "" {
		o.PanicMessage = "panic while serving a " + o.Name + " connection; closed"
	}
	return &Server{o: o, log: o.Log, lns: map[net.Listener]struct{}{}, conns: map[*Conn]struct{}{}}
}

// Conn is one Postfix connection. mu orders the idle deadline set before
// each read against Shutdown's "stop reading now" deadline, so that the
// latter always wins.
type Conn struct {
	net.Conn
	s    *Server
	mu   sync.Mutex
	busy bool // a request is being read or answered
}

// Idle marks the connection as waiting for its next request, arms the
// idle deadline, and reports whether the connection should go on (not
// while the server drains).
func (c *Conn) Idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	// Both under c.mu, which Shutdown takes for each connection after
	// setting draining: either Shutdown came first and draining is seen
	// here, or it comes later, sees busy false and moves the deadline
	// to now, which this then cannot overwrite.
	if c.s.draining.Load() {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(c.s.o.IdleTimeout))
	return true
}

// Busy marks the connection as answering a request, which Shutdown lets
// finish. readTimeout > 0 also replaces the idle deadline with one for
// reading the rest of the request; 0 leaves the deadline alone.
func (c *Conn) Busy(readTimeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = true
	if readTimeout > 0 {
		_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	}
}

// Serve accepts connections on ln until Shutdown, then returns nil. ln is
// closed when Serve returns.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.draining.Load() {
				return nil
			}
			if transientAcceptError(err) {
				// Out of file descriptors or buffers: back off, as
				// net/http does, instead of failing the whole server.
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				s.log.Warn(s.o.Name+" accept failed; retrying", zap.Error(err), zap.Duration("pause", pause))
				time.Sleep(pause)
				continue
			}
			return fmt.Errorf("%s: accept on %s: %w", s.o.Name, ln.Addr(), err)
		}
		pause = 0
		if s.open.Add(1) > int64(s.o.MaxConns) {
			// Postfix logs the failure and retries later.
			s.open.Add(-1)
			s.log.Warn(s.o.Name+" connection refused: too many open", zap.Stringer("remote", c.RemoteAddr()),
				zap.Int("max_conns", s.o.MaxConns))
			c.Close()
			continue
		}
		sc := &Conn{Conn: c, s: s}
		s.mu.Lock()
		if s.draining.Load() {
			s.mu.Unlock()
			s.open.Add(-1)
			c.Close()
			return nil
		}
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(sc)
	}
}

// transientAcceptError reports accept errors worth retrying: resource
// exhaustion and connections aborted before they were accepted.
func transientAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// Shutdown stops accepting, lets every connection finish the request it
// is answering and closes it, and returns when all are closed or ctx is
// done, when the remaining ones are closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.mu.Lock()
		if !c.busy {
			// Unblocks the read of the next request at once.
			_ = c.SetReadDeadline(time.Now())
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		return fmt.Errorf("%s: shutdown: %w", s.o.Name, ctx.Err())
	}
}

func (s *Server) serveConn(c *Conn) {
	defer func() {
		// A bug in one connection's code closes that connection (Postfix
		// then retries or defers) rather than the whole daemon.
		if v := recover(); v != nil {
			s.log.Error(s.o.PanicMessage, zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		s.open.Add(-1)
		s.wg.Done()
	}()
	s.o.Handle(c)
}
