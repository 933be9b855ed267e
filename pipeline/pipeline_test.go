package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"postlist/deliver"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/message"
	"postlist/store"
)

const (
	testList = "test@lists.example.org"
	baseURL  = "https://lists.example.org/postlist"
)

type env struct {
	t        *testing.T
	st       *store.Store
	p        *Pipeline
	list     *store.List
	notified atomic.Int32
	logs     *observer.ObservedLogs
}

// newEnv opens a store with test@lists.example.org, three members, an
// owner and a moderator, and a pipeline on it.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, l := storetest.OpenList(t, testList)
	e := &env{t: t, st: st, list: l}
	e.add("member", "alice@example.com", "bob@example.net", "carol@example.org")
	e.add("owner", "owner@example.com")
	e.add("moderator", "mod@example.com")
	core, logs := observer.New(zap.DebugLevel)
	e.logs = logs
	secret, err := Secret(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	e.p = New(Options{
		Store: st, Log: zap.New(core), Delimiter: "+", BaseURL: baseURL, SiteOwner: "postmaster@example.org",
		Secret: secret, Notify: func() { e.notified.Add(1) },
	})
	return e
}

func (e *env) add(role string, addrs ...string) {
	e.t.Helper()
	var ms []store.NewMember
	for _, a := range addrs {
		ms = append(ms, store.NewMember{Address: a})
	}
	if _, err := e.st.AddMembers(context.Background(), testList, role, ms, nil); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) set(key, value string) {
	e.t.Helper()
	if err := e.st.SetListSetting(context.Background(), testList, key, value); err != nil {
		e.t.Fatal(err)
	}
}

