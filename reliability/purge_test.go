package reliability

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// purgePosts is how many posts TestPurgeUnderLoad sends.
func purgePosts() int {
	if longRun() {
		return 200
	}
	return 40
}

// TestPurgeUnderLoad runs `postlist purge --older-than 0` in a loop, as
// aggressive as retention can get, while posts stream through Postfix
// into the daemon: the purge may only ever take finished work, so every
// accepted post must still reach every member exactly once; and once all
// is delivered, one more purge must leave no message behind, which shows
// the loop was not purging nothing.
func TestPurgeUnderLoad(t *testing.T) {
	t.Parallel()
	l := listSpec{name: "purge", members: 3}
	s := startStack(t, stackOptions{}, l)
	s.checkHealthy(t, l.addr())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var purges, purged int
	var purgeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := exec.Command(s.pl.Bin, "-c", s.pl.Config, "--json", "purge", "--older-than", "0").Output()
			if err != nil {
				purgeErr = fmt.Errorf("purge: %v: %s", err, out)
				return
			}
			var st struct {
				Messages int `json:"messages"`
			}
			if err := json.Unmarshal(out, &st); err != nil {
				purgeErr = fmt.Errorf("purge said %q: %v", out, err)
				return
			}
			purges++
			purged += st.Messages
			time.Sleep(20 * time.Millisecond)
		}
	}()

	n := purgePosts()
	for i := range n {
		id := fmt.Sprintf("<purge-%d@example.com>", i)
		res := testenv.SendMail(t, s.pf.SMTPAddr, poster, []string{l.addr()}, message(l.addr(), id, fmt.Sprintf("post %d", i), "hello\r\n"))
		if !res.Data.OK() {
			close(stop)
			wg.Wait()
			t.Fatalf("post %d: %v", i, res)
		}
		// Spread out, so that purges run between posts in every state:
		// arriving, fanned out, half delivered, done.
		time.Sleep(100 * time.Millisecond)
	}
	want := n * len(l.memberAddrs())
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		got := copies(s.sink.Envelopes(), "<purge-")
		for i := range n {
			id := fmt.Sprintf("<purge-%d@example.com>", i)
			if got[copyKey{id, l.memberAddrs()[0]}] == 0 {
				t.Logf("missing %s", id)
			}
		}
		t.Logf("daemon log:\n%s", s.pl.Log())
	})
	testenv.WaitForWhy(t, 30*time.Second, "every copy at the sink", func() (bool, string) {
		got := copies(s.sink.Envelopes(), "<purge-")
		return len(got) >= want, fmt.Sprintf("%d of %d (post, member) pairs", len(got), want)
	})
	close(stop)
	wg.Wait()
	if purgeErr != nil {
		t.Fatal(purgeErr)
	}
	if purges < 2 {
		t.Fatalf("only %d purge runs overlapped the posts", purges)
	}
	for k, c := range copies(s.sink.Envelopes(), "<purge-") {
		if c != 1 {
			t.Errorf("%s got %s %d times", k.rcpt, k.msgID, c)
		}
	}
	db := openDB(t, s.pl.DB)
	testenv.WaitForWhy(t, 30*time.Second, "the daemon settles", func() (bool, string) {
		u := unsettled(t, db)
		return u == "", u
	})
	s.pl.CLI("purge", "--older-than", "0")
	if left := queryInt(t, db, "SELECT COUNT(*) FROM messages"); left != 0 {
		t.Errorf("%d messages left after a final purge of finished work", left)
	}
	t.Logf("%d posts, %d purge runs during the load removed %d messages", n, purges, purged)
}
