// Package socketmap answers Postfix's socketmap lookups (socketmap_table(5))
// from the in-memory address index, so that Postfix can refuse unknown
// list addresses with nothing generated on disk:
//
//	relay_recipient_maps = socketmap:inet:127.0.0.1:8028:recipients
//
// Postfix consults relay_recipient_maps for relay-domain recipients only,
// so only list mail waits on postlist. The transport and domains maps
// exist too, but Postfix looks up transport_maps and relay_domains for
// every address of every domain: a socketmap there makes all mail on the
// server depend on postlist (docs/postfix.md).
//
// A list created by the CLI is then routable as soon as the index picks it
// up (within a second), without postmap or a Postfix reload, which the
// generated hash maps of `postlist genaliases` need.
//
// The protocol: Postfix sends a netstring "NAME KEY" and reads one
// netstring reply, "OK VALUE", "NOTFOUND ", "TEMP REASON", "TIMEOUT REASON"
// or "PERM REASON", and keeps the connection for further requests. The
// maps answer as the generated postfix_lmtp and postfix_domains would:
//
//   - transport: a list address or subaddress, with or without a +extension,
//     in a list domain or an alias domain, is OK with the LMTP next hop
//     (postfix.Transport's form); anything else is NOTFOUND.
//   - recipients: the same keys, OK with the list's posting address.
//   - domains: a list domain or alias domain is OK with its name.
//
// An index that has not loaded answers TEMP, so Postfix defers instead of
// refusing or misrouting mail. A -bounces+ or -confirm+ address naming
// nobody is still found: the routing maps never judge extensions (Postfix
// would find the address without its extension anyway); the milter and
// the LMTP server do.
package socketmap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/index"
	"postlist/internal/connserver"
	"postlist/metrics"
)

// Map names, the last part of Postfix's socketmap:...:NAME.
const (
	MapTransport  = "transport"
	MapRecipients = "recipients"
	MapDomains    = "domains"
)

// Defaults for Options.
const (
	// DefaultIdleTimeout is far above Postfix's own idle limit for a
	// socketmap connection (it closes unused ones after seconds), so only
	// a connection Postfix forgot should ever reach it.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultWriteTimeout bounds writing one reply.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxRequest bounds a request's payload. A key is an address,
	// which Postfix limits to a few hundred bytes; the rest is slack.
	DefaultMaxRequest = 4096
	// DefaultMaxConns bounds open connections. Postfix opens one per
	// process that looks up a map (smtpd, trivial-rewrite, ...), a few
	// hundred on a busy server.
	DefaultMaxConns = 1000
)

// Snapshotter is the index as the server reads it (*index.Index).
type Snapshotter interface {
	Snapshot() *index.Snapshot
}

// Options configures New.
type Options struct {
	Index Snapshotter
	// Transport is the value of a transport lookup, the LMTP next hop
	// (postfix.Transport of the LMTP listen address).
	Transport string
	Log       *zap.Logger
	// IdleTimeout bounds the wait for the next request.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing a reply.
	WriteTimeout time.Duration
	// MaxRequest is the largest request payload accepted, in bytes.
	MaxRequest int
	// MaxConns is the most connections served at once; more are closed
	// at once (Postfix logs the failure and retries).
	MaxConns int
}

// Server is a socketmap server. Create it with New.
type Server struct {
	o   Options
	log *zap.Logger
	cs  *connserver.Server
	// lastPermLog is when a refused lookup was last logged (Unix ns).
	lastPermLog atomic.Int64
}

// New returns a server; Serve starts it.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxRequest <= 0 {
		o.MaxRequest = DefaultMaxRequest
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	s := &Server{o: o, log: o.Log}
	s.cs = connserver.New(connserver.Options{
		Name:        "socketmap",
		Log:         o.Log,
		IdleTimeout: o.IdleTimeout,
		MaxConns:    o.MaxConns,
		Handle:      s.serveConn,
		// Postfix then defers the mail with a table lookup error.
		PanicMessage: "panic while answering a socketmap lookup; connection closed",
	})
	return s
}

// Serve accepts connections on ln until Shutdown, then returns nil. ln is
// closed when Serve returns.
func (s *Server) Serve(ln net.Listener) error { return s.cs.Serve(ln) }

// Shutdown stops accepting, lets every connection finish the request it is
// answering and closes it, and returns when all are closed or ctx is done,
// when the remaining ones are closed at once. Postfix reconnects to the
// next postlist, or reports a temporary lookup failure meanwhile.
func (s *Server) Shutdown(ctx context.Context) error { return s.cs.Shutdown(ctx) }

