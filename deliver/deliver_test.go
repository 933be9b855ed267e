package deliver

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/store"
)

func TestPersonalizedDeliveryUsesVERPAndReusesConnections(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	px := startProxy(t, sink.Addr)
	rcpts := members(30)
	msg := queue(t, st, l, rcpts, true)

	o := testOptions(t, st, px.Addr)
	o.Workers = 2
	d := start(t, o)
	rows := allSent(t, st, msg, 10*time.Second)
	envs := sink.WaitFor(t, len(rcpts), 5*time.Second)

	if len(envs) != len(rcpts) {
		t.Errorf("sink got %d transactions, want one per member (%d)", len(envs), len(rcpts))
	}
	for _, e := range envs {
		if len(e.To) != 1 {
			t.Errorf("transaction from %s has %d recipients, want 1", e.From, len(e.To))
			continue
		}
		if want := address.VERP(testList, e.To[0], "+"); e.From != want {
			t.Errorf("mail to %s came from <%s>, want <%s>", e.To[0], e.From, want)
		}
		if !bytes.Contains(e.Data, []byte("\r\n.starts with a dot\r\n")) || !bytes.HasSuffix(e.Data, []byte("last line\r\n")) {
			t.Errorf("message to %s arrived damaged:\n%s", e.To[0], e.Data)
		}
	}
	for r, n := range received(envs) {
		if n != 1 {
			t.Errorf("%s received %d copies", r, n)
		}
	}
	for _, row := range rows {
		if row.Attempts != 1 || !strings.HasPrefix(row.LastReply, "250 ") {
			t.Errorf("%s: attempts %d reply %q", row.Recipient, row.Attempts, row.LastReply)
		}
	}
	// Two workers, one connection each, reused for every transaction.
	if n := px.conns.Load(); n > 2 {
		t.Errorf("the sink saw %d connections for 2 workers", n)
	}
	d.stop(t)
	if s := d.Stats(); s.Sent != uint64(len(rcpts)) || s.Transactions != uint64(len(rcpts)) {
		t.Errorf("stats %+v", s)
	}
}

func TestReplyOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		reply      *smtp.SMTPError
		wantState  string
		wantReply  string
		wantBounce string // "" = no bounces row
		wantScored bool
	}{
		{"mailbox unknown", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
			store.DeliveryFailed, "550 5.1.1 no such user", store.BouncePermanent, true},
		{"policy refusal", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "DMARC policy of the sender"},
			store.DeliveryFailed, "550 5.7.1 DMARC policy of the sender", store.BouncePolicy, false},
		{"spam words without a policy code", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 0, 0}, Message: "message looks like spam"},
			store.DeliveryFailed, "554 5.0.0 message looks like spam", store.BouncePolicy, false},
		{"greylisted", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted, come back later"},
			store.DeliveryDeferred, "451 4.7.1 greylisted, come back later", "", false},
		{"mailbox full 552", &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full"},
			store.DeliveryDeferred, "552 5.2.2 mailbox full", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, l := storetest.OpenList(t, testList)
			sink := testenv.StartSink(t)
			const bad = "bob@example.org"
			sink.SetRcptHook(func(_, to string) *smtp.SMTPError {
				if to == bad {
					return tc.reply
				}
				return nil
			})
			rcpts := append(members(5), bad)
			msg := queue(t, st, l, rcpts, true)
			start(t, testOptions(t, st, sink.Addr))
			rows := settled(t, st, msg, 10*time.Second)

			for _, r := range rcpts {
				row := rows[r]
				if r == bad {
					if row.State != tc.wantState || row.LastReply != tc.wantReply || row.Attempts != 1 {
						t.Errorf("%s: state %s reply %q attempts %d; want %s %q 1", r, row.State, row.LastReply, row.Attempts, tc.wantState, tc.wantReply)
					}
					continue
				}
				if row.State != store.DeliverySent {
					t.Errorf("%s: state %s (%s), want sent", r, row.State, row.LastReply)
				}
			}
			got := received(sink.Envelopes())
			if got[bad] != 0 || len(got) != len(rcpts)-1 {
				t.Errorf("sink received %v", got)
			}
			bs, err := st.DeliveryBounces(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantBounce == "" {
				if len(bs) != 0 {
					t.Errorf("bounces %+v, want none", bs)
				}
				return
			}
			if len(bs) != 1 || bs[0].Address != bad || bs[0].Kind != tc.wantBounce || bs[0].Scored != tc.wantScored {
				t.Errorf("bounces %+v, want one %s (scored %v) for %s", bs, tc.wantBounce, tc.wantScored, bad)
			}
		})
	}
}

