package reliability

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// TestDatabaseReadOnly makes the database read-only under the running
// daemon (chattr +i: root ignores file modes) and checks what a sender
// and Postfix see: the post is accepted by Postfix (the milter decides
// from its snapshot of the lists, which the fault does not change), LMTP
// answers 451 4.3.0 so Postfix keeps it, nothing is refused for good, and
// once the fault clears the post is delivered without anyone restarting
// anything. The daemon is also restarted in the middle of the fault, as a
// reboot or an upgrade would, and must come up and recover the same way.
func TestDatabaseReadOnly(t *testing.T) {
	t.Parallel()
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		t.Skip("chattr (e2fsprogs) not installed: cannot make the database read-only for root")
	}
	l := listSpec{name: "ro", members: 3}
	s := startStack(t, stackOptions{Extra: "delivery_retry_interval = \"1s\"\n"}, l)
	s.checkHealthy(t, l.addr())
	// One post before the fault, so the daemon has written (and has a
	// WAL file) as it would in service.
	postAndWait(t, s, l, "<ro-0@example.com>")

	files := []string{s.pl.DB, s.pl.DB + "-wal"}
	if out, err := exec.Command(chattr, append([]string{"+i"}, files...)...).CombinedOutput(); err != nil {
		t.Skipf("file system has no immutable attribute (%v: %s)", err, out)
	}
	cleared := false
	clear := func() {
		if cleared {
			return
		}
		cleared = true
		if out, err := exec.Command(chattr, append([]string{"-i"}, files...)...).CombinedOutput(); err != nil {
			t.Errorf("chattr -i: %v: %s", err, out)
		}
	}
	t.Cleanup(clear)

	deferredDuringFault(t, s, l, "<ro-1@example.com>")

	// A restart in the middle of the fault.
	s.pl.Signal(syscall.SIGTERM)
	s.pl.Start()
	s.checkHealthy(t, l.addr())
	deferredDuringFault(t, s, l, "<ro-2@example.com>")

	clear()
	// No flush, no restart: Postfix retries on its own schedule and the
	// daemon must take the mail now.
	for _, id := range []string{"<ro-1@example.com>", "<ro-2@example.com>"} {
		waitDelivered(t, s, l, id, time.Minute)
	}
	s.checkHealthy(t, l.addr())
}

// TestDiskFull puts the database on a small tmpfs of its own, fills the
// file system under the running daemon and checks the same promises as
// TestDatabaseReadOnly: deferred while full (also across a restart),
// delivered by itself once space is freed.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs for the database needs root")
	}
	var mnt string
	// No list size limit: the posts must be big enough to need new disk space.
	l := listSpec{name: "full", members: 3, settings: [][2]string{{"max_message_size", "0"}}}
	s := startStack(t, stackOptions{
		Extra: "delivery_retry_interval = \"1s\"\n",
		BeforeConfigure: func(pl *testenv.Postlist) {
			mnt = filepath.Dir(pl.DB)
			if err := os.MkdirAll(mnt, 0o750); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0750", "tmpfs", mnt).CombinedOutput(); err != nil {
				t.Skipf("cannot mount a tmpfs (%v: %s): the disk-full case needs a file system of its own", err, strings.TrimSpace(string(out)))
			}
			// Registered after NewPostlist's cleanup, so it runs first:
			// the daemon must let go of the file system before it goes.
			t.Cleanup(func() {
				pl.Signal(syscall.SIGTERM)
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v: %s", mnt, err, out)
				}
			})
		},
	}, l)
	s.checkHealthy(t, l.addr())
	postAndWait(t, s, l, "<full-0@example.com>")

	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	// The posts are bigger than whatever room the WAL file already has,
	// so committing one must grow a file on the full file system.
	big := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 24<<10) // about 1 MB
	deferredDuringFaultBody(t, s, l, "<full-1@example.com>", big)
	s.pl.Signal(syscall.SIGTERM)
	s.pl.Start()
	s.checkHealthy(t, l.addr())
	deferredDuringFaultBody(t, s, l, "<full-2@example.com>", big)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"<full-1@example.com>", "<full-2@example.com>"} {
		waitDelivered(t, s, l, id, time.Minute)
	}
	s.checkHealthy(t, l.addr())
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

func postAndWait(t *testing.T, s *stack, l listSpec, id string) {
	t.Helper()
	res := testenv.SendMail(t, s.pf.SMTPAddr, poster, []string{l.addr()}, message(l.addr(), id, id, "Hello.\r\n"))
	if !res.Data.OK() {
		t.Fatalf("post %s not accepted: %v", id, res)
	}
	waitDelivered(t, s, l, id, time.Minute)
}

// waitDelivered waits until every member of l has exactly one copy of the
// post, which is stored once.
func waitDelivered(t *testing.T, s *stack, l listSpec, id string, timeout time.Duration) {
	t.Helper()
	testenv.WaitForWhy(t, timeout, id+" at every member", func() (bool, string) {
		got := copies(s.sink.Envelopes(), id)
		for _, m := range l.memberAddrs() {
			if got[copyKey{id, m}] != 1 {
				return false, fmt.Sprintf("%s has %d copies; Postfix queue holds %d list recipients", m, got[copyKey{id, m}], listMailQueued(t, s.pf))
			}
		}
		return true, ""
	})
	db := openDB(t, s.pl.DB)
	defer db.Close()
	if n := queryInt(t, db, "SELECT COUNT(*) FROM messages m JOIN intake i ON i.message_id = m.id WHERE m.message_id = ?", id); n != 1 {
		t.Errorf("%s stored %d times, want once", id, n)
	}
}

func deferredDuringFault(t *testing.T, s *stack, l listSpec, id string) {
	t.Helper()
	deferredDuringFaultBody(t, s, l, id, "Hello.\r\n")
}

// deferredDuringFaultBody sends a post while the database is broken and
// checks that Postfix accepted it (the milter still decides), that LMTP
// deferred it with 451 4.3.0, and that the milter and /healthz still
// answer.
func deferredDuringFaultBody(t *testing.T, s *stack, l listSpec, id, body string) {
	t.Helper()
	res := testenv.SendMail(t, s.pf.SMTPAddr, poster, []string{l.addr()}, message(l.addr(), id, id, body))
	qid := res.QueueID()
	if qid == "" {
		t.Fatalf("post %s not accepted by Postfix during the fault (the milter must still decide): %v", id, res)
	}
	s.pf.WaitLog(t, regexp.MustCompile(regexp.QuoteMeta(qid)+`: to=<`+regexp.QuoteMeta(l.addr())+
		`>, relay=.*status=deferred \(host .* said: 451 4\.3\.0 <`+regexp.QuoteMeta(l.addr())+
		`> temporary local problem, please try again later`), time.Minute)
	if regexp.MustCompile(regexp.QuoteMeta(qid) + `: .*status=(bounced|sent)`).MatchString(s.pf.Log()) {
		t.Fatalf("%s was delivered or bounced during the fault:\n%s", id, s.pf.Log())
	}
	s.checkHealthy(t, l.addr())
}
