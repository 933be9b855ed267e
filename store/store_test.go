package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "var", "postlist.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenSetsPragmasAndVersion(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	checks := map[string]string{
		"PRAGMA journal_mode": "wal",
		"PRAGMA foreign_keys": "1",
		"PRAGMA synchronous":  "2", // FULL
		"PRAGMA user_version": fmt.Sprint(SchemaVersion()),
	}
	for q, want := range checks {
		var got string
		if err := s.w.QueryRowContext(ctx, q).Scan(&got); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if got != want {
			t.Errorf("%s = %s, want %s", q, got, want)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateList(ctx, "test@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetList(ctx, "test@lists.example.org"); err != nil {
		t.Fatalf("list lost across reopen: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, path)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open newer schema: err = %v, want ErrSchemaTooNew", err)
	}
}

func TestOlderSchemaUpgradesInPlace(t *testing.T) {
	// A database at version 0 (fresh file with a foreign table in it)
	// upgrades without losing what was there.
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE keepme (x INTEGER); INSERT INTO keepme VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var x int
	if err := s.r.QueryRow("SELECT x FROM keepme").Scan(&x); err != nil || x != 42 {
		t.Fatalf("existing data: %d, %v", x, err)
	}
	var v int
	s.r.QueryRow("PRAGMA user_version").Scan(&v)
	if v != SchemaVersion() {
		t.Fatalf("user_version = %d", v)
	}
}

func TestListsAndDomains(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	l, err := s.CreateList(ctx, "Test@Lists.Example.org")
	if err != nil {
		t.Fatal(err)
	}
	if l.Address != "test@lists.example.org" || l.ListID != "test.lists.example.org" || l.Domain != "lists.example.org" {
		t.Errorf("list = %+v", l)
	}
	if l.Setting("default_nonmember_action") != "hold" || !l.Bool("verp") || l.Float("bounce_score_threshold") != 5 {
		t.Errorf("defaults wrong: %v", l.Settings)
	}
	if _, err := s.CreateList(ctx, "test@lists.example.org"); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create: %v", err)
	}
	for _, bad := range []string{"Bad Name@x.org", "-x@x.org", "x", "a+b@x.org"} {
		if _, err := s.CreateList(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateList(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
	if err := s.AddAlias(ctx, "lists.example.net", "lists.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAlias(ctx, "lists.example.net", "lists.example.org"); err != nil {
		t.Errorf("re-adding the same alias: %v", err)
	}
	if err := s.AddAlias(ctx, "x.example", "lists.example.net"); !errors.Is(err, ErrInvalid) {
		t.Errorf("alias of alias: %v", err)
	}
	if _, err := s.CreateList(ctx, "other@lists.example.net"); !errors.Is(err, ErrInvalid) {
		t.Errorf("list in alias domain: %v", err)
	}
	ds, err := s.Domains(ctx)
	if err != nil || len(ds) != 2 || ds[0].AliasOf != "lists.example.org" || ds[1].Lists != 1 {
		t.Errorf("domains = %+v, %v", ds, err)
	}
	if err := s.RemoveList(ctx, "test@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveList(ctx, "test@lists.example.org"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
}

func TestListSettings(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const L = "test@lists.example.org"
	if _, err := s.CreateList(ctx, L); err != nil {
		t.Fatal(err)
	}
	good := []struct{ key, value, stored string }{
		{"default_nonmember_action", "reject", "reject"},
		{"emergency", "yes", "1"},
		{"max_message_size", "100", "100"},
		{"bounce_score_threshold", "2.5", "2.5"},
		{"subject_prefix", "[x] ", "[x] "},
		{"bounce_info_stale_after", "14d", "14d"},
		{"footer", "line one\nline two", "line one\nline two"},
	}
	for _, g := range good {
		if err := s.SetListSetting(ctx, L, g.key, g.value); err != nil {
			t.Errorf("set %s=%q: %v", g.key, g.value, err)
		}
	}
	l, _ := s.GetList(ctx, L)
	for _, g := range good {
		if got := l.Setting(g.key); got != g.stored {
			t.Errorf("%s = %q, want %q", g.key, got, g.stored)
		}
	}
	bad := []struct{ key, value string }{
		{"default_nonmember_action", "maybe"},
		{"emergency", "perhaps"},
		{"max_message_size", "-1"},
		{"no_such_setting", "1"},
		{"subject_prefix", "a\r\nBcc: victim@example.com"},
		{"bounce_info_stale_after", "soon"},
	}
	for _, b := range bad {
		if err := s.SetListSetting(ctx, L, b.key, b.value); !errors.Is(err, ErrInvalid) {
			t.Errorf("set %s=%q: err = %v, want ErrInvalid", b.key, b.value, err)
		}
	}
	if err := s.SetListSetting(ctx, "nope@x.org", "emergency", "yes"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown list: %v", err)
	}
}

func TestMembers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const L = "test@lists.example.org"
	if _, err := s.CreateList(ctx, L); err != nil {
		t.Fatal(err)
	}
	g0, _ := s.Generation(ctx)
	var calls int
	res, err := s.AddMembers(ctx, L, "member", []NewMember{
		{Address: "alice@example.com", DisplayName: "Alice"},
		{Address: "bob@example.com"},
		{Address: "ALICE@example.com"}, // same address, other case: one member
	}, func(int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 2 || len(res.Existing) != 1 || calls == 0 {
		t.Errorf("AddMembers = %+v, progress calls %d", res, calls)
	}
	if g1, _ := s.Generation(ctx); g1 <= g0 {
		t.Errorf("generation did not move: %d -> %d", g0, g1)
	}
	if _, err := s.AddMembers(ctx, L, "owner", []NewMember{{Address: "alice@example.com"}}, nil); err != nil {
		t.Fatal(err)
	}
	all, _ := s.Members(ctx, L, "")
	owners, _ := s.Members(ctx, L, "owner")
	if len(all) != 3 || len(owners) != 1 || owners[0].Address != "alice@example.com" {
		t.Errorf("members: all=%v owners=%v", all, owners)
	}
	if err := s.SetMember(ctx, L, "bob@example.com", "moderation_action", "hold"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMember(ctx, L, "stranger@example.net", "moderation_action", "discard"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMember(ctx, L, "stranger@example.net", "delivery_status", "by_user"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delivery_status for nonmember: %v", err)
	}
	if err := s.SetMember(ctx, L, "bob@example.com", "moderation_action", "sometimes"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad value: %v", err)
	}
	nm, _ := s.Members(ctx, L, "nonmember")
	if len(nm) != 1 || nm[0].ModerationAction != "discard" {
		t.Errorf("nonmember rows = %+v", nm)
	}
	missing, err := s.RemoveMembers(ctx, L, "member", []string{"bob@example.com", "carol@example.com"})
	if err != nil || len(missing) != 1 || missing[0] != "carol@example.com" {
		t.Errorf("RemoveMembers missing=%v err=%v", missing, err)
	}
	if _, err := s.Members(ctx, "nope@x.org", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("members of unknown list: %v", err)
	}
}

func TestBans(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const L = "test@lists.example.org"
	s.CreateList(ctx, L)
	if err := s.Ban(ctx, L, "^.*@spam\\.example$"); err != nil {
		t.Fatal(err)
	}
	if err := s.Ban(ctx, L, "eve@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.Ban(ctx, L, "^(unclosed"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad regexp: %v", err)
	}
	for addr, want := range map[string]bool{
		"x@SPAM.example": true, "Eve@example.com": true, "bob@example.com": false, "x@spam.example.org": false,
	} {
		got, err := s.Banned(ctx, L, addr)
		if err != nil || got != want {
			t.Errorf("Banned(%s) = %v, %v; want %v", addr, got, err, want)
		}
	}
}

func TestSiteValueCreatedOnce(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	n := 0
	gen := func() (string, error) { n++; return fmt.Sprint("secret", n), nil }
	a, err := s.SiteValue(ctx, "verp_key", gen)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.SiteValue(ctx, "verp_key", gen)
	if a != b || a != "secret1" {
		t.Errorf("site value changed: %q then %q", a, b)
	}
}

// queryPlan returns the steps of SQLite's EXPLAIN QUERY PLAN for q.
func queryPlan(t *testing.T, s *Store, q string, args ...any) []string {
	t.Helper()
	rows, err := s.r.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}
