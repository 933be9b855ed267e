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
