package deliver

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/store"
)

// Environment of the child process TestCrashMidFanOut kills.
const (
	crashChildDB   = "POSTLIST_DELIVER_CRASH_DB"
	crashChildSink = "POSTLIST_DELIVER_CRASH_SINK"
)

// TestCrashChild is not a test of its own: it is the deliverer process
// that TestCrashMidFanOut starts and kills with SIGKILL.
func TestCrashChild(t *testing.T) {
	db, sink := os.Getenv(crashChildDB), os.Getenv(crashChildSink)
	if db == "" || sink == "" {
		t.Skip("helper process for TestCrashMidFanOut")
	}
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	d := New(Options{Store: st, Log: zap.NewNop(), Addr: sink, Workers: 4, PollInterval: 20 * time.Millisecond})
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCrashMidFanOut kills a delivering process mid fan-out and starts a
// new one on the same database: every member gets the message, and only
// rows that were in flight (claimed, outcome not yet committed) can arrive
// twice.
func TestCrashMidFanOut(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	dbPath := st.Path()
	sink := testenv.StartSink(t)
	sink.SetDataHook(func(testenv.Envelope) *smtp.SMTPError {
		time.Sleep(time.Millisecond) // pacing, so that the kill lands mid fan-out
		return nil
	})
	rcpts := members(2000)
	msg := queue(t, st, l, rcpts, true)

	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildDB+"="+dbPath, crashChildSink+"="+sink.Addr)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sink.WaitFor(t, 400, 30*time.Second)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	t.Logf("child output:\n%s", out.String())

	before := received(sink.Envelopes())
	atCrash := rowsOf(t, st, msg)
	inFlight := map[string]bool{}
	for r, row := range atCrash {
		if row.State == store.DeliverySending {
			inFlight[r] = true
		}
	}
	if len(before) >= len(rcpts) {
		t.Fatalf("all %d members were served before the kill: the test did not crash mid fan-out", len(rcpts))
	}
	t.Logf("at the kill: %d members received, %d rows sending", len(before), len(inFlight))

	d := start(t, testOptions(t, st, sink.Addr))
	allSent(t, st, msg, 60*time.Second)
	d.stop(t)

	after := received(sink.Envelopes())
	dups := 0
	for _, r := range rcpts {
		switch n := after[r]; {
		case n == 0:
			t.Errorf("%s never received the message", r)
		case n == 2 && inFlight[r]:
			// Accepted by the sink (perhaps only recorded there after
			// our snapshot), outcome lost in the crash.
			dups++
		case n > 1:
			t.Errorf("%s received %d copies (state at the kill %s)", r, n, atCrash[r].State)
		}
	}
	t.Logf("%d duplicates, all among the %d rows in flight at the kill", dups, len(inFlight))
}
