package testenv

import (
	"testing"
	"time"
)

// Poll intervals: short at first so that a condition about to hold costs
// a test little, longer later so that a slow one does not spin the CPU
// that the servers under test need.
const (
	firstPoll = 5 * time.Millisecond
	maxPoll   = 100 * time.Millisecond
)

// Eventually polls cond until it holds or timeout passes, and reports
// whether it held. cond is tried at least once, and again after the last
// pause even where that pause ends past the timeout, so that a condition
// holding by the time the test gives up is not reported as failed.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := firstPoll
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPoll)
	}
}

// WaitFor polls cond until it holds, and fails the test naming what it
// waited for if it does not within timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(timeout, cond) {
		t.Fatalf("timed out after %v waiting until %s", timeout, what)
	}
}

// WaitForWhy is WaitFor for a condition that says why it does not hold
// yet; the last such explanation goes into the failure message.
func WaitForWhy(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var why string
	if !Eventually(timeout, func() bool {
		var ok bool
		ok, why = cond()
		return ok
	}) {
		t.Fatalf("timed out after %v waiting until %s: %s", timeout, what, why)
	}
}
