package milter_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"postlist/config"
	"postlist/index"
	"postlist/index/indextest"
	"postlist/internal/listen"
	"postlist/milter"
	"postlist/store"
)

const (
	liveToken = "0123456789abcdef0123456789abcdef"
	siteMax   = 100_000
)

// testSource has four lists in lists.example.org:
//
//	test   rejects non-members, 40 KiB limit; alice member, carol owner;
//	       bob removed recently; a live confirmation token
//	open   holds non-members (nothing refused at SMTP time), no limit
//	small  holds non-members, 1 KiB limit
//	bulky  holds non-members, 1 KiB limit, holds oversized posts
func testSource() *indextest.Source {
	src := &indextest.Source{}
	test := src.AddList("test", "lists.example.org", "reject", 40)
	src.AddList("open", "lists.example.org", "hold", 0)
	src.AddList("small", "lists.example.org", "hold", 1)
	bulky := src.AddList("bulky", "lists.example.org", "hold", 1)
	src.Lists[bulky-1].HoldOversize = true
	src.Members = []store.IndexMember{
		{ListID: test, Address: "alice@example.com"},
		{ListID: test, Address: "carol@example.com"},
	}
	src.Removed = []store.IndexRemoved{{ListID: test, Address: "bob@example.com"}}
	src.Tokens = []store.IndexToken{{ListID: test, Token: liveToken, ExpiresAt: time.Now().Add(time.Hour)}}
	return src
}

type harness struct {
	addr string
	logs *observer.ObservedLogs
	srv  *milter.Server
	done chan error
}

func start(t *testing.T, src index.Source) *harness {
	t.Helper()
	ix := index.New(src, index.Options{})
	_ = ix.Reload(context.Background()) // a failing source is a test case
	core, logs := observer.New(zapcore.DebugLevel)
	srv := milter.New(milter.Options{Index: ix, Log: zap.New(core), MaxMessageSize: siteMax})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{addr: ln.Addr().String(), logs: logs, srv: srv, done: make(chan error, 1)}
	go func() { h.done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Serve returned %v after Close, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return h
}

// conn is Postfix's side of one milter connection.
type conn struct {
	t      *testing.T
	s      *gomilter.ClientSession
	macros *gomilter.MacroBag
}

func (h *harness) connect(t *testing.T, opts ...gomilter.Option) *conn {
	t.Helper()
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroClientAddr, "192.0.2.7")
	s, err := gomilter.NewClient("tcp", h.addr, opts...).Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := &conn{t: t, s: s, macros: macros}
	c.check(s.Conn("client.example.net", gomilter.FamilyInet, 4711, "192.0.2.7"))
	c.check(s.Helo("client.example.net"))
	return c
}

func (c *conn) check(a *gomilter.Action, err error) *gomilter.Action {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("milter conversation broke: %v", err)
	}
	return a
}

// answer renders an action as the SMTP client would see it, or
// "continue"/"accept".
func answer(a *gomilter.Action) string {
	switch a.Type {
	case gomilter.ActionContinue:
		return "continue"
	case gomilter.ActionAccept:
		return "accept"
	case gomilter.ActionRejectWithCode:
		return a.SMTPReply
	}
	return "unexpected action " + string(rune(a.Type))
}

type message struct {
	headers [][2]string
	body    string
}

type result struct {
	rcpts []string
	data  string // "" when DATA was not reached
	end   string // "" when the content was not sent
}

// transaction runs MAIL, the RCPTs, and, if one was accepted, DATA and the
// message as Postfix would: the content only if DATA was not "accept".
func (c *conn) transaction(sender string, rcpts []string, msg message) result {
	c.t.Helper()
	c.macros.Set(gomilter.MacroMailAddr, sender)
	c.macros.Set(gomilter.MacroQueueId, "")
	c.check(c.s.Mail(sender, ""))
	var res result
	accepted := 0
	for _, r := range rcpts {
		a := answer(c.check(c.s.Rcpt(r, "")))
		res.rcpts = append(res.rcpts, a)
		if a == "continue" {
			accepted++
			// Postfix opens the queue file after the first good RCPT.
			c.macros.Set(gomilter.MacroQueueId, "4XyZ1Q")
		}
	}
	if accepted == 0 {
		if err := c.s.Abort(nil); err != nil {
			c.t.Fatal(err)
		}
		return res
	}
	res.data = answer(c.check(c.s.DataStart()))
	if res.data != "continue" {
		if err := c.s.Abort(nil); err != nil {
			c.t.Fatal(err)
		}
		return res
	}
	for _, h := range msg.headers {
		c.check(c.s.HeaderField(h[0], h[1], nil))
	}
	c.check(c.s.HeaderEnd())
	body := []byte(msg.body)
	for len(body) > 0 {
		n := min(len(body), 65535)
		c.check(c.s.BodyChunk(body[:n]))
		body = body[n:]
	}
	if msg.body == "" {
		c.check(c.s.BodyChunk(nil))
	}
	_, act, err := c.s.End()
	res.end = answer(c.check(act, err))
	return res
}

