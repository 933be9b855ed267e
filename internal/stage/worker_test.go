package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"postlist/internal/stage"
	"postlist/internal/testenv/stack"
	"postlist/store"
)

// rig is a stage over a fixture store whose Process finishes every row
// it is given, unless a test's hook says otherwise.
type rig struct {
	f    *stack.Fixture
	logs *observer.ObservedLogs
	// hook, when set, runs first for every row; a non-nil error (or a
	// panic) is Process's outcome and the row stays new.
	hook     func(it store.IntakeItem) error
	mu       sync.Mutex
	seen     []int64 // rows given to Process, in order
	notified atomic.Int32
}

func newRig(t *testing.T) *rig { return &rig{f: stack.NewFixture(t)} }

// config completes c with the rig's store, Process and Notify, and a
// fresh log to look at.
func (r *rig) config(c stage.Config) stage.Config {
	core, logs := observer.New(zap.DebugLevel)
	r.logs = logs
	c.Name = "test"
	c.Store = r.f.Store
	c.Log = zap.New(core)
	if c.Kinds == nil {
		c.Kinds = []string{"request"}
	}
	c.Process = r.process
	c.Notify = func() { r.notified.Add(1) }
	return c
}

func (r *rig) process(ctx context.Context, it store.IntakeItem) (bool, error) {
	r.mu.Lock()
	r.seen = append(r.seen, it.ID)
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		if err := hook(it); err != nil {
			return false, err
		}
	}
	return true, r.f.Store.FinishIntake(ctx, store.FinishedIntake{IntakeID: it.ID, ListID: r.f.List.ID, Result: "done"})
}

func (r *rig) seenIDs() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.seen...)
}

// inject stores a command mail (kind request) or, with rcpt, mail to
// another list address.
func (r *rig) inject(t *testing.T, rcpt ...string) store.IntakeItem {
	to := "test-request@lists.example.org"
	if len(rcpt) > 0 {
		to = rcpt[0]
	}
	return r.f.Inject(t, "bob@example.net", to, stack.Message("bob@example.net", to, "help", ""))
}

func (r *rig) state(t *testing.T, it store.IntakeItem) string { return r.f.Row(t, it).State }

// run starts Run and returns a function that cancels it and reports
// whether it returned in time, and with what.
func run(t *testing.T, s *stage.Stage) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestStageKickWakesRun(t *testing.T) {
	r := newRig(t)
	// A chore runs after each pass: this one says the first pass is over.
	passed := make(chan struct{}, 1)
	s := stage.New(r.config(stage.Config{PollInterval: time.Hour, Chores: []stage.Chore{
		{Name: "first pass", Every: time.Hour, Do: func(context.Context) error { passed <- struct{}{}; return nil }},
	}}))
	stop := run(t, s)
	select {
	case <-passed:
	case <-time.After(5 * time.Second):
		t.Fatal("Run made no first pass")
	}
	it := r.inject(t)
	time.Sleep(100 * time.Millisecond)
	if st := r.state(t, it); st != store.IntakeNew {
		t.Fatalf("row processed without a kick (poll is an hour): %s", st)
	}
	s.Kick()
	s.Kick() // never blocks
	stack.WaitUntil(t, "the kick wakes the stage", 5*time.Second, func() bool { return r.state(t, it) == store.IntakeDone })
	if r.notified.Load() != 1 {
		t.Errorf("Notify called %d times for one row that queued mail, want 1", r.notified.Load())
	}
	if err := stop(); err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
}

func TestStagePollInterval(t *testing.T) {
	r := newRig(t)
	s := stage.New(r.config(stage.Config{PollInterval: 20 * time.Millisecond}))
	run(t, s)
	time.Sleep(50 * time.Millisecond)
	it := r.inject(t)
	stack.WaitUntil(t, "the poll finds the row without a kick", 5*time.Second, func() bool { return r.state(t, it) == store.IntakeDone })
}

func TestStageTakesOnlyItsKinds(t *testing.T) {
	r := newRig(t)
	s := stage.New(r.config(stage.Config{Kinds: []string{"bounces", "owner"}}))
	req := r.inject(t)
	bounce := r.inject(t, "test-bounces@lists.example.org")
	owner := r.inject(t, "test-owner@lists.example.org")
	n, err := s.RunOnce(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("RunOnce = %d, %v; want 2 rows", n, err)
	}
	for _, c := range []struct {
		it   store.IntakeItem
		want string
	}{{req, store.IntakeNew}, {bounce, store.IntakeDone}, {owner, store.IntakeDone}} {
		if got := r.state(t, c.it); got != c.want {
			t.Errorf("%s row: %s, want %s", c.it.Kind, got, c.want)
		}
	}
}

