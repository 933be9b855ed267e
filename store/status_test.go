package store

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

// statusFixture fills a store with one of everything Backlog and Status
// count, each state in a known number, and returns it with the time the
// oldest waiting delivery was queued.
func statusFixture(t *testing.T) (*Store, time.Time) {
	t.Helper()
	ctx := context.Background()
	s := openTest(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	listID, msgID := deliveryFixture(t, s)
	const list = "test@lists.example.org"
	_, err := s.CreateList(ctx, "other@lists.example.net")
	must(err)
	must(s.AddAlias(ctx, "lists.example.com", "lists.example.org"))
	_, err = s.AddMembers(ctx, list, "member", []NewMember{{Address: "a@example.com"}, {Address: "b@example.com"},
		{Address: "c@example.com"}, {Address: "d@example.com"}}, nil)
	must(err)
	_, err = s.AddMembers(ctx, list, "owner", []NewMember{{Address: "a@example.com"}}, nil)
	must(err)
	_, err = s.AddMembers(ctx, list, "moderator", []NewMember{{Address: "m@example.com"}, {Address: "n@example.com"}}, nil)
	must(err)
	must(s.SetMember(ctx, list, "d@example.com", "delivery_status", "by_user"))
	// b is bouncing but still receives mail; c was disabled by bounces.
	_, err = s.w.Exec(`UPDATE members SET bounce_score = 2 WHERE address = 'b@example.com' AND role = 'member'`)
	must(err)
	_, err = s.w.Exec(`UPDATE members SET bounce_score = 5, delivery_status = 'by_bounces' WHERE address = 'c@example.com'`)
	must(err)

	// Seven deliveries: 2 queued, 1 deferred, 1 sending, 2 sent, 1 failed.
	must(s.QueueDeliveries(ctx, msgID, listID, verpRows(7)))
	states := []string{"queued", "queued", "deferred", "sending", "sent", "sent", "failed"}
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// The oldest waiting row is the deferred one; an older sent row must
	// not count.
	created := []time.Duration{3 * time.Hour, 2 * time.Hour, time.Hour, 0, -time.Hour, 5 * time.Hour, 4 * time.Hour}
	rows, err := s.r.Query("SELECT id FROM deliveries ORDER BY id")
	must(err)
	var ids []int64
	for rows.Next() {
		var id int64
		must(rows.Scan(&id))
		ids = append(ids, id)
	}
	must(rows.Err())
	rows.Close()
	if len(ids) != len(states) {
		t.Fatalf("%d deliveries queued, want %d", len(ids), len(states))
	}
	for i, id := range ids {
		_, err := s.w.Exec("UPDATE deliveries SET state = ?, created_at = ? WHERE id = ?",
			states[i], FormatTime(base.Add(created[i])), id)
		must(err)
	}

	// Two posts held, one already decided; one intake row new, one done.
	for i, state := range []string{"held", "held", "approved"} {
		_, err := s.w.Exec(`INSERT INTO held (message_id, list_id, sender, subject, state, held_at) VALUES (?, ?, 'x@example.com', 's', ?, ?)`,
			msgID, listID, state, FormatTime(base.Add(time.Duration(i)*time.Minute)))
		must(err)
	}
	in, err := s.Intake(ctx, intakeMsg("z@example.com", post(list), IntakeRecipient{Recipient: "test-request@lists.example.org", List: list, Kind: "request"}))
	must(err)
	must(s.MarkIntake(ctx, in.IntakeIDs[1], "done", "test"))
	return s, base.Add(time.Hour)
}

func TestBacklog(t *testing.T) {
	ctx := context.Background()
	empty, err := openTest(t).Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if empty != (Backlog{}) {
		t.Errorf("empty store: backlog %+v, want zero", empty)
	}

	s, oldest := statusFixture(t)
	got, err := s.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Backlog{Queued: 2, Deferred: 1, Sending: 1, OldestWaiting: oldest, Held: 2, IntakePending: 1}
	if got != want {
		t.Errorf("backlog\n got %+v\nwant %+v", got, want)
	}
}

// TestBacklogUsesIndexes guards the promise that a scrape costs what is
// waiting, not the history: no query may scan a table without an index.
func TestBacklogUsesIndexes(t *testing.T) {
	s := openTest(t)
	for _, q := range []string{backlogDeliveriesSQL, backlogCountsSQL} {
		plan := queryPlan(t, s, q)
		used := 0
		for _, step := range plan {
			if !strings.HasPrefix(step, "SCAN ") && !strings.HasPrefix(step, "SEARCH ") || step == "SCAN CONSTANT ROW" {
				continue
			}
			if !strings.Contains(step, " INDEX ") {
				t.Errorf("plan step %q reads a table without an index\nquery: %s\nplan: %q", step, q, plan)
			}
			used++
		}
		if used == 0 {
			t.Errorf("no table access in plan %q of %s", plan, q)
		}
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	empty, err := openTest(t).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*empty, Status{}) {
		t.Errorf("empty store: status %+v, want zero", *empty)
	}

	s, _ := statusFixture(t)
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byState := map[string]int64{}
	for _, q := range st.Queue {
		byState[q.State] = q.Deliveries
	}
	wantQueue := map[string]int64{"queued": 2, "deferred": 1, "sending": 1, "sent": 2, "failed": 1}
	for state, n := range wantQueue {
		if byState[state] != n {
			t.Errorf("queue %s = %d, want %d (all: %v)", state, byState[state], n, byState)
		}
	}
	if len(byState) != len(wantQueue) {
		t.Errorf("queue states %v, want %v", byState, wantQueue)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"held", st.Held, int64(2)},
		{"oldest held", st.OldestHeld, "2026-03-01T12:00:00.000Z"},
		{"intake pending", st.IntakePending, int64(1)},
		{"oldest intake set", st.OldestIntake != "", true},
		{"bouncing", st.Bouncing, int64(2)},
		{"disabled by bounces", st.DisabledByBounces, int64(1)},
		{"domains", st.Domains, int64(3)},
		{"lists", st.Lists, int64(2)},
		{"members", st.Members, int64(4)},
		{"receiving", st.Receiving, int64(2)},
		{"owners", st.Owners, int64(1)},
		{"moderators", st.Moderators, int64(2)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