func post(from string, extra ...[2]string) message {
	h := [][2]string{{"From", from}, {"To", "test@lists.example.org"}, {"Subject", "hello"}}
	return message{headers: append(h, extra...), body: "Hello list.\r\n"}
}

func big(n int) message {
	return message{headers: [][2]string{{"From", "x@example.com"}}, body: strings.Repeat("0123456789abcde\n", n/16+1)}
}

func TestTransactions(t *testing.T) {
	h := start(t, testSource())
	const nsl = "550 5.1.1 <nope@lists.example.org>: no such list address here"
	tests := []struct {
		name   string
		sender string
		rcpts  []string
		msg    message
		want   result
	}{
		{
			name:   "list and every subaddress accepted",
			sender: "alice@example.com",
			rcpts: []string{"test@lists.example.org", "test-bounces@lists.example.org", "test-confirm@lists.example.org",
				"test-join@lists.example.org", "test-leave@lists.example.org", "test-owner@lists.example.org",
				"test-request@lists.example.org", "test-subscribe@lists.example.org", "test-unsubscribe@lists.example.org",
				"TEST+tag@LISTS.example.org"},
			msg:  post("Alice <alice@example.com>"),
			want: result{rcpts: rep("continue", 10), data: "continue", end: "accept"},
		},
		{
			name:   "unknown list refused",
			sender: "alice@example.com",
			rcpts:  []string{"nope@lists.example.org"},
			want:   result{rcpts: []string{nsl}},
		},
		{
			name:   "good and bad recipient in one transaction",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org", "nope@lists.example.org", "open@lists.example.org"},
			msg:    post("alice@example.com"),
			want:   result{rcpts: []string{"continue", nsl, "continue"}, data: "continue", end: "accept"},
		},
		{
			name:   "outside the list domains: not ours, and no content asked for",
			sender: "mallory@example.com",
			rcpts:  []string{"bob@example.com", "nope@example.com"},
			want:   result{rcpts: []string{"continue", "continue"}, data: "accept"},
		},
		{
			name:   "VERP for a member, an owner and a removed member; not for a stranger",
			sender: "",
			rcpts: []string{"test-bounces+alice=example.com@lists.example.org", "test-bounces+carol=example.com@lists.example.org",
				"test-bounces+bob=example.com@lists.example.org", "test-bounces+mallory=example.com@lists.example.org"},
			msg: message{headers: [][2]string{{"From", "MAILER-DAEMON@example.com"}}, body: "bounce"},
			want: result{rcpts: []string{"continue", "continue", "continue",
				"550 5.1.1 <test-bounces+mallory=example.com@lists.example.org>: unknown or forged bounce address"},
				data: "continue", end: "accept"},
		},
		{
			name:   "confirmation tokens",
			sender: "someone@example.com",
			rcpts:  []string{"test-confirm+" + liveToken + "@lists.example.org", "test-confirm+ffffffffffffffffffffffffffffffff@lists.example.org"},
			msg:    message{headers: [][2]string{{"From", "someone@example.com"}}, body: "yes"},
			want: result{rcpts: []string{"continue",
				"550 5.1.1 <test-confirm+ffffffffffffffffffffffffffffffff@lists.example.org>: unknown or expired confirmation token"},
				data: "continue", end: "accept"},
		},
		{
			name:   "non-member refused by a reject list only",
			sender: "mallory@example.com",
			rcpts:  []string{"test@lists.example.org", "open@lists.example.org", "test-request@lists.example.org"},
			msg:    post("mallory@example.com"),
			want: result{rcpts: []string{"550 5.7.1 <mallory@example.com>: only members may post to test@lists.example.org",
				"continue", "continue"}, data: "continue", end: "accept"},
		},
		{
			name:   "null sender is a non-member",
			sender: "",
			rcpts:  []string{"test@lists.example.org"},
			want:   result{rcpts: []string{"550 5.7.1 <>: only members may post to test@lists.example.org"}},
		},
		{
			name:   "owner may post",
			sender: "carol@example.com",
			rcpts:  []string{"test@lists.example.org"},
			msg:    post("Carol <carol@example.com>"),
			want:   result{rcpts: []string{"continue"}, data: "continue", end: "accept"},
		},
		{
			name:   "loop: own List-Id",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org"},
			msg:    post("alice@example.com", [2]string{"List-Id", "Test <test.lists.example.org>"}),
			want: result{rcpts: []string{"continue"}, data: "continue",
				end: "554 5.4.6 mail loop: message already went through test@lists.example.org"},
		},
		{
			name:   "loop: own X-BeenThere",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org"},
			msg:    post("alice@example.com", [2]string{"X-BeenThere", "test@lists.example.org"}),
			want: result{rcpts: []string{"continue"}, data: "continue",
				end: "554 5.4.6 mail loop: message already went through test@lists.example.org"},
		},
		{
			name:   "loop for one list, another list takes it",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org", "open@lists.example.org"},
			msg:    post("alice@example.com", [2]string{"List-Id", "<test.lists.example.org>"}),
			want:   result{rcpts: rep("continue", 2), data: "continue", end: "accept"},
		},
		{
			name:   "another list's List-Id is no loop",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org"},
			msg:    post("alice@example.com", [2]string{"List-Id", "<other.lists.example.net>"}),
			want:   result{rcpts: []string{"continue"}, data: "continue", end: "accept"},
		},
		{
			name:   "too big for the list",
			sender: "x@example.com",
			rcpts:  []string{"small@lists.example.org"},
			msg:    big(2048),
			want: result{rcpts: []string{"continue"}, data: "continue",
				end: "552 5.3.4 message too big for this list (limit 1024 bytes)"},
		},
		{
			name:   "too big for a list that holds oversized posts",
			sender: "x@example.com",
			rcpts:  []string{"bulky@lists.example.org"},
			msg:    big(2048),
			want:   result{rcpts: []string{"continue"}, data: "continue", end: "accept"},
		},
		{
			name:   "too big for one list, not for the other",
			sender: "x@example.com",
			rcpts:  []string{"small@lists.example.org", "open@lists.example.org"},
			msg:    big(2048),
			want:   result{rcpts: rep("continue", 2), data: "continue", end: "accept"},
		},
		{
			name:   "a bounce may be bigger than the list limit",
			sender: "",
			rcpts:  []string{"small@lists.example.org", "small-bounces@lists.example.org"},
			msg:    big(2048),
			want:   result{rcpts: rep("continue", 2), data: "continue", end: "accept"},
		},
		{
			name:   "over the site limit nothing of ours takes it",
			sender: "",
			rcpts:  []string{"test-bounces@lists.example.org", "test-owner@lists.example.org"},
			msg:    big(siteMax + 10),
			want: result{rcpts: rep("continue", 2), data: "continue",
				end: "552 5.3.4 message too big for this list (limit 100000 bytes)"},
		},
		{
			name:   "header From non-member on a reject list",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org"},
			msg:    post("Mallory <mallory@example.com>"),
			want: result{rcpts: []string{"continue"}, data: "continue",
				end: "550 5.7.1 <mallory@example.com>: only members may post to test@lists.example.org"},
		},
		{
			name:   "header From with a member among several",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org"},
			msg:    post("Mallory <mallory@example.com>, Alice <ALICE@example.com>"),
			want:   result{rcpts: []string{"continue"}, data: "continue", end: "accept"},
		},
		{
			name:   "undecodable display name still checked",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org"},
			msg:    post("=?x-unknown?q?Mall=F6ry?= <mallory@example.com>"),
			want: result{rcpts: []string{"continue"}, data: "continue",
				end: "550 5.7.1 <mallory@example.com>: only members may post to test@lists.example.org"},
		},
		{
			name:   "header From non-member on a hold list is for the pipeline",
			sender: "mallory@example.com",
			rcpts:  []string{"open@lists.example.org"},
			msg:    post("mallory@example.com"),
			want:   result{rcpts: []string{"continue"}, data: "continue", end: "accept"},
		},
		{
			name:   "a recipient elsewhere always takes the message",
			sender: "alice@example.com",
			rcpts:  []string{"test@lists.example.org", "bob@example.com"},
			msg:    post("mallory@example.com", [2]string{"List-Id", "<test.lists.example.org>"}),
			want:   result{rcpts: rep("continue", 2), data: "accept"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := h.connect(t).transaction(tc.sender, tc.rcpts, tc.msg)
			if !equal(got.rcpts, tc.want.rcpts) || got.data != tc.want.data || got.end != tc.want.end {
				t.Errorf("got  %q data=%q end=%q\nwant %q data=%q end=%q", got.rcpts, got.data, got.end,
					tc.want.rcpts, tc.want.data, tc.want.end)
			}
		})
	}
}

