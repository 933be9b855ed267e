package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"postlist/config"
	"postlist/index"
	"postlist/pipeline"
	"postlist/store"
)

// httpServer serves /healthz, /metrics and the one-click unsubscribe
// endpoint.
type httpServer struct {
	srv      *http.Server
	maxConns int
}

// maxHeaderWait bounds the wait for a request's headers even when
// read_timeout is longer: a client that sends nothing is given less
// patience than one uploading a body.
const maxHeaderWait = 10 * time.Second

// newHTTP builds the listener's server with the [http] limits. It runs in
// the process that serves the milter and LMTP, so every way a client can
// hold a connection (never sending headers, trickling a body, idling
// between keep-alive requests, reading the answer slowly, or just opening
// many) is bounded.
func newHTTP(st *store.Store, ix *index.Index, log *zap.Logger, unsubscribe, metrics http.Handler, lim config.HTTP) *httpServer {
	mux := http.NewServeMux()
	mux.Handle(pipeline.UnsubscribePath, unsubscribe)
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := st.Generation(ctx); err != nil {
			log.Warn("health check failed", zap.Error(err))
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		// Without an index the milter and the socketmap answer every list
		// recipient with a temporary failure: not healthy, even though
		// the database answers (it may have just come back, and the index
		// follows within a second).
		if !ix.Ready() {
			http.Error(w, "address index not loaded", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return &httpServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: min(maxHeaderWait, lim.ReadTimeout.D()),
			ReadTimeout:       lim.ReadTimeout.D(),
			WriteTimeout:      lim.WriteTimeout.D(),
			IdleTimeout:       lim.IdleTimeout.D(),
			ErrorLog:          zap.NewStdLog(log),
		},
		maxConns: lim.MaxConnections,
	}
}

func (h *httpServer) Serve(ln net.Listener) error {
	if h.maxConns > 0 {
		ln = newLimitListener(ln, h.maxConns)
	}
	return h.srv.Serve(ln)
}

func (h *httpServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// limitListener accepts a connection only while fewer than its capacity
// are open. Over the cap, Accept waits for one to close: the newcomer sits
// in the kernel's accept queue instead of being refused, so a burst of
// health checks is answered late rather than failed, and the timeouts
// guarantee a slot frees up. (golang.org/x/net/netutil.LimitListener does
// the same; this avoids a dependency for thirty lines.)
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close also wakes an Accept waiting for a slot, so Shutdown is not held
// up by a full listener.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitConn gives its slot back on the first Close; net/http may close a
// connection more than once.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
