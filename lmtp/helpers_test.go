package lmtp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"postlist/address"
	"postlist/internal/testenv/storetest"
	"postlist/reply"
	"postlist/store"
)

const testDomain = "lists.example.org"

// storeDirectory is an address.Directory reading the store on every call,
// so that tests see list removals at once, as the daemon's index does
// within a second.
type storeDirectory struct{ st *store.Store }

func (d storeDirectory) Domain(name string) (string, bool) {
	ds, err := d.st.Domains(context.Background())
	if err != nil {
		return "", false
	}
	for _, x := range ds {
		if x.Name == name {
			if x.AliasOf != "" {
				return x.AliasOf, true
			}
			return x.Name, true
		}
	}
	return "", false
}

func (d storeDirectory) HasList(addr string) bool {
	_, err := d.st.GetList(context.Background(), addr)
	return err == nil
}

// storeResolver answers as the milter's index would: unknown list
// addresses 550 5.1.1, malformed ones 553, other domains 550 too (Postfix
// never routes them here).
func storeResolver(st *store.Store) func(string) (address.Target, *reply.Reply) {
	r := address.Resolver{Delimiter: "+"}
	dir := storeDirectory{st}
	return func(rcpt string) (address.Target, *reply.Reply) {
		t, err := r.Resolve(rcpt, dir)
		switch {
		case err == nil:
			return t, nil
		case errors.Is(err, address.ErrMalformed):
			rep := reply.Malformed(rcpt, err.Error())
			return address.Target{}, &rep
		default:
			rep := reply.NoSuchList(rcpt)
			return address.Target{}, &rep
		}
	}
}

// openStore opens a fresh store with lists test@ and other@.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	return storetest.Open(t, "test@"+testDomain, "other@"+testDomain)
}

type harness struct {
	st   *store.Store
	srv  *Server
	addr string
	logs *observer.ObservedLogs
	// shutByTest: the test called Shutdown itself and checked the result.
	shutByTest bool
}

