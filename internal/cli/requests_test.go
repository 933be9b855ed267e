package cli

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"postlist/commands"
	"postlist/internal/testenv/storetest"
	"postlist/message"
	"postlist/notice"
	"postlist/store"
)

const testList = "test@lists.example.org"

// openStore opens the env's database beside the CLI, as the daemon
// would, for a test to make states and read them back.
func (e *env) openStore() *store.Store {
	e.t.Helper()
	return storetest.OpenPath(e.t, e.db)
}

// addRequest stores a pending request through the store, as the email
// interface does. data is what a moderate token asks (subscribe or
// unsubscribe), or a held token's held message id.
func (e *env) addRequest(st *store.Store, list, kind, data, addr, name, token string) {
	e.t.Helper()
	ctx := context.Background()
	l, err := st.GetList(ctx, list)
	if err != nil {
		e.t.Fatal(err)
	}
	t := store.Token{Token: token, ListID: l.ID, Kind: kind, Data: data, Address: addr, DisplayName: name,
		ExpiresAt: time.Now().Add(24 * time.Hour)}
	if err := st.AddToken(ctx, t, nil); err != nil {
		e.t.Fatal(err)
	}
}

// noticesTo returns the kinds (X-Postlist-Notice) of the messages queued
// to rcpt.
func noticesTo(t *testing.T, st *store.Store, rcpt string) []string {
	t.Helper()
	ctx := context.Background()
	qs, err := st.QueueMessages(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, q := range qs {
		ds, err := st.MessageDeliveries(ctx, q.MessageID)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if !strings.EqualFold(d.Recipient, rcpt) {
				continue
			}
			_, body, err := st.MessageSender(ctx, q.MessageID)
			if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, message.Parse(body).Get(notice.Header))
		}
	}
	return kinds
}

