package socketmap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"postlist/index"
	"postlist/index/indextest"
	"postlist/internal/testenv"
	"postlist/metrics"
	"postlist/store"
)

const testTransport = "lmtp:[127.0.0.1]:8024"

// source holds:
//
//	test@lists.example.org   member alice@example.com
//	foo-owner@lists.example.org
//	alias.example.org        alias of lists.example.org
func source() *indextest.Source {
	return &indextest.Source{
		Domains: []store.IndexDomain{{Name: "lists.example.org"}, {Name: "alias.example.org", AliasOf: "lists.example.org"}},
		Lists: []store.IndexList{
			{ID: 1, Address: "test@lists.example.org", ListID: "test.lists.example.org", DefaultNonmemberAction: "hold"},
			{ID: 2, Address: "foo-owner@lists.example.org", ListID: "foo-owner.lists.example.org", DefaultNonmemberAction: "hold"},
		},
		Members: []store.IndexMember{{ListID: 1, Address: "alice@example.com"}},
	}
}

// loaded returns an index over src with its first snapshot built.
func loaded(t testing.TB, src index.Source) *index.Index {
	t.Helper()
	ix := index.New(src, index.Options{Log: zaptest.NewLogger(t)})
	if err := ix.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ix
}

// start serves ix on a loopback port and returns the server and its
// address; the server is shut down when the test ends.
func start(t *testing.T, ix Snapshotter, o Options) (*Server, string) {
	t.Helper()
	o.Index = ix
	if o.Transport == "" {
		o.Transport = testTransport
	}
	o.Log = zaptest.NewLogger(t)
	s := New(o)
	return s, testenv.ServeLoopback(t, s)
}

// client speaks raw netstrings, as Postfix's socketmap client does.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes raw bytes.
func (c *client) send(raw string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply netstring.
func (c *client) reply() (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := ReadNetstring(c.r, 1<<16)
	return string(p), err
}

// ask sends one request and returns the reply.
func (c *client) ask(req string) string {
	c.t.Helper()
	c.send(string(AppendNetstring(nil, []byte(req))))
	r, err := c.reply()
	if err != nil {
		c.t.Fatalf("reply to %q: %v", req, err)
	}
	return r
}

// closed reports whether the server closed the connection within d.
func (c *client) closed(d time.Duration) bool {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	_, err := c.r.ReadByte()
	return errors.Is(err, io.EOF)
}

func TestLookups(t *testing.T) {
	_, addr := start(t, loaded(t, source()), Options{})
	c := dial(t, addr)
	// One connection for every request: Postfix keeps it open.
	for _, tc := range []struct{ req, want string }{
		{"transport test@lists.example.org", "OK " + testTransport},
		{"transport TEST@Lists.Example.ORG", "OK " + testTransport},
		{"transport test+tag@lists.example.org", "OK " + testTransport},
		{"transport test-bounces@lists.example.org", "OK " + testTransport},
		{"transport test-bounces+alice=example.com@lists.example.org", "OK " + testTransport},
		// Extensions are for the milter and the LMTP server to judge;
		// Postfix would find test-bounces@ without it anyway.
		{"transport test-bounces+nobody=example.com@lists.example.org", "OK " + testTransport},
		{"transport test-confirm+0123456789abcdef@lists.example.org", "OK " + testTransport},
		{"transport test-request@alias.example.org", "OK " + testTransport},
		{"transport test-unsubscribe@lists.example.org", "OK " + testTransport},
		{"transport foo-owner@lists.example.org", "OK " + testTransport},
		{"transport nope@lists.example.org", "NOTFOUND "},
		{"transport nope-bounces@alias.example.org", "NOTFOUND "},
		// Postfix also asks for the domain and its parents, and for
		// addresses elsewhere: none of them is routed by the map.
		{"transport lists.example.org", "NOTFOUND "},
		{"transport .example.org", "NOTFOUND "},
		{"transport @lists.example.org", "NOTFOUND "},
		{"transport alice@example.com", "NOTFOUND "},
		{"transport ", "NOTFOUND "},
		{"recipients test-owner@lists.example.org", "OK test@lists.example.org"},
		{"recipients test@alias.example.org", "OK test@lists.example.org"},
		{"recipients foo-owner@lists.example.org", "OK foo-owner@lists.example.org"},
		{"recipients nope@alias.example.org", "NOTFOUND "},
		{"recipients @lists.example.org", "NOTFOUND "},
		{"domains lists.example.org", "OK lists.example.org"},
		{"domains ALIAS.example.org", "OK alias.example.org"},
		{"domains lists.example.org.", "OK lists.example.org"},
		{"domains example.org", "NOTFOUND "},
		{"domains .example.org", "NOTFOUND "},
		{"domains test@lists.example.org", "NOTFOUND "},
		// A misconfigured map name or a request without a key is a
		// configuration error on the Postfix side: PERM, connection kept.
		{"virtual test@lists.example.org", `PERM unknown map "virtual": want transport, recipients or domains`},
		{"transport", `PERM request is not "NAME KEY"`},
		{"transport test@lists.example.org", "OK " + testTransport},
	} {
		if got := c.ask(tc.req); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.req, got, tc.want)
		}
	}
}

