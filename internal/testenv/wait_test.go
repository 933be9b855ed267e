package testenv

import (
	"strings"
	"testing"
	"time"
)

// run calls wait with a recorder of failures, and returns the failure
// message, "" if wait did not fail. The recorder's Fatalf returns where
// the real one ends the goroutine, which is the same for helpers whose
// last act is to fail.
func run(t *testing.T, wait func(testing.TB)) string {
	rec := &fatalRecorder{TB: t}
	wait(rec)
	return rec.msg
}

func TestWaitFor(t *testing.T) {
	tests := []struct {
		name     string
		holdsAt  int // the call from which cond holds; 0: never
		timeout  time.Duration
		wantFail string
	}{
		{"holds at once", 1, time.Second, ""},
		{"holds after some polls", 4, 5 * time.Second, ""},
		{"never holds", 0, 50 * time.Millisecond, "timed out after 50ms waiting until the thing is done: 3 calls short"},
		{"zero timeout still tries once", 1, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			cond := func() (bool, string) {
				calls++
				return tt.holdsAt != 0 && calls >= tt.holdsAt, "3 calls short"
			}
			msg := run(t, func(tb testing.TB) { WaitForWhy(tb, tt.timeout, "the thing is done", cond) })
			if msg != tt.wantFail {
				t.Errorf("failure %q, want %q", msg, tt.wantFail)
			}
			if tt.holdsAt != 0 && calls != tt.holdsAt {
				t.Errorf("cond called %d times, want %d (no call after it held)", calls, tt.holdsAt)
			}

			calls = 0
			msg = run(t, func(tb testing.TB) {
				WaitFor(tb, tt.timeout, "the thing is done", func() bool { ok, _ := cond(); return ok })
			})
			if want, _, _ := strings.Cut(tt.wantFail, ": 3 calls"); msg != want {
				t.Errorf("WaitFor failure %q, want %q", msg, want)
			}
		})
	}
}

// TestEventuallyBacksOff: a condition that never holds is not polled in
// a busy loop, and the test waits no longer than the timeout and a poll.
func TestEventuallyBacksOff(t *testing.T) {
	calls := 0
	start := time.Now()
	if Eventually(300*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("Eventually reported a condition that never holds as held")
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 300*time.Millisecond+2*maxPoll {
		t.Errorf("gave up after %v, want about 300ms", took)
	}
	if calls < 3 || calls > 20 {
		t.Errorf("cond polled %d times in 300ms, want a handful", calls)
	}
}