func TestTransactionsShareNothing(t *testing.T) {
	h := start(t, testSource())
	c := h.connect(t)
	// A refused message, then a good one, then a non-member, on one
	// connection: nothing of one transaction may leak into the next.
	r := c.transaction("alice@example.com", []string{"test@lists.example.org"},
		post("alice@example.com", [2]string{"List-Id", "<test.lists.example.org>"}))
	if !strings.HasPrefix(r.end, "554 ") {
		t.Fatalf("first transaction end = %q, want a 554 loop", r.end)
	}
	if r := c.transaction("alice@example.com", []string{"test@lists.example.org"}, post("alice@example.com")); r.end != "accept" {
		t.Errorf("second transaction end = %q, want accept", r.end)
	}
	if r := c.transaction("mallory@example.com", []string{"test@lists.example.org"}, message{}); !strings.HasPrefix(r.rcpts[0], "550 5.7.1 <mallory@") {
		t.Errorf("third transaction rcpt = %q, want a 550 5.7.1 for mallory", r.rcpts[0])
	}
	// DATA accepted early (recipient elsewhere), then a transaction that
	// must still be checked.
	if r := c.transaction("alice@example.com", []string{"bob@example.com"}, message{}); r.data != "accept" {
		t.Errorf("foreign-only DATA = %q, want accept", r.data)
	}
	r = c.transaction("alice@example.com", []string{"test@lists.example.org"}, post("Mallory <mallory@example.com>"))
	if r.data != "continue" || !strings.HasPrefix(r.end, "550 5.7.1") {
		t.Errorf("after an early accept the next message was not checked: %+v", r)
	}
}

