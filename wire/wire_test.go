package wire_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"postlist/config"
	"postlist/internal/testenv/storetest"
	"postlist/store"
	"postlist/wire"
)

// holdPost stores a non-member post and runs the System's pipeline over
// it, which holds it; it returns the held post's id.
func holdPost(t *testing.T, sys *wire.System, subject string) int64 {
	t.Helper()
	ctx := context.Background()
	body := "From: stranger@example.net\r\nTo: " + list + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.net>\r\n\r\nhello\r\n"
	if _, err := sys.Store.Intake(ctx, &store.IntakeMessage{
		MessageID: "<" + subject + "@example.net>", Sender: "stranger@example.net", Body: []byte(body),
		Recipients: []store.IntakeRecipient{{Recipient: list, List: list, Kind: "post"}},
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := sys.Pipeline.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("pipeline RunOnce = %d, %v", n, err)
	}
	hs, err := sys.Moderation.Held(ctx, list)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Subject == subject {
			return h.ID
		}
	}
	t.Fatalf("%q not held: %+v", subject, hs)
	return 0
}

func TestModerationDecidesHeldPosts(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.Database.Path = filepath.Join(t.TempDir(), "postlist.db")
	sys, err := wire.Build(ctx, cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if _, err := sys.Store.CreateList(ctx, list); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Store.AddMembers(ctx, list, "member", []store.NewMember{{Address: "alice@example.com"}}, nil); err != nil {
		t.Fatal(err)
	}

	m := sys.Moderation
	cases := []struct {
		subject string
		decide  func(id int64) (*store.Held, error)
		state   string
	}{
		{"approve-me", func(id int64) (*store.Held, error) { return m.Approve(ctx, id, "test:mod") }, store.HeldApproved},
		{"reject-me", func(id int64) (*store.Held, error) { return m.Reject(ctx, id, "test:mod", "off topic") }, store.HeldRejected},
		{"discard-me", func(id int64) (*store.Held, error) { return m.Discard(ctx, id, "test:mod") }, store.HeldDiscarded},
	}
	for _, c := range cases {
		id := holdPost(t, sys, c.subject)
		h, err := c.decide(id)
		if err != nil {
			t.Fatalf("%s: %v", c.subject, err)
		}
		if h.ID != id || h.State != c.state || h.DecidedBy != "test:mod" {
			t.Errorf("%s: decided %+v, want state %s by test:mod", c.subject, h, c.state)
		}
		if _, err := c.decide(id); !errors.Is(err, store.ErrAlreadyDone) {
			t.Errorf("%s decided twice: %v, want ErrAlreadyDone", c.subject, err)
		}
	}
	if hs, err := m.Held(ctx, list); err != nil || len(hs) != 0 {
		t.Errorf("still held after deciding: %+v, %v", hs, err)
	}
}

func TestModerationDecidesRequests(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	sys, err := wire.Build(ctx, config.Default(), zap.NewNop(), wire.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.CreateList(ctx, list)
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{"carol@example.org": "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00", "dave@example.org": "d00dd00dd00dd00dd00dd00dd00dd00dd00dd00d"}
	for addr, tok := range tokens {
		if err := st.AddToken(ctx, store.Token{Token: tok, ListID: l.ID, Kind: store.TokenModerate, Data: store.TokenSubscribe,
			Address: addr, ExpiresAt: time.Now().Add(time.Hour)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if rs, err := sys.Moderation.Requests(ctx, list); err != nil || len(rs) != 2 {
		t.Fatalf("requests %+v, %v; want 2", rs, err)
	}
	d, err := sys.Moderation.ApproveRequest(ctx, tokens["carol@example.org"], "test:mod")
	if err != nil || !d.Approved || !d.Changed {
		t.Fatalf("approve: %+v, %v", d, err)
	}
	d, err = sys.Moderation.DiscardRequest(ctx, tokens["dave@example.org"], "test:mod")
	if err != nil || d.Approved {
		t.Fatalf("discard: %+v, %v", d, err)
	}
	if _, err := sys.Moderation.ApproveRequest(ctx, tokens["dave@example.org"], "test:mod"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("approving a discarded request: %v, want ErrNotFound", err)
	}
	for addr, want := range map[string]bool{"carol@example.org": true, "dave@example.org": false} {
		ms, err := st.Members(ctx, list, "member")
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, m := range ms {
			got = got || m.Address == addr
		}
		if got != want {
			t.Errorf("%s a member: %v, want %v", addr, got, want)
		}
	}
	// A System given a store leaves it open.
	if err := sys.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetList(ctx, list); err != nil {
		t.Errorf("store closed by System.Close: %v", err)
	}
}
