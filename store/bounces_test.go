package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// bounceIntake stores a bounce message for the list's -bounces address.
func bounceIntake(t *testing.T, s *Store) IntakeResult {
	t.Helper()
	in, err := s.Intake(context.Background(), &IntakeMessage{Sender: "",
		Body:       []byte("From: MAILER-DAEMON@example.com\r\nSubject: Undelivered Mail\r\n\r\nreport\r\n"),
		Recipients: []IntakeRecipient{{Recipient: "test-bounces+alice=example.com@lists.example.org", List: emailList, Kind: "bounces", Extension: "alice=example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestRecordBouncesAppliesVerdictAtomically(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	in := bounceIntake(t, s)
	at := clock.Now()
	var seen BounceState
	b := BounceBatch{IntakeID: in.IntakeIDs[0], Result: "permanent bounce for alice@example.com", ListID: l.ID, At: at,
		Bounces: []Bounce{{
			ListID: l.ID, Address: "alice@example.com", Kind: BouncePermanent, Status: "5.1.1", Diagnostic: "550 5.1.1 no such user",
			MessageID: in.MessageID, At: at,
			Decide: func(st BounceState) BounceVerdict {
				seen = st
				return BounceVerdict{Apply: true, Scored: true, Score: 5, LastBounceAt: at, Disable: true,
					Event: EventBounceScored, Detail: "score 5", Notices: []Notice{testNotice("owner@example.com")}}
			},
		}, {
			ListID: l.ID, Address: "stranger@example.net", Kind: BouncePolicy, Status: "5.7.26", At: at,
			Event: EventBounceRecorded, Detail: "not scored: policy",
		}},
	}
	if err := s.RecordBounces(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !seen.Found || seen.Address != "alice@example.com" || seen.DeliveryStatus != "enabled" || !seen.LastBounceAt.IsZero() {
		t.Errorf("Decide saw %+v", seen)
	}
	rec, err := s.MemberBounceRecord(ctx, l.ID, "alice@example.com")
	if err != nil || rec.Score != 5 || rec.DeliveryStatus != "by_bounces" || rec.LastBounceAt != FormatTime(at) || rec.WarningsSent != 0 {
		t.Errorf("member record: %+v, %v", rec, err)
	}
	rows, err := s.BounceRows(ctx, emailList, "")
	if err != nil || len(rows) != 2 {
		t.Fatalf("bounce rows: %+v, %v", rows, err)
	}
	if r := rows[0]; !r.Scored || r.Status != "5.1.1" || r.Kind != BouncePermanent || r.MessageID != in.MessageID {
		t.Errorf("scored row: %+v", r)
	}
	if r := rows[1]; r.Scored || r.Kind != BouncePolicy {
		t.Errorf("policy row: %+v", r)
	}
	for kind, want := range map[string]int{EventBounceScored: 1, EventDeliveryDisabled: 1, EventBounceRecorded: 1} {
		if n := len(eventsOf(t, s, kind)); n != want {
			t.Errorf("%s events: %d, want %d", kind, n, want)
		}
	}
	if queuedTo(t, s, "owner@example.com") != 1 {
		t.Error("owners' notice not queued")
	}
	if err := s.RecordBounces(ctx, b); !errors.Is(err, ErrAlreadyDone) {
		t.Errorf("processing the same intake row twice: %v", err)
	}
	if rows, _ := s.BounceRows(ctx, emailList, ""); len(rows) != 2 {
		t.Errorf("a refused second processing left %d rows", len(rows))
	}
}

func TestRecordBouncesRefusesScoringANonMember(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	in := bounceIntake(t, s)
	err := s.RecordBounces(ctx, BounceBatch{IntakeID: in.IntakeIDs[0], ListID: l.ID, At: clock.Now(), Bounces: []Bounce{{
		ListID: l.ID, Address: "nobody@example.net", Kind: BouncePermanent, At: clock.Now(),
		Decide: func(BounceState) BounceVerdict { return BounceVerdict{Apply: true, Score: 1} },
	}}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("verdict applied to a non-member: %v, want ErrInvalid", err)
	}
	if items, _ := s.PendingIntake(ctx, 10, "bounces"); len(items) != 1 {
		t.Error("the failed transaction still marked the intake row")
	}
}

func TestApplyRecordedBounce(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	// What the deliverer writes for a 5xx in its own session.
	at := clock.Now().Add(-time.Hour)
	if _, err := s.w.Exec(`INSERT INTO bounces (list_id, address, kind, scored, diagnostic, received_at) VALUES (?, 'alice@example.com', 'permanent', 1, '550 5.1.1 unknown', ?)`,
		l.ID, FormatTime(at)); err != nil {
		t.Fatal(err)
	}
	bs, err := s.UnprocessedBounces(ctx, 10)
	if err != nil || len(bs) != 1 || !bs[0].Scored || !bs[0].ReceivedAt.Equal(at) {
		t.Fatalf("unprocessed: %+v, %v", bs, err)
	}
	err = s.ApplyBounce(ctx, bs[0], bs[0].ReceivedAt, func(st BounceState) BounceVerdict {
		return BounceVerdict{Apply: true, Scored: true, Score: st.Score + 1, LastBounceAt: at, Event: EventBounceScored, Detail: "score 1"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.MemberBounceRecord(ctx, l.ID, "alice@example.com"); rec.Score != 1 {
		t.Errorf("score after apply: %+v", rec)
	}
	if bs, _ := s.UnprocessedBounces(ctx, 10); len(bs) != 0 {
		t.Errorf("still unprocessed: %+v", bs)
	}
	if err := s.ApplyBounce(ctx, RecordedBounce{ID: 1, ListID: l.ID, Address: "alice@example.com"}, at, nil); !errors.Is(err, ErrAlreadyDone) {
		t.Errorf("second apply: %v", err)
	}
}

func TestBounceWarningAndRemoval(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	if _, err := s.w.Exec(`UPDATE members SET delivery_status = 'by_bounces', bounce_score = 5 WHERE address = 'alice@example.com'`); err != nil {
		t.Fatal(err)
	}
	ms, err := s.DisabledByBounces(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("disabled: %+v, %v", ms, err)
	}
	m := ms[0]
	if m.List != emailList || m.Warnings != 3 || m.Interval != "7d" || !m.LastWarningAt.IsZero() || m.Score != 5 {
		t.Errorf("disabled member: %+v", m)
	}
	ok, err := s.RecordBounceWarning(ctx, m, clock.Now(), testNotice("alice@example.com"))
	if err != nil || !ok {
		t.Fatalf("warn: %v, %v", ok, err)
	}
	// A pass that read the member before this warning must not warn again.
	ok, err = s.RecordBounceWarning(ctx, m, clock.Now(), testNotice("alice@example.com"))
	if err != nil || ok {
		t.Errorf("stale warning: %v, %v", ok, err)
	}
	ms, _ = s.DisabledByBounces(ctx)
	if ms[0].WarningsSent != 1 || !ms[0].LastWarningAt.Equal(clock.Now()) {
		t.Errorf("after a warning: %+v", ms[0])
	}
	if evs := eventsOf(t, s, EventBounceWarning); len(evs) != 1 || evs[0].Detail != "warning 1 of 3" {
		t.Errorf("warning events: %+v", evs)
	}
	// Lists that stopped processing bounces leave their members alone.
	if err := s.SetListSetting(ctx, emailList, "process_bounces", "no"); err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.DisabledByBounces(ctx); len(ms) != 0 {
		t.Errorf("process_bounces off, still listed: %+v", ms)
	}
	if err := s.SetListSetting(ctx, emailList, "process_bounces", "yes"); err != nil {
		t.Fatal(err)
	}
	removed, err := s.RemoveBouncingMember(ctx, ms[0], clock.Now(), []Notice{testNotice("owner@example.com")})
	if err != nil || !removed {
		t.Fatalf("remove: %v, %v", removed, err)
	}
	if ok, _ := s.IsMember(ctx, l.ID, "alice@example.com"); ok {
		t.Error("still a member")
	}
	evs := eventsOf(t, s, EventMemberRemoved)
	if len(evs) != 1 || !strings.HasPrefix(evs[0].Detail, "role=member by bounces") {
		t.Errorf("removal events: %+v", evs)
	}
	if removed, _ := s.RemoveBouncingMember(ctx, ms[0], clock.Now(), nil); removed {
		t.Error("removed twice")
	}
}

func TestRemoveBouncingMemberLeavesReenabledMember(t *testing.T) {
	s, _, clock := emailFixture(t)
	ctx := context.Background()
	if _, err := s.w.Exec(`UPDATE members SET delivery_status = 'by_bounces' WHERE address = 'alice@example.com'`); err != nil {
		t.Fatal(err)
	}
	ms, _ := s.DisabledByBounces(ctx)
	if err := s.SetMember(ctx, emailList, "alice@example.com", "delivery_status", "enabled"); err != nil {
		t.Fatal(err)
	}
	if removed, err := s.RemoveBouncingMember(ctx, ms[0], clock.Now(), nil); err != nil || removed {
		t.Errorf("re-enabled member removed: %v, %v", removed, err)
	}
	if ok, err := s.RecordBounceWarning(ctx, ms[0], clock.Now(), testNotice("alice@example.com")); err != nil || ok {
		t.Errorf("re-enabled member warned: %v, %v", ok, err)
	}
}

func TestEventLogFilters(t *testing.T) {
	s, _, _ := emailFixture(t)
	ctx := context.Background()
	all, err := s.EventLog(ctx, emailList, "")
	if err != nil || len(all) < 4 {
		t.Fatalf("events: %+v, %v", all, err)
	}
	created, err := s.EventLog(ctx, emailList, "", "list_created", "no_such_kind")
	if err != nil || len(created) != 1 || created[0].Kind != "list_created" {
		t.Errorf("by kind: %+v, %v", created, err)
	}
	none, err := s.EventLog(ctx, "other@lists.example.org", "")
	if err != nil || len(none) != 0 {
		t.Errorf("other list: %+v, %v", none, err)
	}
}