func TestSenderUnknownIsNotRefused(t *testing.T) {
	h := start(t, testSource())
	macros := gomilter.NewMacroBag()
	s, err := gomilter.NewClient("tcp", h.addr).Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &conn{t: t, s: s, macros: macros}
	c.check(s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.7"))
	c.check(s.Helo("h"))
	c.check(s.Mail("mallory@example.com", "")) // no {mail_addr} macro
	if a := answer(c.check(s.Rcpt("test@lists.example.org", ""))); a != "continue" {
		t.Errorf("without {mail_addr} the post must be left to the pipeline, got %q", a)
	}
	if a := answer(c.check(s.Rcpt("nope@lists.example.org", ""))); !strings.HasPrefix(a, "550 5.1.1") {
		t.Errorf("address checks do not need the sender, got %q", a)
	}
}

func TestUnavailableIndexTempFails(t *testing.T) {
	src := testSource()
	src.Err = errors.New("database is locked")
	h := start(t, src)
	c := h.connect(t)
	r := c.transaction("alice@example.com", []string{"test@lists.example.org", "bob@example.com"}, message{})
	want := "451 4.3.0 temporary local problem, please try again later"
	if !equal(r.rcpts, []string{want, want}) {
		t.Errorf("rcpts = %q, want 451 4.3.0 for every recipient", r.rcpts)
	}
}

func TestNegotiation(t *testing.T) {
	h := start(t, testSource())
	s, err := gomilter.NewClient("tcp", h.addr).Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for opt, want := range map[gomilter.OptProtocol]bool{
		gomilter.OptNoConnect: true, gomilter.OptNoHelo: true, gomilter.OptNoMailFrom: true,
		gomilter.OptNoUnknown: true, gomilter.OptNoEOH: true,
		gomilter.OptNoHeaderReply: true, gomilter.OptNoBodyReply: true,
		gomilter.OptNoRcptTo: false, gomilter.OptNoRcptReply: false,
		gomilter.OptNoData: false, gomilter.OptNoDataReply: false,
		gomilter.OptSkip: false,
	} {
		if got := s.ProtocolOption(opt); got != want {
			t.Errorf("protocol option %v negotiated = %v, want %v", opt, got, want)
		}
	}
	if s.ActionOption(gomilter.OptAddHeader) || s.ActionOption(gomilter.OptChangeBody) {
		t.Error("the milter asks for message modifications it never makes")
	}
}

// v2Events are the protocol options of milter protocol version 2.
const v2Events = gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom | gomilter.OptNoRcptTo |
	gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH

// TestOlderMTA: an MTA that cannot skip events, reply-less events or
// macro requests (milter_protocol = 2 or 4, say) still gets the same
// decisions, instead of a refused negotiation that would tempfail all mail.
func TestOlderMTA(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []gomilter.Option
	}{
		{"version 4, no macro requests", []gomilter.Option{
			gomilter.WithMaximumVersion(4), gomilter.WithoutAction(gomilter.OptSetMacros),
			gomilter.WithProtocols(v2Events | gomilter.OptNoUnknown | gomilter.OptNoData),
		}},
		{"version 2", []gomilter.Option{
			gomilter.WithMaximumVersion(2), gomilter.WithoutAction(gomilter.OptSetMacros | gomilter.OptChangeFrom | gomilter.OptAddRcptWithArgs),
			gomilter.WithProtocols(v2Events),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, testSource())
			c := h.connect(t, tc.opts...)
			r := c.transaction("mallory@example.com", []string{"test@lists.example.org", "nope@lists.example.org", "open@lists.example.org"},
				post("mallory@example.com", [2]string{"List-Id", "<open.lists.example.org>"}))
			if !strings.HasPrefix(r.rcpts[0], "550 5.7.1") || !strings.HasPrefix(r.rcpts[1], "550 5.1.1") || r.rcpts[2] != "continue" {
				t.Errorf("rcpts %q", r.rcpts)
			}
			if !strings.HasPrefix(r.end, "554 5.4.6") {
				t.Errorf("end %q, want the loop refused", r.end)
			}
			lines := h.logs.FilterMessage("rcpt decision").AllUntimed()
			if len(lines) == 0 || lines[0].ContextMap()["client"] != "192.0.2.7" {
				t.Errorf("client address not taken from the CONNECT event: %v", lines)
			}
		})
	}
}

