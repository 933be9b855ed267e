package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"postlist/index"
	"postlist/pipeline"
	"postlist/store"
)

// httpServer serves /healthz, /metrics and the one-click unsubscribe
// endpoint.
type httpServer struct {
	srv *http.Server
}

func newHTTP(st *store.Store, ix *index.Index, log *zap.Logger, unsubscribe, metrics http.Handler) *httpServer {
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
	return &httpServer{srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log),
	}}
}

func (h *httpServer) Serve(ln net.Listener) error { return h.srv.Serve(ln) }

func (h *httpServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }
