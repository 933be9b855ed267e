package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"postlist/index"
	"postlist/index/indextest"
	"postlist/internal/testenv"
	"postlist/store"
)

func source() *indextest.Source {
	return &indextest.Source{
		Domains: []store.IndexDomain{{Name: "lists.example.org"}, {Name: "alias.example.org", AliasOf: "lists.example.org"}},
		Lists: []store.IndexList{
			{ID: 1, Address: "test@lists.example.org", ListID: "test.lists.example.org", DefaultNonmemberAction: "hold", MaxMessageSize: 100},
			{ID: 2, Address: "closed@lists.example.org", ListID: "closed.lists.example.org", DefaultNonmemberAction: "reject"},
		},
		Members: []store.IndexMember{{ListID: 1, Address: "alice@example.com"}, {ListID: 2, Address: "alice@example.com"}},
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

// start serves on a loopback port and returns the server and its
// address; the server is shut down when the test ends.
func start(t *testing.T, ix Snapshotter, o Options) (*Server, string) {
	t.Helper()
	o.Index = ix
	o.Log = zaptest.NewLogger(t)
	s := New(o)
	return s, testenv.ServeLoopback(t, s)
}

// client is Postfix's side of one policy connection.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// rcptRequest is a request as Postfix 3.7 sends it at RCPT, abridged.
func rcptRequest(sender, rcpt string, size int) string {
	return fmt.Sprintf("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"+
		"client_address=192.0.2.1\nclient_name=unknown\nhelo_name=mx.example.com\nqueue_id=\n"+
		"sender=%s\nrecipient=%s\nrecipient_count=0\nsize=%d\ninstance=1a2b.3c4d.0\n\n", sender, rcpt, size)
}

// ask sends raw and returns the action of the answer.
func (c *client) ask(raw string) (string, error) {
	if _, err := io.WriteString(c.c, raw); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	blank, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if blank != "\n" {
		return "", fmt.Errorf("answer %q not followed by an empty line but %q", line, blank)
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok {
		return "", fmt.Errorf("answer line %q", line)
	}
	return action, nil
}

func TestDecisions(t *testing.T) {
	_, addr := start(t, loaded(t, source()), Options{MaxMessageSize: 1000 * 1024})
	// One connection for all: Postfix keeps it open across requests.
	c := dial(t, addr)
	tests := []struct {
		name, sender, rcpt string
		size               int
		want               string // the action, or its prefix ending in a space
	}{
		{"post by member", "alice@example.com", "test@lists.example.org", 0, "DUNNO"},
		{"post via alias domain", "alice@example.com", "test@alias.example.org", 0, "DUNNO"},
		{"request address", "bob@example.net", "test-request@lists.example.org", 0, "DUNNO"},
		{"non-list domain", "bob@example.net", "someone@example.net", 0, "DUNNO"},
		{"unknown list address", "bob@example.net", "nope@lists.example.org", 0,
			"550 5.1.1 <nope@lists.example.org>: no such list address here"},
		{"forged VERP", "", "test-bounces+carol=example.com@lists.example.org", 0, "550 5.1.1 "},
		{"bad confirm token", "bob@example.net", "test-confirm+deadbeef@lists.example.org", 0, "550 5.1.1 "},
		{"malformed", "bob@example.net", "te(st@lists.example.org", 0, "553 5.1.3 "},
		{"non-member on reject list", "bob@example.net", "closed@lists.example.org", 0,
			"550 5.7.1 <bob@example.net>: only members may post to closed@lists.example.org"},
		{"null sender on reject list", "", "closed@lists.example.org", 0, "550 5.7.1 "},
		{"member on reject list", "alice@example.com", "closed@lists.example.org", 0, "DUNNO"},
		{"non-member on hold list", "bob@example.net", "test@lists.example.org", 0, "DUNNO"},
		{"declared size under the list limit", "alice@example.com", "test@lists.example.org", 100 * 1024, "DUNNO"},
		{"declared size over the list limit", "alice@example.com", "test@lists.example.org", 100*1024 + 1,
			"552 5.3.4 message too big for this list (limit 102400 bytes)"},
		{"list limit spares -owner", "alice@example.com", "test-owner@lists.example.org", 200 * 1024, "DUNNO"},
		{"site limit applies to -owner", "alice@example.com", "test-owner@lists.example.org", 1000*1024 + 1, "552 5.3.4 "},
		{"site limit not applied to other domains", "alice@example.com", "x@example.net", 1 << 30, "DUNNO"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.ask(rcptRequest(tc.sender, tc.rcpt, tc.size))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(tc.want, " ") && !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(tc.want, " ") && got != tc.want {
				t.Errorf("action=%q, want %q", got, tc.want)
			}
		})
	}
}

// TestNewListBeforeThePoll: a list created a moment ago (the index has
// not polled since) is not refused: the refusal is checked against the
// store first. The index here never polls.
func TestNewListBeforeThePoll(t *testing.T) {
	src := source()
	ix := loaded(t, src)
	_, addr := start(t, ix, Options{})
	c := dial(t, addr)
	const rcpt = "fresh@lists.example.org"
	if got, err := c.ask(rcptRequest("alice@example.com", rcpt, 0)); err != nil || !strings.HasPrefix(got, "550 5.1.1 ") {
		t.Fatalf("before the list exists: %q %v, want 550 5.1.1", got, err)
	}
	src.AddList("fresh", "lists.example.org", "", 0)
	src.Bump()
	if ix.Decide(rcpt).Accepted() {
		t.Fatal("the snapshot already knows the list; the test proves nothing")
	}
	if got, err := c.ask(rcptRequest("alice@example.com", rcpt, 0)); err != nil || got != "DUNNO" {
		t.Fatalf("new list: %q %v, want DUNNO", got, err)
	}
}

func TestOtherStagesAndRequests(t *testing.T) {
	_, addr := start(t, loaded(t, source()), Options{})
	c := dial(t, addr)
	for _, tc := range []struct{ name, raw, want string }{
		{"DATA stage", "request=smtpd_access_policy\nprotocol_state=DATA\nrecipient=\nsender=a@b\n\n", "DUNNO"},
		{"no sender attribute: not checked", "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=closed@lists.example.org\n\n", "DUNNO"},
		{"not a policy request", "request=junk\nprotocol_state=RCPT\nrecipient=nope@lists.example.org\n\n", "451 4.3.0 temporary local problem, please try again later"},
		{"missing request", "protocol_state=RCPT\nrecipient=nope@lists.example.org\n\n", "451 4.3.0 temporary local problem, please try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.ask(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("action=%q, want %q", got, tc.want)
			}
		})
	}
}

type nilIndex struct{}

func (nilIndex) Fresh(decide func(*index.Snapshot) index.Decision) (*index.Snapshot, index.Decision) {
	return nil, decide(nil)
}

type panicIndex struct{}

func (panicIndex) Fresh(func(*index.Snapshot) index.Decision) (*index.Snapshot, index.Decision) {
	panic("boom")
}

func TestTempFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		ix   Snapshotter
	}{{"index not loaded", nilIndex{}}, {"panic in a decision", panicIndex{}}} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := start(t, tc.ix, Options{})
			c := dial(t, addr)
			for i := range 2 { // the connection survives the failure
				got, err := c.ask(rcptRequest("alice@example.com", "test@lists.example.org", 0))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if !strings.HasPrefix(got, "451 4.3.0 ") {
					t.Errorf("request %d: action=%q, want 451 4.3.0", i, got)
				}
			}
		})
	}
}

// TestBadRequestsClose: an oversized, overlong or malformed request gets a
// 451 and the connection is closed, since the rest of the stream cannot
// be trusted to start a request.
func TestBadRequestsClose(t *testing.T) {
	_, addr := start(t, loaded(t, source()), Options{MaxRequest: 256, MaxAttrs: 4})
	for _, tc := range []struct{ name, raw string }{
		{"too long", "request=smtpd_access_policy\nccert_subject=" + strings.Repeat("x", 300) + "\n\n"},
		{"too many", "a=1\nb=2\nc=3\nd=4\ne=5\n\n"},
		{"malformed", "request=smtpd_access_policy\nnonsense\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			got, err := c.ask(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, "451 4.3.0 ") {
				t.Errorf("action=%q, want 451 4.3.0", got)
			}
			if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("connection not closed after a bad request: %v", err)
			}
		})
	}
}

// TestTimeouts: an idle connection is closed after IdleTimeout, and a
// request that stops half-way after ReadTimeout.
func TestTimeouts(t *testing.T) {
	_, addr := start(t, loaded(t, source()), Options{IdleTimeout: 300 * time.Millisecond, ReadTimeout: 100 * time.Millisecond})
	for _, tc := range []struct {
		name, partial string
		within        time.Duration
	}{{"idle", "", 2 * time.Second}, {"stalled request", "request=smtpd_access_policy\n", 250 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			if _, err := c.ask(rcptRequest("a@b", "test@lists.example.org", 0)); err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			if tc.partial != "" {
				if _, err := io.WriteString(c.c, tc.partial); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Fatalf("read: %v, want EOF", err)
			}
			if el := time.Since(begin); el > tc.within || el < 80*time.Millisecond {
				t.Errorf("closed after %v, want between 80ms and %v", el, tc.within)
			}
		})
	}
}

// TestShutdownDrains: Shutdown closes idle connections at once, answers
// a request already being read, and refuses new connections.
func TestShutdownDrains(t *testing.T) {
	s := New(Options{Index: loaded(t, source()), Log: zaptest.NewLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	idle, busy := dial(t, ln.Addr().String()), dial(t, ln.Addr().String())
	for _, c := range []*client{idle, busy} {
		if _, err := c.ask(rcptRequest("a@b", "test@lists.example.org", 0)); err != nil {
			t.Fatal(err)
		}
	}
	// Half a request: the server is reading it when Shutdown comes.
	req := rcptRequest("alice@example.com", "nope@lists.example.org", 0)
	cut := strings.IndexByte(req, '\n') + 5
	if _, err := io.WriteString(busy.c, req[:cut]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	if _, err := idle.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	busy.r = bufio.NewReader(busy.c)
	got, err := busy.ask(req[cut:])
	if err != nil || !strings.HasPrefix(got, "550 5.1.1 ") {
		t.Errorf("request in flight during shutdown: %q, %v; want its 550", got, err)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("still accepting after shutdown")
	}
}