func TestLogs(t *testing.T) {
	h := start(t, testSource())
	c := h.connect(t)
	c.transaction("mallory@example.com", []string{"open@lists.example.org", "test@lists.example.org", "bob@example.com"}, post("mallory@example.com"))

	rcpts := h.logs.FilterMessage("rcpt decision").AllUntimed()
	if len(rcpts) != 3 {
		t.Fatalf("%d rcpt decision lines, want 3: %v", len(rcpts), rcpts)
	}
	want := []map[string]any{
		// The first RCPT comes before Postfix has a queue id.
		{"client": "192.0.2.7", "sender": "mallory@example.com", "rcpt": "open@lists.example.org",
			"list": "open@lists.example.org", "verdict": "accept", "reason": "list"},
		{"queue_id": "4XyZ1Q", "client": "192.0.2.7", "sender": "mallory@example.com", "rcpt": "test@lists.example.org",
			"list": "test@lists.example.org", "verdict": "reject", "reason": "nonmember"},
		{"queue_id": "4XyZ1Q", "client": "192.0.2.7", "sender": "mallory@example.com", "rcpt": "bob@example.com",
			"verdict": "continue", "reason": "not_ours"},
	}
	for i, e := range rcpts {
		fields := e.ContextMap()
		for k, v := range want[i] {
			if fields[k] != v {
				t.Errorf("line %d: %s = %v, want %v (line: %v)", i, k, fields[k], v, fields)
			}
		}
		if _, ok := want[i]["queue_id"]; !ok {
			if _, ok := fields["queue_id"]; ok {
				t.Errorf("line %d has a queue_id Postfix never sent: %v", i, fields)
			}
		}
	}
	if rcpts[2].Level != zapcore.DebugLevel || rcpts[0].Level != zapcore.InfoLevel {
		t.Errorf("levels %v/%v: not-ours lines are debug, decisions info", rcpts[0].Level, rcpts[2].Level)
	}
	if got := rcpts[1].ContextMap()["reply"]; got != "550 5.7.1 <mallory@example.com>: only members may post to test@lists.example.org" {
		t.Errorf("refusal logged with reply %v", got)
	}
	// DATA was accepted because of bob@example.com: no message line.
	if n := h.logs.FilterMessage("message decision").Len(); n != 0 {
		t.Errorf("%d message decision lines for a message we never saw", n)
	}

	c.transaction("alice@example.com", []string{"test@lists.example.org"}, post("alice@example.com", [2]string{"List-Id", "<test.lists.example.org>"}))
	msgs := h.logs.FilterMessage("message decision").AllUntimed()
	if len(msgs) != 1 {
		t.Fatalf("%d message decision lines, want 1", len(msgs))
	}
	f := msgs[0].ContextMap()
	for k, v := range map[string]any{"queue_id": "4XyZ1Q", "verdict": "reject", "reason": "loop", "list": "test@lists.example.org", "sender": "alice@example.com"} {
		if f[k] != v {
			t.Errorf("message decision %s = %v, want %v", k, f[k], v)
		}
	}
}

