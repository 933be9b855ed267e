package store

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestScanIndex(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	// Events get their time from SQLite's clock, so the test uses the
	// real one.
	now := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := s.CreateList(ctx, "test@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateList(ctx, "gone@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddAlias(ctx, "alias.example.org", "lists.example.org"))
	must(s.SetListSetting(ctx, "test@lists.example.org", "default_nonmember_action", "reject"))
	must(s.SetListSetting(ctx, "test@lists.example.org", "max_message_size", "100"))
	_, err := s.AddMembers(ctx, "test@lists.example.org", "member", []NewMember{{Address: "alice@example.com"}, {Address: "bob@example.com"}}, nil)
	must(err)
	_, err = s.AddMembers(ctx, "test@lists.example.org", "owner", []NewMember{{Address: "alice@example.com"}}, nil)
	must(err)
	_, err = s.AddMembers(ctx, "gone@lists.example.org", "member", []NewMember{{Address: "carol@example.com"}}, nil)
	must(err)
	must(s.SetMember(ctx, "test@lists.example.org", "dave@example.org", "moderation_action", "accept"))
	_, err = s.RemoveMembers(ctx, "test@lists.example.org", "member", []string{"bob@example.com"})
	must(err)
	must(s.Ban(ctx, "test@lists.example.org", "^.*@spam\\.example$"))
	// Tokens have no API of their own yet; the rows are what matters.
	for _, tk := range []struct{ token, expires string }{
		{"live", FormatTime(now.Add(time.Hour))},
		{"expired", FormatTime(now.Add(-time.Hour))},
	} {
		_, err := s.w.ExecContext(ctx, `INSERT INTO tokens (token, list_id, kind, address, expires_at)
			VALUES (?, (SELECT id FROM lists WHERE address = 'test@lists.example.org'), 'subscribe', 'x@example.com', ?)`, tk.token, tk.expires)
		must(err)
	}
	// A removal long ago, before the window.
	_, err = s.w.ExecContext(ctx, `INSERT INTO events (at, list_id, address, kind)
		VALUES (?, (SELECT id FROM lists WHERE address = 'test@lists.example.org'), 'old@example.com', 'member_removed')`,
		FormatTime(now.AddDate(0, -2, 0)))
	must(err)
	must(s.RemoveList(ctx, "gone@lists.example.org"))
	want, err := s.Generation(ctx)
	must(err)

	var domains []IndexDomain
	var lists []IndexList
	var members []IndexMember
	var removed []IndexRemoved
	var tokens []IndexToken
	var bans []IndexBan
	gen, err := s.ScanIndex(ctx, now.AddDate(0, 0, -30), IndexVisitor{
		Domain:  func(d IndexDomain) error { domains = append(domains, d); return nil },
		List:    func(l IndexList) error { lists = append(lists, l); return nil },
		Member:  func(m IndexMember) error { members = append(members, m); return nil },
		Removed: func(r IndexRemoved) error { removed = append(removed, r); return nil },
		Token:   func(tk IndexToken) error { tokens = append(tokens, tk); return nil },
		Ban:     func(b IndexBan) error { bans = append(bans, b); return nil },
	})
	must(err)
	if gen != want {
		t.Errorf("generation %d, want %d", gen, want)
	}
	if !slices.Contains(domains, IndexDomain{Name: "alias.example.org", AliasOf: "lists.example.org"}) ||
		!slices.Contains(domains, IndexDomain{Name: "lists.example.org"}) {
		t.Errorf("domains %+v", domains)
	}
	if len(lists) != 1 || lists[0].Address != "test@lists.example.org" || lists[0].ListID != "test.lists.example.org" ||
		lists[0].DefaultNonmemberAction != "reject" || lists[0].MaxMessageSize != 100 {
		t.Fatalf("lists %+v", lists)
	}
	id := lists[0].ID
	slices.SortFunc(members, func(a, b IndexMember) int {
		if a.Address < b.Address {
			return -1
		}
		if a.Address > b.Address {
			return 1
		}
		return 0
	})
	wantMembers := []IndexMember{
		{ListID: id, Address: "alice@example.com"}, // member
		{ListID: id, Address: "alice@example.com"}, // owner
		{ListID: id, Address: "dave@example.org", Nonmember: true, ModerationAction: "accept"},
	}
	if !slices.Equal(members, wantMembers) {
		t.Errorf("members %+v, want %+v", members, wantMembers)
	}
	if !slices.Equal(removed, []IndexRemoved{{ListID: id, Address: "bob@example.com"}}) {
		t.Errorf("removed %+v: want bob only (carol's list is gone, old@ is outside the window)", removed)
	}
	if len(tokens) != 1 || tokens[0].Token != "live" || tokens[0].ListID != id || !tokens[0].ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("tokens %+v", tokens)
	}
	if !slices.Equal(bans, []IndexBan{{ListID: id, Pattern: "^.*@spam\\.example$"}}) {
		t.Errorf("bans %+v", bans)
	}
}

func TestScanIndexCallbackErrorStops(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.CreateList(ctx, "test@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	stop := context.Canceled
	_, err := s.ScanIndex(ctx, time.Time{}, IndexVisitor{List: func(IndexList) error { return stop }})
	if err == nil {
		t.Fatal("a visitor's error was swallowed")
	}
}