func (s *Server) serveConn(c *connserver.Conn) {
	log := s.log.With(zap.Stringer("remote", c.RemoteAddr()))
	r := bufio.NewReaderSize(c, 1024)
	w := bufio.NewWriterSize(c, 1024)
	var out []byte
	for {
		if !c.Idle() {
			return
		}
		req, err := ReadNetstring(r, s.o.MaxRequest)
		if err != nil {
			s.readFailed(log, c, w, err)
			return
		}
		c.Busy(0)
		out = AppendNetstring(out[:0], s.answer(log, req))
		_ = c.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		_, err = w.Write(out)
		// Postfix waits for each reply before it asks again; flushing
		// only when no further request is already buffered costs nothing
		// then and batches replies for a client that pipelines.
		if err == nil && r.Buffered() == 0 {
			err = w.Flush()
		}
		if err != nil {
			log.Info("socketmap reply not written; closing", zap.Error(err))
			return
		}
	}
}

// readFailed logs why a connection ends. Oversized and malformed requests
// get a PERM reply first, so that Postfix logs what went wrong instead of
// a bare lost connection; the stream cannot be resynchronised afterwards.
func (s *Server) readFailed(log *zap.Logger, c net.Conn, w *bufio.Writer, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		// Postfix closed an idle connection: the normal end.
	case errors.As(err, &ne) && ne.Timeout():
		// Idle timeout or shutdown: nothing was pending.
		log.Debug("socketmap connection idle; closing")
	case errors.Is(err, ErrTooLong), errors.Is(err, ErrMalformed):
		log.Warn("socketmap request refused; closing", zap.Error(err))
		metrics.SocketmapLookup("unknown", metrics.ResultPerm)
		_ = c.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout))
		_, _ = w.Write(AppendNetstring(nil, []byte("PERM "+err.Error())))
		_ = w.Flush()
	default:
		log.Info("socketmap connection lost", zap.Error(err))
	}
}

// answer returns the reply payload for one request, counting and (at
// debug level) logging it.
func (s *Server) answer(log *zap.Logger, req []byte) []byte {
	name, key, ok := strings.Cut(string(req), " ")
	status, value := s.lookup(name, key, ok)
	mapName := name
	switch name {
	case MapTransport, MapRecipients, MapDomains:
	default:
		mapName = "unknown"
	}
	metrics.SocketmapLookup(mapName, status)
	if status == metrics.ResultPerm && s.permLogDue() {
		log.Warn("socketmap lookup refused (a Postfix configuration error; logged once a minute)",
			zap.String("map", clip(name)), zap.String("reason", value))
	} else if ce := log.Check(zap.DebugLevel, "socketmap lookup"); ce != nil {
		ce.Write(zap.String("map", mapName), zap.String("key", clip(address.Redact(key, ""))), zap.String("result", status), zap.String("value", value))
	}
	return []byte(status + " " + value)
}

// permLogDue rate-limits the warning for refused lookups: a main.cf
// typo makes every lookup of that map fail, thousands a minute on a busy
// server, and one line a minute says it as well.
func (s *Server) permLogDue() bool {
	now := time.Now().UnixNano()
	last := s.lastPermLog.Load()
	return now-last >= int64(time.Minute) && s.lastPermLog.CompareAndSwap(last, now)
}

// lookup answers one request: status is a protocol reply word, value its
// text (empty for NOTFOUND).
func (s *Server) lookup(name, key string, hasKey bool) (status, value string) {
	if !hasKey {
		return metrics.ResultPerm, "request is not \"NAME KEY\""
	}
	switch name {
	case MapTransport, MapRecipients, MapDomains:
	default:
		return metrics.ResultPerm, fmt.Sprintf("unknown map %q: want transport, recipients or domains", clip(name))
	}
	snap := s.o.Index.Snapshot()
	if snap == nil {
		return metrics.ResultTemp, "postlist address index not loaded"
	}
	if name == MapDomains {
		d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(key)), ".")
		if _, ok := snap.Domain(d); ok {
			return metrics.ResultOK, d
		}
		return metrics.ResultNotFound, ""
	}
	d := snap.Decide(key)
	switch {
	case d.Reason == index.ReasonUnavailable:
		return metrics.ResultTemp, "postlist address index not loaded"
	case !d.Ours || d.Target.List == "":
		return metrics.ResultNotFound, ""
	case name == MapTransport:
		return metrics.ResultOK, s.o.Transport
	}
	return metrics.ResultOK, d.Target.List
}

// clip bounds what a client sent before it is logged or echoed.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
