package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"postlist/internal/testenv"
)

func intakeMsg(sender string, rcpts ...IntakeRecipient) *IntakeMessage {
	return &IntakeMessage{
		MessageID:  "<" + sender + ".1@example.com>",
		Sender:     sender,
		QueueID:    "4ABCD12345",
		Body:       []byte("From: " + sender + "\r\nSubject: hi\r\n\r\nbody\r\n"),
		Recipients: rcpts,
	}
}

func post(list string) IntakeRecipient {
	return IntakeRecipient{Recipient: list, List: list, Kind: "post"}
}

func countRows(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// holdWriter occupies the single writer connection (without a
// transaction, so that it works on a query_only connection too): the
// committer then blocks and requests pile up. The returned func releases
// it; it also runs at cleanup, before the committer's Close, so that a
// failing test does not hang.
func holdWriter(t *testing.T, s *Store) func() {
	t.Helper()
	conn, err := s.w.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { conn.Close() }) }
	t.Cleanup(release)
	return release
}

// newCommitter starts a committer closed at cleanup.
func newCommitter(t *testing.T, s *Store) *IntakeCommitter {
	t.Helper()
	c := s.NewIntakeCommitter()
	t.Cleanup(func() { c.Close() })
	return c
}

// waitSubmitted polls until n requests reached the committer: queued, or
// taken into the batch it is blocked on.
func waitSubmitted(t *testing.T, c *IntakeCommitter, n int) {
	t.Helper()
	testenv.WaitForWhy(t, 10*time.Second, fmt.Sprintf("%d requests reach the committer", n), func() (bool, string) {
		taken, queued := int(c.taken.Load()), len(c.reqs)
		return taken+queued >= n, fmt.Sprintf("%d taken, %d queued", taken, queued)
	})
}

func TestIntakeStoresBodyOnce(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.CreateList(ctx, "test@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	m := intakeMsg("alice@example.com",
		IntakeRecipient{Recipient: "Test@lists.example.org", List: "test@lists.example.org", Kind: "post"},
		IntakeRecipient{Recipient: "test-owner+x@lists.example.org", List: "test@lists.example.org", Kind: "owner", Extension: "x"},
	)
	res, err := s.Intake(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IntakeIDs) != 2 {
		t.Fatalf("intake ids = %v, want 2", res.IntakeIDs)
	}
	if got := countRows(t, s, "messages"); got != 1 {
		t.Errorf("messages rows = %d, want 1", got)
	}
	items, err := s.PendingIntake(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 {
		t.Fatalf("pending = %+v, want 2 rows", items)
	}
	want := []IntakeItem{
		{ID: res.IntakeIDs[0], MessageID: res.MessageID, List: "test@lists.example.org", Recipient: "Test@lists.example.org", Kind: "post"},
		{ID: res.IntakeIDs[1], MessageID: res.MessageID, List: "test@lists.example.org", Recipient: "test-owner+x@lists.example.org", Kind: "owner", Extension: "x"},
	}
	for i, it := range items {
		w := want[i]
		w.State, w.Sender, w.HeaderMessageID, w.QueueID, w.Size, w.ReceivedAt = "new", m.Sender, m.MessageID, m.QueueID, int64(len(m.Body)), it.ReceivedAt
		if it != w {
			t.Errorf("item %d = %+v\nwant %+v", i, it, w)
		}
		if _, err := ParseTime(it.ReceivedAt); err != nil {
			t.Errorf("received_at %q: %v", it.ReceivedAt, err)
		}
	}
	body, err := s.IntakeBody(ctx, res.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, m.Body) {
		t.Errorf("body = %q, want %q", body, m.Body)
	}
	if _, err := s.IntakeBody(ctx, res.MessageID+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("IntakeBody(missing) = %v, want ErrNotFound", err)
	}
}

func TestIntakeKeepsRowOfUnknownList(t *testing.T) {
	// A list removed between RCPT and commit: the row stays, list_id NULL,
	// for the processing stage to decide; nothing accepted is dropped.
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.Intake(ctx, intakeMsg("a@example.com", post("gone@lists.example.org"))); err != nil {
		t.Fatal(err)
	}
	items, err := s.PendingIntake(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].List != "" || items[0].Recipient != "gone@lists.example.org" {
		t.Fatalf("pending = %+v", items)
	}
}

func TestIntakeValidation(t *testing.T) {
	s := openTest(t)
	c := newCommitter(t, s)
	cases := []struct {
		name string
		m    *IntakeMessage
	}{
		{"empty body", &IntakeMessage{Recipients: []IntakeRecipient{post("a@l.org")}}},
		{"no recipients", &IntakeMessage{Body: []byte("x: y\r\n")}},
		{"bad kind", &IntakeMessage{Body: []byte("x: y\r\n"), Recipients: []IntakeRecipient{{Recipient: "a@l.org", Kind: "digest"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Intake(context.Background(), tc.m); !errors.Is(err, ErrInvalid) {
				t.Errorf("Intake = %v, want ErrInvalid", err)
			}
			if _, err := c.Commit(context.Background(), tc.m); !errors.Is(err, ErrInvalid) {
				t.Errorf("Commit = %v, want ErrInvalid", err)
			}
		})
	}
	if got := countRows(t, s, "messages"); got != 0 {
		t.Errorf("messages rows = %d, want 0", got)
	}
}

func TestCommitterGroupsConcurrentMessages(t *testing.T) {
	s := openTest(t)
	c := newCommitter(t, s)
	const n = 50
	release := holdWriter(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ids := make(chan int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Commit(context.Background(), intakeMsg(fmt.Sprintf("u%d@example.com", i), post("test@lists.example.org")))
			if err != nil {
				errs <- err
				return
			}
			ids <- res.MessageID
		}()
	}
	// The committer holds one request while it waits for the writer; the
	// rest queue up behind it.
	waitSubmitted(t, c, n)
	release()
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		t.Error(err)
	}
	seen := map[int64]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("message id %d answered twice", id)
		}
		seen[id] = true
	}
	st := c.Stats()
	if st.Messages != n || st.Failures != 0 {
		t.Errorf("stats = %+v, want %d messages", st, n)
	}
	if st.Commits > 2 {
		t.Errorf("%d commits for %d queued messages, want at most 2", st.Commits, n)
	}
	if got := countRows(t, s, "intake"); got != n {
		t.Errorf("intake rows = %d, want %d", got, n)
	}
}