func TestTemporaryFailureIsRetriedWithBackoff(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	const slow = "slow@example.net"
	var mu sync.Mutex
	var tries []time.Time
	sink.SetRcptHook(func(_, to string) *smtp.SMTPError {
		if to != slow {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		tries = append(tries, time.Now())
		if len(tries) == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again"}
		}
		return nil
	})
	msg := queue(t, st, l, append(members(3), slow), true)
	o := testOptions(t, st, sink.Addr)
	o.RetryInterval = 200 * time.Millisecond
	start(t, o)
	rows := allSent(t, st, msg, 10*time.Second)

	if r := rows[slow]; r.Attempts != 2 || !strings.HasPrefix(r.LastReply, "250 ") {
		t.Errorf("%s: attempts %d reply %q, want sent on the 2nd attempt", slow, r.Attempts, r.LastReply)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tries) != 2 {
		t.Fatalf("RCPT for %s tried %d times, want 2", slow, len(tries))
	}
	// Back-off of 200ms with ±10% jitter.
	if gap := tries[1].Sub(tries[0]); gap < 170*time.Millisecond {
		t.Errorf("retried after %v, want the back-off of about 200ms", gap)
	}
	if n := received(sink.Envelopes())[slow]; n != 1 {
		t.Errorf("%s received %d copies, want 1", slow, n)
	}
}

// TestLostConnectionDefers covers what a server can do to a transaction
// short of replying: drop the connection in the middle of the message, or
// stall past our timeout. Either way the row is deferred (with the reason)
// and a retry delivers it.
func TestLostConnectionDefers(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(*testing.T, *testenv.Sink, *proxy) func() // returns a release func
		wantReply string
	}{
		{
			name: "connection dropped mid-DATA",
			setup: func(_ *testing.T, _ *testenv.Sink, px *proxy) func() {
				px.cutData.Store(1)
				return func() {}
			},
			wantReply: "lost connection",
		},
		{
			name: "server stalls past the data timeout",
			setup: func(t *testing.T, sink *testenv.Sink, _ *proxy) func() {
				release := make(chan struct{})
				var once sync.Once
				first := true
				var mu sync.Mutex
				sink.SetDataHook(func(testenv.Envelope) *smtp.SMTPError {
					mu.Lock()
					stall := first
					first = false
					mu.Unlock()
					if stall {
						select {
						case <-release:
						case <-time.After(10 * time.Second):
						}
						return &smtp.SMTPError{Code: 451, Message: "too late"}
					}
					return nil
				})
				return func() { once.Do(func() { close(release) }) }
			},
			wantReply: "timeout",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, l := storetest.OpenList(t, testList)
			sink := testenv.StartSink(t)
			px := startProxy(t, sink.Addr)
			release := tc.setup(t, sink, px)
			defer release()
			const who = "carol@example.com"
			msg := queue(t, st, l, []string{who}, true)
			o := testOptions(t, st, px.Addr)
			o.Workers = 1
			o.DataTimeout = 300 * time.Millisecond
			d := start(t, o)

			rows := settled(t, st, msg, 10*time.Second)
			if r := rows[who]; r.State != store.DeliveryDeferred || r.Attempts != 1 || !strings.Contains(r.LastReply, tc.wantReply) {
				t.Fatalf("after the fault: state %s attempts %d reply %q; want deferred, 1, %q", r.State, r.Attempts, r.LastReply, tc.wantReply)
			}
			release()
			if n, err := st.RetryDeliveries(context.Background(), msg); err != nil || n != 1 {
				t.Fatalf("retry: %d %v", n, err)
			}
			d.Kick()
			rows = allSent(t, st, msg, 10*time.Second)
			if r := rows[who]; r.Attempts != 2 {
				t.Errorf("attempts %d, want 2", r.Attempts)
			}
			if n := received(sink.Envelopes())[who]; n != 1 {
				t.Errorf("%s received %d copies, want 1", who, n)
			}
		})
	}
}

