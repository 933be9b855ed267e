package stage_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"postlist/internal/stage"
	"postlist/internal/testenv/stack"
	"postlist/store"
)

func TestFailuresGiveUpAfterMaxAttempts(t *testing.T) {
	f := stack.NewFixture(t)
	it := f.Inject(t, "bob@example.net", "test-request@lists.example.org", stack.Message("bob@example.net", "test-request@lists.example.org", "help", ""))
	var fs stage.Failures
	for i := 1; i <= stage.MaxAttempts; i++ {
		fs.Fail(context.Background(), f.Store, zaptest.NewLogger(t), it, errors.New("boom"))
		want := store.IntakeNew
		if i == stage.MaxAttempts {
			want = store.IntakeFailed
		}
		if row := f.Row(t, it); row.State != want {
			t.Fatalf("after %d failure(s): %s, want %s", i, row.State, want)
		}
	}
	if row := f.Row(t, it); row.Result != "boom" {
		t.Errorf("result %q", row.Result)
	}
}

func TestProtect(t *testing.T) {
	boom := errors.New("boom")
	core, logs := observer.New(zap.ErrorLevel)
	log := zap.New(core)
	if err := stage.Protect(log, func() error { return nil }); err != nil {
		t.Errorf("no error: got %v", err)
	}
	if err := stage.Protect(log, func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("an error passes through: got %v", err)
	}
	var items []int
	err := stage.Protect(log, func() error {
		_ = items[3] // out of range: panics
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "internal error: runtime error: index out of range") {
		t.Errorf("a panic: got %v", err)
	}
	entries := logs.All()
	if len(entries) != 1 || !strings.Contains(string(entries[0].ContextMap()["stack"].(string)), "stage_test.go") {
		t.Errorf("the panic was not logged with its stack: %+v", entries)
	}
}

func TestLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	kick := make(chan struct{}, 1)
	var calls atomic.Int32
	full := atomic.Bool{}
	full.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		stage.Loop(ctx, time.Hour, kick, zaptest.NewLogger(t), func(context.Context) (int, error) {
			calls.Add(1)
			if full.CompareAndSwap(true, false) {
				return stage.BatchSize, nil // more waiting: called again at once
			}
			return 0, nil
		})
	}()
	stack.WaitUntil(t, "a full batch is followed at once", 5*time.Second, func() bool { return calls.Load() == 2 })
	kick <- struct{}{}
	stack.WaitUntil(t, "a kick wakes the loop", 5*time.Second, func() bool { return calls.Load() == 3 })
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls without a kick, want 3 (poll is an hour)", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stage.Loop did not return after cancel")
	}
}
