package testenv

import (
	"context"
	"net"
	"testing"
	"time"
)

// Server is a postlist server that serves listeners until shut down, as
// the policy and socketmap servers do.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Listen listens on a free loopback port. The listener is the caller's to
// close, usually by handing it to a server that closes it on shutdown.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	return ln
}

// ServeLoopback serves s on a free loopback port and returns its address.
// When the test ends s is shut down, and the test fails if Shutdown does
// not drain within 5 s or Serve returned an error.
func ServeLoopback(t testing.TB, s Server) string {
	t.Helper()
	ln := Listen(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}