func TestMaxSessionsPerConnection(t *testing.T) {
	tests := []struct {
		limit, members, wantConns int
	}{
		{0, 10, 1},
		{3, 10, 4},
		{1, 5, 5},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("limit %d", tc.limit), func(t *testing.T) {
			st, l := storetest.OpenList(t, testList)
			sink := testenv.StartSink(t)
			px := startProxy(t, sink.Addr)
			msg := queue(t, st, l, members(tc.members), true)
			o := testOptions(t, st, px.Addr)
			o.Workers = 1
			o.MaxSessionsPerConnection = tc.limit
			start(t, o)
			allSent(t, st, msg, 10*time.Second)
			if n := px.conns.Load(); n != int64(tc.wantConns) {
				t.Errorf("sink saw %d connections, want %d", n, tc.wantConns)
			}
		})
	}
}

func TestBulkGroupsByDomain(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	rcpts := []string{"a1@a.example", "b1@b.example", "a2@a.example", "a3@A.example", "refused@b.example", "a4@a.example", "a5@a.example", "b2@b.example"}
	sink.SetRcptHook(func(_, to string) *smtp.SMTPError {
		if to == "refused@b.example" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown"}
		}
		return nil
	})
	msg := queue(t, st, l, rcpts, false)
	o := testOptions(t, st, sink.Addr)
	o.MaxRecipients = 2
	start(t, o)
	rows := settled(t, st, msg, 10*time.Second)

	envs := sink.Envelopes()
	for _, e := range envs {
		if e.From != "test-bounces@lists.example.org" {
			t.Errorf("bulk envelope from <%s>", e.From)
		}
		if len(e.To) == 0 || len(e.To) > 2 {
			t.Errorf("transaction with %d recipients, want 1..2: %v", len(e.To), e.To)
		}
		for _, to := range e.To {
			if domainOf(to) != domainOf(e.To[0]) {
				t.Errorf("one transaction mixes domains: %v", e.To)
			}
		}
	}
	// a.example (either case): 5 rows in transactions of 2 -> 3;
	// b.example: 3 rows -> 2, the first of which delivers only b1 because
	// its other RCPT was refused.
	if len(envs) != 5 {
		t.Errorf("sink got %d transactions, want 5:\n%v", len(envs), envs)
	}
	got := received(envs)
	for _, r := range rcpts {
		want, state := 1, store.DeliverySent
		if r == "refused@b.example" {
			want, state = 0, store.DeliveryFailed
		}
		if got[r] != want || rows[r].State != state {
			t.Errorf("%s: received %d (want %d), state %s (want %s)", r, got[r], want, rows[r].State, state)
		}
	}
}

func TestStartupRequeuesRowsLeftSending(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	rcpts := members(10)
	msg := queue(t, st, l, rcpts, true)
	// A previous process claimed rows and died before attempting them.
	claimed, err := st.ClaimDeliveries(context.Background(), 6)
	if err != nil || len(claimed) != 6 {
		t.Fatalf("claim: %d rows, %v", len(claimed), err)
	}
	start(t, testOptions(t, st, sink.Addr))
	allSent(t, st, msg, 10*time.Second)
	got := received(sink.WaitFor(t, len(rcpts), 5*time.Second))
	for _, r := range rcpts {
		if got[r] != 1 {
			t.Errorf("%s received %d copies, want 1", r, got[r])
		}
	}
}