// TestLiveChanges shows the point of the socketmap: a change to the index
// is answered on the connection Postfix already has, with no reload.
func TestLiveChanges(t *testing.T) {
	src := source()
	ix := index.New(src, index.Options{Log: zaptest.NewLogger(t)})
	_, addr := start(t, ix, Options{})
	c := dial(t, addr)
	for _, m := range []string{"transport test@lists.example.org", "recipients test@lists.example.org", "domains lists.example.org"} {
		if got := c.ask(m); !strings.HasPrefix(got, "TEMP ") {
			t.Errorf("index not loaded: %q got %q, want TEMP", m, got)
		}
	}
	if err := ix.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.ask("transport new@lists.example.org"); got != "NOTFOUND " {
		t.Fatalf("before the list exists: %q", got)
	}
	src.Lock()
	src.Lists = append(src.Lists, store.IndexList{ID: 3, Address: "new@lists.example.org", ListID: "new.lists.example.org"})
	src.Unlock()
	src.Bump()
	if err := ix.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.ask("transport new-join@lists.example.org"); got != "OK "+testTransport {
		t.Errorf("after the list was created: %q", got)
	}
}

func TestBadRequestsCloseTheConnection(t *testing.T) {
	_, addr := start(t, loaded(t, source()), Options{MaxRequest: 64})
	for _, tc := range []struct{ name, raw, want string }{
		{"too long", "65:" + strings.Repeat("x", 65) + ",", "PERM netstring longer than allowed"},
		{"malformed", "3:abc;", "PERM malformed netstring"},
		{"not a netstring", "transport test@lists.example.org\n", "PERM malformed netstring"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			if got := c.ask("domains lists.example.org"); got != "OK lists.example.org" {
				t.Fatalf("first request: %q", got)
			}
			c.send(tc.raw)
			got, err := c.reply()
			if err != nil || !strings.HasPrefix(got, tc.want) {
				t.Errorf("reply %q (%v), want prefix %q", got, err, tc.want)
			}
			if !c.closed(2 * time.Second) {
				t.Error("connection still open after a request that cannot be resynchronised")
			}
		})
	}
}

// panicky is an index whose snapshot access trips a bug.
type panicky struct{}

func (panicky) Snapshot() *index.Snapshot { panic("boom") }

// TestLookupPanicClosesOnlyItsConnection: a lookup that trips a bug
// closes that connection (Postfix defers the mail) and the server keeps
// serving.
func TestLookupPanicClosesOnlyItsConnection(t *testing.T) {
	_, addr := start(t, panicky{}, Options{})
	c := dial(t, addr)
	c.send(string(AppendNetstring(nil, []byte("domains lists.example.org"))))
	if !c.closed(5 * time.Second) {
		t.Fatal("connection still open after a panicking lookup")
	}
	// The server still accepts: another connection gets as far as the
	// same panic, and is closed the same way.
	c2 := dial(t, addr)
	c2.send(string(AppendNetstring(nil, []byte("domains lists.example.org"))))
	if !c2.closed(5 * time.Second) {
		t.Fatal("second connection not served")
	}
}

