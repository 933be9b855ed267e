// Package daemon runs `postlist serve`: it opens the store, builds the
// address index, and runs the Postfix policy service, the milter, the
// LMTP server, the HTTP listener (health, metrics, one-click unsubscribe)
// and, when configured, the Postfix socketmap server side by side until
// the context ends, then drains them in order.
//
// The order matters for the "nothing accepted is lost" promise: listeners
// stop taking new work first, in-flight sessions finish (an LMTP commit in
// progress completes and gets its 250), and only then is the database
// closed.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"postlist/config"
	"postlist/index"
	"postlist/internal/listen"
	"postlist/lmtp"
	"postlist/metrics"
	"postlist/milter"
	"postlist/policy"
	"postlist/postfix"
	"postlist/socketmap"
	"postlist/wire"
)

// ShutdownTimeout bounds how long in-flight sessions may take to finish
// after SIGTERM; systemd's TimeoutStopSec should be a little longer.
const ShutdownTimeout = 15 * time.Second

// NewLogger builds the zap logger the config asks for. Under systemd
// (JOURNAL_STREAM set) the console form drops timestamps: journald adds its
// own.
func NewLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.Level, err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "json" {
		enc = zapcore.NewJSONEncoder(ec)
	} else {
		if os.Getenv("JOURNAL_STREAM") != "" {
			ec.TimeKey = ""
		}
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), level)), nil
}

// server is what each listener-backed component offers.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// component is one listener-backed server and where it listens.
type component struct {
	name string
	addr config.Listen
	mode os.FileMode
	grp  string
	srv  server
}