func TestStagePanicIsAFailureAndTheNextRowRuns(t *testing.T) {
	r := newRig(t)
	bad := r.inject(t)
	good := r.inject(t)
	r.hook = func(it store.IntakeItem) error {
		if it.ID == bad.ID {
			panic("boom")
		}
		return nil
	}
	s := stage.New(r.config(stage.Config{}))
	ctx := context.Background()
	for pass := 1; pass <= stage.MaxAttempts; pass++ {
		n, err := s.RunOnce(ctx)
		if err != nil {
			t.Fatalf("pass %d: a panicking row is no database failure: %v", pass, err)
		}
		want := store.IntakeNew
		if pass == stage.MaxAttempts {
			want = store.IntakeFailed
		}
		if got := r.state(t, bad); got != want {
			t.Fatalf("after %d panic(s) the row is %s, want %s", pass, got, want)
		}
		if pass == 1 {
			if n != 2 {
				t.Errorf("first pass took %d rows, want 2", n)
			}
			if got := r.state(t, good); got != store.IntakeDone {
				t.Fatalf("the row behind the panicking one: %s, want done", got)
			}
		}
	}
	if res := r.f.Row(t, bad).Result; res == "" {
		t.Error("the failed row says nothing about why")
	}
	if r.logs.FilterMessage("panic while processing; the row counts as failed").Len() != stage.MaxAttempts {
		t.Errorf("want every panic logged: %v", r.logs.All())
	}
	if n, err := s.RunOnce(ctx); n != 0 || err != nil {
		t.Errorf("a failed row is taken again: RunOnce = %d, %v", n, err)
	}
}

func TestStageTransientErrorRetries(t *testing.T) {
	r := newRig(t)
	it := r.inject(t)
	behind := r.inject(t)
	var fails atomic.Int32
	fails.Store(stage.MaxAttempts + 1) // more than a failure count would allow
	r.hook = func(store.IntakeItem) error {
		if fails.Add(-1) >= 0 {
			return fmt.Errorf("storing: %w", store.ErrReadOnly)
		}
		return nil
	}
	s := stage.New(r.config(stage.Config{}))
	ctx := context.Background()
	for i := 0; i < stage.MaxAttempts+1; i++ {
		if _, err := s.RunOnce(ctx); !errors.Is(err, store.ErrReadOnly) {
			t.Fatalf("pass %d: want the database's error, got %v", i+1, err)
		}
	}
	if got := r.state(t, it); got != store.IntakeNew {
		t.Fatalf("a transient error counted against the row: %s", got)
	}
	if len(r.seenIDs()) != stage.MaxAttempts+1 {
		t.Errorf("rows behind a transient failure were tried in the same pass: %v", r.seenIDs())
	}
	if n, err := s.RunOnce(ctx); n != 2 || err != nil {
		t.Fatalf("once the database is back: RunOnce = %d, %v", n, err)
	}
	for _, x := range []store.IntakeItem{it, behind} {
		if got := r.state(t, x); got != store.IntakeDone {
			t.Errorf("row %d: %s, want done", x.ID, got)
		}
	}
}

func TestStageRunRetriesAfterTransientError(t *testing.T) {
	r := newRig(t)
	it := r.inject(t)
	var once atomic.Bool
	r.hook = func(store.IntakeItem) error {
		if once.CompareAndSwap(false, true) {
			return fmt.Errorf("storing: %w", store.ErrStorageFailed)
		}
		return nil
	}
	// Poll is an hour: only the loop's own retry can finish the row.
	run(t, stage.New(r.config(stage.Config{PollInterval: time.Hour})))
	stack.WaitUntil(t, "the row is retried after the database failed", 10*time.Second, func() bool { return r.state(t, it) == store.IntakeDone })
	if r.logs.FilterMessage("processing failed, retrying").Len() != 1 {
		t.Errorf("want the failed pass logged once: %v", r.logs.All())
	}
}

