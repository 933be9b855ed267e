package reliability

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"postlist/internal/testenv"
	"postlist/store"
)

// seedEnv replays a campaign: its random choices (kill moments, pacing,
// faults) come from this seed, which every run logs.
const seedEnv = "POSTLIST_TORTURE_SEED"

func campaignSeed(t *testing.T) uint64 {
	t.Helper()
	if v := os.Getenv(seedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", seedEnv, v, err)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

func crashCycles(t *testing.T) int {
	t.Helper()
	if v := os.Getenv(tortureCyclesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of kill cycles", tortureCyclesEnv, v)
		}
		return n
	}
	if *tortureFlag {
		return 50
	}
	return 5
}

// postOutcome is what the poster learnt about one post from Postfix.
type postOutcome struct {
	list      listSpec
	acked     bool // Postfix answered 250 to the message: it must arrive
	unknown   bool // the conversation broke after the message was sent
	tempfails int  // 4xx answers before the final one
	permanent string
}

// inflight is a delivery row found in state sending after a kill: claimed,
// possibly accepted by Postfix, outcome not committed. Recovery sends it
// again, which is the one duplicate the design allows.
type inflight struct {
	copyKey
	kill int
}

// TestCrashCampaign streams posts through the real Postfix to lists of 1,
// 10 and 50 members while postlist is killed with SIGKILL at random
// moments and restarted. At the end every post Postfix accepted (250) must
// have reached every member, and every LMTP 250 Postfix logged must name a
// stored message. A member may get a post twice only if, at a kill, that
// delivery was in flight (its row in state sending). A post whose LMTP 250
// was lost at a kill is stored twice (Postfix delivers it again) but must
// be distributed once.
func TestCrashCampaign(t *testing.T) {
	t.Parallel()
	cycles := crashCycles(t)
	seed := campaignSeed(t)
	t.Logf("crash campaign: %d kill cycles, seed %d (%s=%d replays the random choices)", cycles, seed, seedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	maxPosts := 36
	pace := [2]time.Duration{150 * time.Millisecond, 350 * time.Millisecond}
	if longRun() {
		maxPosts = 2000
		pace = [2]time.Duration{200 * time.Millisecond, 500 * time.Millisecond}
	}

	lists := []listSpec{{name: "one", members: 1}, {name: "ten", members: 10}, {name: "fifty", members: 50}}
	s := startStack(t, stackOptions{Extra: "delivery_retry_interval = \"1s\"\n"}, lists...)
	start := time.Now()

	// Posters: two concurrent SMTP clients, as two remote servers would
	// be. A post answered 4xx (the milter is down while the daemon
	// restarts) is retried, as a remote server would retry it.
	var (
		mu       sync.Mutex
		outcomes = map[string]*postOutcome{} // by Message-ID
		next     atomic.Int64
	)
	ctx, stopPosting := context.WithCancel(context.Background())
	var posters sync.WaitGroup
	for p := range 2 {
		prng := rand.New(rand.NewPCG(seed, uint64(p)+2))
		posters.Add(1)
		go func() {
			defer posters.Done()
			for ctx.Err() == nil {
				n := int(next.Add(1))
				if n > maxPosts {
					return
				}
				l := lists[n%len(lists)]
				id := fmt.Sprintf("<crash-%d@example.com>", n)
				o := &postOutcome{list: l}
				mu.Lock()
				outcomes[id] = o
				mu.Unlock()
				msg := message(l.addr(), id, fmt.Sprintf("crash %d", n), "Post number "+strconv.Itoa(n)+".\r\n")
				for try := 0; ctx.Err() == nil && try < 200; try++ {
					res, err := testenv.Transact(s.pf.SMTPAddr, testenv.SendOptions{Timeout: time.Minute}, poster, []string{l.addr()}, msg)
					mu.Lock()
					done := classifyPost(o, res, err)
					mu.Unlock()
					if done {
						break
					}
					sleep(ctx, 200*time.Millisecond)
				}
				sleep(ctx, pace[0]+time.Duration(prng.Int64N(int64(pace[1]-pace[0]))))
			}
		}()
	}

	// Killer: SIGKILL at a random moment 0.3-1.5 s after the daemon came
	// up, note what was in flight, stay down up to 0.5 s, restart.
	var (
		inflights []inflight
		killTimes []time.Time
	)
	for k := range cycles {
		time.Sleep(300*time.Millisecond + time.Duration(rng.Int64N(int64(1200*time.Millisecond))))
		killTimes = append(killTimes, time.Now())
		s.pl.Signal(syscall.SIGKILL)
		for _, c := range sendingRows(t, s.pl.DB) {
			inflights = append(inflights, inflight{copyKey: c, kill: k})
		}
		time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Millisecond))))
		s.pl.Start()
	}
	killedFor := time.Since(start)
	stopPosting()
	posters.Wait()

	// Drain: Postfix hands over what it deferred while the daemon was
	// down, the daemon fans out, Postfix relays to the sink.
	db := openDB(t, s.pl.DB)
	s.pf.Flush(t)
	lastFlush := time.Now()
	acked := map[string]*postOutcome{}
	mu.Lock()
	for id, o := range outcomes {
		if o.acked {
			acked[id] = o
		}
	}
	mu.Unlock()
	drainTimeout := 3 * time.Minute
	if longRun() {
		drainTimeout = 15 * time.Minute
	}
	testenv.WaitForWhy(t, drainTimeout, "every acknowledged post at every member", func() (bool, string) {
		if time.Since(lastFlush) > 5*time.Second {
			s.pf.Flush(t) // Postfix backs off the LMTP destination after refusals
			lastFlush = time.Now()
		}
		got := copies(s.sink.Envelopes(), "<crash-")
		missing := 0
		for id, o := range acked {
			for _, m := range o.list.memberAddrs() {
				if got[copyKey{id, m}] == 0 {
					missing++
				}
			}
		}
		if missing > 0 {
			return false, fmt.Sprintf("%d copies missing; Postfix still holds %d list recipients; %s", missing, listMailQueued(t, s.pf), unsettled(t, db))
		}
		if u := unsettled(t, db); u != "" {
			return false, u
		}
		return true, ""
	})
	// Whatever is still on its way to the sink is in Postfix's queue.
	s.pf.WaitQueueEmpty(t, time.Minute)
	got := copies(s.sink.Envelopes(), "<crash-")

	// Every LMTP 250 Postfix logged names a stored message.
	lmtpAcks := lmtpQueuedIDs(s.pf.Log(), s.pl.LMTP)
	stored := map[int64]bool{}
	rows, err := db.Query("SELECT id FROM messages")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored[id] = true
	}
	rows.Close()
	for _, id := range lmtpAcks {
		if !stored[id] {
			t.Errorf("Postfix got 250 for message %d over LMTP, but it is not in the database", id)
		}
	}

	// How many times each post was stored: more than once only when a
	// kill hit between our commit and Postfix reading the 250. Such a
	// second copy must not be distributed again (the pipeline discards a
	// post of the same queued message), so distributed counts the posts
	// rows, which is what the members' copies are bounded by.
	intakes := intakeInstances(t, db)
	distributed := distributions(t, db)
	for id, times := range intakes {
		if len(times) < 2 {
			continue
		}
		for _, at := range times[:len(times)-1] {
			if !nearKill(at, killTimes, 5*time.Second) {
				t.Errorf("%s stored %d times; the copy stored at %s was not near any kill", id, len(times), at.Format(time.RFC3339Nano))
			}
		}
	}

	allowed := map[copyKey]int{}
	for _, f := range inflights {
		allowed[f.copyKey]++
	}
	var ackedN, tempfails, deliveries, copiesN, dupInflight, dupDistributed, storedTwice int
	mu.Lock()
	defer mu.Unlock()
	for id, o := range outcomes {
		tempfails += o.tempfails
		if o.permanent != "" {
			t.Errorf("%s to %s refused permanently: %s (a valid post must only ever be deferred)", id, o.list.addr(), o.permanent)
		}
		if o.acked {
			ackedN++
			if len(intakes[id]) == 0 {
				t.Errorf("%s was accepted by Postfix but never stored", id)
			}
		}
		if len(intakes[id]) > 1 {
			storedTwice++
		}
		if distributed[id] > 1 {
			t.Errorf("%s was distributed %d times (stored %d times): a second LMTP delivery of one queued message must not be posted again",
				id, distributed[id], len(intakes[id]))
		}
		for _, m := range o.list.memberAddrs() {
			k := copyKey{id, m}
			n := got[k]
			copiesN += n
			if o.acked {
				deliveries++
			}
			if o.acked && n == 0 {
				t.Errorf("%s: acknowledged post never reached %s", id, m)
			}
			if !o.acked && !o.unknown && n > 0 {
				t.Errorf("%s: Postfix never accepted the post, yet %s got %d copies", id, m, n)
			}
			bound := distributed[id] + allowed[k]
			if n > max(bound, 1) {
				t.Errorf("%s reached %s %d times; at most %d explained (distributed %d times, in flight at %d kills)",
					id, m, n, bound, distributed[id], allowed[k])
			}
			if n > 1 {
				extra := min(n-1, max(distributed[id]-1, 0))
				dupDistributed += extra
				dupInflight += n - 1 - extra
			}
		}
	}
	if ackedN < min(maxPosts, 10) {
		t.Errorf("only %d posts acknowledged; the campaign proved little", ackedN)
	}
	failed := queryInt(t, db, "SELECT COUNT(*) FROM deliveries WHERE state <> 'sent'")
	if failed != 0 {
		t.Errorf("%d deliveries ended in a state other than sent", failed)
	}
	t.Logf("crash campaign: %d kills in %v; %d posts acknowledged by Postfix (%d temporary refusals while the daemon was down, retried); "+
		"%d LMTP 250s, all stored; %d posts stored twice (250 lost at a kill), distributed once; "+
		"%d member deliveries expected, %d copies at the sink; duplicates %d (%d from %d rows in flight at kills, %d from posts distributed twice); total %v",
		cycles, killedFor.Round(time.Millisecond), ackedN, tempfails, len(lmtpAcks), storedTwice, deliveries, copiesN,
		dupInflight+dupDistributed, dupInflight, len(inflights), dupDistributed, time.Since(start).Round(time.Millisecond))
}

