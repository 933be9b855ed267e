package store

import (
	"context"
	"testing"
	"time"
)

// TestIDsNeverReused: once the newest messages, intake and held rows are
// gone (purged, or held posts removed with their list), new rows get ids
// above every id ever used, so that "held #2" from an old notice, or a
// cache keyed by message id, can never meet a different message.
func TestIDsNeverReused(t *testing.T) {
	f := newPurgeFixture(t)
	ctx := context.Background()
	old := f.clock.Now().Add(-48 * time.Hour)
	var last int64
	for range 3 {
		last = f.message(old, IntakeDone, 2, DeliverySent)
	}
	lastIntake := f.count("SELECT max(id) FROM intake")
	st, err := f.s.Purge(ctx, f.clock.Now().Add(-time.Hour), 0)
	if err != nil || st.Messages != 3 {
		t.Fatalf("purge: %+v, %v; want the 3 messages gone", st, err)
	}
	next := f.message(f.clock.Now(), IntakeNew, 0)
	if next <= last {
		t.Errorf("message id %d after purging up to %d: reused", next, last)
	}
	if id := f.count("SELECT max(id) FROM intake"); id <= lastIntake {
		t.Errorf("intake id %d after purging up to %d: reused", id, lastIntake)
	}

	// Held rows: hold a post on a second list, remove that list (its held
	// rows go with it), hold another.
	other, err := f.s.CreateList(ctx, "other@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	hold := func(listID int64) int64 {
		t.Helper()
		in, err := f.s.Intake(ctx, intakeMsg("x@example.com", post(emailList)))
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.s.RecordPost(ctx, PostDecision{IntakeID: in.IntakeIDs[0], ListID: listID, MessageID: in.MessageID,
			Action: ActionHold, Rule: "test", Reason: "test", Sender: "x@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		return res.HeldID
	}
	hold(f.list.ID)
	gone := hold(other.ID)
	if err := f.s.RemoveList(ctx, other.Address); err != nil {
		t.Fatal(err)
	}
	if f.count("SELECT count(*) FROM held WHERE id = ?", gone) != 0 {
		t.Fatalf("held #%d still there after its list was removed", gone)
	}
	if id := hold(f.list.ID); id <= gone {
		t.Errorf("held id %d after #%d was removed: reused", id, gone)
	}
}

// TestListAndMemberIDsNeverReused: one-click unsubscribe links are bound
// to list and member rows, so removing the newest list (its members go
// with it) or the newest subscription must not hand those ids out again.
func TestListAndMemberIDsNeverReused(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	add := func(list, addr string) int64 {
		t.Helper()
		if _, err := s.AddMembers(ctx, list, "member", []NewMember{{Address: addr}}, nil); err != nil {
			t.Fatal(err)
		}
		l, err := s.GetList(ctx, list)
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := s.Subscription(ctx, l.ID, addr)
		if err != nil || id == 0 {
			t.Fatalf("Subscription(%s, %s) = %d, %v", list, addr, id, err)
		}
		return id
	}
	keep, err := s.CreateList(ctx, "keep@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	add(keep.Address, "a@example.com")
	gone, err := s.CreateList(ctx, "gone@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	goneMember := add(gone.Address, "a@example.com")
	if err := s.RemoveList(ctx, gone.Address); err != nil {
		t.Fatal(err)
	}
	again, err := s.CreateList(ctx, "gone@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID <= gone.ID {
		t.Errorf("re-created list got id %d, the removed one had %d: reused", again.ID, gone.ID)
	}
	if again.ListID != gone.ListID {
		t.Fatalf("List-Id %q, was %q: the test needs the same name", again.ListID, gone.ListID)
	}
	if id := add(again.Address, "a@example.com"); id <= goneMember {
		t.Errorf("member id %d after #%d went with its list: reused", id, goneMember)
	}

	// Remove then re-add the newest subscription.
	last := add(keep.Address, "b@example.com")
	if _, err := s.RemoveMembers(ctx, keep.Address, "member", []string{"b@example.com"}); err != nil {
		t.Fatal(err)
	}
	if id := add(keep.Address, "b@example.com"); id <= last {
		t.Errorf("re-subscription got member id %d, the removed one had %d: reused", id, last)
	}
}
