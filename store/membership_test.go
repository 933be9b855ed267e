package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"postlist/internal/testenv"
)

const emailList = "test@lists.example.org"

// emailFixture is a store on a fake clock with one list, a member, an
// owner and a moderator.
func emailFixture(t *testing.T) (*Store, *List, *testenv.Clock) {
	t.Helper()
	ctx := context.Background()
	s := openTest(t)
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	s.Now = clock.Now
	l, err := s.CreateList(ctx, emailList)
	if err != nil {
		t.Fatal(err)
	}
	for role, addr := range map[string]string{"member": "alice@example.com", "owner": "owner@example.com", "moderator": "mod@example.com"} {
		if _, err := s.AddMembers(ctx, emailList, role, []NewMember{{Address: addr}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return s, l, clock
}

func eventsOf(t *testing.T, s *Store, kind string) []Event {
	t.Helper()
	evs, err := s.EventLog(context.Background(), "", "", kind)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func queuedTo(t *testing.T, s *Store, rcpt string) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM deliveries WHERE recipient = ?`, rcpt).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func testNotice(to string) Notice {
	return Notice{
		Sender:     "test-bounces@lists.example.org",
		Body:       []byte("Message-ID: <n." + to + "@lists.example.org>\r\nSubject: notice\r\n\r\nhello\r\n"),
		Recipients: []NewDelivery{{Recipient: to, EnvelopeFrom: "test-bounces@lists.example.org"}},
	}
}

func TestAddTokenRefusesSecondPendingRequest(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	tok := Token{Token: strings.Repeat("a", 32), ListID: l.ID, Kind: TokenSubscribe, Address: "bob@example.net",
		DisplayName: "Bob", ExpiresAt: clock.Now().Add(72 * time.Hour)}
	if err := s.AddToken(ctx, tok, []Notice{testNotice("bob@example.net")}); err != nil {
		t.Fatal(err)
	}
	if n := queuedTo(t, s, "bob@example.net"); n != 1 {
		t.Errorf("confirmation queued %d times, want 1", n)
	}
	second := tok
	second.Token, second.Address = strings.Repeat("b", 32), "BOB@example.net"
	if err := s.AddToken(ctx, second, []Notice{testNotice("bob@example.net")}); !errors.Is(err, ErrPending) {
		t.Fatalf("second request for the same address (other case): %v, want ErrPending", err)
	}
	if n := queuedTo(t, s, "bob@example.net"); n != 1 {
		t.Errorf("a refused request queued its notice: %d deliveries", n)
	}
	// An unsubscription request is another kind and may coexist.
	other := second
	other.Kind = TokenUnsubscribe
	if err := s.AddToken(ctx, other, nil); err != nil {
		t.Errorf("unsubscribe request beside a subscribe request: %v", err)
	}
	// Once the first has expired, a new one is allowed.
	clock.Add(73 * time.Hour)
	third := tok
	third.Token, third.ExpiresAt = strings.Repeat("c", 32), clock.Now().Add(time.Hour)
	if err := s.AddToken(ctx, third, nil); err != nil {
		t.Errorf("request after the first expired: %v", err)
	}
	if evs := eventsOf(t, s, EventSubscribeRequested); len(evs) != 2 || strings.Contains(evs[0].Detail, tok.Token) {
		t.Errorf("subscribe events %+v: want 2, never the whole token", evs)
	}
}

func TestLiveTokenExpires(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	tok := Token{Token: strings.Repeat("d", 32), ListID: l.ID, Kind: TokenSubscribe, Address: "bob@example.net", ExpiresAt: clock.Now().Add(time.Hour)}
	if err := s.AddToken(ctx, tok, nil); err != nil {
		t.Fatal(err)
	}
	// A held post's token expires the same way, without an event.
	held := Token{Token: strings.Repeat("e", 32), ListID: l.ID, Kind: TokenHeld, Address: "x@example.net", Data: "1", ExpiresAt: clock.Now().Add(time.Hour)}
	if err := s.AddToken(ctx, held, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.LiveToken(ctx, tok.Token)
	if err != nil || got.List != emailList || got.Address != "bob@example.net" || got.Kind != TokenSubscribe {
		t.Fatalf("LiveToken = %+v, %v", got, err)
	}
	clock.Add(time.Hour)
	if _, err := s.LiveToken(ctx, tok.Token); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired token: %v, want ErrNotFound", err)
	}
	if _, err := s.CompleteToken(ctx, TokenCompletion{Token: tok.Token, Action: TokenSubscribe}); !errors.Is(err, ErrNotFound) {
		t.Errorf("completing an expired token: %v, want ErrNotFound", err)
	}
	n, err := s.PurgeExpiredTokens(ctx)
	if err != nil || n != 2 {
		t.Fatalf("purge: %d, %v; want the request and the held post's token", n, err)
	}
	if evs := eventsOf(t, s, EventTokenExpired); len(evs) != 1 || evs[0].Address != "bob@example.net" {
		t.Errorf("expiry events: %+v", evs)
	}
	if n, _ := s.PurgeExpiredTokens(ctx); n != 0 {
		t.Errorf("second purge removed %d", n)
	}
}

func TestCompleteTokenSubscribeIsSingleUse(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	tok := Token{Token: strings.Repeat("e", 32), ListID: l.ID, Kind: TokenSubscribe, Address: "bob@example.net", DisplayName: "Bob B",
		ExpiresAt: clock.Now().Add(time.Hour)}
	if err := s.AddToken(ctx, tok, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompleteToken(ctx, TokenCompletion{Token: tok.Token, Action: TokenUnsubscribe}); !errors.Is(err, ErrInvalid) {
		t.Errorf("subscribe token completed as unsubscribe: %v, want ErrInvalid", err)
	}
	calls := 0
	res, err := s.CompleteToken(ctx, TokenCompletion{Token: tok.Token, Action: TokenSubscribe, By: "email confirmation",
		Notices: func(changed bool) []Notice {
			calls++
			if !changed {
				return nil
			}
			return []Notice{testNotice("bob@example.net")}
		}})
	if err != nil || !res.Changed || res.Token.Address != "bob@example.net" || calls != 1 {
		t.Fatalf("complete: %+v, %v (notices called %d times)", res, err, calls)
	}
	ms, err := s.Members(ctx, emailList, "member")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m Member) bool { return m.Address == "bob@example.net" })
	if i < 0 || ms[i].DisplayName != "Bob B" {
		t.Fatalf("member row missing or without name: %+v", ms)
	}
	if queuedTo(t, s, "bob@example.net") != 1 {
		t.Error("welcome not queued")
	}
	if _, err := s.CompleteToken(ctx, TokenCompletion{Token: tok.Token, Action: TokenSubscribe}); !errors.Is(err, ErrNotFound) {
		t.Errorf("second use: %v, want ErrNotFound", err)
	}
	if evs := eventsOf(t, s, EventMemberAdded); len(evs) != 1 || !strings.Contains(evs[0].Detail, "email confirmation") {
		t.Errorf("member_added events: %+v", evs)
	}

	// A request for someone who joined meanwhile is used up, changes
	// nothing and sends nothing.
	again := Token{Token: strings.Repeat("f", 32), ListID: l.ID, Kind: TokenSubscribe, Address: "alice@example.com", ExpiresAt: clock.Now().Add(time.Hour)}
	if err := s.AddToken(ctx, again, nil); err != nil {
		t.Fatal(err)
	}
	res, err = s.CompleteToken(ctx, TokenCompletion{Token: again.Token, Action: TokenSubscribe, Notices: func(changed bool) []Notice {
		if changed {
			return []Notice{testNotice("alice@example.com")}
		}
		return nil
	}})
	if err != nil || res.Changed || queuedTo(t, s, "alice@example.com") != 0 {
		t.Errorf("already a member: %+v, %v", res, err)
	}
}

func TestCompleteTokenThroughModerator(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	tok := Token{Token: strings.Repeat("1", 32), ListID: l.ID, Kind: TokenUnsubscribe, Address: "alice@example.com", ExpiresAt: clock.Now().Add(time.Hour)}
	if err := s.AddToken(ctx, tok, nil); err != nil {
		t.Fatal(err)
	}
	next := Token{Token: strings.Repeat("2", 32), Address: "alice@example.com", ExpiresAt: clock.Now().Add(180 * 24 * time.Hour)}
	res, err := s.CompleteToken(ctx, TokenCompletion{Token: tok.Token, Action: TokenModerate, Next: &next,
		Notices: func(bool) []Notice { return []Notice{testNotice("mod@example.com")} }})
	if err != nil || !res.Changed {
		t.Fatalf("moderation step: %+v, %v", res, err)
	}
	mt, err := s.LiveToken(ctx, next.Token)
	if err != nil || mt.Kind != TokenModerate || mt.Data != TokenUnsubscribe || mt.ListID != l.ID {
		t.Fatalf("moderation token: %+v, %v", mt, err)
	}
	if ok, _ := s.IsMember(ctx, l.ID, "alice@example.com"); !ok {
		t.Fatal("member removed before a moderator approved")
	}
	pending, err := s.PendingTokens(ctx, emailList)
	if err != nil || len(pending) != 1 || pending[0].Token != next.Token {
		t.Errorf("pending: %+v, %v", pending, err)
	}
	if _, err := s.CompleteToken(ctx, TokenCompletion{Token: next.Token, Action: TokenSubscribe}); !errors.Is(err, ErrInvalid) {
		t.Errorf("moderated unsubscription approved as a subscription: %v", err)
	}
	res, err = s.CompleteToken(ctx, TokenCompletion{Token: next.Token, Action: TokenUnsubscribe, By: "moderator"})
	if err != nil || !res.Changed {
		t.Fatalf("approval: %+v, %v", res, err)
	}
	if ok, _ := s.IsMember(ctx, l.ID, "alice@example.com"); ok {
		t.Error("still a member after approval")
	}
	evs := eventsOf(t, s, EventMemberRemoved)
	if len(evs) != 1 || evs[0].Detail != "role=member by moderator" {
		t.Errorf("removal events: %+v", evs)
	}
}

func TestLeaveList(t *testing.T) {
	s, l, _ := emailFixture(t)
	ctx := context.Background()
	removed, err := s.LeaveList(ctx, l.ID, "ALICE@example.com", "email (leave)", func() []Notice { return []Notice{testNotice("alice@example.com")} })
	if err != nil || !removed {
		t.Fatalf("leave: %v, %v", removed, err)
	}
	if queuedTo(t, s, "alice@example.com") != 1 {
		t.Error("goodbye not queued")
	}
	removed, err = s.LeaveList(ctx, l.ID, "alice@example.com", "email (leave)", func() []Notice {
		t.Error("notices built for a non-member")
		return nil
	})
	if err != nil || removed {
		t.Errorf("second leave: %v, %v", removed, err)
	}
}

func TestOwnerMailRecipients(t *testing.T) {
	s, l, _ := emailFixture(t)
	ctx := context.Background()
	if _, err := s.AddMembers(ctx, emailList, "moderator", []NewMember{{Address: "Owner@example.com"}}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.OwnerMailRecipients(ctx, l.ID)
	if err != nil || len(got) != 2 || got[0] != "mod@example.com" || !strings.EqualFold(got[1], "owner@example.com") {
		t.Errorf("with moderators (one address as owner and moderator counts once): %v, %v", got, err)
	}
	if _, err := s.w.Exec(`UPDATE lists SET owner_mail_to_moderators = 0`); err != nil {
		t.Fatal(err)
	}
	got, err = s.OwnerMailRecipients(ctx, l.ID)
	if err != nil || !slices.Equal(got, []string{"owner@example.com"}) {
		t.Errorf("owners only: %v, %v", got, err)
	}
}

func TestFinishIntake(t *testing.T) {
	s, l, _ := emailFixture(t)
	ctx := context.Background()
	in, err := s.Intake(ctx, &IntakeMessage{MessageID: "<m1@example.com>", Sender: "bob@example.net",
		Body:       []byte("Message-ID: <m1@example.com>\r\nSubject: hi\r\n\r\nhello owners\r\n"),
		Recipients: []IntakeRecipient{{Recipient: "test-owner@lists.example.org", List: emailList, Kind: "owner"}}})
	if err != nil {
		t.Fatal(err)
	}
	d := FinishedIntake{IntakeID: in.IntakeIDs[0], ListID: l.ID, Result: "forwarded", MessageID: in.MessageID,
		Forward: []NewDelivery{{Recipient: "owner@example.com", EnvelopeFrom: "test-bounces@lists.example.org"}},
		Event:   EventOwnerMailForwarded, Address: "bob@example.net", Detail: "to 1"}
	if err := s.FinishIntake(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishIntake(ctx, d); !errors.Is(err, ErrAlreadyDone) {
		t.Errorf("second finish: %v, want ErrAlreadyDone", err)
	}
	ds, err := s.MessageDeliveries(ctx, in.MessageID)
	if err != nil || len(ds) != 1 {
		t.Fatalf("forwarded deliveries: %+v, %v", ds, err)
	}
	items, err := s.IntakeByMessageID(ctx, "m1@example.com")
	if err != nil || len(items) != 1 || items[0].State != IntakeDone || items[0].Result != "forwarded" {
		t.Errorf("intake by Message-ID: %+v, %v", items, err)
	}
	if evs := eventsOf(t, s, EventOwnerMailForwarded); len(evs) != 1 || evs[0].List != emailList {
		t.Errorf("events: %+v", evs)
	}
}
