package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"postlist/config"
	"postlist/index"
	"postlist/internal/testenv/storetest"
	"postlist/pipeline"
)

// startHTTP serves the real HTTP mux (a loaded index, a real database) on
// a loopback port with the given limits. The unsubscribe route is
// replaced by a handler that reads the whole body, as the real one does
// when it parses the form, and reports what it got.
func startHTTP(t *testing.T, lim config.HTTP) (addr string, bodies chan error) {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	ix, err := index.Load(ctx, st, "+", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !ix.Ready() {
		t.Fatal("index not loaded from an empty database")
	}
	bodies = make(chan error, 10)
	readBody := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		bodies <- err
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "done")
	})
	h := newHTTP(st, ix, zap.NewNop(), readBody, http.NotFoundHandler(), lim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- h.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = h.srv.Close()
		_ = h.Shutdown(ctx)
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), bodies
}

// waitClosed reads from c until the server closes it and returns how long
// that took. A client-side timeout means the server kept the connection.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(start)
}

func lim(read, write, idle time.Duration, conns int) config.HTTP {
	return config.HTTP{
		ReadTimeout: config.Duration(read), WriteTimeout: config.Duration(write),
		IdleTimeout: config.Duration(idle), MaxConnections: conns,
	}
}

// TestHTTPClosesHoldingClients: each way a client can hold a connection
// without finishing a request ends within the configured time. The
// timeouts differ per case so that each case is ended by its own limit:
// the others are far longer than the wait allowed.
func TestHTTPClosesHoldingClients(t *testing.T) {
	const short = 300 * time.Millisecond
	const long = time.Minute
	const allowed = 3 * time.Second // short plus scheduling slack on a busy machine
	cases := []struct {
		name   string
		lim    config.HTTP
		client func(t *testing.T, c net.Conn, bodies chan error)
	}{
		{
			name: "never sends headers (read_timeout)",
			lim:  lim(short, long, long, 0),
			client: func(t *testing.T, c net.Conn, _ chan error) {
				// Half a request line, then silence.
				if _, err := io.WriteString(c, "GET /healthz HT"); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "trickles the body (read_timeout)",
			lim:  lim(short, long, long, 0),
			client: func(t *testing.T, c net.Conn, bodies chan error) {
				if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n", pipeline.UnsubscribePath); err != nil {
					t.Fatal(err)
				}
				go func() {
					for {
						if _, err := c.Write([]byte("a")); err != nil {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}()
				select {
				case err := <-bodies:
					if err == nil {
						t.Error("the handler got the whole trickled body")
					}
				case <-time.After(allowed):
					t.Error("the handler was still reading the body")
				}
			},
		},
		{
			name: "idles between keep-alive requests (idle_timeout)",
			lim:  lim(long, long, short, 0),
			client: func(t *testing.T, c net.Conn, _ chan error) {
				if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Close {
					t.Fatalf("healthz: %d %q, close=%v; want 200 on a kept-alive connection", resp.StatusCode, body, resp.Close)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, bodies := startHTTP(t, c.lim)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c.client(t, conn, bodies)
			if took := waitClosed(t, conn, allowed); took > allowed {
				t.Errorf("closed after %v, want within %v", took, allowed)
			}
		})
	}
}

// TestHTTPConnectionCap: with max_connections = 2 and two connections
// held, a third is not served until one of them closes, and /healthz
// answers as soon as the listener is under the cap again.
func TestHTTPConnectionCap(t *testing.T) {
	addr, _ := startHTTP(t, lim(30*time.Second, 30*time.Second, 30*time.Second, 2))
	get := func() (int, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + "/healthz")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if code, err := get(); err != nil || code != http.StatusOK {
		t.Fatalf("healthz under the cap: %d, %v", code, err)
	}

	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Make sure both are accepted (each holds a slot) before the third
	// comes: a kept-alive request on each proves the server took it.
	for _, c := range held {
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	var answered atomic.Bool
	done := make(chan error, 1)
	go func() {
		code, err := get()
		answered.Store(true)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	if answered.Load() {
		t.Fatal("a third connection was served while two held the cap")
	}
	held[0].Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("healthz once a slot freed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("healthz not answered after a held connection closed")
	}
}

// TestLimitListenerCloseWakesAccept: Shutdown closes the listener, and an
// Accept waiting for a free slot must return then, or the daemon's stop
// would hang behind a full listener.
func TestLimitListenerCloseWakesAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(inner, 1)
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("second Accept returned at once (%v) with the only slot taken", err)
	case <-time.After(200 * time.Millisecond):
	}
	ln.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
	// A closed connection gives its slot back exactly once.
	first.Close()
	first.Close()
	if n := len(ln.slots); n != 0 {
		t.Errorf("%d slots taken after close, want 0", n)
	}
}