// TestShutdownHandsBackUnstartedRows stops a deliverer in the middle of a
// fan-out: what was sent is recorded sent, what was not started goes back
// to queued, and nothing is left sending.
func TestShutdownHandsBackUnstartedRows(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	sink.SetDataHook(func(testenv.Envelope) *smtp.SMTPError {
		time.Sleep(5 * time.Millisecond) // pacing, so that the stop lands mid fan-out
		return nil
	})
	rcpts := members(300)
	msg := queue(t, st, l, rcpts, true)
	o := testOptions(t, st, sink.Addr)
	o.Workers = 2
	o.ClaimBatch = 50
	d := start(t, o)
	sink.WaitFor(t, 20, 10*time.Second)
	d.stop(t)

	rows := rowsOf(t, st, msg)
	got := received(sink.Envelopes())
	var sent, queued int
	for _, r := range rcpts {
		row := rows[r]
		switch row.State {
		case store.DeliverySent:
			sent++
			if got[r] != 1 {
				t.Errorf("%s is recorded sent but received %d copies", r, got[r])
			}
		case store.DeliveryQueued:
			queued++
			if got[r] != 0 || row.Attempts != 0 {
				t.Errorf("%s was handed back but received %d copies, attempts %d", r, got[r], row.Attempts)
			}
		default:
			t.Errorf("%s left %s after shutdown (%s)", r, row.State, row.LastReply)
		}
	}
	if queued == 0 || sent == 0 {
		t.Errorf("sent %d, queued %d: the stop did not land mid fan-out", sent, queued)
	}
}

// TestShutdownIsBounded stops a deliverer whose transaction hangs: Run must
// return after ShutdownTimeout, with that row deferred, not sending.
func TestShutdownIsBounded(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 1)
	sink.SetDataHook(func(testenv.Envelope) *smtp.SMTPError {
		entered <- struct{}{}
		<-release
		return nil
	})
	msg := queue(t, st, l, []string{"hung@example.com"}, true)
	o := testOptions(t, st, sink.Addr)
	o.Workers = 1
	o.ShutdownTimeout = 300 * time.Millisecond
	d := start(t, o)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the transaction never reached the sink")
	}
	began := time.Now()
	d.stop(t)
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Run took %v to return with ShutdownTimeout 300ms", took)
	}
	row := rowsOf(t, st, msg)["hung@example.com"]
	if row.State != store.DeliveryDeferred || row.Attempts != 1 {
		t.Errorf("hung row: state %s attempts %d reply %q; want deferred after 1 attempt", row.State, row.Attempts, row.LastReply)
	}
}

