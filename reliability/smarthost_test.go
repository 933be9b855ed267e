package reliability

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/deliver"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/store"
)

// faultClass is what a member's smart host does to its copies.
type faultClass int

const (
	classOK     faultClass = iota // accepted at once
	classTemp                     // temporary faults, then accepted
	classPerm                     // refused for good at the first attempt
	classExpire                   // 451 at every attempt, until the retry period ends
)

// Faults the binary campaign draws from. Stalls are not among them: the
// daemon's SMTP timeouts are not configurable (5 and 10 minutes, RFC
// 5321's), so TestSmartHostStall covers stalls in process.
var (
	tempFaults = []fault{fault421Rcpt, fault451Rcpt, fault452Rcpt, fault451Data, fault421Data, faultDropData}
	permFaults = []fault{fault550Rcpt, fault554Rcpt, fault550Data, fault554Data}
)

// permBounce is the bounces.kind each permanent fault must be recorded as
// (docs/delivery.md, Outcomes): a 5.1.x refusal of the recipient scores
// against the member, a policy refusal never does, a refusal of the
// message's content is "unknown".
var permBounce = map[fault]string{
	fault550Rcpt: store.BouncePermanent, fault554Rcpt: store.BouncePolicy,
	fault550Data: store.BouncePermanent, fault554Data: store.BounceUnknown,
}

type memberPlan struct {
	class  faultClass
	faults []fault // for the first attempts; then accepted (classTemp, classPerm)
}