// Run serves until ctx is cancelled (SIGINT/SIGTERM in the CLI) and returns
// nil after a clean shutdown.
func Run(ctx context.Context, cfg *config.Config, logOut io.Writer) error {
	log, err := NewLogger(cfg.Log, logOut)
	if err != nil {
		return err
	}
	defer log.Sync()
	// SIGHUP would kill the process by default; Postfix admins send it to
	// mean "reload", which we do not need (data lives in the database and is
	// picked up live), so it must be harmless.
	signal.Ignore(syscall.SIGHUP)

	milter.RouteLibraryLogs(log.Named("go-milter"))

	sys, err := Build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer sys.Close()
	st := sys.Store

	ix, err := index.Load(ctx, st, cfg.MTA.VERPDelimiter, log.Named("index"))
	if err != nil {
		return fmt.Errorf("load address index: %w", err)
	}
	ixCtx, stopIndex := context.WithCancel(context.Background())
	defer stopIndex()
	go ix.Run(ixCtx)

	hostname, _ := os.Hostname()

	// The processing stages run on their own context: they stop only after
	// the listeners have drained, so a message committed by a last LMTP
	// session is never left half-processed by a cancel racing it.
	wctx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	// Each worker runs until its context ends; an error it returns shuts
	// the daemon down.
	workers := sys.Workers()
	if r := cfg.Database.Retention.D(); r > 0 {
		workers = append(workers, wire.Worker{Name: "purge", Run: purger{st: st, retention: r, log: log.Named("purge")}.run})
	}
	var wwg sync.WaitGroup
	werrc := make(chan error, len(workers))
	for _, w := range workers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			if err := w.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				werrc <- fmt.Errorf("%s: %w", w.Name, err)
			}
		}()
	}
	stopAll := func() {
		stopWorkers()
		wwg.Wait()
	}

	comps := []component{
		{
			name: "milter", addr: cfg.MTA.MilterListen, mode: os.FileMode(cfg.MTA.MilterSocketMode), grp: cfg.MTA.MilterSocketGroup,
			srv: milter.New(milter.Options{
				Index: ix, Log: log.Named("milter"),
				MaxMessageSize: int64(cfg.MTA.MaxMessageSize), WriteTimeout: cfg.MTA.MilterTimeout.D(),
			}),
		},
		{
			// Postfix's SMTPD access policy service for list domains; a
			// unix socket gets the milter socket's mode and group (the
			// same smtpd processes connect to both).
			name: "policy", addr: cfg.MTA.PolicyListen, mode: os.FileMode(cfg.MTA.MilterSocketMode), grp: cfg.MTA.MilterSocketGroup,
			srv: policy.New(policy.Options{
				Index: ix, Log: log.Named("policy"), MaxMessageSize: int64(cfg.MTA.MaxMessageSize),
				WriteTimeout: cfg.MTA.MilterTimeout.D(),
			}),
		},
		{
			name: "lmtp", addr: cfg.LMTPAddr(), mode: os.FileMode(cfg.MTA.MilterSocketMode), grp: cfg.MTA.MilterSocketGroup,
			srv: lmtp.New(lmtp.Options{
				Store: st, Log: log.Named("lmtp"), Resolve: ix.Resolve, Hostname: hostname,
				MaxMessageBytes: int64(cfg.MTA.MaxMessageSize), MaxRecipients: cfg.MTA.MaxRcptsPerMessage,
				MaxSessions: cfg.MTA.MaxLMTPSessions, IdleTimeout: cfg.MTA.LMTPIdleTimeout.D(),
				Committed: sys.Committed,
			}),
		},
	}
	if !cfg.HTTP.SocketmapListen.IsZero() {
		// A unix socket gets the milter socket's mode and group: the same
		// Postfix services (smtpd, trivial-rewrite, as the postfix user)
		// connect to both.
		lmtpAddr := cfg.LMTPAddr()
		comps = append(comps, component{
			name: "socketmap", addr: cfg.HTTP.SocketmapListen, mode: os.FileMode(cfg.MTA.MilterSocketMode), grp: cfg.MTA.MilterSocketGroup,
			srv: socketmap.New(socketmap.Options{
				Index: ix, Log: log.Named("socketmap"), Transport: postfix.Transport(lmtpAddr.Network, lmtpAddr.Address),
			}),
		})
	}
	if cfg.HTTP.Listen != "" {
		reg := metrics.NewRegistry(metrics.Sources{Store: st, Index: ix})
		comps = append(comps, component{
			name: "http", addr: config.Listen{Network: "tcp", Address: cfg.HTTP.Listen},
			srv: newHTTP(st, ix, log.Named("http"), sys.Pipeline.UnsubscribeHandler(), metrics.Handler(reg, log.Named("metrics")), cfg.HTTP),
		})
	}

	errc := make(chan error, len(comps))
	var wg sync.WaitGroup
	var started []component
	for _, c := range comps {
		ln, err := listen.Open(c.addr, c.mode, c.grp)
		if err != nil {
			shutdown(log, started)
			wg.Wait()
			stopAll()
			if listen.IsAddrInUse(err) {
				return fmt.Errorf("%s: %w (is another postlist or service running there?)", c.name, err)
			}
			return fmt.Errorf("%s: %w", c.name, err)
		}
		started = append(started, c)
		log.Info("listening", zap.String("component", c.name), zap.String("addr", c.addr.String()))
		wg.Add(1)
		go func(c component, ln net.Listener) {
			defer wg.Done()
			defer ln.Close()
			if err := c.srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", c.name, err)
			}
		}(c, ln)
	}
	log.Info("postlist started", zap.String("database", cfg.Database.Path),
		zap.String("smtp", cfg.SMTPAddr()), zap.String("config", cfg.File))

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", zap.String("reason", "signal"))
	case runErr = <-errc:
		log.Error("component failed, shutting down", zap.Error(runErr))
	case runErr = <-werrc:
		log.Error("worker failed, shutting down", zap.Error(runErr))
	}
	shutdown(log, started)
	wg.Wait()
	stopAll()
	stopIndex()
	log.Info("postlist stopped")
	return runErr
}

// Build is the System Run serves: the command line builds its own with
// the same call, so its decisions go out as the daemon's would.
func Build(ctx context.Context, cfg *config.Config, log *zap.Logger) (*wire.System, error) {
	return wire.Build(ctx, cfg, log)
}

// shutdown stops components in reverse start order, each bounded by
// ShutdownTimeout.
func shutdown(log *zap.Logger, comps []component) {
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		if err := c.srv.Shutdown(ctx); err != nil {
			log.Warn("shutdown incomplete", zap.String("component", c.name), zap.Error(err))
		}
		cancel()
	}
}