// TestRenderBuildsEachMessage sends what Render returns for each member,
// in every shape a Message takes: the member's part must arrive joined to
// the shared one exactly, dots and line ends included.
func TestRenderBuildsEachMessage(t *testing.T) {
	const body = "Subject: s\r\n\r\n.starts with a dot\r\nend\r\n"
	tests := []struct {
		name        string
		own, shared func(rcpt string) string // shared: "" for none
		want        func(rcpt string) string
	}{
		{
			name:   "own fields and a shared rest",
			own:    func(r string) string { return "X-Member: " + r + "\r\n" },
			shared: func(string) string { return body },
			want:   func(r string) string { return "X-Member: " + r + "\r\n" + body },
		},
		{
			name:   "shared only",
			own:    func(string) string { return "" },
			shared: func(string) string { return body },
			want:   func(string) string { return body },
		},
		{
			name:   "own only",
			own:    func(r string) string { return "X-Member: " + r + "\r\n" + body },
			shared: func(string) string { return "" },
			want:   func(r string) string { return "X-Member: " + r + "\r\n" + body },
		},
		{
			name:   "own ending mid-line",
			own:    func(r string) string { return "X-Member: " + r + "\r\nX-Joined: a" },
			shared: func(string) string { return "b\r\n" + body },
			want:   func(r string) string { return "X-Member: " + r + "\r\nX-Joined: ab\r\n" + body },
		},
		{
			name:   "bare line feeds in own",
			own:    func(r string) string { return "X-Member: " + r + "\n.X-Dot: 1\n" },
			shared: func(string) string { return body },
			want:   func(r string) string { return "X-Member: " + r + "\r\n.X-Dot: 1\r\n" + body },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, l := storetest.OpenList(t, testList)
			sink := testenv.StartSink(t)
			rcpts := members(4)
			msg := queue(t, st, l, rcpts, true)
			o := testOptions(t, st, sink.Addr)
			var shared *Shared
			if b := tc.shared(""); b != "" {
				shared = NewShared([]byte(b))
			}
			o.Render = func(ctx context.Context, j Job) (Message, error) {
				if j.MessageID != msg || j.ListID != l.ID || j.List != testList || len(j.Recipients) != 1 {
					return Message{}, fmt.Errorf("unexpected job %+v", j)
				}
				return Message{Own: []byte(tc.own(j.Recipients[0])), Shared: shared}, nil
			}
			start(t, o)
			allSent(t, st, msg, 10*time.Second)
			for _, e := range sink.WaitFor(t, len(rcpts), 5*time.Second) {
				if want := tc.want(e.To[0]); string(e.Data) != want {
					t.Errorf("mail to %s:\n%q\nwant\n%q", e.To[0], e.Data, want)
				}
			}
		})
	}
}

// TestRenderPanicDefers: a message whose rendering trips a bug is
// deferred like any local failure, and the deliverer goes on with the
// others instead of taking the daemon down.
func TestRenderPanicDefers(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	const bad = "bad@example.com"
	rcpts := append(members(3), bad)
	msg := queue(t, st, l, rcpts, true)
	o := testOptions(t, st, sink.Addr)
	body := NewShared([]byte("Subject: x\r\n\r\nx\r\n"))
	o.Render = func(_ context.Context, j Job) (Message, error) {
		if j.Recipients[0] == bad {
			panic("boom")
		}
		return Message{Shared: body}, nil
	}
	start(t, o)
	rows := settled(t, st, msg, 10*time.Second)
	for _, r := range rcpts {
		row := rows[r]
		switch {
		case r == bad && (row.State != store.DeliveryDeferred || !strings.Contains(row.LastReply, "internal error: boom")):
			t.Errorf("%s: %s %q, want deferred with the panic", r, row.State, row.LastReply)
		case r != bad && row.State != store.DeliverySent:
			t.Errorf("%s: %s %q, want sent", r, row.State, row.LastReply)
		}
	}
}