// TestSmartHostFaults sends a post through the real Postfix and daemon to
// a list whose members' smart host misbehaves: some members' copies are
// accepted, some deferred by 421/451/452 or a connection dropped mid-DATA
// and then accepted, some refused with 550/554, some deferred until the
// retry period ends. It checks each member's final state and bounce,
// that every attempt the sink saw is counted, that retries back off as
// documented and stop at the retry period, that nothing accepted is sent
// twice, and that the daemon leaks neither connections, file descriptors
// nor goroutines.
func TestSmartHostFaults(t *testing.T) {
	t.Parallel()
	seed := campaignSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	n := map[faultClass]int{classOK: 6, classTemp: 10, classPerm: 6, classExpire: 2}
	maxTemp := 2
	if longRun() {
		n = map[faultClass]int{classOK: 20, classTemp: 40, classPerm: 16, classExpire: 4}
		maxTemp = 3
	}
	const (
		workers  = 4
		interval = time.Second
		period   = 9 * time.Second
	)
	plans := map[string]memberPlan{}
	var addrs []string
	for _, c := range []faultClass{classOK, classTemp, classPerm, classExpire} {
		for i := range n[c] {
			addr := fmt.Sprintf("%s-%02d@%s", [...]string{"ok", "temp", "perm", "expire"}[c], i, memberDomain)
			p := memberPlan{class: c}
			switch c {
			case classTemp:
				for range 1 + rng.IntN(maxTemp) {
					p.faults = append(p.faults, tempFaults[rng.IntN(len(tempFaults))])
				}
			case classPerm:
				p.faults = []fault{permFaults[i%len(permFaults)]}
			}
			plans[addr] = p
			addrs = append(addrs, addr)
		}
	}
	sink := startFaultSink(t, func(rcpt string, prior int) fault {
		p := plans[rcpt]
		switch {
		case p.class == classExpire:
			return fault451Rcpt
		case prior < len(p.faults):
			return p.faults[prior]
		}
		return faultNone
	})
	s := startStack(t, stackOptions{
		SmartHost: sink.Addr,
		Extra: fmt.Sprintf("delivery_retry_interval = %q\ndelivery_retry_period = %q\nmax_delivery_threads = %d\n",
			interval.String(), period.String(), workers),
	}, listSpec{name: "faults", addrs: addrs})
	list := "faults@" + listDomain
	t.Logf("smart-host faults: %d members, seed %d", len(addrs), seed)

	pid := daemonPID(t, s.pl)
	fdsBefore := openFDs(t, pid)
	goBefore := settledGoroutines(t, s.pl.HTTP, -1)

	res := testenv.SendMail(t, s.pf.SMTPAddr, poster, []string{list}, message(list, "<faults-1@example.com>", "faults", "Hello.\r\n"))
	if !res.Data.OK() {
		t.Fatalf("post not accepted: %v", res)
	}
	db := openDB(t, s.pl.DB)
	testenv.WaitForWhy(t, period+time.Minute, "every delivery final", func() (bool, string) {
		total := queryInt(t, db, "SELECT COUNT(*) FROM deliveries")
		open := queryInt(t, db, "SELECT COUNT(*) FROM deliveries WHERE state NOT IN ('sent','failed')")
		return total == int64(len(addrs)) && open == 0, fmt.Sprintf("%d of %d deliveries final", total-open, total)
	})

	type row struct {
		state, reply string
		attempts     int
		created      time.Time
	}
	rows := map[string]row{}
	q, err := db.Query("SELECT recipient, state, last_reply, attempts, created_at FROM deliveries")
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var r row
		var rcpt, created string
		if err := q.Scan(&rcpt, &r.state, &r.reply, &r.attempts, &created); err != nil {
			t.Fatal(err)
		}
		if r.created, err = store.ParseTime(created); err != nil {
			t.Fatal(err)
		}
		rows[strings.ToLower(rcpt)] = r
	}
	q.Close()
	bounces := map[string][]string{}
	q, err = db.Query("SELECT address, kind FROM bounces")
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var a, k string
		if err := q.Scan(&a, &k); err != nil {
			t.Fatal(err)
		}
		bounces[strings.ToLower(a)] = append(bounces[strings.ToLower(a)], k)
	}
	q.Close()

	var attemptsTotal, faultsTotal int
	for _, addr := range addrs {
		p, r := plans[addr], rows[addr]
		seen, delivered := sink.history(addr)
		attemptsTotal += len(seen)
		for _, a := range seen {
			if a.fault != faultNone {
				faultsTotal++
			}
		}
		if r.attempts != len(seen) {
			t.Errorf("%s: database counts %d attempts, the smart host saw %d (%v)", addr, r.attempts, len(seen), faultList(seen))
		}
		wantState, wantAttempts, wantDelivered := store.DeliverySent, 1+len(p.faults), 1
		switch p.class {
		case classPerm:
			wantState, wantAttempts, wantDelivered = store.DeliveryFailed, 1, 0
		case classExpire:
			wantState, wantAttempts, wantDelivered = store.DeliveryFailed, -1, 0
		}
		if r.state != wantState {
			t.Errorf("%s (faults %v): state %s, want %s; last reply %q", addr, faultList(seen), r.state, wantState, r.reply)
		}
		if wantAttempts >= 0 && len(seen) != wantAttempts {
			t.Errorf("%s: %d attempts (%v), want %d", addr, len(seen), faultList(seen), wantAttempts)
		}
		if delivered != wantDelivered {
			t.Errorf("%s: accepted %d times by the smart host, want %d", addr, delivered, wantDelivered)
		}
		checkBackoff(t, addr, seen, r.created.Add(period), interval)
		switch p.class {
		case classPerm:
			if want := permBounce[p.faults[0]]; len(bounces[addr]) != 1 || bounces[addr][0] != want {
				t.Errorf("%s refused with %v: bounces %v, want one %s", addr, p.faults[0], bounces[addr], want)
			}
		case classExpire:
			if limit := maxAttempts(interval, period); len(seen) > limit || len(seen) < 3 {
				t.Errorf("%s: %d attempts within the retry period %v, want 3..%d", addr, len(seen), period, limit)
			}
			if last := seen[len(seen)-1].at; last.Before(r.created.Add(period - 20*time.Millisecond)) {
				t.Errorf("%s failed at %v, before the retry period ended at %v", addr, last, r.created.Add(period))
			}
			if !strings.HasPrefix(r.reply, "retry period over: 451 4.3.0") {
				t.Errorf("%s: last reply %q, want the expiry of the 451", addr, r.reply)
			}
			if len(bounces[addr]) != 1 || bounces[addr][0] != store.BounceTemporary {
				t.Errorf("%s expired: bounces %v, want one temporary", addr, bounces[addr])
			}
		default:
			if len(bounces[addr]) != 0 {
				t.Errorf("%s was delivered but has bounces %v", addr, bounces[addr])
			}
		}
	}

	// Leaks: never more connections than sessions, and the daemon's file
	// descriptors and goroutines back where they were once it is idle
	// (it keeps up to `workers` SMTP connections open for reuse). The
	// peak has one of slack: the sink notices a hang-up only when its
	// read returns, which may be after the client dialled the
	// replacement; a real leak shows in the idle counts.
	open, peak, conns := sink.stats()
	if peak > workers+1 {
		t.Errorf("smart host saw %d connections at once, max_delivery_threads is %d: a connection leaked", peak, workers)
	}
	if open > workers {
		t.Errorf("%d connections still open to the smart host once idle, want at most %d", open, workers)
	}
	// Postfix closes its cached LMTP session within seconds; the
	// counts settle with it, a leak never does.
	goAfter := settledGoroutines(t, s.pl.HTTP, goBefore+2)
	var fdsAfter int
	testenv.WaitForWhy(t, 20*time.Second, "daemon sockets back to the listeners and the kept-open SMTP connections", func() (bool, string) {
		fdsAfter = openFDs(t, pid)
		return fdsAfter <= fdsBefore+workers, fmt.Sprintf("%d sockets open, %d before the post: leak", fdsAfter, fdsBefore)
	})
	t.Logf("smart-host faults: %d members, %d transactions (%d faulted), %d connections (peak %d, %d open at the end); "+
		"daemon sockets %d -> %d, goroutines %d -> %d",
		len(addrs), attemptsTotal, faultsTotal, conns, peak, open, fdsBefore, fdsAfter, goBefore, goAfter)
}

