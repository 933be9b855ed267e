package lmtp

// End-to-end tests: the real postlist daemon (milter + LMTP, built by
// testenv.Binary) behind a private real Postfix. They check what the LMTP
// promise means to Postfix: status=sent only for mail on disk, a bounce
// for exactly the recipient that no longer exists, a deferral (not a
// bounce) when the database cannot be written, and no loss on SIGKILL.

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// refuses reports whether the daemon's LMTP server now answers 550 for
// rcpt, i.e. its address index has caught up with a change.
func refuses(d *testenv.Postlist, rcpt string) bool {
	c, err := net.DialTimeout("tcp", d.LMTP, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tp := textproto.NewConn(c)
	if code, _, err := tp.ReadResponse(220); err != nil || code != 220 {
		return false
	}
	steps := []string{"LHLO probe.test", "MAIL FROM:<>", "RCPT TO:<" + rcpt + ">"}
	var code int
	for _, s := range steps {
		if err := tp.PrintfLine("%s", s); err != nil {
			return false
		}
		if code, _, err = tp.ReadResponse(0); err != nil {
			return false
		}
	}
	_ = tp.PrintfLine("QUIT")
	return code == 550
}

// dbMessage is a messages row with its intake rows, read with SQL as an
// admin would with sqlite3 (whatever state the rows are in by then).
type dbMessage struct {
	ID        int64
	MessageID string
	QueueID   string
	Body      string
	Intake    []string // "kind recipient"
}

// readDB returns the messages received over LMTP with their intake rows.
func readDB(t testing.TB, path string) []dbMessage {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Only mail that came in over LMTP: the daemon's own notices (a held
	// post tells its moderators) are messages too, without intake rows.
	rows, err := db.Query(`SELECT id, message_id, queue_id, body FROM messages m
		WHERE EXISTS (SELECT 1 FROM intake i WHERE i.message_id = m.id) ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []dbMessage
	byID := map[int64]int{}
	for rows.Next() {
		var m dbMessage
		if err := rows.Scan(&m.ID, &m.MessageID, &m.QueueID, &m.Body); err != nil {
			t.Fatal(err)
		}
		byID[m.ID] = len(out)
		out = append(out, m)
	}
	rows.Close()
	rows, err = db.Query("SELECT message_id, kind, recipient FROM intake ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var kind, rcpt string
		if err := rows.Scan(&id, &kind, &rcpt); err != nil {
			t.Fatal(err)
		}
		i, ok := byID[id]
		if !ok {
			t.Fatalf("intake row for missing message %d", id)
		}
		out[i].Intake = append(out[i].Intake, kind+" "+rcpt)
	}
	return out
}

// e2e starts Postfix and the daemon with lists test@ and other@.
func e2e(t *testing.T, extraMain map[string]string) (*testenv.Postlist, *testenv.Postfix) {
	t.Helper()
	t.Parallel()
	d := testenv.NewPostlist(t)
	p := testenv.StartPostfix(t, testenv.PostfixOptions{
		Milter:      "inet:" + d.Milter,
		ListDomains: []string{testDomain},
		LMTP:        "inet:" + d.LMTP,
		ExtraMain:   extraMain,
	})
	d.Configure(p.SubmitAddr, "", "test@"+testDomain, "other@"+testDomain)
	d.Start()
	return d, p
}

func e2eMessage(msgID, subject string) []byte {
	return []byte("From: Alice <alice@example.com>\r\nTo: test@lists.example.org\r\n" +
		"Message-ID: " + msgID + "\r\nSubject: " + subject + "\r\n\r\nHello list.\r\n")
}

func sentRE(queueID, rcpt string) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(queueID) + `: to=<` + regexp.QuoteMeta(rcpt) +
		`>, relay=.*status=sent \(250 2\.0\.0 <` + regexp.QuoteMeta(rcpt) + `> queued as (\d+)\)`)
}

func TestPostfixDeliversIntoSQLite(t *testing.T) {
	d, p := e2e(t, nil)
	res := testenv.SendMail(t, p.SMTPAddr, "alice@example.com",
		[]string{"test@" + testDomain, "test-owner@" + testDomain}, e2eMessage("<e2e-1@example.com>", "into sqlite"))
	qid := res.QueueID()
	if qid == "" {
		t.Fatalf("Postfix did not queue the message:\n%v", res)
	}
	var ids []string
	for _, rc := range []string{"test@" + testDomain, "test-owner@" + testDomain} {
		line := p.WaitLog(t, sentRE(qid, rc), 30*time.Second)
		ids = append(ids, sentRE(qid, rc).FindStringSubmatch(line)[1])
	}
	if ids[0] != ids[1] {
		t.Errorf("recipients of one message were queued as %v, want one message id", ids)
	}
	msgs := readDB(t, d.DB)
	if len(msgs) != 1 {
		t.Fatalf("database holds %d messages, want 1: %+v", len(msgs), msgs)
	}
	m := msgs[0]
	if fmt.Sprint(m.ID) != ids[0] {
		t.Errorf("Postfix logged queued as %s, message row is %d", ids[0], m.ID)
	}
	if m.QueueID != qid {
		t.Errorf("queue_id = %q, want Postfix's %q", m.QueueID, qid)
	}
	if m.MessageID != "<e2e-1@example.com>" || !strings.Contains(m.Body, "Subject: into sqlite\r\n") ||
		!strings.HasPrefix(m.Body, "Received: ") {
		t.Errorf("stored message %+v", m)
	}
	want := []string{"owner test-owner@" + testDomain, "post test@" + testDomain}
	got := append([]string(nil), m.Intake...)
	if len(got) != 2 || !(got[0] == want[0] && got[1] == want[1] || got[0] == want[1] && got[1] == want[0]) {
		t.Errorf("intake rows = %v, want %v", got, want)
	}
}

func TestPostfixBouncesOnlyTheRemovedList(t *testing.T) {
	// defer_transports holds the mail in Postfix's queue after the milter
	// accepted both recipients, so the list can be removed before LMTP
	// delivery.
	d, p := e2e(t, map[string]string{"defer_transports": "lmtp"})
	res := testenv.SendMail(t, p.SMTPAddr, "alice@example.com",
		[]string{"test@" + testDomain, "other@" + testDomain}, e2eMessage("<e2e-2@example.com>", "removed list"))
	qid := res.QueueID()
	if qid == "" {
		t.Fatalf("Postfix did not queue the message:\n%v", res)
	}
	p.WaitLog(t, regexp.MustCompile(regexp.QuoteMeta(qid)+`: to=<other@lists\.example\.org>.*status=deferred`), 30*time.Second)

	d.CLI("lists", "remove", "other@"+testDomain)
	testenv.WaitFor(t, 10*time.Second, "the daemon refuses other@ after the list was removed", func() bool {
		return refuses(d, "other@"+testDomain)
	})
	p.Postconf(t, "defer_transports=")
	p.Reload(t)
	p.Flush(t)

	p.WaitLog(t, sentRE(qid, "test@"+testDomain), 30*time.Second)
	p.WaitLog(t, regexp.MustCompile(regexp.QuoteMeta(qid)+`: to=<other@lists\.example\.org>, relay=.*status=bounced \(host .* said: 550 5\.1\.1 <other@lists\.example\.org>: no such list address here \(in reply to RCPT TO command\)\)`), 30*time.Second)
	// The bounce goes back to the sender, through "the internet".
	// Other mail (the moderator's notice of the held post) may reach the
	// sink first, so look until the DSN is there.
	if !testenv.Eventually(30*time.Second, func() bool {
		return slices.ContainsFunc(p.Sink.Envelopes(), func(env testenv.Envelope) bool {
			return env.From == "" && len(env.To) == 1 && env.To[0] == "alice@example.com" && strings.Contains(string(env.Data), "other@lists.example.org")
		})
	}) {
		t.Errorf("no bounce to alice@example.com naming other@ reached the sink: %+v", p.Sink.Envelopes())
	}
	msgs := readDB(t, d.DB)
	if len(msgs) != 1 || len(msgs[0].Intake) != 1 || msgs[0].Intake[0] != "post test@"+testDomain {
		t.Errorf("database = %+v, want one message for test@ only", msgs)
	}
}

func TestSIGKILLAfter250LosesNothing(t *testing.T) {
	d, p := e2e(t, nil)

	// Several sessions keep sending straight to the daemon and note every
	// message that got its 250.
	var mu sync.Mutex
	var acked []string
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for s := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("<kill-%d-%d@example.com>", s, i)
				if sendOne(d.LMTP, id) {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			}
		}()
	}
	// Meanwhile one message comes through Postfix; the daemon is killed
	// the moment Postfix logs its 250.
	res := testenv.SendMail(t, p.SMTPAddr, "alice@example.com", []string{"test@" + testDomain},
		e2eMessage("<kill-postfix@example.com>", "killed"))
	qid := res.QueueID()
	if qid == "" {
		t.Fatalf("Postfix did not queue the message:\n%v", res)
	}
	p.WaitLog(t, sentRE(qid, "test@"+testDomain), 30*time.Second)
	d.Signal(syscall.SIGKILL)
	stop()
	wg.Wait()
	mu.Lock()
	acked = append(acked, "<kill-postfix@example.com>")
	mu.Unlock()

	d.Start() // recovery runs as it would after a crash
	stored := map[string]int{}
	for _, m := range readDB(t, d.DB) {
		stored[m.MessageID]++
	}
	for _, id := range acked {
		if stored[id] != 1 {
			t.Errorf("%s got a 250 but is stored %d times", id, stored[id])
		}
	}
	if len(acked) < 2 {
		t.Errorf("only %d messages acknowledged before the kill; the test proved little", len(acked))
	}
	t.Logf("%d acknowledged messages, all present after SIGKILL", len(acked))
	// Only mail for the lists counts: the daemon's own notices (held posts
	// tell the site owner) leave through the same Postfix.
	for _, q := range p.Queue(t) {
		for _, r := range q.Recipients {
			if strings.HasSuffix(r.Address, "@"+testDomain) {
				t.Errorf("Postfix still holds %+v for %s: the 250 it got was not final", q, r.Address)
			}
		}
	}
}

// sendOne sends one message over LMTP and reports whether it got a 250;
// any failure (the daemon being killed) is just "not acknowledged".
func sendOne(addr, msgID string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		time.Sleep(10 * time.Millisecond)
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return false
	}
	for _, cmd := range []string{"LHLO load.test", "MAIL FROM:<load@example.com>", "RCPT TO:<test@lists.example.org>", "DATA"} {
		if err := tp.PrintfLine("%s", cmd); err != nil {
			return false
		}
		if _, _, err := tp.ReadResponse(0); err != nil {
			return false
		}
	}
	w := tp.DotWriter()
	_, _ = w.Write(e2eMessage(msgID, "load"))
	if err := w.Close(); err != nil {
		return false
	}
	code, _, err := tp.ReadResponse(250)
	return err == nil && code == 250
}

func TestPostfixDefersWhileDatabaseReadOnly(t *testing.T) {
	d, p := e2e(t, nil)
	undo := makeImmutable(t, d.DB)
	res := testenv.SendMail(t, p.SMTPAddr, "alice@example.com", []string{"test@" + testDomain},
		e2eMessage("<e2e-ro@example.com>", "read-only"))
	qid := res.QueueID()
	if qid == "" {
		t.Fatalf("Postfix did not queue the message:\n%v", res)
	}
	p.WaitLog(t, regexp.MustCompile(regexp.QuoteMeta(qid)+`: to=<test@lists\.example\.org>, relay=.*status=deferred \(host .* said: 451 4\.3\.0 <test@lists\.example\.org> temporary local problem, please try again later \(in reply to end of DATA command\)\)`), 30*time.Second)
	q := p.Queue(t)
	if len(q) != 1 || q[0].QueueID != qid || q[0].QueueName != "deferred" {
		t.Fatalf("Postfix queue = %+v, want %s deferred", q, qid)
	}
	if msgs := readDB(t, d.DB); len(msgs) != 0 {
		t.Fatalf("database holds %d messages while read-only", len(msgs))
	}

	undo()
	p.Flush(t)
	p.WaitLog(t, sentRE(qid, "test@"+testDomain), 30*time.Second)
	msgs := readDB(t, d.DB)
	if len(msgs) != 1 || msgs[0].MessageID != "<e2e-ro@example.com>" || msgs[0].QueueID != qid {
		t.Errorf("database = %+v, want the deferred message once", msgs)
	}
}
