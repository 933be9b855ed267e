package daemon_test

import (
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"postlist/internal/testenv"
)

// TestBadMemberFailsAlone is issue 21's seen problem end to end: a member
// address delivery cannot use ("a>b"@example.com, whose VERP return path
// would need quotes) used to make every post to the list fail as a whole
// after the poster got 250. members add now refuses it; one already in
// the database (stored before the rule, here by SQL) fails alone while
// the post reaches everyone else through the real Postfix.
func TestBadMemberFailsAlone(t *testing.T) {
	const bad = `"a>b"@example.com`
	pl := testenv.NewPostlist(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		Milter:      "inet:" + pl.Milter,
		ListDomains: []string{listDomain},
		LMTP:        "inet:" + pl.LMTP,
	})
	pl.Configure(pf.SubmitAddr, "", list)
	pl.CLI("members", "add", list, "alice@example.com", "Bob <bob@example.com>", "carol@example.net")

	out, err := exec.Command(pl.Bin, "-c", pl.Config, "members", "add", list, bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("members add %s: %v, want exit status 1\n%s", bad, err, out)
	}
	if !strings.Contains(string(out), "needs quotes") {
		t.Errorf("members add %s gives no reason:\n%s", bad, out)
	}

	db, err := sql.Open("sqlite3", "file:"+pl.DB+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM members WHERE address = ?`, bad).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused member stored anyway: %d rows, %v", n, err)
	}
	if _, err := db.Exec(`INSERT INTO members (list_id, address, role) SELECT id, ?, 'member' FROM lists WHERE address = ?`, bad, list); err != nil {
		t.Fatal(err)
	}

	pl.Start()
	s := &stack{pl: pl, pf: pf}
	send(t, s, "alice@example.com", "bad member post")
	copies := waitCopies(t, pf.Sink, "bad member post", 3, 60*time.Second)
	for _, m := range []string{"alice@example.com", "bob@example.com", "carol@example.net"} {
		if _, ok := copies[m]; !ok {
			t.Errorf("%s got no copy", m)
		}
	}

	var state, reply string
	testenv.WaitForWhy(t, 30*time.Second, "the delivery to "+bad+" fails", func() (bool, string) {
		err := db.QueryRow(`SELECT state, coalesce(last_reply, '') FROM deliveries WHERE recipient = ?`, bad).Scan(&state, &reply)
		return err == nil && state == "failed", fmt.Sprintf("state %q reply %q (%v)", state, reply, err)
	})
	if !strings.Contains(reply, "needs quotes") {
		t.Errorf("delivery to %s failed with %q, want the reason", bad, reply)
	}
	// The sink has every copy before the deliverer commits its outcomes
	// (they are flushed together), so the counts are polled.
	var sent, events, bounces, failedIntake int
	testenv.WaitForWhy(t, 30*time.Second, "the outcomes are committed", func() (bool, string) {
		for _, q := range []struct {
			dst  *int
			text string
			args []any
		}{
			{&sent, `SELECT count(*) FROM deliveries WHERE state = 'sent' AND recipient IN ('alice@example.com', 'bob@example.com', 'carol@example.net')`, nil},
			{&events, `SELECT count(*) FROM events WHERE kind = 'delivery_failed' AND address = ?`, []any{bad}},
			{&bounces, `SELECT count(*) FROM bounces WHERE address = ? AND kind = 'permanent'`, []any{bad}},
			{&failedIntake, `SELECT count(*) FROM intake WHERE state = 'failed'`, nil},
		} {
			if err := db.QueryRow(q.text, q.args...).Scan(q.dst); err != nil {
				t.Fatal(err)
			}
		}
		return sent == 3 && events == 1 && bounces == 1 && failedIntake == 0,
			fmt.Sprintf("sent %d (want 3), delivery_failed events %d (want 1), bounces %d (want 1), failed intake rows %d (want 0)",
				sent, events, bounces, failedIntake)
	})
	if strings.Contains(pl.Log(), "giving up") {
		t.Errorf("the post was given up:\n%s", pl.LogTail())
	}
}
