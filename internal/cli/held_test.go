package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/config"
	"postlist/store"
	"postlist/wire"
)

// holdOne puts a non-member post through the real pipeline so that it is
// held, and returns nothing: the CLI must find it on its own.
func (e *env) holdOne(subject string) {
	e.t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	body := "From: stranger@example.net\r\nTo: test@lists.example.org\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.net>\r\n\r\nhello\r\n"
	if _, err := st.Intake(ctx, &store.IntakeMessage{
		MessageID: "<" + subject + "@example.net>", Sender: "stranger@example.net", Body: []byte(body),
		Recipients: []store.IntakeRecipient{{Recipient: "test@lists.example.org", List: "test@lists.example.org", Kind: "post"}},
	}); err != nil {
		e.t.Fatal(err)
	}
	sys, err := wire.Build(ctx, config.Default(), zap.NewNop(), wire.WithStore(st))
	if err != nil {
		e.t.Fatal(err)
	}
	if n, err := sys.Pipeline.RunOnce(ctx); err != nil || n != 1 {
		e.t.Fatalf("pipeline RunOnce = %d, %v", n, err)
	}
}

func TestHeldApproveRejectDiscard(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", "test@lists.example.org")
	e.mustRun("members", "add", "test@lists.example.org", "alice@example.com", "bob@example.com")
	e.mustRun("members", "add", "test@lists.example.org", "mod@example.com", "--role", "moderator")
	for _, s := range []string{"one", "two", "three"} {
		e.holdOne(s)
	}
	var held []struct {
		ID      int64  `json:"id"`
		Subject string `json:"subject"`
		Reason  string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("--json", "held", "ls", "test@lists.example.org")), &held); err != nil {
		t.Fatal(err)
	}
	if len(held) != 3 || held[0].Subject != "one" || !strings.Contains(held[0].Reason, "not a member") {
		t.Fatalf("held = %+v", held)
	}
	e.mustRun("held", "approve", jsonID(held[0].ID))
	e.mustRun("held", "reject", jsonID(held[1].ID), "--reason", "off topic")
	e.mustRun("held", "discard", jsonID(held[2].ID))
	if code, _, errs := e.run("", "held", "approve", jsonID(held[0].ID)); code != ExitFailure || !strings.Contains(errs, "already") {
		t.Errorf("second approve: exit %d %q", code, errs)
	}
	if out := e.mustRun("held", "ls"); strings.Contains(out, "one") {
		t.Errorf("decided posts still listed:\n%s", out)
	}
	// The approved post is queued for both members; the rejected one only
	// produced a notice to its poster.
	st, err := store.Open(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sum, err := st.QueueSummary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var queued int64
	for _, s := range sum {
		if s.State == "queued" {
			queued = s.Deliveries
		}
	}
	// 2 members + 1 reject notice to the poster + 3 held notices to the
	// moderator (one per held post).
	if queued != 6 {
		t.Errorf("queued deliveries = %d (%+v), want the approved post for 2 members and a reject notice", queued, sum)
	}
	// The approved copies leave from each member's signed VERP address,
	// as the daemon's own posts do: only then does the milter accept
	// their bounces.
	signer, err := st.VERPSigner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h, err := st.GetHeld(context.Background(), held[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := st.MessageDeliveries(context.Background(), h.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("approved post has %d deliveries, want 2: %+v", len(ds), ds)
	}
	for _, d := range ds {
		if want := signer.VERP("test@lists.example.org", d.Recipient, "+", time.Now()); d.EnvelopeFrom != want {
			t.Errorf("approved copy to %s leaves from %q, want the signed %q", d.Recipient, d.EnvelopeFrom, want)
		}
		local, _, _ := strings.Cut(d.EnvelopeFrom, "@")
		_, ext, _ := strings.Cut(local, "+")
		if m, status := signer.Member("test@lists.example.org", ext, false, time.Now()); status != address.VERPCurrent || m != d.Recipient {
			t.Errorf("envelope sender %q does not verify for %s (got %q, %v)", d.EnvelopeFrom, d.Recipient, m, status)
		}
	}
}

func jsonID(id int64) string {
	b, _ := json.Marshal(id)
	return string(b)
}