// classifyPost records one attempt's result and reports whether the post
// is settled (accepted, refused for good, or unknown).
func classifyPost(o *postOutcome, res testenv.SendResult, err error) bool {
	if err != nil {
		if res.Data.Code == 0 && strings.Contains(err.Error(), "reply to message") {
			// Sent, but the verdict never came: Postfix may or may not
			// have queued it.
			o.unknown = true
			return true
		}
		o.tempfails++
		return false
	}
	// The verdict is the first reply that was not a success; the
	// conversation stops there.
	last := res.Data
	for _, r := range append([]testenv.Reply{res.Greeting, res.Ehlo, res.Mail}, res.Rcpt...) {
		if r.Code != 0 && !r.OK() {
			last = r
			break
		}
	}
	switch {
	case last.OK():
		o.acked = true
		return true
	case last.Code >= 400 && last.Code < 500:
		o.tempfails++
		return false
	default:
		o.permanent = last.String()
		return true
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// sendingRows lists the deliveries left in state sending by a dead
// daemon, by post Message-ID and recipient.
func sendingRows(t *testing.T, path string) []copyKey {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	rows, err := db.Query(`SELECT m.message_id, d.recipient FROM deliveries d
		JOIN messages m ON m.id = d.message_id WHERE d.state = 'sending'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []copyKey
	for rows.Next() {
		var k copyKey
		if err := rows.Scan(&k.msgID, &k.rcpt); err != nil {
			t.Fatal(err)
		}
		k.rcpt = strings.ToLower(k.rcpt)
		out = append(out, k)
	}
	return out
}

// intakeInstances returns, per post Message-ID, when each stored copy of
// it was received over LMTP, oldest first.
func intakeInstances(t *testing.T, db *sql.DB) map[string][]time.Time {
	t.Helper()
	rows, err := db.Query(`SELECT m.message_id, i.received_at FROM intake i
		JOIN messages m ON m.id = i.message_id WHERE i.kind = 'post' ORDER BY i.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]time.Time{}
	for rows.Next() {
		var id, at string
		if err := rows.Scan(&id, &at); err != nil {
			t.Fatal(err)
		}
		ts, err := store.ParseTime(at)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = append(out[id], ts)
	}
	return out
}

// distributions counts, per post Message-ID, how many times a list
// accepted a stored copy of it for distribution (posts rows).
func distributions(t *testing.T, db *sql.DB) map[string]int {
	t.Helper()
	rows, err := db.Query(`SELECT m.message_id, COUNT(*) FROM posts p JOIN messages m ON m.id = p.message_id GROUP BY m.message_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	return out
}

// nearKill reports whether at lies in the window before one of the kills.
func nearKill(at time.Time, kills []time.Time, window time.Duration) bool {
	return slices.ContainsFunc(kills, func(k time.Time) bool {
		return !at.After(k) && k.Sub(at) <= window
	})
}

// lmtpQueuedIDs returns the message ids of every LMTP 250 in Postfix's
// log for the daemon at lmtpAddr ("status=sent (250 2.0.0 <rcpt> queued
// as 42)").
func lmtpQueuedIDs(log, lmtpAddr string) []int64 {
	_, port, _ := strings.Cut(lmtpAddr, ":")
	re := regexp.MustCompile(`relay=[^ ]*\]:` + regexp.QuoteMeta(port) + `,.*status=sent \(250 2\.0\.0 <[^>]*> queued as (\d+)\)`)
	var out []int64
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		id, _ := strconv.ParseInt(m[1], 10, 64)
		out = append(out, id)
	}
	return out
}
