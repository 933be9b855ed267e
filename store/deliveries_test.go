package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// deliveryFixture makes a list and a stored message to queue deliveries of.
func deliveryFixture(t *testing.T, s *Store) (listID, msgID int64) {
	t.Helper()
	ctx := context.Background()
	l, err := s.CreateList(ctx, "test@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	msgID, err = s.StoreMessage(ctx, "alice@example.com", []byte("Message-ID: <m1@example.com>\r\nSubject: hi\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return l.ID, msgID
}

func verpRows(n int) []NewDelivery {
	rows := make([]NewDelivery, n)
	for i := range rows {
		rows[i] = NewDelivery{
			Recipient:    fmt.Sprintf("m%d@example%d.com", i, i%3),
			EnvelopeFrom: fmt.Sprintf("test-bounces+m%d=example%d.com@lists.example.org", i, i%3),
		}
	}
	return rows
}

func TestStoreMessageKeepsMessageID(t *testing.T) {
	s := openTest(t)
	_, id := deliveryFixture(t, s)
	var hdr, sender string
	if err := s.r.QueryRow("SELECT message_id, sender FROM messages WHERE id = ?", id).Scan(&hdr, &sender); err != nil {
		t.Fatal(err)
	}
	if hdr != "<m1@example.com>" || sender != "alice@example.com" {
		t.Errorf("stored message_id %q sender %q", hdr, sender)
	}
	if _, err := s.StoreMessage(context.Background(), "", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty body: err = %v, want ErrInvalid", err)
	}
}

func TestQueueDeliveriesIsIdempotent(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	list, msg := deliveryFixture(t, s)
	rows := verpRows(5)
	if err := s.QueueDeliveries(ctx, msg, list, rows); err != nil {
		t.Fatal(err)
	}
	// A fan-out repeated after a crash must not queue anyone twice.
	if err := s.QueueDeliveries(ctx, msg, list, append(rows, NewDelivery{Recipient: "new@example.com", EnvelopeFrom: "test-bounces@lists.example.org"})); err != nil {
		t.Fatal(err)
	}
	ds, err := s.MessageDeliveries(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 6 {
		t.Fatalf("got %d rows, want 6", len(ds))
	}
	for _, d := range ds {
		if d.State != DeliveryQueued || d.Attempts != 0 {
			t.Errorf("%s: state %s attempts %d", d.Recipient, d.State, d.Attempts)
		}
	}
}

// TestQueueDeliveriesQueuesBadRowsWithTheGood: one undeliverable address
// in a fan-out must not make the whole fan-out (and the post) fail; the
// rows are queued, for the deliverer to fail one by one.
func TestQueueDeliveriesQueuesBadRowsWithTheGood(t *testing.T) {
	s := openTest(t)
	list, msg := deliveryFixture(t, s)
	rows := []NewDelivery{
		{Recipient: "good1@example.com", EnvelopeFrom: "x@y"},
		{Recipient: "", EnvelopeFrom: "x@y"},
		{Recipient: "a@b\r\nRCPT TO:<c@d>", EnvelopeFrom: "x@y"},
		{Recipient: "a@b", EnvelopeFrom: "x@y>"},
		{Recipient: `"a<b"@example.com`, EnvelopeFrom: `"test-bounces+a<b=example.com"@lists.example.org`},
		{Recipient: `"a>b"@example.com`, EnvelopeFrom: "x@y"},
		{Recipient: "good2@example.com", EnvelopeFrom: "x@y"},
	}
	if err := s.QueueDeliveries(context.Background(), msg, list, rows); err != nil {
		t.Fatalf("one bad row failed the whole batch: %v", err)
	}
	if err := s.QueueDeliveries(context.Background(), msg, list, []NewDelivery{{Recipient: "c@d", EnvelopeFrom: "x@y\r\nRSET"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("an envelope sender with a line break: err = %v, want ErrInvalid", err)
	}
	ds, err := s.MessageDeliveries(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range ds {
		got[d.Recipient] = d.State
	}
	for _, r := range rows {
		if got[r.Recipient] != DeliveryQueued {
			t.Errorf("%q: state %q, want queued", r.Recipient, got[r.Recipient])
		}
	}
}

func TestQueueDeliveriesGroupsBulkRowsByDomain(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	list, msg := deliveryFixture(t, s)
	var rows []NewDelivery
	for i := range 9 {
		rows = append(rows, NewDelivery{Recipient: fmt.Sprintf("u%d@d%d.example", i, i%3), EnvelopeFrom: "test-bounces@lists.example.org"})
	}
	if err := s.QueueDeliveries(ctx, msg, list, rows); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimDeliveries(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var domains []string
	for _, d := range got {
		domains = append(domains, domainOf(d.Recipient))
	}
	// Claim order follows insertion order, so each domain's rows are
	// contiguous and a claim boundary splits at most one domain.
	want := []string{"d0.example", "d0.example", "d0.example", "d1.example", "d1.example", "d1.example", "d2.example", "d2.example", "d2.example"}
	if !slices.Equal(domains, want) {
		t.Errorf("claim order by domain = %v, want %v", domains, want)
	}
}

func TestClaimDeliveries(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	list, msg := deliveryFixture(t, s)
	if err := s.QueueDeliveries(ctx, msg, list, verpRows(10)); err != nil {
		t.Fatal(err)
	}
	// Push two rows into the future: they are not due.
	future := FormatTime(time.Now().Add(time.Hour))
	if _, err := s.w.Exec("UPDATE deliveries SET state = 'deferred', next_attempt_at = ? WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT 2)", future); err != nil {
		t.Fatal(err)
	}
	first, err := s.ClaimDeliveries(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.ClaimDeliveries(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	third, err := s.ClaimDeliveries(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 5 || len(second) != 3 || len(third) != 0 {
		t.Fatalf("claimed %d, %d, %d rows; want 5, 3, 0", len(first), len(second), len(third))
	}
	seen := map[int64]bool{}
	for _, d := range append(first, second...) {
		if seen[d.ID] {
			t.Errorf("row %d claimed twice", d.ID)
		}
		seen[d.ID] = true
		if d.ListID != list || d.List != "test@lists.example.org" || d.MessageID != msg {
			t.Errorf("row %d: list %d %q message %d", d.ID, d.ListID, d.List, d.MessageID)
		}
		if d.CreatedAt.IsZero() || !strings.HasPrefix(d.EnvelopeFrom, "test-bounces+") {
			t.Errorf("row %d: created %v from %q", d.ID, d.CreatedAt, d.EnvelopeFrom)
		}
	}
	sum, err := s.QueueSummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, q := range sum {
		counts[q.State] = q.Deliveries
	}
	if counts["sending"] != 8 || counts["deferred"] != 2 {
		t.Errorf("summary %v, want 8 sending and 2 deferred", counts)
	}
	if _, err := s.ClaimDeliveries(ctx, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("limit 0: err = %v", err)
	}
}

func TestClaimUsesDueIndex(t *testing.T) {
	s := openTest(t)
	// A claim that scans the table would cost a full read of the sent
	// history per batch; the plan must search the partial index.
	plan := queryPlan(t, s, `SELECT id FROM deliveries
		WHERE state IN ('queued','deferred') AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?`, "x", 1)
	joined := strings.Join(plan, "; ")
	if !strings.Contains(joined, "USING INDEX deliveries_due") || strings.Contains(joined, "TEMP B-TREE") {
		t.Errorf("claim plan = %q, want an ordered search of deliveries_due", joined)
	}
}

func TestRecordDeliveries(t *testing.T) {
	tests := []struct {
		name         string
		processes    bool // the list's process_bounces
		out          DeliveryOutcome
		wantState    string
		wantAttempts int
		wantReply    string
		wantBounce   string // "" = no bounces row
		wantScored   bool
		wantEvent    string
	}{
		{name: "sent", out: DeliveryOutcome{State: DeliverySent, Reply: "250 2.0.0 Ok: queued as X"},
			wantState: DeliverySent, wantAttempts: 1, wantReply: "250 2.0.0 Ok: queued as X"},
		{name: "deferred", out: DeliveryOutcome{State: DeliveryDeferred, Reply: "451 4.3.0 try later", NextAttempt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
			wantState: DeliveryDeferred, wantAttempts: 1, wantReply: "451 4.3.0 try later"},
		{name: "released", out: DeliveryOutcome{State: DeliveryQueued, Reply: "ignored"},
			wantState: DeliveryQueued, wantAttempts: 0, wantReply: ""},
		{name: "failed permanent", processes: true,
			out:       DeliveryOutcome{State: DeliveryFailed, Reply: "550 5.1.1 no such user", Bounce: BouncePermanent, Scored: true, Event: EventDeliveryFailed},
			wantState: DeliveryFailed, wantAttempts: 1, wantReply: "550 5.1.1 no such user", wantBounce: BouncePermanent, wantScored: true, wantEvent: EventDeliveryFailed},
		{name: "failed permanent, list ignores bounces", processes: false,
			out:       DeliveryOutcome{State: DeliveryFailed, Reply: "550 5.1.1 no such user", Bounce: BouncePermanent, Scored: true, Event: EventDeliveryFailed},
			wantState: DeliveryFailed, wantAttempts: 1, wantReply: "550 5.1.1 no such user", wantBounce: BouncePermanent, wantScored: false, wantEvent: EventDeliveryFailed},
		{name: "failed policy", processes: true,
			out:       DeliveryOutcome{State: DeliveryFailed, Reply: "550 5.7.1 spam", Bounce: BouncePolicy, Event: EventDeliveryFailed},
			wantState: DeliveryFailed, wantAttempts: 1, wantReply: "550 5.7.1 spam", wantBounce: BouncePolicy, wantScored: false, wantEvent: EventDeliveryFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t)
			ctx := context.Background()
			list, msg := deliveryFixture(t, s)
			v := "0"
			if tc.processes {
				v = "1"
			}
			if err := s.SetListSetting(ctx, "test@lists.example.org", "process_bounces", v); err != nil {
				t.Fatal(err)
			}
			if err := s.QueueDeliveries(ctx, msg, list, verpRows(1)); err != nil {
				t.Fatal(err)
			}
			claimed, err := s.ClaimDeliveries(ctx, 1)
			if err != nil || len(claimed) != 1 {
				t.Fatalf("claim: %v %v", claimed, err)
			}
			before, _ := s.MessageDeliveries(ctx, msg)
			out := tc.out
			out.ID = claimed[0].ID
			if err := s.RecordDeliveries(ctx, []DeliveryOutcome{out}); err != nil {
				t.Fatal(err)
			}
			ds, err := s.MessageDeliveries(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			d := ds[0]
			if d.State != tc.wantState || d.Attempts != tc.wantAttempts || d.LastReply != tc.wantReply {
				t.Errorf("row: state %s attempts %d reply %q; want %s %d %q", d.State, d.Attempts, d.LastReply, tc.wantState, tc.wantAttempts, tc.wantReply)
			}
			switch tc.wantState {
			case DeliveryDeferred:
				if want := FormatTime(tc.out.NextAttempt); d.NextAttempt != want {
					t.Errorf("next attempt %s, want %s", d.NextAttempt, want)
				}
			default:
				if d.NextAttempt != before[0].NextAttempt {
					t.Errorf("next attempt changed from %s to %s", before[0].NextAttempt, d.NextAttempt)
				}
			}
			bs, err := s.DeliveryBounces(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantBounce == "" {
				if len(bs) != 0 {
					t.Errorf("bounces %+v, want none", bs)
				}
			} else if len(bs) != 1 || bs[0].Kind != tc.wantBounce || bs[0].Scored != tc.wantScored ||
				bs[0].Address != d.Recipient || bs[0].Diagnostic != tc.wantReply {
				t.Errorf("bounces %+v, want one %s scored=%v for %s", bs, tc.wantBounce, tc.wantScored, d.Recipient)
			}
			var events int
			if err := s.r.QueryRow("SELECT count(*) FROM events WHERE kind = ? AND address = ? AND list_id = ? AND detail LIKE ?",
				tc.wantEvent, d.Recipient, list, fmt.Sprintf("message %d: %%", msg)).Scan(&events); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.wantEvent != ""]; events != want {
				t.Errorf("%d %q events, want %d", events, tc.wantEvent, want)
			}
			// The outcome applies once: a row that is no longer sending
			// is left alone.
			out.State = DeliverySent
			if err := s.RecordDeliveries(ctx, []DeliveryOutcome{out}); err != nil {
				t.Fatal(err)
			}
			again, _ := s.MessageDeliveries(ctx, msg)
			if again[0].State != tc.wantState || again[0].Attempts != tc.wantAttempts {
				t.Errorf("second outcome changed the row: %+v", again[0])
			}
		})
	}
}

func TestRecordDeliveriesRejectsBadValues(t *testing.T) {
	s := openTest(t)
	for _, o := range []DeliveryOutcome{{ID: 1, State: "sending"}, {ID: 1, State: DeliveryFailed, Bounce: "soft"}} {
		if err := s.RecordDeliveries(context.Background(), []DeliveryOutcome{o}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err = %v, want ErrInvalid", o, err)
		}
	}
}

func TestResetSendingDeliveries(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	list, msg := deliveryFixture(t, s)
	if err := s.QueueDeliveries(ctx, msg, list, verpRows(4)); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordDeliveries(ctx, []DeliveryOutcome{{ID: claimed[0].ID, State: DeliverySent, Reply: "250 ok"}}); err != nil {
		t.Fatal(err)
	}
	n, err := s.ResetSendingDeliveries(ctx)
	if err != nil || n != 2 {
		t.Fatalf("reset %d rows (%v), want 2", n, err)
	}
	again, err := s.ClaimDeliveries(ctx, 10)
	if err != nil || len(again) != 3 {
		t.Fatalf("after reset claimed %d rows (%v), want 3", len(again), err)
	}
}

func TestRetryDeliveries(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	list, msg := deliveryFixture(t, s)
	other, err := s.StoreMessage(ctx, "bob@example.com", []byte("Subject: other\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.QueueDeliveries(ctx, msg, list, verpRows(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.QueueDeliveries(ctx, other, list, verpRows(2)); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	var outs []DeliveryOutcome
	for _, d := range claimed {
		o := DeliveryOutcome{ID: d.ID, State: DeliveryDeferred, Reply: "451 later", NextAttempt: later}
		if d.MessageID == msg && strings.HasPrefix(d.Recipient, "m0@") {
			o = DeliveryOutcome{ID: d.ID, State: DeliveryFailed, Reply: "550 no"}
		}
		outs = append(outs, o)
	}
	if err := s.RecordDeliveries(ctx, outs); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.NextDeliveryDue(ctx); !ok {
		t.Fatal("NextDeliveryDue: none, want the deferred rows")
	}
	n, err := s.RetryDeliveries(ctx, msg)
	if err != nil || n != 3 {
		t.Fatalf("retry message: %d rows (%v), want 3 (2 deferred + 1 failed)", n, err)
	}
	n, err = s.RetryDeliveries(ctx, 0)
	if err != nil || n != 2 {
		t.Fatalf("retry all: %d rows (%v), want the other message's 2 deferred", n, err)
	}
	due, ok, err := s.NextDeliveryDue(ctx)
	if err != nil || !ok || due.After(time.Now()) {
		t.Errorf("next due %v %v %v, want now", due, ok, err)
	}
	if _, err := s.RetryDeliveries(ctx, 9999); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown message: err = %v, want ErrNotFound", err)
	}
}

func TestQueueMessages(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	list, msg := deliveryFixture(t, s)
	done, err := s.StoreMessage(ctx, "bob@example.com", []byte("Subject: done\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.QueueDeliveries(ctx, msg, list, verpRows(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.QueueDeliveries(ctx, done, list, verpRows(1)); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var outs []DeliveryOutcome
	retryAt := time.Now().Add(time.Hour)
	for _, d := range claimed {
		switch {
		case d.MessageID == done:
			outs = append(outs, DeliveryOutcome{ID: d.ID, State: DeliverySent, Reply: "250 ok"})
		case strings.HasPrefix(d.Recipient, "m0@"):
			outs = append(outs, DeliveryOutcome{ID: d.ID, State: DeliveryDeferred, Reply: "451 4.2.0 busy", NextAttempt: retryAt})
		case strings.HasPrefix(d.Recipient, "m1@"):
			outs = append(outs, DeliveryOutcome{ID: d.ID, State: DeliveryFailed, Reply: "550 5.1.1 gone"})
		}
	}
	if err := s.RecordDeliveries(ctx, outs); err != nil {
		t.Fatal(err)
	}
	pending, err := s.QueueMessages(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 {
		t.Fatalf("pending messages %+v, want only message %d", pending, msg)
	}
	p := pending[0]
	if p.MessageID != msg || p.List != "test@lists.example.org" || p.HeaderMessageID != "<m1@example.com>" ||
		p.Sending != 1 || p.Deferred != 1 || p.Failed != 1 || p.Sent != 0 || p.LastReply != "451 4.2.0 busy" ||
		p.NextAttempt != FormatTime(retryAt) {
		t.Errorf("pending = %+v", p)
	}
	all, err := s.QueueMessages(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[1].MessageID != done || all[1].Sent != 1 {
		t.Errorf("all = %+v", all)
	}
}

// BenchmarkClaimAndRecord measures the database side of delivery: one
// claim of 500 rows and their outcomes in batches of 100, per 500 rows.
func BenchmarkClaimAndRecord(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir()+"/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	l, err := s.CreateList(ctx, "test@lists.example.org")
	if err != nil {
		b.Fatal(err)
	}
	msg, err := s.StoreMessage(ctx, "a@example.com", []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.QueueDeliveries(ctx, msg, l.ID, verpRows(500*b.N)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var claim, record time.Duration
	for range b.N {
		t0 := time.Now()
		ds, err := s.ClaimDeliveries(ctx, 500)
		if err != nil || len(ds) != 500 {
			b.Fatal(len(ds), err)
		}
		claim += time.Since(t0)
		t0 = time.Now()
		for i := 0; i < len(ds); i += 100 {
			outs := make([]DeliveryOutcome, 0, 100)
			for _, d := range ds[i : i+100] {
				outs = append(outs, DeliveryOutcome{ID: d.ID, State: DeliverySent, Reply: "250 2.0.0 Ok: queued as 3F2A1B2C3D"})
			}
			if err := s.RecordDeliveries(ctx, outs); err != nil {
				b.Fatal(err)
			}
		}
		record += time.Since(t0)
	}
	b.ReportMetric(float64(claim.Microseconds())/float64(b.N*500), "µs/claimed-row")
	b.ReportMetric(float64(record.Microseconds())/float64(b.N*500), "µs/recorded-row")
}