func faultList(as []attempt) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.fault.String())
	}
	return out
}

// checkBackoff checks the waits between a recipient's attempts: after the
// i-th failure at least 0.9 × interval × 2^(i-1) (the documented back-off
// less its jitter) unless the retry period's end comes first, and not
// much more than 1.1 × that (the retry is not forgotten).
func checkBackoff(t *testing.T, rcpt string, seen []attempt, deadline time.Time, interval time.Duration) {
	t.Helper()
	const slack = 3 * time.Second // poll, claim and a loaded machine
	for i := 1; i < len(seen); i++ {
		base := interval << (i - 1)
		low := seen[i-1].at.Add(base * 9 / 10)
		if deadline.Before(low) {
			low = deadline
		}
		high := seen[i-1].at.Add(base*11/10 + seen[i-1].held + slack)
		got := seen[i].at
		// Stored times have millisecond precision.
		if got.Before(low.Add(-20 * time.Millisecond)) {
			t.Errorf("%s: attempt %d came %v after attempt %d, back-off wants at least %v",
				rcpt, i+1, got.Sub(seen[i-1].at).Round(time.Millisecond), i, low.Sub(seen[i-1].at).Round(time.Millisecond))
		}
		if got.After(high) {
			t.Errorf("%s: attempt %d came %v after attempt %d, back-off wants at most %v",
				rcpt, i+1, got.Sub(seen[i-1].at).Round(time.Millisecond), i, high.Sub(seen[i-1].at).Round(time.Millisecond))
		}
	}
}

// maxAttempts bounds the attempts of a recipient that is deferred at
// every attempt: the first, one per shortest back-off that fits in the
// retry period, and the last one at its end.
func maxAttempts(interval, period time.Duration) int {
	n, elapsed := 1, time.Duration(0)
	for w := interval * 9 / 10; elapsed+w < period; w *= 2 {
		elapsed += w
		n++
	}
	return n + 1
}

// daemonPID finds the running `postlist serve` of pl by its command line.
func daemonPID(t testing.TB, pl *testenv.Postlist) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 4 && args[1] == "-c" && args[2] == pl.Config && args[3] == "serve" {
			return pid
		}
	}
	t.Fatalf("no running postlist serve -c %s", pl.Config)
	return 0
}

