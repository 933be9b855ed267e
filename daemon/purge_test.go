package daemon

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/store"
)

// shortPurgeSchedule makes the purger run every few milliseconds.
func shortPurgeSchedule(t *testing.T) {
	first, every := purgeFirstDelay, purgeInterval
	purgeFirstDelay, purgeInterval = 5*time.Millisecond, 10*time.Millisecond
	t.Cleanup(func() { purgeFirstDelay, purgeInterval = first, every })
}

// purgeStore is a store whose clock runs `ago` behind while messages are
// written, so that they are old when the clock is set back to now.
func purgeStore(t *testing.T) (*store.Store, *atomic.Int64) {
	t.Helper()
	st := storetest.Open(t)
	var ago atomic.Int64
	st.Now = func() time.Time { return time.Now().Add(-time.Duration(ago.Load())) }
	return st, &ago
}

// oldMessage stores a post 30 days in the past, processed, with n
// deliveries, all sent when sent is true, else left queued.
func oldMessage(t *testing.T, st *store.Store, ago *atomic.Int64, n int, sent bool) int64 {
	t.Helper()
	ctx := context.Background()
	ago.Store(int64(30 * 24 * time.Hour))
	defer ago.Store(0)
	// The intake row keeps the message pending until the end, so that a
	// purge running meanwhile cannot take it half built.
	in, err := st.Intake(ctx, &store.IntakeMessage{Body: []byte("Subject: post\r\n\r\nx\r\n"),
		Recipients: []store.IntakeRecipient{{Recipient: "test@lists.example.org", List: "test@lists.example.org", Kind: "post"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := in.MessageID
	rows := make([]store.NewDelivery, n)
	for i := range rows {
		rows[i] = store.NewDelivery{Recipient: "m" + string(rune('a'+i)) + "@example.com", EnvelopeFrom: "owner@lists.example.org"}
	}
	if err := st.QueueDeliveries(ctx, id, 0, rows); err != nil {
		t.Fatal(err)
	}
	if sent {
		// Claiming takes every due row; those of other messages go back
		// to queued untouched.
		claimed, err := st.ClaimDeliveries(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var outs []store.DeliveryOutcome
		for _, d := range claimed {
			o := store.DeliveryOutcome{ID: d.ID, State: store.DeliveryQueued}
			if d.MessageID == id {
				o.State, o.Reply = store.DeliverySent, "250 ok"
			}
			outs = append(outs, o)
		}
		if err := st.RecordDeliveries(ctx, outs); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.MarkIntake(ctx, in.IntakeIDs[0], store.IntakeDone, "test"); err != nil {
		t.Fatal(err)
	}
	return id
}

// startPurger runs p until the returned stop is called (or the test
// ends); stop cancels it and returns what run returned.
func startPurger(t *testing.T, p purger) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan error, 1)
	go func() { exited <- p.run(ctx) }()
	var err error
	var stopped bool
	stop = func() error {
		if stopped {
			return err
		}
		stopped = true
		cancel()
		select {
		case err = <-exited:
		case <-time.After(5 * time.Second):
			t.Fatal("purger did not stop with its context")
		}
		return err
	}
	// Before shortPurgeSchedule's cleanup: the schedule must not change
	// under a running purger.
	t.Cleanup(func() { stop() })
	return stop
}

func waitLogs(t *testing.T, logs *observer.ObservedLogs, msg string, n int) []observer.LoggedEntry {
	t.Helper()
	var got []observer.LoggedEntry
	testenv.WaitForWhy(t, 10*time.Second, fmt.Sprintf("%d %q log line(s) are written", n, msg), func() (bool, string) {
		got = logs.FilterMessage(msg).All()
		return len(got) >= n, fmt.Sprintf("%d there; log: %v", len(got), logs.All())
	})
	return got
}

func TestPurgerRunsOnScheduleAndStops(t *testing.T) {
	shortPurgeSchedule(t)
	st, ago := purgeStore(t)
	done := oldMessage(t, st, ago, 3, true)
	waiting := oldMessage(t, st, ago, 2, false)

	core, logs := observer.New(zapcore.InfoLevel)
	stop := startPurger(t, purger{st: st, retention: 7 * 24 * time.Hour, log: zap.New(core)})

	first := waitLogs(t, logs, "finished work purged", 1)[0].ContextMap()
	if first["messages"] != int64(1) || first["deliveries"] != int64(3) {
		t.Errorf("first purge logged %v, want 1 message with 3 deliveries", first)
	}
	ids, err := st.QueueMessages(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0].MessageID != waiting {
		t.Errorf("messages with deliveries after purge: %+v, want only %d (not %d)", ids, waiting, done)
	}

	// Runs repeat; a run that removes nothing logs nothing.
	another := oldMessage(t, st, ago, 1, true)
	waitLogs(t, logs, "finished work purged", 2)
	time.Sleep(10 * purgeInterval)
	if n := logs.FilterMessage("finished work purged").Len(); n != 2 {
		t.Errorf("%d purge log lines, want 2: idle runs must stay quiet", n)
	}
	if _, _, err := st.MessageSender(context.Background(), another); err == nil {
		t.Errorf("message %d not purged by a later run", another)
	}

	if err := stop(); err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
}

// TestPurgerCarriesOnAfterError: a failing purge is logged, and the
// worker keeps running rather than shutting the daemon down.
func TestPurgerCarriesOnAfterError(t *testing.T) {
	shortPurgeSchedule(t)
	st, _ := purgeStore(t)
	st.Close()
	core, logs := observer.New(zapcore.InfoLevel)
	stop := startPurger(t, purger{st: st, retention: time.Hour, log: zap.New(core)})
	// Two failures: the worker went on after the first.
	errs := waitLogs(t, logs, "purge failed", 2)
	if errs[0].Level != zapcore.ErrorLevel || errs[0].ContextMap()["error"] == nil {
		t.Errorf("failure logged as %v %v", errs[0].Level, errs[0].ContextMap())
	}
	if err := stop(); err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
}