// startServer runs a Server on a loopback port with a fresh store; mod
// adjusts the options. The server is shut down at cleanup, and Serve must
// then have returned nil.
func startServer(t testing.TB, mod func(*Options)) *harness {
	t.Helper()
	st := openStore(t)
	core, logs := observer.New(zap.DebugLevel)
	o := Options{
		Store:    st,
		Log:      zap.New(core),
		Resolve:  storeResolver(st),
		Hostname: "postlist.test",
	}
	if mod != nil {
		mod(&o)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(o)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	h := &harness{st: st, srv: srv, addr: ln.Addr().String(), logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !h.shutByTest {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after Shutdown, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return h
}

// raw is a minimal LMTP client that returns every reply verbatim, for
// assertions on the exact wire text (go-smtp's client hides positive
// replies and merges duplicate recipients).
type raw struct {
	t  testing.TB
	c  net.Conn
	tp *textproto.Conn
}

type wireReply struct {
	Code int
	Text string // with enhanced code, e.g. "2.0.0 <a@b> queued as 1"
}

func (r wireReply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

func dialRaw(t testing.TB, addr string) *raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &raw{t: t, c: c, tp: textproto.NewConn(c)}
}

// read returns the next reply; Code 0 means the connection ended.
func (r *raw) read() wireReply {
	r.t.Helper()
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return wireReply{}
	}
	return wireReply{code, msg}
}

func (r *raw) cmd(format string, args ...any) wireReply {
	r.t.Helper()
	if err := r.tp.PrintfLine(format, args...); err != nil {
		r.t.Fatalf("send %q: %v", fmt.Sprintf(format, args...), err)
	}
	return r.read()
}

// greet reads the greeting and sends LHLO.
func (r *raw) greet() {
	r.t.Helper()
	if g := r.read(); g.Code != 220 {
		r.t.Fatalf("greeting = %v", g)
	}
	if rep := r.cmd("LHLO client.test"); rep.Code != 250 {
		r.t.Fatalf("LHLO = %v", rep)
	}
}

// data sends DATA and the message, and returns the n replies after it.
func (r *raw) data(msg string, n int) []wireReply {
	r.t.Helper()
	if rep := r.cmd("DATA"); rep.Code != 354 {
		r.t.Fatalf("DATA = %v", rep)
	}
	w := r.tp.DotWriter()
	if _, err := w.Write([]byte(msg)); err != nil {
		r.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		r.t.Fatal(err)
	}
	out := make([]wireReply, n)
	for i := range out {
		out[i] = r.read()
	}
	return out
}

// transaction runs MAIL, RCPTs (each must be accepted) and DATA.
func (r *raw) transaction(from string, rcpts []string, msg string) []wireReply {
	r.t.Helper()
	if rep := r.cmd("MAIL FROM:<%s>", from); rep.Code != 250 {
		r.t.Fatalf("MAIL = %v", rep)
	}
	for _, rc := range rcpts {
		if rep := r.cmd("RCPT TO:<%s>", rc); rep.Code != 250 {
			r.t.Fatalf("RCPT %s = %v", rc, rep)
		}
	}
	return r.data(msg, len(rcpts))
}

// message builds a small CRLF message.
func message(msgID, subject string) string {
	var b strings.Builder
	b.WriteString("Received: from mx.example.net (mx.example.net [192.0.2.7])\r\n")
	b.WriteString("\tby pfharness.test (Postfix) with ESMTP id 4F1B2C3D4E\r\n")
	b.WriteString("\tfor <test@lists.example.org>; Wed, 26 Nov 2025 07:11:00 +0000 (UTC)\r\n")
	b.WriteString("From: Alice <alice@example.com>\r\nTo: test@lists.example.org\r\n")
	if msgID != "" {
		b.WriteString("Message-ID: " + msgID + "\r\n")
	}
	b.WriteString("Subject: " + subject + "\r\n\r\nHello list.\r\n")
	return b.String()
}

type storedMessage struct {
	ID                       int64
	MessageID, Sender, Queue string
	Size                     int64
	Body                     []byte
}

func messages(t testing.TB, st *store.Store) []storedMessage {
	t.Helper()
	items, err := st.PendingIntake(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedMessage
	seen := map[int64]bool{}
	for _, it := range items {
		if seen[it.MessageID] {
			continue
		}
		seen[it.MessageID] = true
		body, err := st.IntakeBody(context.Background(), it.MessageID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, storedMessage{it.MessageID, it.HeaderMessageID, it.Sender, it.QueueID, it.Size, body})
	}
	return out
}

func intakeRows(t testing.TB, st *store.Store) []store.IntakeItem {
	t.Helper()
	items, err := st.PendingIntake(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// makeImmutable sets the immutable attribute on the database files, which
// makes every write fail even for root (file modes do not stop root, and
// SQLite keeps its files open). It skips the test where the file system
// has no such attribute (overlay file systems of some CI containers).
func makeImmutable(t testing.TB, dbPath string) (undo func()) {
	t.Helper()
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		t.Skip("chattr not installed (e2fsprogs): cannot make the database read-only for root")
	}
	files := []string{dbPath, dbPath + "-wal"}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("database file: %v", err)
		}
	}
	args := append([]string{"+i"}, files...)
	if out, err := exec.Command(chattr, args...).CombinedOutput(); err != nil {
		t.Skipf("file system has no immutable attribute (%v: %s): cannot make the database read-only", err, out)
	}
	done := false
	undo = func() {
		if done {
			return
		}
		done = true
		args := append([]string{"-i"}, files...)
		if out, err := exec.Command(chattr, args...).CombinedOutput(); err != nil {
			t.Errorf("chattr -i: %v: %s", err, out)
		}
	}
	t.Cleanup(undo)
	return undo
}