func isMember(t *testing.T, st *store.Store, list, addr string) bool {
	t.Helper()
	l, err := st.GetList(context.Background(), list)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := st.IsMember(context.Background(), l.ID, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func isLive(t *testing.T, st *store.Store, token string) bool {
	t.Helper()
	_, err := st.LiveToken(context.Background(), token)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// tok makes a 32-hex token starting with prefix, so tests choose which
// tokens share a prefix.
func tok(prefix string) string { return prefix + strings.Repeat("0", 32-len(prefix)) }

func TestRequestsLs(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", testList)
	e.mustRun("lists", "create", "other@lists.example.org")
	st := e.openStore()
	join, mod, other, held := tok("1a1a1a1a1a"), tok("2b2b2b2b2b"), tok("3c3c3c3c3c"), tok("4d4d4d4d4d")
	e.addRequest(st, testList, store.TokenSubscribe, "", "alice@example.com", "Alice Example", join)
	e.addRequest(st, testList, store.TokenModerate, store.TokenSubscribe, "bob@example.com", "", mod)
	e.addRequest(st, "other@lists.example.org", store.TokenUnsubscribe, "", "carol@example.com", "", other)
	e.addRequest(st, testList, store.TokenHeld, "7", "mod@example.com", "", held)

	out := e.mustRun("requests", "ls")
	for _, want := range []string{
		`(?m)^TOKEN\s+LIST\s+KIND\s+ADDRESS\s+NAME\s+CREATED\s+EXPIRES$`,
		`(?m)^1a1a1a1a…\s+test@lists\.example\.org\s+subscribe\s+alice@example\.com\s+Alice Example\s+\d{4}-\d\d-\d\dT`,
		`(?m)^2b2b2b2b…\s+test@lists\.example\.org\s+subscribe \(moderator\)\s+bob@example\.com\s+-\s+`,
		`(?m)^3c3c3c3c…\s+other@lists\.example\.org\s+unsubscribe\s+carol@example\.com\s+`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("requests ls lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, join) {
		t.Errorf("table shows the whole token:\n%s", out)
	}
	if strings.Contains(out, "4d4d4d4d") {
		t.Errorf("held post's token listed (postlist held shows those):\n%s", out)
	}

	var got []store.Token
	if err := json.Unmarshal([]byte(e.mustRun("--json", "requests", "ls", testList)), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Token != join || got[0].Kind != store.TokenSubscribe || got[0].DisplayName != "Alice Example" ||
		got[1].Token != mod || got[1].Kind != store.TokenModerate || got[1].Data != store.TokenSubscribe || got[1].ExpiresAt.IsZero() {
		t.Errorf("requests ls --json %s = %+v", testList, got)
	}

	e.mustRun("lists", "create", "empty@lists.example.org")
	if js := e.mustRun("--json", "requests", "ls", "empty@lists.example.org"); strings.TrimSpace(js) != "[]" {
		t.Errorf("no requests printed as %q, want []", js)
	}
	if code, _, errs := e.run("", "requests", "ls", "nope@lists.example.org"); code != ExitFailure || !strings.Contains(errs, "not found: list nope@lists.example.org") {
		t.Errorf("unknown list: exit %d %q", code, errs)
	}
}

func TestRequestsApprove(t *testing.T) {
	for _, c := range []struct {
		name       string
		kind       string // what the moderate token asks
		addr       string
		member     bool     // a member before
		settings   []string // list settings to set first
		json       bool
		wantOut    string
		wantMember bool
		wantMail   []string
		wantEvent  string
	}{
		{name: "subscribe", kind: store.TokenSubscribe, addr: "dave@example.net",
			wantOut: "approved: dave@example.net joined test@lists.example.org (welcome queued)", wantMember: true,
			wantMail: []string{"welcome"}, wantEvent: store.EventMemberAdded},
		{name: "subscribe json", kind: store.TokenSubscribe, addr: "dave@example.net", json: true,
			wantMember: true, wantMail: []string{"welcome"}, wantEvent: store.EventMemberAdded},
		{name: "subscribe without welcome", kind: store.TokenSubscribe, addr: "dave@example.net",
			settings: []string{"send_welcome_message", "0"},
			wantOut:  "no welcome: send_welcome_message is off", wantMember: true, wantEvent: store.EventMemberAdded},
		{name: "unsubscribe", kind: store.TokenUnsubscribe, addr: "alice@example.com", member: true,
			wantOut: "approved: alice@example.com left test@lists.example.org (goodbye queued)", wantMember: false,
			wantMail: []string{"goodbye"}, wantEvent: store.EventMemberRemoved},
		{name: "subscribe of a member", kind: store.TokenSubscribe, addr: "alice@example.com", member: true,
			wantOut: "already was a member", wantMember: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustRun("lists", "create", testList)
			if c.member {
				e.mustRun("members", "add", testList, c.addr)
			}
			for i := 0; i+1 < len(c.settings); i += 2 {
				e.mustRun("lists", "set", testList, c.settings[i], c.settings[i+1])
			}
			st := e.openStore()
			token := tok("c0ffee0042")
			e.addRequest(st, testList, store.TokenModerate, c.kind, c.addr, "Dave", token)

			args := []string{"requests", "approve", token[:8]}
			if c.json {
				args = append([]string{"--json"}, args...)
			}
			out := e.mustRun(args...)
			if c.json {
				var d commands.Decision
				if err := json.Unmarshal([]byte(out), &d); err != nil {
					t.Fatal(err)
				}
				if !d.Approved || !d.Changed || d.Action != c.kind || d.Notices != len(c.wantMail) || d.Request.Token != token {
					t.Errorf("approve --json = %+v", d)
				}
			} else if !strings.Contains(out, c.wantOut) {
				t.Errorf("approve printed %q, want %q", out, c.wantOut)
			}
			if got := isMember(t, st, testList, c.addr); got != c.wantMember {
				t.Errorf("member after approval = %v, want %v", got, c.wantMember)
			}
			if got := noticesTo(t, st, c.addr); strings.Join(got, ",") != strings.Join(c.wantMail, ",") {
				t.Errorf("mail to %s = %q, want %q", c.addr, got, c.wantMail)
			}
			if isLive(t, st, token) {
				t.Error("token still live after approval")
			}
			if c.wantEvent != "" {
				evs, err := st.EventLog(context.Background(), testList, c.addr, c.wantEvent)
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) == 0 || !strings.Contains(evs[len(evs)-1].Detail, "by moderator approval (cli") {
					t.Errorf("%s events = %+v, want one by moderator approval (cli...)", c.wantEvent, evs)
				}
			}
			if code, _, errs := e.run("", "requests", "approve", token[:8]); code != ExitFailure || !strings.Contains(errs, "no pending request") {
				t.Errorf("second approve: exit %d %q", code, errs)
			}
		})
	}
}

func TestRequestsDiscard(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", testList)
	st := e.openStore()
	token := tok("d15ca4d")
	e.addRequest(st, testList, store.TokenModerate, store.TokenSubscribe, "dave@example.net", "", token)

	out := e.mustRun("requests", "discard", token)
	if !strings.Contains(out, "discarded the subscribe request of dave@example.net to test@lists.example.org") {
		t.Errorf("discard printed %q", out)
	}
	if isMember(t, st, testList, "dave@example.net") {
		t.Error("discarded request made a member")
	}
	if got := noticesTo(t, st, "dave@example.net"); len(got) != 0 {
		t.Errorf("mail to dave after discard: %q", got)
	}
	if isLive(t, st, token) {
		t.Error("token still live after discard")
	}
	evs, err := st.EventLog(context.Background(), testList, "dave@example.net", store.EventRequestDiscarded)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || !strings.Contains(evs[0].Detail, "subscribe request discarded by moderator (cli") {
		t.Errorf("discard events = %+v", evs)
	}
	if js := e.mustRun("--json", "requests", "ls"); strings.TrimSpace(js) != "[]" {
		t.Errorf("requests after discard: %s", js)
	}
}

func TestRequestsRefused(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", testList)
	st := e.openStore()
	amb1, amb2 := tok("abcdef010"), tok("abcdef011")
	own, held := tok("5e1f5e1f"), tok("4e1d4e1d")
	e.addRequest(st, testList, store.TokenModerate, store.TokenSubscribe, "x1@example.net", "", amb1)
	e.addRequest(st, testList, store.TokenModerate, store.TokenSubscribe, "x2@example.net", "", amb2)
	e.addRequest(st, testList, store.TokenSubscribe, "", "y@example.net", "", own)
	e.addRequest(st, testList, store.TokenHeld, "7", "mod@example.com", "", held)

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"approve", "abcdef01"}, ExitFailure, "ambiguous: it matches 2 requests"},
		{[]string{"discard", "ABCDEF01"}, ExitFailure, "ambiguous"},
		{[]string{"approve", "99999999"}, ExitFailure, "no pending request has a token starting with 99999999"},
		{[]string{"approve", "abcdef0"}, ExitUsage, "at least its first 8 hex characters"},
		{[]string{"discard", "zzzzzzzz"}, ExitUsage, "at least its first 8 hex characters"},
		{[]string{"approve", own}, ExitFailure, "waits for y@example.net's own confirmation"},
		{[]string{"discard", own[:8]}, ExitFailure, "waits for y@example.net's own confirmation"},
		{[]string{"approve", held[:8]}, ExitFailure, "belongs to held message 7"},
		{[]string{"approve"}, ExitUsage, "want 1 argument"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errs := e.run("", append([]string{"requests"}, c.args...)...)
			if code != c.code || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
				t.Errorf("exit %d, stderr %q (stdout %q); want exit %d and %q on one line", code, errs, out, c.code, c.want)
			}
		})
	}
	for _, tk := range []string{amb1, amb2, own, held} {
		if !isLive(t, st, tk) {
			t.Errorf("refused token %s… was spent", tk[:8])
		}
	}
	for _, a := range []string{"x1@example.net", "x2@example.net", "y@example.net"} {
		if isMember(t, st, testList, a) {
			t.Errorf("%s became a member by a refused decision", a)
		}
	}

	// One more character settles it; the ellipsis a table shows is fine.
	e.mustRun("requests", "approve", amb1[:9])
	if !isMember(t, st, testList, "x1@example.net") || isMember(t, st, testList, "x2@example.net") {
		t.Error("approving abcdef010 did not add exactly x1")
	}
	e.mustRun("requests", "discard", "abcdef01…")
	if isLive(t, st, amb2) || isMember(t, st, testList, "x2@example.net") {
		t.Error("discarding the remaining abcdef01… request did not spend it")
	}
}
