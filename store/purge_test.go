package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// purgeFixture is a store on a fake clock with one list. Messages are
// stored at times set on the clock; the clock is then moved to now.
type purgeFixture struct {
	t     *testing.T
	s     *Store
	list  *List
	clock *testenv.Clock
}

func newPurgeFixture(t *testing.T) *purgeFixture {
	t.Helper()
	s := openTest(t)
	clock := testenv.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	s.Now = clock.Now
	l, err := s.CreateList(context.Background(), emailList)
	if err != nil {
		t.Fatal(err)
	}
	return &purgeFixture{t: t, s: s, list: l, clock: clock}
}

// exec runs a statement on the writer, for setting states directly.
func (f *purgeFixture) exec(q string, args ...any) {
	f.t.Helper()
	if _, err := f.s.w.Exec(q, args...); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

// message stores a post received at `at`, its intake row in state
// intakeState, and n deliveries in the given states (cycled).
func (f *purgeFixture) message(at time.Time, intakeState string, n int, states ...string) int64 {
	f.t.Helper()
	ctx := context.Background()
	saved := f.clock.Now()
	f.clock.Set(at)
	defer f.clock.Set(saved)
	in, err := f.s.Intake(ctx, intakeMsg("alice@example.com", post(emailList)))
	if err != nil {
		f.t.Fatal(err)
	}
	if intakeState != IntakeNew {
		if err := f.s.MarkIntake(ctx, in.IntakeIDs[0], intakeState, "test"); err != nil {
			f.t.Fatal(err)
		}
	}
	if n > 0 {
		if err := f.s.QueueDeliveries(ctx, in.MessageID, f.list.ID, verpRows(n)); err != nil {
			f.t.Fatal(err)
		}
		for i := range n {
			f.exec(`UPDATE deliveries SET state = ? WHERE id = (SELECT id FROM deliveries WHERE message_id = ? ORDER BY id LIMIT 1 OFFSET ?)`,
				states[i%len(states)], in.MessageID, i)
		}
	}
	return in.MessageID
}

func (f *purgeFixture) count(q string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.s.r.QueryRow(q, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// rowsOf counts a message's rows in every table that refers to it.
func (f *purgeFixture) rowsOf(id int64) map[string]int64 {
	f.t.Helper()
	out := map[string]int64{}
	for _, table := range []string{"messages WHERE id", "deliveries WHERE message_id", "intake WHERE message_id",
		"held WHERE message_id", "posts WHERE message_id", "bounces WHERE message_id"} {
		out[strings.Fields(table)[0]] = f.count("SELECT count(*) FROM "+table+" = ?", id)
	}
	return out
}

// TestPurge runs one purge over messages in every state and checks each
// was kept or removed whole, with the foreign keys doing the rest.
func TestPurge(t *testing.T) {
	// Small pages, so that kept messages are walked past across pages.
	defer func(n int) { purgePage = n }(purgePage)
	purgePage = 2
	const batch = 4
	f := newPurgeFixture(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	cutoff := now.Add(-7 * 24 * time.Hour)
	old := cutoff.Add(-2 * 24 * time.Hour)
	recent := cutoff.Add(time.Hour)

	cases := []struct {
		name  string
		setup func() int64
		purge bool
	}{
		{"recent finished post", func() int64 { return f.message(recent, IntakeDone, 3, DeliverySent) }, false},
		{"old post, more deliveries than a batch, with a bounce and a decided hold", func() int64 {
			id := f.message(old, IntakeDone, 3*batch+1, DeliverySent, DeliverySent, DeliveryFailed)
			f.exec(`INSERT INTO posts (list_id, message_id) VALUES (?, ?)`, f.list.ID, id)
			f.exec(`INSERT INTO held (message_id, list_id, state) VALUES (?, ?, 'approved')`, id, f.list.ID)
			f.exec(`INSERT INTO bounces (list_id, address, kind, message_id) VALUES (?, 'm1@example1.com', 'permanent', ?)`, f.list.ID, id)
			return id
		}, true},
		{"old post, received a second before the cutoff", func() int64 { return f.message(cutoff.Add(-time.Second), IntakeDone, 1, DeliverySent) }, true},
		{"old post, exactly at the cutoff", func() int64 { return f.message(cutoff, IntakeDone, 1, DeliverySent) }, false},
		{"old post, one delivery deferred", func() int64 {
			return f.message(old, IntakeDone, 2*batch+1, DeliverySent, DeliverySent, DeliverySent, DeliverySent, DeliveryDeferred)
		}, false},
		{"old post, one delivery queued", func() int64 { return f.message(old, IntakeDone, 3, DeliveryQueued, DeliverySent) }, false},
		{"old post, one delivery sending", func() int64 { return f.message(old, IntakeDone, 3, DeliverySent, DeliverySending) }, false},
		{"old message, intake not processed", func() int64 { return f.message(old, IntakeNew, 0) }, false},
		{"old message, intake failed", func() int64 { return f.message(old, IntakeFailed, 0) }, true},
		{"old post, held for a moderator", func() int64 {
			id := f.message(old, IntakeDone, 0)
			f.exec(`INSERT INTO held (message_id, list_id, state) VALUES (?, ?, 'held')`, id, f.list.ID)
			return id
		}, false},
		{"old post, rejected by a moderator", func() int64 {
			id := f.message(old, IntakeDone, 0)
			f.exec(`INSERT INTO held (message_id, list_id, state) VALUES (?, ?, 'rejected')`, id, f.list.ID)
			return id
		}, true},
		{"old post, all deliveries failed", func() int64 { return f.message(old, IntakeDone, 2, DeliveryFailed) }, true},
	}
	ids := make([]int64, len(cases))
	before := make([]map[string]int64, len(cases))
	var want PurgeStats
	for i, c := range cases {
		ids[i] = c.setup()
		before[i] = f.rowsOf(ids[i])
		if c.purge {
			want.add(PurgeStats{Messages: 1, Deliveries: before[i]["deliveries"], Intake: before[i]["intake"],
				Held: before[i]["held"], Posts: before[i]["posts"]})
		}
	}
	// A cleaned copy still being delivered whose original is finished:
	// the original goes, the post's link to it becomes NULL.
	orig := f.message(old, IntakeDone, 0)
	copyID := f.message(old, IntakeDone, 2, DeliveryQueued)
	f.exec(`INSERT INTO posts (list_id, message_id, original_id) VALUES (?, ?, ?)`, f.list.ID, copyID, orig)
	want.add(PurgeStats{Messages: 1, Intake: 1})

	f.clock.Set(now)
	got, err := f.s.Purge(ctx, cutoff, batch)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Purge = %+v, want %+v", got, want)
	}
	for i, c := range cases {
		after := f.rowsOf(ids[i])
		if c.purge {
			for table, n := range after {
				if n != 0 {
					t.Errorf("%s: %d %s row(s) left after purge", c.name, n, table)
				}
			}
		} else if fmt.Sprint(after) != fmt.Sprint(before[i]) {
			t.Errorf("%s: kept message changed: rows %v, were %v", c.name, after, before[i])
		}
	}
	// Bounces are history: the row stays, without its message.
	if n := f.count(`SELECT count(*) FROM bounces WHERE message_id IS NULL AND address = 'm1@example1.com'`); n != 1 {
		t.Errorf("bounce of a purged message: %d rows with message_id NULL, want 1", n)
	}
	if n := f.count(`SELECT count(*) FROM messages WHERE id = ?`, orig); n != 0 {
		t.Errorf("finished original of a pending copy kept")
	}
	var origRef sql.NullInt64
	if err := f.s.r.QueryRow(`SELECT original_id FROM posts WHERE message_id = ?`, copyID).Scan(&origRef); err != nil || origRef.Valid {
		t.Errorf("post of the pending copy: original_id %v, %v; want NULL", origRef, err)
	}
	if n := f.count(`SELECT count(*) FROM deliveries WHERE message_id = ?`, copyID); n != 2 {
		t.Errorf("pending copy has %d deliveries, want 2", n)
	}

	again, err := f.s.Purge(ctx, cutoff, batch)
	if err != nil || again.Any() {
		t.Errorf("second purge = %+v, %v; want nothing", again, err)
	}
}

// TestPurgeRechecksBeforeDeleting covers a message that became pending
// after Purge found it idle (`postlist queue retry` queued a failed row
// again): its finished deliveries may go, but the message and the row to
// send stay.
func TestPurgeRechecksBeforeDeleting(t *testing.T) {
	f := newPurgeFixture(t)
	old := f.clock.Now()
	id := f.message(old, IntakeDone, 7, DeliverySent, DeliverySent, DeliveryFailed)
	if _, err := f.s.RetryDeliveries(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st, err := f.s.purgeMessage(context.Background(), id, 2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 0 || st.Deliveries != 5 {
		t.Errorf("purgeMessage = %+v, want the 5 sent deliveries only", st)
	}
	rows := f.rowsOf(id)
	if rows["messages"] != 1 || rows["intake"] != 1 || rows["deliveries"] != 2 {
		t.Errorf("rows left %v, want the message, its intake row and the 2 requeued deliveries", rows)
	}
	if n := f.count(`SELECT count(*) FROM deliveries WHERE message_id = ? AND state = 'queued'`, id); n != 2 {
		t.Errorf("%d queued deliveries left, want 2", n)
	}
}

func TestPurgeExpiredTokens(t *testing.T) {
	f := newPurgeFixture(t)
	ctx := context.Background()
	now := f.clock.Now()
	for _, tok := range []Token{
		{Token: strings.Repeat("a", 32), Kind: TokenSubscribe, Address: "gone@example.net", ExpiresAt: now.Add(time.Hour)},
		{Token: strings.Repeat("b", 32), Kind: TokenModerate, Data: TokenSubscribe, Address: "gone2@example.net", ExpiresAt: now.Add(2 * time.Hour)},
		{Token: strings.Repeat("c", 32), Kind: TokenHeld, Address: "mod@example.com", ExpiresAt: now.Add(time.Hour)},
		{Token: strings.Repeat("d", 32), Kind: TokenSubscribe, Address: "live@example.net", ExpiresAt: now.Add(72 * time.Hour)},
		{Token: strings.Repeat("e", 32), Kind: TokenHeld, Address: "mod@example.com", Data: "live", ExpiresAt: now.Add(72 * time.Hour)},
	} {
		tok.ListID = f.list.ID
		if err := f.s.AddToken(ctx, tok, nil); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Add(2 * time.Hour)
	got, err := f.s.Purge(ctx, now.Add(-24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got != (PurgeStats{Tokens: 3}) {
		t.Errorf("Purge = %+v, want 3 tokens", got)
	}
	rows, err := f.s.r.Query(`SELECT token FROM tokens ORDER BY token`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := scanStrings(rows)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{strings.Repeat("d", 32), strings.Repeat("e", 32)}; fmt.Sprint(left) != fmt.Sprint(want) {
		t.Errorf("tokens left %v, want %v", left, want)
	}
	// Expired requests are recorded as for the command processor's purge.
	if evs := eventsOf(t, f.s, EventTokenExpired); len(evs) != 2 {
		t.Errorf("%d token_expired events, want 2: %+v", len(evs), evs)
	}
}

func TestPurgeStopsWithContext(t *testing.T) {
	f := newPurgeFixture(t)
	id := f.message(f.clock.Now(), IntakeDone, 3, DeliverySent)
	f.clock.Add(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.s.Purge(ctx, f.clock.Now(), 1); err == nil {
		t.Error("Purge with an ended context succeeded")
	}
	if rows := f.rowsOf(id); rows["messages"] != 1 || rows["deliveries"] != 3 {
		t.Errorf("rows after a cancelled purge: %v", rows)
	}
}

// TestPurgeQueriesUseIndexes keeps the purge from reading the delivery
// history or the message bodies in full.
func TestPurgeQueriesUseIndexes(t *testing.T) {
	s := openTest(t)
	for _, c := range []struct {
		q    string
		args []any
	}{
		{pendingSQL, nil},
		{oldMessagesSQL, []any{"", "", 0, 1}},
		{purgeDeliveriesSQL, []any{1, 1}},
		{stillPendingSQL, []any{1}},
	} {
		plan := queryPlan(t, s, c.q, c.args...)
		used := 0
		for _, step := range plan {
			if !strings.HasPrefix(step, "SCAN ") && !strings.HasPrefix(step, "SEARCH ") || step == "SCAN CONSTANT ROW" {
				continue
			}
			// A SEARCH reads what its key selects; a SCAN reads a whole
			// table or index, which only the partial index of waiting
			// deliveries is small enough for.
			if !strings.Contains(step, " INDEX ") && !strings.Contains(step, "PRIMARY KEY") ||
				strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, "INDEX deliveries_due") {
				t.Errorf("plan step %q reads more than it needs\nquery: %s\nplan: %q", step, c.q, plan)
			}
			used++
		}
		if used == 0 {
			t.Errorf("no table access in plan %q of %s", plan, c.q)
		}
	}
}