// openFDs counts the sockets a process has open. Other descriptors are
// left out: SQLite's reader pool opens database files lazily, up to its
// limit, which is growth but no leak.
func openFDs(t testing.TB, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// settledGoroutines reads go_goroutines from the daemon's /metrics until
// it is at most limit (any value when limit < 0) and returns it; it fails
// the test if the count stays above limit for 20 s. Connections close
// asynchronously (Postfix caches LMTP and milter sessions for a moment),
// which is why it polls.
func settledGoroutines(t testing.TB, httpAddr string, limit int) int {
	t.Helper()
	var n float64
	var err error
	if !testenv.Eventually(20*time.Second, func() bool {
		n, err = metric(httpAddr, "go_goroutines")
		if err != nil {
			t.Fatalf("goroutine count: %v", err)
		}
		return limit < 0 || int(n) <= limit
	}) {
		t.Errorf("daemon runs %d goroutines once idle, want at most %d: leak", int(n), limit)
	}
	return int(n)
}

// TestSmartHostStall runs the deliverer in process against a smart host
// that stops answering, with timeouts short enough for a test (the daemon
// does not make them configurable): a stall at RCPT and one after the
// message must each end in a deferral after the timeout, then delivery on
// the retry, with the stalled connection closed and, once the deliverer
// has stopped, none of its goroutines left.
func TestSmartHostStall(t *testing.T) {
	t.Parallel()
	const (
		cmdTimeout  = 600 * time.Millisecond
		dataTimeout = 900 * time.Millisecond
	)
	plans := map[string][]fault{}
	var rcpts []string
	for i := range 4 {
		for _, f := range []fault{faultNone, faultStallRcpt, faultStallData} {
			addr := fmt.Sprintf("%s-%d@%s", strings.ReplaceAll(strings.ToLower(f.String()), "@", "-"), i, memberDomain)
			if f != faultNone {
				plans[addr] = []fault{f}
			}
			rcpts = append(rcpts, addr)
		}
	}
	// A temporary fault among the stalls, so the retry path is shared.
	plans[rcpts[0]] = []fault{fault451Rcpt}
	sink := startFaultSink(t, func(rcpt string, prior int) fault {
		if prior < len(plans[rcpt]) {
			return plans[rcpt][prior]
		}
		return faultNone
	})

	ctx := context.Background()
	list := "stall@" + listDomain
	st, l := storetest.OpenList(t, list)
	id, err := st.StoreMessage(ctx, poster, message(list, "<stall@example.com>", "stall", "Hello.\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []store.NewDelivery
	for _, r := range rcpts {
		rows = append(rows, store.NewDelivery{Recipient: r, EnvelopeFrom: address.VERP(list, r, "+")})
	}
	if err := st.QueueDeliveries(ctx, id, l.ID, rows); err != nil {
		t.Fatal(err)
	}

	d := deliver.New(deliver.Options{
		Store: st, Log: zap.NewNop(), Addr: sink.Addr, HeloName: "postlist.test", Workers: 3,
		CommandTimeout: cmdTimeout, DataTimeout: dataTimeout,
		RetryInterval: 300 * time.Millisecond, RetryPeriod: time.Minute, PollInterval: 50 * time.Millisecond,
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	testenv.WaitForWhy(t, time.Minute, "every stalled delivery sent on a retry", func() (bool, string) {
		ds, err := st.MessageDeliveries(ctx, id)
		if err != nil {
			return false, err.Error()
		}
		sent := 0
		for _, x := range ds {
			if x.State == store.DeliverySent {
				sent++
			}
		}
		return sent == len(rcpts), fmt.Sprintf("%d of %d sent", sent, len(rcpts))
	})
	ds, err := st.MessageDeliveries(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ds {
		seen, delivered := sink.history(strings.ToLower(x.Recipient))
		want := 1 + len(plans[strings.ToLower(x.Recipient)])
		if len(seen) != want || x.Attempts != want || delivered != 1 {
			t.Errorf("%s: %d attempts at the smart host (%v), %d recorded, delivered %d times; want %d, %d, once",
				x.Recipient, len(seen), faultList(seen), x.Attempts, delivered, want, want)
		}
		if len(seen) == 0 {
			continue
		}
		switch seen[0].fault {
		case faultStallRcpt, faultStallData:
			timeout := cmdTimeout
			if seen[0].fault == faultStallData {
				timeout = dataTimeout
			}
			// The client hangs up after its timeout, not before, and not
			// much later.
			if h := seen[0].held; h < timeout-50*time.Millisecond || h > timeout+3*time.Second {
				t.Errorf("%s: stalled connection held %v, timeout %v", x.Recipient, h, timeout)
			}
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Stopped: its connections are closed (QUIT) and none of its
	// goroutines survive.
	testenv.WaitForWhy(t, 10*time.Second, "smart host connections closed", func() (bool, string) {
		open, _, _ := sink.stats()
		return open == 0, fmt.Sprintf("%d still open", open)
	})
	_, peak, conns := sink.stats()
	// Seen from the sink, a worker that hangs up on a stalled connection
	// and dials a new one races the sink noticing the hang-up, so each of
	// the 3 workers may briefly count twice; a leaked or unbounded pool
	// would show every connection of the run (conns) open at once.
	if peak > 2*3 {
		t.Errorf("%d connections at once with 3 workers", peak)
	}
	testenv.WaitForWhy(t, 10*time.Second, "no deliverer goroutine left", func() (bool, string) {
		var b bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
		var left []string
		for g := range strings.SplitSeq(b.String(), "\n\n") {
			if strings.Contains(g, "postlist/deliver.") {
				left = append(left, g)
			}
		}
		return len(left) == 0, strings.Join(left, "\n\n")
	})
	t.Logf("smart-host stalls: %d recipients, %d connections (peak %d), all sent on the retry after the timeout", len(rcpts), conns, peak)
}