// post stores a message for the list as LMTP would and returns its
// messages.id.
func (e *env) post(envSender, msg string) int64 {
	e.t.Helper()
	res, err := e.st.Intake(context.Background(), &store.IntakeMessage{
		MessageID: "<x@example.com>", Sender: envSender, Body: []byte(crlf(msg)),
		Recipients: []store.IntakeRecipient{{Recipient: testList, List: testList, Kind: "post"}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.MessageID
}

func (e *env) run() {
	e.t.Helper()
	if _, err := e.p.RunOnce(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

type delivery struct {
	MessageID                         int64
	Recipient, EnvelopeFrom, ListAddr string
}

// deliveries claims every queued row, as the deliverer would.
func (e *env) deliveries() []delivery {
	e.t.Helper()
	ds, err := e.st.ClaimDeliveries(context.Background(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []delivery
	for _, d := range ds {
		out = append(out, delivery{d.MessageID, d.Recipient, d.EnvelopeFrom, d.List})
	}
	slices.SortFunc(out, func(a, b delivery) int { return strings.Compare(a.Recipient, b.Recipient) })
	return out
}

func (e *env) render(d delivery) string {
	e.t.Helper()
	b, err := e.p.Render(context.Background(), deliver.Job{
		MessageID: d.MessageID, ListID: e.list.ID, List: testList, Recipients: []string{d.Recipient}, EnvelopeFrom: d.EnvelopeFrom,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b.Bytes())
}

// holdStranger posts memberPost from a non-member, runs the pipeline and
// returns the one held row.
func (e *env) holdStranger() store.Held {
	e.t.Helper()
	e.post("stranger@example.com", strings.Replace(memberPost, "Alice Example <alice@example.com>", "stranger@example.com", 1))
	e.run()
	held, err := e.st.HeldMessages(context.Background(), testList)
	if err != nil || len(held) != 1 {
		e.t.Fatalf("held = %v, %v", held, err)
	}
	return held[0]
}

// pending counts intake rows of kind post still waiting.
func (e *env) pending() int {
	e.t.Helper()
	items, err := e.st.PendingIntake(context.Background(), 10, "post")
	if err != nil {
		e.t.Fatal(err)
	}
	return len(items)
}

const memberPost = `From: Alice Example <alice@example.com>
To: test@lists.example.org
Subject: Hello list
Message-ID: <hello@example.com>

Hello everybody.
`

// TestMemberPostFansOutDecorated is the first end-to-end case: a
// member's post to a three-member list gets three delivery rows with
// VERP senders, and each member's copy carries the list headers, the
// subject prefix and their own one-click link.
func TestMemberPostFansOutDecorated(t *testing.T) {
	e := newEnv(t)
	msgID := e.post("alice@example.com", memberPost)
	e.run()
	ds := e.deliveries()
	want := []delivery{
		{msgID, "alice@example.com", "test-bounces+alice=example.com@lists.example.org", testList},
		{msgID, "bob@example.net", "test-bounces+bob=example.net@lists.example.org", testList},
		{msgID, "carol@example.org", "test-bounces+carol=example.org@lists.example.org", testList},
	}
	if !slices.Equal(ds, want) {
		t.Fatalf("deliveries\n%v\nwant\n%v", ds, want)
	}
	if e.notified.Load() == 0 {
		t.Error("the deliverer was not woken")
	}
	if n := e.pending(); n != 0 {
		t.Errorf("%d intake rows still pending", n)
	}
	for _, d := range ds {
		out := e.render(d)
		m := message.Parse([]byte(out))
		if got := m.Get("Subject"); got != "[Test] Hello list" {
			t.Errorf("%s: Subject %q", d.Recipient, got)
		}
		for name, want := range map[string]string{
			"List-Id":               "<test.lists.example.org>",
			"List-Post":             "<mailto:test@lists.example.org>",
			"List-Help":             "<mailto:test-request@lists.example.org?subject=help>",
			"List-Subscribe":        "<mailto:test-join@lists.example.org>",
			"List-Owner":            "<mailto:test-owner@lists.example.org>",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
			"Precedence":            "list",
			"X-BeenThere":           testList,
		} {
			if got := m.Get(name); got != want {
				t.Errorf("%s: %s %q, want %q", d.Recipient, name, got, want)
			}
		}
		wantURL := baseURL + e.link(e.list, d.Recipient)
		if !strings.HasPrefix(wantURL, baseURL+"/unsubscribe?") {
			t.Fatalf("unsubscribe URL %q", wantURL)
		}
		if got := m.Get("List-Unsubscribe"); got != "<"+wantURL+">, <mailto:test-leave@lists.example.org>" {
			t.Errorf("%s: List-Unsubscribe %q", d.Recipient, got)
		}
		if !strings.HasSuffix(out, "\r\n\r\nHello everybody.\r\n") {
			t.Errorf("%s: body changed:\n%s", d.Recipient, out)
		}
	}
	var logged bool
	for _, l := range e.logs.FilterMessage("post decided").All() {
		f := l.ContextMap()
		logged = f["list"] == testList && f["action"] == "accept" && f["rule"] == "default" && f["sender"] == "alice@example.com"
	}
	if !logged {
		t.Errorf("no structured decision log: %v", e.logs.All())
	}
}

// TestNonmemberPostHeldThenApproved is the second case: a
// non-member's post is held (the owners and moderators are told), then a
// moderator approves it and it is queued for every member.
func TestNonmemberPostHeldThenApproved(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	h := e.holdStranger()
	if h.Sender != "stranger@example.com" || h.Subject != "Hello list" ||
		h.Reason != "nonmember-moderation: stranger@example.com is not a member; the list's default_nonmember_action is hold" {
		t.Errorf("held row %+v", h)
	}
	// The hold notice goes to the owner and the moderator, as stored.
	ds := e.deliveries()
	if len(ds) != 2 || ds[0].Recipient != "mod@example.com" || ds[1].Recipient != "owner@example.com" {
		t.Fatalf("notice deliveries %v", ds)
	}
	for _, d := range ds {
		if d.EnvelopeFrom != "test-bounces@lists.example.org" || d.MessageID == h.MessageID {
			t.Errorf("notice delivery %+v", d)
		}
	}
	notice := e.render(ds[0])
	nm := message.Parse([]byte(notice))
	if nm.Has("List-Id") || nm.Get("Subject") != "test@lists.example.org post from stranger@example.com requires approval" ||
		nm.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("notice header:\n%s", nm.Header())
	}
	for _, want := range []string{fmt.Sprintf("postlist held approve %d", h.ID), "not a member", "Content-Type: message/rfc822", "Hello everybody."} {
		if !strings.Contains(notice, want) {
			t.Errorf("notice lacks %q:\n%s", want, notice)
		}
	}
	checkMIME(t, notice, 3)

	if err := e.p.Approve(ctx, h.ID, "cli:tester"); err != nil {
		t.Fatal(err)
	}
	ds = e.deliveries()
	if len(ds) != 3 {
		t.Fatalf("deliveries after approval: %v", ds)
	}
	for _, d := range ds {
		if d.MessageID != h.MessageID || !strings.HasPrefix(d.EnvelopeFrom, "test-bounces+") {
			t.Errorf("delivery %+v", d)
		}
	}
	if out := e.render(ds[0]); !strings.Contains(out, "Subject: [Test] Hello list\r\n") || !strings.Contains(out, "List-Id: <test.lists.example.org>") {
		t.Errorf("approved post not decorated:\n%s", out)
	}
	if err := e.p.Approve(ctx, h.ID, "cli:other"); !errors.Is(err, store.ErrAlreadyDone) {
		t.Errorf("second approval: %v", err)
	}
	if err := e.p.Reject(ctx, h.ID, "cli:other", ""); !errors.Is(err, store.ErrAlreadyDone) {
		t.Errorf("reject after approval: %v", err)
	}
}

func TestHoldNoticeFallsBackToSiteOwner(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.st.RemoveMembers(ctx, testList, "owner", []string{"owner@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.RemoveMembers(ctx, testList, "moderator", []string{"mod@example.com"}); err != nil {
		t.Fatal(err)
	}
	e.set("emergency", "yes")
	e.post("alice@example.com", memberPost)
	e.run()
	ds := e.deliveries()
	if len(ds) != 1 || ds[0].Recipient != "postmaster@example.org" {
		t.Errorf("notice deliveries %v", ds)
	}

	// admin_immed_notify off: held quietly.
	e.set("admin_immed_notify", "no")
	e.post("alice@example.com", memberPost)
	e.run()
	if ds := e.deliveries(); len(ds) != 0 {
		t.Errorf("notice sent with admin_immed_notify off: %v", ds)
	}
	if held, _ := e.st.HeldMessages(ctx, testList); len(held) != 2 {
		t.Errorf("%d held", len(held))
	}
}

func TestRejectAndDiscard(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	nonmember := strings.Replace(memberPost, "Alice Example <alice@example.com>", "stranger@example.com", 1)

	// Held, then rejected by a moderator: the poster hears why.
	e.post("stranger@example.com", nonmember)
	e.run()
	e.deliveries() // the hold notices
	held, _ := e.st.HeldMessages(ctx, testList)
	if err := e.p.Reject(ctx, held[0].ID, "cli:mod", "off topic\r\nBcc: x@example.com"); err != nil {
		t.Fatal(err)
	}
	ds := e.deliveries()
	if len(ds) != 1 || ds[0].Recipient != "stranger@example.com" || ds[0].EnvelopeFrom != "test-bounces@lists.example.org" {
		t.Fatalf("reject notice deliveries %v", ds)
	}
	n := e.render(ds[0])
	nm := message.Parse([]byte(n))
	checkMIME(t, n, 3)
	if nm.Get("To") != "stranger@example.com" || nm.Get("In-Reply-To") != "<hello@example.com>" || nm.Has("Bcc") ||
		!strings.Contains(n, "Reason:   off topic Bcc: x@example.com") || !strings.Contains(n, "text/rfc822-headers") ||
		strings.Contains(n, "Hello everybody") {
		t.Errorf("reject notice:\n%s", n)
	}

	// The rules reject directly, but never answer automatic mail or <>.
	e.set("default_nonmember_action", "reject")
	for _, tc := range []struct {
		env, msg string
		notices  int
	}{
		{"stranger@example.com", nonmember, 1},
		{"", nonmember, 0},
		{"stranger@example.com", "Auto-Submitted: auto-replied\n" + nonmember, 0},
		{"stranger@example.com", "Precedence: bulk\n" + nonmember, 0},
		{"stranger@example.com", "List-Id: <other.example.com>\n" + nonmember, 0},
		{"stranger@example.com", "List-Post: <mailto:other@example.com>\n" + nonmember, 0},
		{"MAILER-DAEMON@example.com", nonmember, 0},
	} {
		e.post(tc.env, tc.msg)
		e.run()
		if ds := e.deliveries(); len(ds) != tc.notices {
			t.Errorf("reject of %q from <%s>: %d notices, want %d", strings.SplitN(tc.msg, "\n", 2)[0], tc.env, len(ds), tc.notices)
		}
	}

	// Discard: nothing at all.
	e.set("default_nonmember_action", "hold")
	e.post("stranger@example.com", nonmember)
	e.run()
	e.deliveries()
	held, _ = e.st.HeldMessages(ctx, testList)
	if err := e.p.Discard(ctx, held[0].ID, "cli:mod"); err != nil {
		t.Fatal(err)
	}
	if ds := e.deliveries(); len(ds) != 0 {
		t.Errorf("discard queued %v", ds)
	}
	if h, _ := e.st.GetHeld(ctx, held[0].ID); h.State != store.HeldDiscarded || h.DecidedBy != "cli:mod" {
		t.Errorf("held row %+v", h)
	}
	if err := e.p.Discard(ctx, 9999, "cli:mod"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("discard unknown: %v", err)
	}
}

func TestLoopDiscarded(t *testing.T) {
	e := newEnv(t)
	e.post("alice@example.com", "X-BeenThere: test@lists.example.org\n"+memberPost)
	e.run()
	if ds := e.deliveries(); len(ds) != 0 {
		t.Errorf("looping post delivered: %v", ds)
	}
	if held, _ := e.st.HeldMessages(context.Background(), ""); len(held) != 0 {
		t.Errorf("looping post held")
	}
	if n := e.pending(); n != 0 {
		t.Errorf("%d intake rows still pending", n)
	}
}

// TestApprovedPasswordRemoved: a post approved with the moderator password
// goes out, and the password is in no copy and no stored message that is
// delivered.
func TestApprovedPasswordRemoved(t *testing.T) {
	for _, tc := range []struct{ name, msg string }{
		{"header", "Approved: hunter2\n" + strings.Replace(memberPost, "alice@example.com", "stranger@example.com", 1)},
		{"body", strings.Replace(strings.Replace(memberPost, "alice@example.com", "stranger@example.com", 1), "\n\nHello", "\n\nApproved: hunter2\n\nHello", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.set("moderator_password", "hunter2")
			orig := e.post("stranger@example.com", tc.msg)
			e.run()
			ds := e.deliveries()
			if len(ds) != 3 {
				t.Fatalf("deliveries %v", ds)
			}
			if ds[0].MessageID == orig {
				t.Error("the original, password and all, is what gets delivered")
			}
			out := e.render(ds[0])
			if strings.Contains(out, "hunter2") || !strings.Contains(out, "\r\n\r\nHello everybody.") {
				t.Errorf("rendered copy:\n%s", out)
			}
			for _, l := range e.logs.All() {
				if strings.Contains(fmt.Sprint(l.Message, l.ContextMap()), "hunter2") {
					t.Errorf("password logged: %v", l)
				}
			}
			if reason := e.logs.FilterMessage("post decided").All()[0].ContextMap()["reason"]; !strings.Contains(fmt.Sprint(reason), "valid moderator password") {
				t.Errorf("reason %v", reason)
			}
		})
	}
}

func TestBulkListAndOwnPostings(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.set("verp", "no")
	if err := e.st.SetMember(ctx, testList, "alice@example.com", "receive_own_postings", "no"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetMember(ctx, testList, "carol@example.org", "delivery_status", "by_user"); err != nil {
		t.Fatal(err)
	}
	msgID := e.post("alice@example.com", memberPost)
	e.run()
	ds := e.deliveries()
	if want := []delivery{{msgID, "bob@example.net", "test-bounces@lists.example.org", testList}}; !slices.Equal(ds, want) {
		t.Fatalf("deliveries %v, want %v", ds, want)
	}
	// A bulk job names many members: no personal link, mailto only.
	b, err := e.p.Render(ctx, deliver.Job{MessageID: msgID, ListID: e.list.ID, Recipients: []string{"bob@example.net", "x@example.net"},
		EnvelopeFrom: "test-bounces@lists.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	m := message.Parse(b.Bytes())
	if m.Get("List-Unsubscribe") != "<mailto:test-leave@lists.example.org>" || m.Has("List-Unsubscribe-Post") {
		t.Errorf("bulk copy:\n%s", m.Header())
	}
}

func TestRenderRawAndErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// Mail that is not a post of the list (here: still pending) goes as
	// stored.
	msgID := e.post("alice@example.com", memberPost)
	for _, lid := range []int64{0, e.list.ID} {
		b, err := e.p.Render(ctx, deliver.Job{MessageID: msgID, ListID: lid, Recipients: []string{"x@example.com"}})
		if err != nil || string(b.Bytes()) != crlf(memberPost) {
			t.Errorf("list %d: raw render %q, %v", lid, b.Bytes(), err)
		}
	}
	if _, err := e.p.Render(ctx, deliver.Job{MessageID: 9999, ListID: e.list.ID}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown message: %v", err)
	}
}

// TestRenderUsesNeighbourAliases: with a list called test-join next door,
// test's List-Subscribe must say test-subscribe, which still reaches it.
func TestRenderUsesNeighbourAliases(t *testing.T) {
	e := newEnv(t)
	if _, err := e.st.CreateList(context.Background(), "test-join@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	e.post("alice@example.com", memberPost)
	e.run()
	ds := e.deliveries()
	m := message.Parse([]byte(e.render(ds[0])))
	if got := m.Get("List-Subscribe"); got != "<mailto:test-subscribe@lists.example.org>" {
		t.Errorf("List-Subscribe %q", got)
	}
	if got := m.Get("List-Unsubscribe"); !strings.HasSuffix(got, "<mailto:test-leave@lists.example.org>") {
		t.Errorf("List-Unsubscribe %q", got)
	}
}

func TestRemovedListMarksIntakeFailed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.post("alice@example.com", memberPost)
	if err := e.st.RemoveList(ctx, testList); err != nil {
		t.Fatal(err)
	}
	e.run()
	if n := e.pending(); n != 0 {
		t.Errorf("%d intake rows still pending", n)
	}
	if n := e.logs.FilterMessage("processing failed, giving up").Len(); n != 1 {
		t.Errorf("%d give-up logs", n)
	}
}

// TestOtherKindsLeftAlone: the pipeline takes posts only; command,
// bounce and owner mail wait for their own stages.
func TestOtherKindsLeftAlone(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.st.Intake(ctx, &store.IntakeMessage{Sender: "a@example.com", Body: []byte("Subject: x\r\n\r\nx\r\n"),
		Recipients: []store.IntakeRecipient{
			{Recipient: "test-request@lists.example.org", List: testList, Kind: "request"},
			{Recipient: "test-bounces@lists.example.org", List: testList, Kind: "bounces"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	e.run()
	items, _ := e.st.PendingIntake(ctx, 10)
	if len(items) != 2 {
		t.Errorf("pending %v", items)
	}
}

func TestRunKickAndStop(t *testing.T) {
	e := newEnv(t)
	// Only a Kick can wake it.
	e.p = New(Options{Store: e.st, Log: e.p.log, Delimiter: "+", Notify: func() { e.notified.Add(1) }, PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.p.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	e.post("alice@example.com", memberPost)
	e.p.Kick()
	e.p.Kick() // never blocks
	testenv.WaitFor(t, 10*time.Second, "the post is processed after Kick", func() bool { return e.notified.Load() > 0 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// TestRenderConcurrent: the deliverer renders from many workers at once;
// every member still gets their own link, and the post is prepared once.
func TestRenderConcurrent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var ms []string
	for i := range 50 {
		ms = append(ms, fmt.Sprintf("m%02d@example.com", i))
	}
	e.add("member", ms...)
	msgID := e.post("alice@example.com", memberPost)
	e.run()
	ds := e.deliveries()
	if len(ds) != 53 {
		t.Fatalf("%d deliveries", len(ds))
	}
	errs := make(chan error, len(ds))
	for _, d := range ds {
		go func() {
			b, err := e.p.Render(ctx, deliver.Job{MessageID: msgID, ListID: e.list.ID, Recipients: []string{d.Recipient}, EnvelopeFrom: d.EnvelopeFrom})
			if err == nil && !strings.Contains(string(b.Bytes()), "<"+baseURL+e.link(e.list, d.Recipient)+">") {
				err = fmt.Errorf("%s: copy without their link", d.Recipient)
			}
			errs <- err
		}()
	}
	for range ds {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	e.p.cache.mu.Lock()
	n := len(e.p.cache.entries)
	e.p.cache.mu.Unlock()
	if n != 1 {
		t.Errorf("%d cache entries for one post", n)
	}
}

// checkMIME parses a generated message with go-message and counts its
// entities (the message itself included).
func checkMIME(t *testing.T, msg string, want int) {
	t.Helper()
	e, err := gomessage.Read(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("notice is not readable MIME: %v\n%s", err, msg)
	}
	n := 0
	if err := e.Walk(func(_ []int, _ *gomessage.Entity, err error) error { n++; return err }); err != nil {
		t.Fatalf("walking the notice: %v", err)
	}
	if n != want {
		t.Errorf("notice has %d entities, want %d:\n%s", n, want, msg)
	}
}

// TestHeldDecidedByMail: a hold notice carries a confirmation address in
// Reply-To, and a moderator's reply to it approves (with the moderator
// password), discards (without any Approved:) or leaves the post held
// (wrong password, or a list without one), as Mailman does.
func TestHeldDecidedByMail(t *testing.T) {
	tests := []struct {
		name, password, header, firstLine string
		want                              string
	}{
		{name: "password in a header approves", password: "s3cret", header: "Approved: s3cret", want: store.HeldApproved},
		{name: "password on the first line approves", password: "s3cret", firstLine: "Approved: s3cret", want: store.HeldApproved},
		{name: "no Approved discards", password: "s3cret", want: store.HeldDiscarded},
		{name: "wrong password keeps it held", password: "s3cret", header: "Approved: guess", want: store.HeldHeld},
		{name: "a list without a password never approves by mail", header: "Approved: anything", want: store.HeldHeld},
		{name: "a list without a password still discards", want: store.HeldDiscarded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			if tc.password != "" {
				e.set("moderator_password", tc.password)
			}
			h := e.holdStranger()
			notice := e.render(e.deliveries()[0])
			replyTo := message.Parse([]byte(notice)).Get("Reply-To")
			tok, ok := strings.CutPrefix(replyTo, "test-confirm+")
			tok, ok2 := strings.CutSuffix(tok, "@lists.example.org")
			if !ok || !ok2 {
				t.Fatalf("notice Reply-To %q, want test-confirm+TOKEN@lists.example.org", replyTo)
			}
			if lt, err := e.st.LiveToken(ctx, tok); err != nil || lt.Kind != store.TokenHeld || lt.Data != fmt.Sprint(h.ID) {
				t.Fatalf("token %q: %+v, %v; want a live held token for #%d", tok, lt, err, h.ID)
			}
			wantText := "Approved: <the list's moderator password>"
			if tc.password == "" {
				wantText = "The list has no moderator password"
			}
			if !strings.Contains(notice, wantText) {
				t.Errorf("notice lacks %q:\n%s", wantText, notice)
			}

			reply := "From: mod@example.com\r\nTo: " + replyTo + "\r\nSubject: Re: held post\r\n"
			if tc.header != "" {
				reply += tc.header + "\r\n"
			}
			reply += "\r\n"
			if tc.firstLine != "" {
				reply += tc.firstLine + "\r\n\r\n"
			}
			reply += "> A post to the test@lists.example.org mailing list is held.\r\n"
			got, err := e.p.ConfirmHeld(ctx, h.ID, []byte(reply), "mail from mod@example.com")
			if err != nil || got != tc.want {
				t.Fatalf("ConfirmHeld = %q, %v; want %q", got, err, tc.want)
			}
			after, err := e.st.GetHeld(ctx, h.ID)
			if err != nil || after.State != tc.want {
				t.Fatalf("held row after: %+v, %v; want state %s", after, err, tc.want)
			}
			_, err = e.st.LiveToken(ctx, tok)
			if spent := errors.Is(err, store.ErrNotFound); spent != (tc.want != store.HeldHeld) {
				t.Errorf("token spent %v after %s (%v)", spent, tc.want, err)
			}
			members := 0
			for _, d := range e.deliveries() {
				if d.MessageID == h.MessageID {
					members++
				}
			}
			if want := map[bool]int{true: 3, false: 0}[tc.want == store.HeldApproved]; members != want {
				t.Errorf("%d member deliveries, want %d", members, want)
			}
		})
	}
}

// TestCLIDecisionSpendsTheMailToken: once a post is decided on the command
// line, the reply route to the same decision no longer exists.
func TestCLIDecisionSpendsTheMailToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	h := e.holdStranger()
	tokens, err := e.st.PendingTokens(ctx, testList)
	if err != nil || len(tokens) != 1 || tokens[0].Kind != store.TokenHeld {
		t.Fatalf("tokens %+v, %v; want one held token", tokens, err)
	}
	if err := e.p.Discard(ctx, h.ID, "cli:tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.LiveToken(ctx, tokens[0].Token); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("token after a CLI decision: %v, want gone", err)
	}
}

// TestNumberedSubjectPrefix: with %d in subject_prefix each post the list
// distributes carries the list's next number (Mailman's post_id), a reply
// gets its own number in place of the one it quotes.
func TestNumberedSubjectPrefix(t *testing.T) {
	e := newEnv(t)
	e.set("subject_prefix", "[Test %d] ")
	var ids []int64
	for _, subject := range []string{"Hello list", "Re: [Test 1] Hello list", "Third"} {
		ids = append(ids, e.post("alice@example.com", strings.Replace(memberPost, "Subject: Hello list", "Subject: "+subject, 1)))
		e.run()
	}
	got := map[int64]string{}
	for _, d := range e.deliveries() {
		got[d.MessageID] = message.Parse([]byte(e.render(d))).Get("Subject")
	}
	for i, want := range []string{"[Test 1] Hello list", "[Test 2] Re: Hello list", "[Test 3] Third"} {
		if got[ids[i]] != want {
			t.Errorf("post %d: Subject %q, want %q", i+1, got[ids[i]], want)
		}
	}
}

// TestPersonalizeFullAddressesEachMember: the list setting reaches the
// rendering: every member's copy is To: that member.
func TestPersonalizeFullAddressesEachMember(t *testing.T) {
	e := newEnv(t)
	e.set("personalize", "full")
	e.post("alice@example.com", memberPost)
	e.run()
	ds := e.deliveries()
	if len(ds) != 3 {
		t.Fatalf("deliveries %v", ds)
	}
	for _, d := range ds {
		m := message.Parse([]byte(e.render(d)))
		if to := m.Values("To"); len(to) != 1 || to[0] != d.Recipient {
			t.Errorf("copy for %s: To %q", d.Recipient, to)
		}
		if !strings.Contains(m.Get("Cc"), "test@lists.example.org") {
			t.Errorf("copy for %s: Cc %q lacks the list", d.Recipient, m.Get("Cc"))
		}
	}
}

// TestHeaderMatchHoldsAMemberPost: the list's header checks are read for
// every post and apply to members whose posts are not accepted outright.
func TestHeaderMatchHoldsAMemberPost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.st.AddHeaderMatch(ctx, testList, "subject", "^hello", store.ActionHold); err != nil {
		t.Fatal(err)
	}
	e.post("alice@example.com", memberPost)
	e.run()
	held, err := e.st.HeldMessages(ctx, testList)
	if err != nil || len(held) != 1 || !strings.HasPrefix(held[0].Reason, "header-match: header check #1: subject matches") {
		t.Fatalf("held = %+v, %v; want the post held by the header check", held, err)
	}
}
