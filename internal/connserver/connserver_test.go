package connserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"postlist/internal/testenv"
)

// lineServer echoes lines. "panic" panics in the handler, "wait" waits
// for release before answering, "hang" is busy reading forever.
type lineServer struct {
	*Server
	release chan struct{}
	started chan struct{} // a request began to arrive
	served  atomic.Int64
}

func newLineServer(t *testing.T, o Options) *lineServer {
	t.Helper()
	ls := &lineServer{release: make(chan struct{}), started: make(chan struct{}, 16)}
	o.Name = "echo"
	o.Log = zaptest.NewLogger(t)
	if o.IdleTimeout == 0 {
		o.IdleTimeout = time.Minute
	}
	if o.MaxConns == 0 {
		o.MaxConns = 10
	}
	o.Handle = ls.handle
	ls.Server = New(o)
	return ls
}

func (ls *lineServer) handle(c *Conn) {
	r := bufio.NewReader(c)
	for {
		if !c.Idle() {
			return
		}
		if _, err := r.Peek(1); err != nil {
			return
		}
		c.Busy(0)
		ls.started <- struct{}{}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSpace(line)
		switch line {
		case "panic":
			panic("asked to")
		case "wait":
			<-ls.release
		case "hang":
			_, _ = r.ReadString('\n')
			return
		}
		ls.served.Add(1)
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			return
		}
	}
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func ask(t *testing.T, c net.Conn, r *bufio.Reader, line string) (string, error) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	return strings.TrimSpace(got), err
}

// mustEcho fails the test unless line comes back.
func mustEcho(t *testing.T, c net.Conn, r *bufio.Reader, line string) {
	t.Helper()
	if got, err := ask(t, c, r, line); err != nil || got != line {
		t.Fatalf("%s: got %q, %v", line, got, err)
	}
}

func TestPanicClosesOnlyItsConnection(t *testing.T) {
	ls := newLineServer(t, Options{})
	addr := testenv.ServeLoopback(t, ls)
	other, otherR := dial(t, addr)
	mustEcho(t, other, otherR, "before")
	c, r := dial(t, addr)
	if got, err := ask(t, c, r, "panic"); !errors.Is(err, io.EOF) {
		t.Fatalf("panic: got %q, %v; want the connection closed", got, err)
	}
	mustEcho(t, other, otherR, "after")
	c2, r2 := dial(t, addr)
	mustEcho(t, c2, r2, "new")
}

func TestMaxConns(t *testing.T) {
	ls := newLineServer(t, Options{MaxConns: 1})
	addr := testenv.ServeLoopback(t, ls)
	first, firstR := dial(t, addr)
	mustEcho(t, first, firstR, "one")
	second, secondR := dial(t, addr)
	if got, err := ask(t, second, secondR, "two"); err == nil {
		t.Fatalf("second connection above MaxConns answered %q", got)
	}
	first.Close()
	// The slot is freed once the server has seen the close.
	testenv.WaitForWhy(t, 5*time.Second, "a connection is accepted after the first closed", func() (bool, string) {
		c, r := dial(t, addr)
		got, err := ask(t, c, r, "three")
		return err == nil && got == "three", fmt.Sprintf("%q, %v", got, err)
	})
}

func TestShutdownDrains(t *testing.T) {
	ls := newLineServer(t, Options{})
	addr := testenv.ServeLoopback(t, ls)
	idle, idleR := dial(t, addr)
	mustEcho(t, idle, idleR, "idle")
	<-ls.started
	// A request half sent when Shutdown starts is still read in full.
	busy, busyR := dial(t, addr)
	if _, err := io.WriteString(busy, "wa"); err != nil {
		t.Fatal(err)
	}
	<-ls.started
	shut := make(chan error, 1)
	go func() { shut <- ls.Shutdown(context.Background()) }()
	// The idle connection ends at once, while the busy one still works.
	if _, err := idleR.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection during shutdown: %v, want EOF", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was being answered", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("a new connection was accepted during shutdown")
	}
	if _, err := io.WriteString(busy, "it\n"); err != nil {
		t.Fatal(err)
	}
	close(ls.release)
	if got, err := busyR.ReadString('\n'); err != nil || got != "wait\n" {
		t.Fatalf("busy request during shutdown: %q, %v", got, err)
	}
	if _, err := busyR.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("busy connection after its answer: %v, want EOF", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := ls.Serve(testenv.Listen(t)); err != nil {
		t.Errorf("Serve after Shutdown: %v, want nil at once", err)
	}
}

func TestShutdownGivesUp(t *testing.T) {
	ls := newLineServer(t, Options{})
	addr := testenv.ServeLoopback(t, ls)
	c, r := dial(t, addr)
	if _, err := io.WriteString(c, "hang\n"); err != nil {
		t.Fatal(err)
	}
	<-ls.started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := ls.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "echo: shutdown") {
		t.Fatalf("Shutdown = %v, want echo: shutdown: deadline exceeded", err)
	}
	if _, err := r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("connection after a forced shutdown: %v, want EOF", err)
	}
}