func TestIdleTimeout(t *testing.T) {
	_, addr := start(t, loaded(t, source()), Options{IdleTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	if got := c.ask("domains lists.example.org"); got != "OK lists.example.org" {
		t.Fatalf("request: %q", got)
	}
	began := time.Now()
	if !c.closed(3 * time.Second) {
		t.Fatal("idle connection not closed")
	}
	if took := time.Since(began); took < 150*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", took)
	}
}

func TestMaxConns(t *testing.T) {
	_, addr := start(t, loaded(t, source()), Options{MaxConns: 1})
	first := dial(t, addr)
	if got := first.ask("domains lists.example.org"); got != "OK lists.example.org" {
		t.Fatalf("first connection: %q", got)
	}
	second := dial(t, addr)
	if !second.closed(2 * time.Second) {
		t.Error("connection beyond MaxConns not closed")
	}
	// Its slot is given back when the first one ends.
	first.c.Close()
	testenv.WaitFor(t, 5*time.Second, "a slot is free after the first connection closed", func() bool {
		c := dial(t, addr)
		c.send(string(AppendNetstring(nil, []byte("domains lists.example.org"))))
		got, err := c.reply()
		return err == nil && got == "OK lists.example.org"
	})
}

func TestShutdownClosesIdleConnections(t *testing.T) {
	ix := loaded(t, source())
	s := New(Options{Index: ix, Transport: testTransport, Log: zaptest.NewLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c := dial(t, ln.Addr().String())
	if got := c.ask("domains lists.example.org"); got != "OK lists.example.org" {
		t.Fatalf("request: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("shutdown took %v with only an idle connection open", took)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	if !c.closed(2 * time.Second) {
		t.Error("idle connection still open after shutdown")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestLookupsAreCounted(t *testing.T) {
	reg := metrics.NewRegistry(metrics.Sources{})
	count := func(m, result string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "postlist_socketmap_lookups_total" {
				continue
			}
			for _, mt := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range mt.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["map"] == m && labels["result"] == result {
					return mt.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	_, addr := start(t, loaded(t, source()), Options{})
	c := dial(t, addr)
	okBefore, nfBefore, permBefore := count("transport", "OK"), count("domains", "NOTFOUND"), count("unknown", "PERM")
	c.ask("transport test@lists.example.org")
	c.ask("transport test-owner@lists.example.org")
	c.ask("domains example.com")
	c.ask("made-up-" + strings.Repeat("x", 10) + " key")
	if d := count("transport", "OK") - okBefore; d != 2 {
		t.Errorf("transport OK counted %v times, want 2", d)
	}
	if d := count("domains", "NOTFOUND") - nfBefore; d != 1 {
		t.Errorf("domains NOTFOUND counted %v times, want 1", d)
	}
	// A map name a client invents must not become a label value.
	if d := count("unknown", "PERM") - permBefore; d != 1 {
		t.Errorf("unknown map counted %v times as unknown/PERM, want 1", d)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if strings.HasPrefix(l.GetValue(), "made-up") {
					t.Errorf("%s has a label value from the client: %v", mf.GetName(), mt.GetLabel())
				}
			}
		}
	}
}

// TestShutdownWhileBusy: a client asking without pause is let finish the
// request in hand and then disconnected, promptly.
func TestShutdownWhileBusy(t *testing.T) {
	ix := loaded(t, source())
	s := New(Options{Index: ix, Transport: testTransport, Log: zaptest.NewLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	const clients = 4
	answered := make(chan int, clients)
	for range clients {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			r := bufio.NewReader(c)
			req := AppendNetstring(nil, []byte("transport test@lists.example.org"))
			n := 0
			for {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(req); err != nil {
					break
				}
				p, err := ReadNetstring(r, 1024)
				if err != nil {
					break
				}
				if string(p) != "OK "+testTransport {
					t.Errorf("reply %q", p)
					break
				}
				n++
			}
			answered <- n
		}()
	}
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	for range clients {
		select {
		case n := <-answered:
			if n == 0 {
				t.Error("a client got no answer before the shutdown")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a client was not disconnected by the shutdown")
		}
	}
}
