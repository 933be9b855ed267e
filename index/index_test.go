package index_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"postlist/address"
	"postlist/index"
	"postlist/index/indextest"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/reply"
	"postlist/store"
)

// newStore opens a fresh database with:
//
//	test@lists.example.org   members alice, carol (owner); bob removed;
//	                         default_nonmember_action reject; dave a
//	                         nonmember with his own action "accept";
//	                         spam@example.net and ^.*@spammers\.example$ banned;
//	                         accept_unsigned_verp yes
//	open@lists.example.org   default hold
//	foo-owner@lists.example.org (a list whose name looks like a subaddress)
//	alias.example.org        alias of lists.example.org
func newStore(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t, "test@lists.example.org", "open@lists.example.org", "foo-owner@lists.example.org")
	must(t, st.AddAlias(ctx, "alias.example.org", "lists.example.org"))
	must(t, st.SetListSetting(ctx, "test@lists.example.org", "default_nonmember_action", "reject"))
	// Mailman's unsigned VERP form, so that the table below can name
	// members without computing signatures (TestSignedVERP covers them).
	must(t, st.SetListSetting(ctx, "test@lists.example.org", "accept_unsigned_verp", "yes"))
	add := func(role string, addrs ...string) {
		var ms []store.NewMember
		for _, a := range addrs {
			ms = append(ms, store.NewMember{Address: a})
		}
		if _, err := st.AddMembers(ctx, "test@lists.example.org", role, ms, nil); err != nil {
			t.Fatal(err)
		}
	}
	add("member", "alice@example.com", "Bob@example.com")
	add("owner", "carol@example.com")
	if _, err := st.RemoveMembers(ctx, "test@lists.example.org", "member", []string{"Bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	must(t, st.SetMember(ctx, "test@lists.example.org", "dave@example.org", "moderation_action", "accept"))
	must(t, st.Ban(ctx, "test@lists.example.org", "spam@example.net"))
	must(t, st.Ban(ctx, "test@lists.example.org", `^.*@spammers\.example$`))
	return st
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func load(t *testing.T, st *store.Store) *index.Index {
	t.Helper()
	ix, err := index.Load(context.Background(), st, "+", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ix.Ready() {
		t.Fatal("index not ready after Load on a healthy store")
	}
	return ix
}

func TestDecide(t *testing.T) {
	ix := load(t, newStore(t))
	const L = "test@lists.example.org"
	tests := []struct {
		rcpt   string
		ours   bool
		code   int // 0: accepted
		reason string
		list   string
		kind   address.Kind
	}{
		{"test@lists.example.org", true, 0, index.ReasonList, L, address.Post},
		{"<TEST@Lists.Example.ORG>", true, 0, index.ReasonList, L, address.Post},
		{"test+whatever@lists.example.org", true, 0, index.ReasonList, L, address.Post},
		{"test@alias.example.org", true, 0, index.ReasonList, L, address.Post},
		{"test-bounces@lists.example.org", true, 0, index.ReasonList, L, address.Bounces},
		{"test-confirm@lists.example.org", true, 0, index.ReasonList, L, address.Confirm},
		{"test-join@lists.example.org", true, 0, index.ReasonList, L, address.Join},
		{"test-subscribe@lists.example.org", true, 0, index.ReasonList, L, address.Join},
		{"test-leave@lists.example.org", true, 0, index.ReasonList, L, address.Leave},
		{"test-unsubscribe@lists.example.org", true, 0, index.ReasonList, L, address.Leave},
		{"test-owner@lists.example.org", true, 0, index.ReasonList, L, address.Owner},
		{"test-request@lists.example.org", true, 0, index.ReasonList, L, address.Request},
		{"foo-owner@lists.example.org", true, 0, index.ReasonList, "foo-owner@lists.example.org", address.Post},
		{"foo-owner-owner@lists.example.org", true, 0, index.ReasonList, "foo-owner@lists.example.org", address.Owner},
		// VERP: current member, owner, recently removed member.
		{"test-bounces+alice=example.com@lists.example.org", true, 0, index.ReasonVERP, L, address.Bounces},
		{"test-bounces+ALICE=Example.COM@lists.example.org", true, 0, index.ReasonVERP, L, address.Bounces},
		{"test-bounces+carol=example.com@lists.example.org", true, 0, index.ReasonVERP, L, address.Bounces},
		{"test-bounces+bob=example.com@lists.example.org", true, 0, index.ReasonVERP, L, address.Bounces},
		{"test-bounces+alice=example.com=abcdefgh@lists.example.org", true, 550, index.ReasonBadVERP, L, address.Bounces},
		// Strangers, nonmember rows and other lists' members are refused.
		{"test-bounces+mallory=example.com@lists.example.org", true, 550, index.ReasonBadVERP, L, address.Bounces},
		{"test-bounces+dave=example.org@lists.example.org", true, 550, index.ReasonBadVERP, L, address.Bounces},
		{"open-bounces+alice=example.com@lists.example.org", true, 550, index.ReasonBadVERP, "open@lists.example.org", address.Bounces},
		{"test-bounces+garbage@lists.example.org", true, 550, index.ReasonBadVERP, L, address.Bounces},
		{"test-confirm+0123456789abcdef0123456789abcdef@lists.example.org", true, 550, index.ReasonBadToken, L, address.Confirm},
		{"test-confirm+short@lists.example.org", true, 550, index.ReasonBadToken, L, address.Confirm},
		{"unknown@lists.example.org", true, 550, index.ReasonNoSuchList, "", ""},
		{"test-nope@lists.example.org", true, 550, index.ReasonNoSuchList, "", ""},
		{"test-confirm+@lists.example.org", true, 550, index.ReasonNoSuchList, "", ""},
		{"unknown@alias.example.org", true, 550, index.ReasonNoSuchList, "", ""},
		{`"unterminated@lists.example.org`, true, 553, index.ReasonMalformed, "", ""},
		{"te(st@lists.example.org", true, 553, index.ReasonMalformed, "", ""},
		// Not ours: never judged, whatever the local part looks like.
		{"bob@example.com", false, 0, index.ReasonNotOurs, "", ""},
		{"test@example.com", false, 0, index.ReasonNotOurs, "", ""},
		{"te(st@example.com", false, 0, index.ReasonNotOurs, "", ""},
		{"no-at-sign", false, 0, index.ReasonNotOurs, "", ""},
		{"bob@[192.0.2.1]", false, 0, index.ReasonNotOurs, "", ""},
		{"test@sub.lists.example.org", false, 0, index.ReasonNotOurs, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.rcpt, func(t *testing.T) {
			d := ix.Decide(tc.rcpt)
			if d.Ours != tc.ours || d.Reason != tc.reason {
				t.Fatalf("Decide(%q) = ours %v reason %q, want ours %v reason %q (reply %v)", tc.rcpt, d.Ours, d.Reason, tc.ours, tc.reason, d.Reply)
			}
			code := 0
			if d.Reply != nil {
				code = d.Reply.Code
				if !strings.Contains(d.Reply.Text, "<") {
					t.Errorf("reply %q does not name the address", d.Reply)
				}
			}
			if code != tc.code {
				t.Fatalf("Decide(%q) reply %v, want code %d", tc.rcpt, d.Reply, tc.code)
			}
			if tc.code == 0 && tc.ours != d.Accepted() {
				t.Errorf("Accepted() = %v", d.Accepted())
			}
			if d.Target.List != tc.list || d.Target.Kind != tc.kind {
				t.Errorf("target = %+v, want list %q kind %q", d.Target, tc.list, tc.kind)
			}
		})
	}
}

func TestRefusalTexts(t *testing.T) {
	ix := load(t, newStore(t))
	for rcpt, want := range map[string]string{
		"unknown@lists.example.org":                                       "550 5.1.1 <unknown@lists.example.org>: no such list address here",
		"test-bounces+mallory=example.com@lists.example.org":              "550 5.1.1 <test-bounces+mallory=example.com@lists.example.org>: unknown or forged bounce address",
		"test-confirm+0123456789abcdef0123456789abcdef@lists.example.org": "550 5.1.1 <test-confirm+0123456789abcdef0123456789abcdef@lists.example.org>: unknown or expired confirmation token",
	} {
		if got := ix.Decide(rcpt).Reply.String(); got != want {
			t.Errorf("Decide(%q) = %q, want %q", rcpt, got, want)
		}
	}
	long := strings.Repeat("x", 900) + "@lists.example.org"
	if r := ix.Decide(long).Reply; r == nil || len(r.String()) > 400 {
		t.Errorf("reply for a 900-octet local part is %d octets, want it clipped: %v", len(r.String()), r)
	}
}

func TestResolveRefusesForeignDomainsForLMTP(t *testing.T) {
	ix := load(t, newStore(t))
	if _, r := ix.Resolve("bob@example.com"); r == nil || r.Code != 550 || r.Enhanced != [3]int{5, 1, 1} {
		t.Errorf("Resolve(bob@example.com) = %v, want 550 5.1.1", r)
	}
	tg, r := ix.Resolve("test-leave@lists.example.org")
	if r != nil || tg.List != "test@lists.example.org" || tg.Kind != address.Leave {
		t.Errorf("Resolve(test-leave@) = %+v, %v", tg, r)
	}
	if _, r := ix.Resolve("nope@lists.example.org"); r == nil || r.Code != 550 {
		t.Errorf("Resolve(nope@) = %v, want 550", r)
	}
}

func TestCheckSender(t *testing.T) {
	s := load(t, newStore(t)).Snapshot()
	tests := []struct {
		list, sender string
		code         int
		reason       string
	}{
		{"test@lists.example.org", "alice@example.com", 0, index.ReasonPoster},
		{"test@lists.example.org", "ALICE@EXAMPLE.COM", 0, index.ReasonPoster},
		{"test@lists.example.org", "<alice@example.com>", 0, index.ReasonPoster},
		{"test@lists.example.org", "carol@example.com", 0, index.ReasonPoster},
		{"test@lists.example.org", "dave@example.org", 0, index.ReasonNoPolicy},
		{"test@lists.example.org", "mallory@example.com", 550, index.ReasonNonmember},
		{"test@lists.example.org", "bob@example.com", 550, index.ReasonNonmember},
		{"test@lists.example.org", "", 550, index.ReasonNonmember},
		{"test@lists.example.org", "Spam@Example.NET", 550, index.ReasonBanned},
		{"test@lists.example.org", "x@spammers.example", 550, index.ReasonBanned},
		{"open@lists.example.org", "mallory@example.com", 0, index.ReasonNoPolicy},
		{"open@lists.example.org", "spam@example.net", 0, index.ReasonNoPolicy},
		{"gone@lists.example.org", "mallory@example.com", 0, index.ReasonNoPolicy},
	}
	for _, tc := range tests {
		r, reason := s.CheckSender(tc.list, tc.sender)
		code := 0
		if r != nil {
			code = r.Code
			if r.Enhanced != [3]int{5, 7, 1} {
				t.Errorf("CheckSender(%q, %q) = %v, want 5.7.1", tc.list, tc.sender, r)
			}
		}
		if code != tc.code || reason != tc.reason {
			t.Errorf("CheckSender(%q, %q) = %v %q, want %d %q", tc.list, tc.sender, r, reason, tc.code, tc.reason)
		}
	}
	if !s.IsMember("test@lists.example.org", "Alice@example.com") || s.IsMember("test@lists.example.org", "dave@example.org") {
		t.Error("IsMember wrong for alice or dave")
	}
	l, ok := s.List("test@lists.example.org")
	if !ok || l.ListID != "test.lists.example.org" || l.MaxMessageSize != 40*1024 || l.NonmemberAction != "reject" {
		t.Errorf("List = %+v, %v", l, ok)
	}
}

// TestOversizeActionHold: a list that holds oversized posts gives the
// milter no size to refuse above, whatever its max_message_size.
func TestOversizeActionHold(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		action string
		want   int64
	}{{"hold", 0}, {"refuse", 40 * 1024}} {
		if err := st.SetListSetting(ctx, "test@lists.example.org", "oversize_action", tc.action); err != nil {
			t.Fatal(err)
		}
		l, ok := load(t, st).Snapshot().List("test@lists.example.org")
		if !ok || l.MaxMessageSize != tc.want {
			t.Errorf("oversize_action %s: List = %+v, %v; want MaxMessageSize %d", tc.action, l, ok, tc.want)
		}
	}
	if err := st.SetListSetting(ctx, "test@lists.example.org", "oversize_action", "discard"); err == nil {
		t.Error("oversize_action discard accepted")
	}
}

func TestUnavailableAnswersTempFail(t *testing.T) {
	st := newStore(t)
	st.Close()
	ix, err := index.Load(context.Background(), st, "+", nil)
	if err != nil {
		t.Fatalf("Load on a broken store must not fail, got %v", err)
	}
	if ix.Ready() {
		t.Fatal("Ready on a closed store")
	}
	want := reply.TempFail()
	for _, rcpt := range []string{"test@lists.example.org", "bob@example.com"} {
		d := ix.Decide(rcpt)
		if d.Reply == nil || *d.Reply != want || !d.Ours || d.Reason != index.ReasonUnavailable {
			t.Errorf("Decide(%q) = %+v, want 451 4.3.0", rcpt, d)
		}
		if _, r := ix.Resolve(rcpt); r == nil || r.Code != 451 {
			t.Errorf("Resolve(%q) = %v, want 451", rcpt, r)
		}
	}
	if r, _ := ix.Snapshot().CheckSender("test@lists.example.org", "a@b.c"); r == nil || r.Code != 451 {
		t.Errorf("CheckSender on no snapshot = %v, want 451", r)
	}
}

func TestStaleSnapshotSurvivesFailedReload(t *testing.T) {
	src := &indextest.Source{}
	src.AddList("test", "lists.example.org", "", 0)
	ix := index.New(src, index.Options{})
	must(t, ix.Reload(context.Background()))
	src.Lock()
	src.Err = errors.New("disk on fire")
	src.Unlock()
	if err := ix.Reload(context.Background()); err == nil {
		t.Fatal("Reload succeeded on a failing source")
	}
	if d := ix.Decide("test@lists.example.org"); !d.Accepted() {
		t.Errorf("after a failed reload the last good snapshot must keep answering; got %+v", d)
	}
}

// TestTokensReloadAlone: a new or spent token (a join, a held post)
// reaches the index without a rebuild of the rest, which at a million
// members costs a third of a second; any other change still rebuilds.
func TestTokensReloadAlone(t *testing.T) {
	st := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	ix := index.New(st, index.Options{Delimiter: "+", PollInterval: 10 * time.Millisecond})
	must(t, ix.Reload(ctx))
	done := make(chan struct{})
	go func() { ix.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	before := ix.Snapshot().Stats()
	l, err := st.GetList(ctx, "test@lists.example.org")
	must(t, err)
	const tok = "00112233445566778899aabbccddeeff"
	confirm := "test-confirm+" + tok + "@lists.example.org"
	if ix.Decide(confirm).Accepted() {
		t.Fatal("token accepted before it exists")
	}
	must(t, st.AddToken(ctx, store.Token{Token: tok, ListID: l.ID, Kind: store.TokenSubscribe, Address: "new@example.com",
		ExpiresAt: time.Now().Add(time.Hour)}, nil))
	testenv.WaitFor(t, 2*time.Second, "the confirm address is accepted", func() bool { return ix.Decide(confirm).Accepted() })
	after := ix.Snapshot().Stats()
	if after.LoadedAt != before.LoadedAt || after.Generation != before.Generation || after.Members != before.Members {
		t.Errorf("a new token rebuilt the index: %+v -> %+v", before, after)
	}
	if after.Tokens != before.Tokens+1 {
		t.Errorf("tokens %d -> %d, want one more", before.Tokens, after.Tokens)
	}

	// A member change is not a token change: it rebuilds, and the token
	// is still known afterwards.
	_, err = st.AddMembers(ctx, "test@lists.example.org", "member", []store.NewMember{{Address: "zed@example.com"}}, nil)
	must(t, err)
	testenv.WaitFor(t, 2*time.Second, "the index reloads", func() bool { return ix.Snapshot().Stats().Generation != before.Generation })
	if !ix.Decide(confirm).Accepted() || !ix.Decide("test-bounces+zed=example.com@lists.example.org").Accepted() {
		t.Error("after a rebuild the token or the new member is unknown")
	}
}

func TestRunPicksUpChangesWithinOneSecond(t *testing.T) {
	st := newStore(t)
	ix := index.New(st, index.Options{Delimiter: "+"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ix.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// Before the first tick the index is not loaded; Run must load it.
	testenv.WaitFor(t, time.Second, "the list is accepted", func() bool { return ix.Decide("test@lists.example.org").Accepted() })

	if d := ix.Decide("new@lists.example.org"); d.Accepted() {
		t.Fatal("new@ accepted before it exists")
	}
	// Another connection writes, as the CLI does.
	other := storetest.OpenPath(t, st.Path())
	start := time.Now()
	if _, err := other.CreateList(context.Background(), "new@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Second, "the new list is accepted", func() bool { return ix.Decide("new@lists.example.org").Accepted() })
	t.Logf("new list live after %v", time.Since(start))

	_, err := other.AddMembers(context.Background(), "new@lists.example.org", "member", []store.NewMember{{Address: "eve@example.com"}}, nil)
	must(t, err)
	testenv.WaitFor(t, time.Second, "the new member's VERP address is accepted", func() bool {
		return ix.Decide("new-bounces+eve=example.com@lists.example.org").Accepted()
	})
	must(t, other.RemoveList(context.Background(), "new@lists.example.org"))
	testenv.WaitFor(t, time.Second, "the removed list is refused", func() bool { return ix.Decide("new@lists.example.org").Reason == index.ReasonNoSuchList })
}

func TestRunLoadsOnceStoreRecovers(t *testing.T) {
	src := &indextest.Source{Err: errors.New("locked")}
	src.AddList("test", "lists.example.org", "", 0)
	ix := index.New(src, index.Options{PollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ix.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := ix.Reload(ctx); err == nil {
		t.Fatal("Reload succeeded on a failing source")
	}
	if d := ix.Decide("test@lists.example.org"); d.Reply == nil || d.Reply.Code != 451 {
		t.Fatalf("Decide while unavailable = %+v, want 451", d)
	}
	src.Lock()
	src.Err = nil
	src.Unlock()
	testenv.WaitFor(t, 2*time.Second, "the list is accepted", func() bool { return ix.Decide("test@lists.example.org").Accepted() })
}

func TestTokens(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	src := &indextest.Source{}
	id := src.AddList("test", "lists.example.org", "", 0)
	other := src.AddList("other", "lists.example.org", "", 0)
	const live = "0123456789abcdef0123456789abcdef"
	const expired = "fedcba9876543210fedcba9876543210"
	const elsewhere = "00000000000000000000000000000000"
	src.Tokens = []store.IndexToken{
		{ListID: id, Token: live, ExpiresAt: now.Add(time.Hour)},
		{ListID: id, Token: expired, ExpiresAt: now.Add(-time.Second)},
		{ListID: other, Token: elsewhere, ExpiresAt: now.Add(time.Hour)},
	}
	ix := index.New(src, index.Options{Now: func() time.Time { return clock }})
	must(t, ix.Reload(context.Background()))
	for rcpt, want := range map[string]string{
		"test-confirm+" + live + "@lists.example.org":                  index.ReasonToken,
		"test-confirm+" + strings.ToUpper(live) + "@lists.example.org": index.ReasonToken,
		"test-confirm+" + expired + "@lists.example.org":               index.ReasonBadToken,
		"test-confirm+" + elsewhere + "@lists.example.org":             index.ReasonBadToken,
		"other-confirm+" + elsewhere + "@lists.example.org":            index.ReasonToken,
		"test-confirm+" + live[:31] + "@lists.example.org":             index.ReasonBadToken,
		"test-confirm+" + live + "x@lists.example.org":                 index.ReasonBadToken,
		"test-confirm@lists.example.org":                               index.ReasonList,
	} {
		if got := ix.Decide(rcpt).Reason; got != want {
			t.Errorf("Decide(%q) reason %q, want %q", rcpt, got, want)
		}
	}
	// Expiry is judged when asked, not when loaded.
	clock = now.Add(2 * time.Hour)
	if got := ix.Decide("test-confirm+" + live + "@lists.example.org").Reason; got != index.ReasonBadToken {
		t.Errorf("token past expiry: reason %q, want %q", got, index.ReasonBadToken)
	}
}

func TestRemovedMembersAgeOut(t *testing.T) {
	st := newStore(t)
	ix := index.New(st, index.Options{RemovedWindow: time.Hour, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	must(t, ix.Reload(context.Background()))
	if got := ix.Decide("test-bounces+bob=example.com@lists.example.org").Reason; got != index.ReasonBadVERP {
		t.Errorf("removal older than the window: reason %q, want %q", got, index.ReasonBadVERP)
	}
}

func TestOtherDelimiter(t *testing.T) {
	st := newStore(t)
	ix, err := index.Load(context.Background(), st, "#", nil)
	must(t, err)
	if d := ix.Decide("test-bounces#alice=example.com@lists.example.org"); d.Reason != index.ReasonVERP {
		t.Errorf("VERP with '#' delimiter: %+v", d)
	}
	if d := ix.Decide("test-bounces+alice=example.com@lists.example.org"); d.Reason != index.ReasonNoSuchList {
		t.Errorf("'+' is not a delimiter here, want no_such_list: %+v", d)
	}
}

func TestSynthetic(t *testing.T) {
	syn := indextest.Synthetic{Lists: 50, Members: 1000}
	ix := index.New(syn, index.Options{})
	must(t, ix.Reload(context.Background()))
	st := ix.Snapshot().Stats()
	if st.Lists != 50 || st.Members != 1000 {
		t.Fatalf("stats %+v", st)
	}
	s := ix.Snapshot()
	for i := range 50 {
		for j := range syn.PerList(i) {
			if !s.IsMember(syn.ListAddr(i), syn.MemberAddr(i, j)) {
				t.Fatalf("member %d of list %d missing", j, i)
			}
		}
		if s.IsMember(syn.ListAddr(i), syn.MemberAddr(i+1, 0)) {
			t.Fatalf("list %d has another list's member", i)
		}
	}
}

// TestSignedVERP: with the site's signing key (Load reads it), a -bounces+
// address is accepted only with a valid signature, or in Mailman's
// unsigned form on a list that accepts it; a forged signature is refused
// whoever it names, a genuine one past the bounce window accepted.
func TestSignedVERP(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	signer, err := st.VERPSigner(ctx)
	must(t, err)
	must(t, st.SetListSetting(ctx, "test@lists.example.org", "accept_unsigned_verp", "no"))
	ix := load(t, st)
	signed := signer.VERP("test@lists.example.org", "alice@example.com", "+", time.Now())
	local, domain, _ := strings.Cut(signed, "@")
	longAgo := time.Now().Add(-address.DefaultVERPWindow - 3*24*time.Hour)
	oldLocal, _, _ := strings.Cut(signer.VERP("test@lists.example.org", "alice@example.com", "+", longAgo), "@")
	cases := []struct {
		rcpt, reason string
	}{
		{signed, index.ReasonVERP},
		{strings.ToUpper(local) + "@" + domain, index.ReasonVERP},
		{signer.VERP("test@lists.example.org", "Bob@example.com", "+", time.Now()), index.ReasonVERP}, // recently removed
		{local[:len(local)-8] + "aaaaaaaa@" + domain, index.ReasonBadVERP},
		{"test-bounces+alice=example.com@lists.example.org", index.ReasonBadVERP},
		{signer.VERP("test@lists.example.org", "mallory@example.com", "+", time.Now()), index.ReasonBadVERP},
		{signer.VERP("open@lists.example.org", "alice@example.com", "+", time.Now()), index.ReasonBadVERP},
		// Genuine but older than the bounce window: taken, whoever it
		// names now (the bounce processor ignores it), so that Postfix
		// never bounces a bounce.
		{signer.VERP("test@lists.example.org", "alice@example.com", "+", longAgo), index.ReasonVERP},
		{signer.VERP("test@lists.example.org", "mallory@example.com", "+", longAgo), index.ReasonVERP},
		{oldLocal[:len(oldLocal)-8] + "aaaaaaaa@" + domain, index.ReasonBadVERP},
	}
	for _, c := range cases {
		if got := ix.Decide(c.rcpt).Reason; got != c.reason {
			t.Errorf("Decide(%q) reason %q, want %q", c.rcpt, got, c.reason)
		}
	}
	must(t, st.SetListSetting(ctx, "test@lists.example.org", "accept_unsigned_verp", "yes"))
	must(t, ix.Reload(ctx))
	if got := ix.Decide("test-bounces+alice=example.com@lists.example.org").Reason; got != index.ReasonVERP {
		t.Errorf("unsigned VERP on a list accepting it: reason %q", got)
	}
}

// TestResolveCatchesUp: the LMTP path must not refuse, with a 5xx that
// Postfix turns into a bounce, a list or token created after the last
// poll; Resolve checks the store before it refuses. Decide, the RCPT
// path, keeps answering from the snapshot.
func TestResolveCatchesUp(t *testing.T) {
	st := newStore(t)
	ix := load(t, st) // never polls: only Resolve's catch-up can see changes
	ctx := context.Background()

	if _, rep := ix.Resolve("nope@lists.example.org"); rep == nil || rep.Code != 550 {
		t.Fatalf("unknown list: %v, want 550", rep)
	}
	if _, err := st.CreateList(ctx, "fresh@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	if d := ix.Decide("fresh@lists.example.org"); d.Accepted() {
		t.Fatal("Decide saw the new list without a reload; the test proves nothing")
	}
	if tg, rep := ix.Resolve("fresh@lists.example.org"); rep != nil || tg.List != "fresh@lists.example.org" {
		t.Fatalf("new list at LMTP: %+v %v, want accepted", tg, rep)
	}

	l, err := st.GetList(ctx, "test@lists.example.org")
	must(t, err)
	const tok = "ffeeddccbbaa99887766554433221100"
	must(t, st.AddToken(ctx, store.Token{Token: tok, ListID: l.ID, Kind: store.TokenSubscribe, Address: "new@example.com",
		ExpiresAt: time.Now().Add(time.Hour)}, nil))
	confirm := "test-confirm+" + tok + "@lists.example.org"
	if _, rep := ix.Resolve(confirm); rep != nil {
		t.Fatalf("new token at LMTP: %v, want accepted", rep)
	}
	// Nothing changed: the refusal stands.
	if _, rep := ix.Resolve("still-nope@lists.example.org"); rep == nil || rep.Code != 550 {
		t.Fatalf("unknown list after catch-up: %v, want 550", rep)
	}
}