func TestCommitterReadOnlyFailsBatchThenRecovers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	c := newCommitter(t, s)
	// query_only is a real SQLite refusal (SQLITE_READONLY) on the one
	// writer connection, and works even for root, unlike file modes.
	if _, err := s.w.ExecContext(ctx, "PRAGMA query_only = 1"); err != nil {
		t.Fatal(err)
	}
	const n = 5
	release := holdWriter(t, s)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := c.Commit(ctx, intakeMsg(fmt.Sprintf("u%d@example.com", i), post("test@lists.example.org")))
			errs <- err
		}()
	}
	waitSubmitted(t, c, n)
	release()
	for range n {
		if err := <-errs; !errors.Is(err, ErrReadOnly) {
			t.Errorf("Commit = %v, want ErrReadOnly", err)
		}
	}
	if st := c.Stats(); st.Commits != 0 || st.Failures != n {
		t.Errorf("stats = %+v, want %d failures and no commit", st, n)
	}
	if _, err := s.w.ExecContext(ctx, "PRAGMA query_only = 0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, intakeMsg("late@example.com", post("test@lists.example.org"))); err != nil {
		t.Fatalf("Commit after recovery: %v", err)
	}
	if got := countRows(t, s, "messages"); got != 1 {
		t.Errorf("messages rows = %d, want 1", got)
	}
}

func TestCommitterIsolatesFailingMessage(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	c := newCommitter(t, s)
	// A temporary trigger on the writer connection makes one particular
	// message fail inside the transaction, as a per-message fault would.
	if _, err := s.w.ExecContext(ctx, `CREATE TEMP TRIGGER refuse_evil BEFORE INSERT ON messages
		WHEN NEW.sender = 'evil@example.com' BEGIN SELECT RAISE(ABORT, 'refused by test'); END`); err != nil {
		t.Fatal(err)
	}
	senders := []string{"a@example.com", "b@example.com", "evil@example.com", "c@example.com", "d@example.com"}
	release := holdWriter(t, s)
	type result struct {
		sender string
		err    error
	}
	results := make(chan result, len(senders))
	for _, snd := range senders {
		go func() {
			_, err := c.Commit(ctx, intakeMsg(snd, post("test@lists.example.org")))
			results <- result{snd, err}
		}()
	}
	waitSubmitted(t, c, len(senders))
	release()
	for range senders {
		r := <-results
		if r.sender == "evil@example.com" {
			if r.err == nil {
				t.Errorf("evil message committed")
			}
			continue
		}
		if r.err != nil {
			t.Errorf("%s: %v", r.sender, r.err)
		}
	}
	if got := countRows(t, s, "messages"); got != len(senders)-1 {
		t.Errorf("messages rows = %d, want %d", got, len(senders)-1)
	}
}