func TestStageThen(t *testing.T) {
	tests := []struct {
		name       string
		n          int
		queued     bool
		err        error
		wantN      int
		wantNotify int32
	}{
		{"more items than the batch", 7, true, nil, 7, 2},
		{"fewer items than the batch", 0, false, nil, 1, 1},
		{"the database failed", 3, true, store.ErrReadOnly, 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			it := r.inject(t)
			calls := 0
			s := stage.New(r.config(stage.Config{Then: func(context.Context) (int, bool, error) {
				calls++
				if r.state(t, it) != store.IntakeDone {
					t.Error("Then ran before the intake batch")
				}
				return tc.n, tc.queued, tc.err
			}}))
			n, err := s.RunOnce(context.Background())
			if !errors.Is(err, tc.err) || n != tc.wantN {
				t.Errorf("RunOnce = %d, %v; want %d, %v", n, err, tc.wantN, tc.err)
			}
			if calls != 1 {
				t.Errorf("Then ran %d times, want once", calls)
			}
			if got := r.notified.Load(); got != tc.wantNotify {
				t.Errorf("Notify called %d times, want %d", got, tc.wantNotify)
			}
		})
	}
}

// chore counts its runs and fails with err while failing is set.
type chore struct {
	calls   atomic.Int32
	failing atomic.Bool
	err     error
}

func (c *chore) do(context.Context) error {
	c.calls.Add(1)
	if c.failing.Load() {
		return c.err
	}
	return nil
}

func TestStageChores(t *testing.T) {
	r := newRig(t)
	var hourly, often chore
	buggy := chore{err: errors.New("a bug")}
	buggy.failing.Store(true)
	s := stage.New(r.config(stage.Config{
		PollInterval: 10 * time.Millisecond,
		Chores: []stage.Chore{
			{Name: "hourly", Every: time.Hour, Do: hourly.do},
			{Name: "often", Every: 30 * time.Millisecond, Do: often.do},
			{Name: "buggy", Every: time.Hour, Do: buggy.do},
		},
	}))
	stop := run(t, s)
	stack.WaitUntil(t, "the frequent chore runs again", 5*time.Second, func() bool { return often.calls.Load() >= 3 })
	stack.WaitUntil(t, "a failing chore is retried at the next pass", 5*time.Second, func() bool { return buggy.calls.Load() >= 3 })
	if n := hourly.calls.Load(); n != 1 {
		t.Errorf("the hourly chore ran %d times, want once (at the first pass)", n)
	}
	if r.logs.FilterMessage("buggy failed, will retry").Len() == 0 {
		t.Error("a failing chore is not logged")
	}
	it := r.inject(t)
	stack.WaitUntil(t, "a failing chore does not hold the intake up", 5*time.Second, func() bool { return r.state(t, it) == store.IntakeDone })
	if err := stop(); err != nil {
		t.Errorf("Run returned %v", err)
	}
	if r.logs.FilterMessage("processing failed, retrying").Len() != 0 {
		t.Error("a chore's bug was taken for a database failure")
	}

	// A database failure in a chore makes the loop back off (a second
	// at first), and the chore runs again once the pass succeeds.
	db := chore{err: fmt.Errorf("purging: %w", store.ErrReadOnly)}
	db.failing.Store(true)
	s = stage.New(r.config(stage.Config{
		PollInterval: 10 * time.Millisecond,
		Chores:       []stage.Chore{{Name: "db", Every: time.Hour, Do: db.do}},
	}))
	stop = run(t, s)
	stack.WaitUntil(t, "the chore's database failure is logged", 5*time.Second, func() bool {
		return r.logs.FilterMessage("processing failed, retrying").Len() == 1
	})
	time.Sleep(200 * time.Millisecond)
	if n := db.calls.Load(); n != 1 {
		t.Errorf("the chore ran %d times within the backoff, want 1", n)
	}
	db.failing.Store(false)
	stack.WaitUntil(t, "the chore is tried again after the backoff", 5*time.Second, func() bool { return db.calls.Load() == 2 })
	time.Sleep(100 * time.Millisecond)
	if n := db.calls.Load(); n != 2 {
		t.Errorf("the chore ran %d times after it succeeded, want 2 (Every is an hour)", n)
	}
	if err := stop(); err != nil {
		t.Errorf("Run returned %v", err)
	}
}

func TestStageRunWithoutStore(t *testing.T) {
	s := stage.New(stage.Config{Name: "bounce", Process: func(context.Context, store.IntakeItem) (bool, error) { return false, nil }})
	err := s.Run(context.Background())
	if err == nil || err.Error() != "bounce: Options.Store is required" {
		t.Errorf("Run without a store: %v", err)
	}
}