func TestShutdownWaitsForOpenSessions(t *testing.T) {
	h := start(t, testSource())
	c := h.connect(t)
	if r := c.transaction("alice@example.com", []string{"test@lists.example.org"}, post("alice@example.com")); r.end != "accept" {
		t.Fatalf("transaction before shutdown: %+v", r)
	}
	shut := make(chan error, 1)
	go func() { shut <- h.srv.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while Postfix still had a session open", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The open session is still served...
	if a := answer(c.check(c.s.Mail("alice@example.com", ""))); a != "continue" {
		t.Fatalf("MAIL during shutdown: %q", a)
	}
	if a := answer(c.check(c.s.Rcpt("nope@lists.example.org", ""))); !strings.HasPrefix(a, "550 5.1.1") {
		t.Errorf("RCPT during shutdown: %q", a)
	}
	// ...and Shutdown returns once Postfix ends it.
	c.s.Close()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	if _, err := gomilter.NewClient("tcp", h.addr).Session(nil); err == nil {
		t.Error("new milter connections are still accepted after Shutdown")
	}
}

func TestShutdownDeadlineClosesSessions(t *testing.T) {
	h := start(t, testSource())
	h.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a session left open = %v, want the context's error", err)
	}
}

func TestServeOnUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "pl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "milter.sock")
	ln, err := listen.Open(config.Listen{Network: "unix", Address: path}, 0o660, "")
	if err != nil {
		t.Fatal(err)
	}
	ix := index.New(testSource(), index.Options{})
	if err := ix.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := milter.New(milter.Options{Index: ix})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	s, err := gomilter.NewClient("unix", path).Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{t: t, s: s, macros: gomilter.NewMacroBag()}
	c.check(s.Conn("h", gomilter.FamilyUnix, 0, path))
	c.check(s.Helo("h"))
	c.check(s.Mail("alice@example.com", ""))
	if a := answer(c.check(s.Rcpt("nope@lists.example.org", ""))); !strings.HasPrefix(a, "550 5.1.1") {
		t.Errorf("over a unix socket: %q", a)
	}
	s.Close()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after close: %v", err)
	}
}

func TestLookup(t *testing.T) {
	ix := index.New(testSource(), index.Options{})
	if err := ix.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rcpt, sender string
		want         string
	}{
		{"test@lists.example.org", "", "test@lists.example.org: accept (reason=list list=test@lists.example.org kind=post policy=sender_unknown)"},
		{"test@lists.example.org", "alice@example.com", "test@lists.example.org: accept (reason=list list=test@lists.example.org kind=post sender=alice@example.com policy=poster)"},
		{"test@lists.example.org", "<>", "test@lists.example.org: 550 5.7.1 <>: only members may post to test@lists.example.org (reason=nonmember list=test@lists.example.org kind=post sender=<>)"},
		{"test-bounces+alice=example.com@lists.example.org", "", "test-bounces+alice=example.com@lists.example.org: accept (reason=verp_member list=test@lists.example.org kind=bounces)"},
		{"nope@lists.example.org", "", "nope@lists.example.org: 550 5.1.1 <nope@lists.example.org>: no such list address here (reason=no_such_list)"},
		{"bob@example.com", "", "bob@example.com: continue: not a list domain, left to Postfix (reason=not_ours)"},
	}
	for _, tc := range tests {
		if got := milter.Explain(ix, tc.rcpt, tc.sender); got != tc.want {
			t.Errorf("Explain(%q, %q)\n got %s\nwant %s", tc.rcpt, tc.sender, got, tc.want)
		}
	}
	if a := milter.Lookup(ix, "nope@lists.example.org", ""); a.Verdict != "reject" || a.Reply == "" {
		t.Errorf("Lookup = %+v", a)
	}
	unloaded := index.New(testSource(), index.Options{})
	if a := milter.Lookup(unloaded, "bob@example.com", ""); a.Verdict != "tempfail" || !strings.HasPrefix(a.Reply, "451 4.3.0") {
		t.Errorf("Lookup on an unloaded index = %+v, want tempfail", a)
	}
}

func rep(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