func TestRetryPeriodExpiryFails(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	sink.SetRcptHook(func(string, string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
	})
	msg := queue(t, st, l, []string{"busy@example.com"}, true)
	o := testOptions(t, st, sink.Addr)
	o.RetryInterval = 50 * time.Millisecond
	o.RetryPeriod = 400 * time.Millisecond
	start(t, o)
	var row store.DeliveryInfo
	testenv.WaitForWhy(t, 10*time.Second, "the busy row fails", func() (bool, string) {
		row = rowsOf(t, st, msg)["busy@example.com"]
		return row.State == store.DeliveryFailed, fmt.Sprintf("row %+v", row)
	})
	// 50, 100, 200ms back-offs fit in 400ms, then one last try at the
	// deadline: a handful of attempts, not one and not dozens.
	if row.Attempts < 3 || row.Attempts > 6 || !strings.Contains(row.LastReply, "450 4.2.1 mailbox busy") {
		t.Errorf("expired row: attempts %d reply %q", row.Attempts, row.LastReply)
	}
	bs, err := st.DeliveryBounces(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Kind != store.BounceTemporary || bs[0].Scored {
		t.Errorf("bounces %+v, want one unscored temporary", bs)
	}
}

func TestSmartHostDownDefersWithoutBounces(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	msg := queue(t, st, l, members(3), true)
	o := testOptions(t, st, testenv.FreeAddr(t)) // nothing listens there
	start(t, o)
	rows := settled(t, st, msg, 10*time.Second)
	for _, r := range rows {
		if r.State != store.DeliveryDeferred || !strings.Contains(r.LastReply, "connect") {
			t.Errorf("%s: state %s reply %q, want deferred with the connect error", r.Recipient, r.State, r.LastReply)
		}
	}
	if bs, _ := st.DeliveryBounces(context.Background(), msg); len(bs) != 0 {
		t.Errorf("bounces %+v, want none: a down smart host is not the members' fault", bs)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	msg := queue(t, st, l, members(20), true)
	runtime.GC()
	before := runtime.NumGoroutine()
	d := start(t, testOptions(t, st, sink.Addr))
	allSent(t, st, msg, 10*time.Second)
	d.stop(t)
	var after int
	testenv.WaitForWhy(t, 5*time.Second, "the goroutines Run started are gone", func() (bool, string) {
		after = runtime.NumGoroutine()
		return after <= before, fmt.Sprintf("%d goroutines before Run, %d after it returned", before, after)
	})
}

func TestRunTwiceIsRefused(t *testing.T) {
	st, _ := storetest.OpenList(t, testList)
	d := New(testOptions(t, st, testenv.FreeAddr(t)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	if err := d.Run(ctx); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run: %v, want refused", err)
	}
}

func TestGroup(t *testing.T) {
	row := func(id, msg int64, from, rcpt string) store.Delivery {
		return store.Delivery{ID: id, MessageID: msg, EnvelopeFrom: from, Recipient: rcpt}
	}
	tests := []struct {
		name string
		rows []store.Delivery
		max  int
		want [][]int64 // ids per job
	}{
		{"verp: one job per row", []store.Delivery{
			row(1, 1, "l-bounces+a=x.org@l", "a@x.org"), row(2, 1, "l-bounces+b=x.org@l", "b@x.org")},
			0, [][]int64{{1}, {2}}},
		{"bulk: by domain, capped", []store.Delivery{
			row(1, 1, "l-bounces@l", "a@x.org"), row(2, 1, "l-bounces@l", "b@y.org"), row(3, 1, "l-bounces@l", "c@X.org"),
			row(4, 1, "l-bounces@l", "d@x.org"), row(5, 1, "l-bounces@l", "e@y.org")},
			2, [][]int64{{1, 3}, {2, 5}, {4}}},
		{"bulk: no cap", []store.Delivery{
			row(1, 1, "l-bounces@l", "a@x.org"), row(2, 1, "l-bounces@l", "b@x.org"), row(3, 1, "l-bounces@l", "c@x.org")},
			0, [][]int64{{1, 2, 3}}},
		{"messages never share a transaction", []store.Delivery{
			row(1, 1, "l-bounces@l", "a@x.org"), row(2, 2, "l-bounces@l", "b@x.org")},
			0, [][]int64{{1}, {2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]int64
			for _, j := range group(tc.rows, tc.max) {
				var ids []int64
				for i, r := range j.rows {
					ids = append(ids, r.ID)
					if j.Recipients[i] != r.Recipient || j.EnvelopeFrom != r.EnvelopeFrom || j.MessageID != r.MessageID {
						t.Errorf("job %+v does not match its row %+v", j.Job, r)
					}
				}
				got = append(got, ids)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("group = %v, want %v", got, tc.want)
			}
		})
	}
}