func TestCommitterSkipsAbandonedRequest(t *testing.T) {
	s := openTest(t)
	c := newCommitter(t, s)
	release := holdWriter(t, s)
	first := make(chan error, 1)
	go func() {
		_, err := c.Commit(context.Background(), intakeMsg("first@example.com", post("t@l.org")))
		first <- err
	}()
	// The committer takes the first request alone and blocks at BEGIN.
	testenv.WaitFor(t, 10*time.Second, "the first request is taken", func() bool { return c.taken.Load() > 0 })
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := c.Commit(ctx, intakeMsg("gone@example.com", post("t@l.org")))
		gone <- err
	}()
	waitSubmitted(t, c, 2)
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("abandoned Commit = %v, want context.Canceled", err)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Close drains: the abandoned request is looked at and dropped.
	c.Close()
	var n int
	if err := s.r.QueryRow("SELECT count(*) FROM messages WHERE sender = 'gone@example.com'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("abandoned message was committed")
	}
}

func TestCommitterClose(t *testing.T) {
	s := openTest(t)
	c := s.NewIntakeCommitter()
	if _, err := c.Commit(context.Background(), intakeMsg("a@example.com", post("t@l.org"))); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Commit(context.Background(), intakeMsg("b@example.com", post("t@l.org"))); !errors.Is(err, ErrCommitterClosed) {
		t.Errorf("Commit after Close = %v, want ErrCommitterClosed", err)
	}
}

func TestPendingIntakeByKindAndMark(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	m := intakeMsg("a@example.com",
		post("t@l.org"),
		IntakeRecipient{Recipient: "t-bounces+bob=example.com@l.org", List: "t@l.org", Kind: "bounces", Extension: "bob=example.com"},
		IntakeRecipient{Recipient: "t-join@l.org", List: "t@l.org", Kind: "join"},
	)
	res, err := s.Intake(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		kinds []string
		want  []string
	}{
		{nil, []string{"post", "bounces", "join"}},
		{[]string{"bounces"}, []string{"bounces"}},
		{[]string{"join", "leave", "post"}, []string{"post", "join"}},
		{[]string{"owner"}, nil},
	}
	for _, tc := range cases {
		items, err := s.PendingIntake(ctx, 10, tc.kinds...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range items {
			got = append(got, it.Kind)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("PendingIntake(%v) kinds = %v, want %v", tc.kinds, got, tc.want)
		}
	}
	if _, err := s.PendingIntake(ctx, 10, "digest"); !errors.Is(err, ErrInvalid) {
		t.Errorf("PendingIntake(bad kind) = %v, want ErrInvalid", err)
	}
	if items, _ := s.PendingIntake(ctx, 1); len(items) != 1 || items[0].ID != res.IntakeIDs[0] {
		t.Errorf("limit 1 = %+v, want the oldest row", items)
	}

	if err := s.MarkIntake(ctx, res.IntakeIDs[0], IntakeDone, "accepted: 3 deliveries"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkIntake(ctx, res.IntakeIDs[1], IntakeFailed, "no member in VERP address"); err != nil {
		t.Fatal(err)
	}
	items, err := s.PendingIntake(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != res.IntakeIDs[2] {
		t.Errorf("pending after marking = %+v, want only the join row", items)
	}
	var state, result string
	var processed sql.NullString
	if err := s.r.QueryRow("SELECT state, result, processed_at FROM intake WHERE id = ?", res.IntakeIDs[1]).
		Scan(&state, &result, &processed); err != nil {
		t.Fatal(err)
	}
	if state != "failed" || result != "no member in VERP address" || !processed.Valid {
		t.Errorf("row = %s %q processed %v", state, result, processed)
	}
	// Handing a row back clears processed_at.
	if err := s.MarkIntake(ctx, res.IntakeIDs[1], IntakeNew, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.r.QueryRow("SELECT processed_at FROM intake WHERE id = ?", res.IntakeIDs[1]).Scan(&processed); err != nil {
		t.Fatal(err)
	}
	if processed.Valid {
		t.Errorf("processed_at = %v after requeue, want NULL", processed.String)
	}

	if err := s.MarkIntake(ctx, 9999, IntakeDone, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkIntake(missing) = %v, want ErrNotFound", err)
	}
	if err := s.MarkIntake(ctx, res.IntakeIDs[0], "sent", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("MarkIntake(bad state) = %v, want ErrInvalid", err)
	}
}
