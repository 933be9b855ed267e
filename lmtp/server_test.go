package lmtp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap/zaptest/observer"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/reply"
)

var queuedRE = regexp.MustCompile(`^2\.0\.0 <([^>]+)> queued as (\d+)$`)

func TestPerRecipientRepliesWithGoSMTPClient(t *testing.T) {
	h := startServer(t, nil)
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, rc := range []string{"test@" + testDomain, "other@" + testDomain} {
		if err := c.Rcpt(rc, nil); err != nil {
			t.Fatalf("RCPT %s: %v", rc, err)
		}
	}
	err = c.Rcpt("nope@"+testDomain, nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("RCPT nope@ = %v, want 550 5.1.1", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(message("<m1@example.com>", "two lists"))); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithLMTPResponse()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if len(resp) != 2 {
		t.Fatalf("responses = %v, want one per accepted recipient", resp)
	}
	msgs := messages(t, h.st)
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	for rc, r := range resp {
		want := fmt.Sprintf("queued as %d", msgs[0].ID)
		if !strings.HasSuffix(r.StatusText, want) {
			t.Errorf("%s: %q, want it to end in %q", rc, r.StatusText, want)
		}
	}
	rows := intakeRows(t, h.st)
	if len(rows) != 2 || rows[0].List != "test@"+testDomain || rows[1].List != "other@"+testDomain {
		t.Errorf("intake rows = %+v", rows)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

func TestListAndOwnerShareOneBody(t *testing.T) {
	h := startServer(t, nil)
	r := dialRaw(t, h.addr)
	r.greet()
	rcpts := []string{"test@" + testDomain, "Test-Owner@" + testDomain}
	replies := r.transaction("alice@example.com", rcpts, message("<m2@example.com>", "owner too"))
	msgs := messages(t, h.st)
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1 body", len(msgs))
	}
	for i, rep := range replies {
		m := queuedRE.FindStringSubmatch(rep.Text)
		if rep.Code != 250 || m == nil || m[1] != rcpts[i] || m[2] != fmt.Sprint(msgs[0].ID) {
			t.Errorf("reply %d = %v, want 250 2.0.0 <%s> queued as %d", i, rep, rcpts[i], msgs[0].ID)
		}
	}
	rows := intakeRows(t, h.st)
	if len(rows) != 2 {
		t.Fatalf("intake rows = %+v, want 2", rows)
	}
	want := []struct{ kind, rcpt string }{{"post", rcpts[0]}, {"owner", rcpts[1]}}
	for i, w := range want {
		if rows[i].Kind != w.kind || rows[i].Recipient != w.rcpt || rows[i].MessageID != msgs[0].ID || rows[i].List != "test@"+testDomain {
			t.Errorf("row %d = %+v, want kind %s rcpt %s", i, rows[i], w.kind, w.rcpt)
		}
	}
}

func TestStoredMessageAndTrace(t *testing.T) {
	h := startServer(t, nil)
	r := dialRaw(t, h.addr)
	r.greet()
	msg := message("<keep@example.com>", "exact bytes")
	// A dot-stuffed line and 8-bit bytes must come back exactly.
	msg = strings.Replace(msg, "Hello list.\r\n", ".leading dot\r\ncaf\xe9\r\n", 1)
	replies := r.transaction("alice@example.com", []string{"test+tag@" + testDomain}, msg)
	if replies[0].Code != 250 {
		t.Fatalf("reply = %v", replies[0])
	}
	msgs := messages(t, h.st)
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages", len(msgs))
	}
	m := msgs[0]
	if string(m.Body) != msg || m.Size != int64(len(msg)) {
		t.Errorf("stored body differs:\n%q\nwant\n%q", m.Body, msg)
	}
	if m.MessageID != "<keep@example.com>" || m.Sender != "alice@example.com" || m.Queue != "4F1B2C3D4E" {
		t.Errorf("stored %+v", m)
	}
	rows := intakeRows(t, h.st)
	if rows[0].Extension != "tag" || rows[0].Recipient != "test+tag@"+testDomain {
		t.Errorf("row = %+v", rows[0])
	}
	// One log line for the message, joinable with Postfix's log. It is
	// written after the 250 went out, so it may lag the reply a little.
	var entries []observer.LoggedEntry
	testenv.Eventually(5*time.Second, func() bool {
		entries = h.logs.FilterMessage("message queued").All()
		return len(entries) > 0
	})
	if len(entries) != 1 {
		t.Fatalf("%d 'message queued' log lines, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["queue_id"] != "4F1B2C3D4E" || f["msg_id"] != m.ID || f["sender"] != "alice@example.com" || f["rcpts"] != int64(1) {
		t.Errorf("log fields = %v", f)
	}
}

func TestNullSender(t *testing.T) {
	h := startServer(t, nil)
	r := dialRaw(t, h.addr)
	r.greet()
	replies := r.transaction("", []string{"test-bounces+bob=example.com@" + testDomain}, message("<dsn@example.com>", "DSN"))
	if replies[0].Code != 250 {
		t.Fatalf("reply = %v", replies[0])
	}
	rows := intakeRows(t, h.st)
	if len(rows) != 1 || rows[0].Sender != "" || rows[0].Kind != "bounces" || rows[0].Extension != "bob=example.com" {
		t.Errorf("rows = %+v", rows)
	}
}

func TestMissingMessageIDIsAdded(t *testing.T) {
	// Messages are sent as raw DATA bytes (ending in CRLF, no dot to
	// stuff), so that a bare-LF message really arrives with bare LFs.
	cases := []struct {
		name, data string
		eol        string
	}{
		{"crlf", "From: a@example.com\r\nSubject: no id\r\n\r\nbody\r\n", "\r\n"},
		{"bare lf", "From: a@example.com\nSubject: no id\n\nbody\n\r\n", "\n"},
		{"empty value", "Message-ID:  \r\nFrom: a@example.com\r\n\r\nbody\r\n", "\r\n"},
	}
	idRE := regexp.MustCompile(`^Message-ID: (<[0-9a-z]+\.[0-9a-f]{16}@postlist\.test>)(\r?\n)`)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startServer(t, nil)
			r := dialRaw(t, h.addr)
			r.greet()
			r.cmd("MAIL FROM:<a@example.com>")
			r.cmd("RCPT TO:<test@%s>", testDomain)
			if rep := r.cmd("DATA"); rep.Code != 354 {
				t.Fatal(rep)
			}
			if rep := r.cmd("%s.", tc.data); rep.Code != 250 {
				t.Fatalf("reply = %v", rep)
			}
			m := messages(t, h.st)[0]
			sub := idRE.FindSubmatch(m.Body)
			if sub == nil {
				t.Fatalf("body does not start with a generated Message-ID: %q", m.Body)
			}
			if string(sub[2]) != tc.eol {
				t.Errorf("line ending %q, want %q", sub[2], tc.eol)
			}
			if rest := m.Body[len(sub[0]):]; string(rest) != tc.data {
				t.Errorf("original bytes changed: %q, want %q", rest, tc.data)
			}
			if m.MessageID != string(sub[1]) {
				t.Errorf("messages.message_id = %q, want %q", m.MessageID, sub[1])
			}
			if m.Size != int64(len(m.Body)) {
				t.Errorf("size = %d, want %d", m.Size, len(m.Body))
			}
		})
	}
}

func TestRefusedMessagesGetOneReplyPerRecipient(t *testing.T) {
	const limit = 4096
	big := message("<big@example.com>", "big") + strings.Repeat("x", 100) + "\r\n"
	for len(big) <= limit+1000 {
		big += strings.Repeat("y", 100) + "\r\n"
	}
	cases := []struct {
		name string
		msg  string
		code int
		enh  string
		text string
	}{
		{"oversized", big, 552, "5.3.4", "message too big for this list (limit 4096 bytes)"},
		{"no colon", "this is not a header\r\n\r\nbody\r\n", 554, "5.6.0", "message is not readable mail: malformed MIME header line: this is not a header"},
		{"continuation first", " folded: x\r\nFrom: a@b\r\n\r\nbody\r\n", 554, "5.6.0", "message is not readable mail: malformed MIME header initial line:  folded: x"},
		{"binary junk", "\x00\x01\x02\xff garbage\r\n", 554, "5.6.0", "message is not readable mail: malformed MIME header line: ???? garbage"},
		{"empty", "", 554, "5.6.0", "message is not readable mail: no header fields"},
		{"bad field name", "From: a@b\r\nBad Name: x\r\n\r\nbody\r\n", 554, "5.6.0", "message is not readable mail: malformed MIME header key: Bad Name"},
	}
	h := startServer(t, func(o *Options) { o.MaxMessageBytes = limit })
	r := dialRaw(t, h.addr)
	r.greet()
	rcpts := []string{"test@" + testDomain, "other-request@" + testDomain}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			replies := r.transaction("alice@example.com", rcpts, tc.msg)
			for i, rep := range replies {
				// go-smtp writes the recipient after the enhanced code.
				want := fmt.Sprintf("%s <%s> %s", tc.enh, rcpts[i], tc.text)
				if rep.Code != tc.code || rep.Text != want {
					t.Errorf("reply %d = %v, want %d %s", i, rep, tc.code, want)
				}
			}
			// The session goes on: the next transaction works.
			if rep := r.cmd("NOOP"); rep.Code != 250 {
				t.Errorf("NOOP after refusal = %v", rep)
			}
		})
	}
	if msgs := messages(t, h.st); len(msgs) != 0 {
		t.Errorf("refused messages were stored: %d", len(msgs))
	}
	ok := r.transaction("alice@example.com", rcpts, message("<small@example.com>", "fits"))
	for _, rep := range ok {
		if rep.Code != 250 {
			t.Errorf("message within the limit: %v", rep)
		}
	}
}

func TestSizeLimitAdvertisedAndEnforcedAtMail(t *testing.T) {
	h := startServer(t, func(o *Options) { o.MaxMessageBytes = 4096 })
	r := dialRaw(t, h.addr)
	if g := r.read(); g.Code != 220 {
		t.Fatalf("greeting %v", g)
	}
	lhlo := r.cmd("LHLO client.test")
	if !strings.Contains(lhlo.Text, "SIZE 4096") {
		t.Errorf("LHLO does not advertise SIZE 4096: %q", lhlo.Text)
	}
	// go-smtp answers this itself, with the right codes and its own text.
	if rep := r.cmd("MAIL FROM:<a@example.com> SIZE=4097"); rep.Code != 552 || !strings.HasPrefix(rep.Text, "5.3.4 ") {
		t.Errorf("MAIL SIZE=4097 = %v, want 552 5.3.4", rep)
	}
	if rep := r.cmd("MAIL FROM:<a@example.com> SIZE=4000"); rep.Code != 250 {
		t.Errorf("MAIL SIZE=4000 = %v", rep)
	}
}

func TestRecipientLimitAndDuplicates(t *testing.T) {
	h := startServer(t, func(o *Options) { o.MaxRecipients = 3 })
	r := dialRaw(t, h.addr)
	r.greet()
	if rep := r.cmd("MAIL FROM:<a@example.com>"); rep.Code != 250 {
		t.Fatal(rep)
	}
	accepted := []string{"test@" + testDomain, "TEST@" + testDomain, "other@" + testDomain}
	for _, rc := range accepted {
		if rep := r.cmd("RCPT TO:<%s>", rc); rep.Code != 250 {
			t.Fatalf("RCPT %s = %v", rc, rep)
		}
	}
	if rep := r.cmd("RCPT TO:<other-owner@%s>", testDomain); rep.Code != 452 || rep.Text != "4.5.3 too many recipients (limit 3 per transaction)" {
		t.Errorf("4th RCPT = %v, want 452 4.5.3", rep)
	}
	replies := r.data(message("<dup@example.com>", "dup"), len(accepted))
	for i, rep := range replies {
		if m := queuedRE.FindStringSubmatch(rep.Text); rep.Code != 250 || m == nil || m[1] != accepted[i] {
			t.Errorf("reply %d = %v", i, rep)
		}
	}
	// test@ and TEST@ name the same list address: one post, not two.
	rows := intakeRows(t, h.st)
	if len(rows) != 2 {
		t.Errorf("intake rows = %+v, want test@ once and other@ once", rows)
	}
}

func TestUnknownAndMalformedRecipients(t *testing.T) {
	h := startServer(t, nil)
	r := dialRaw(t, h.addr)
	r.greet()
	if rep := r.cmd("MAIL FROM:<a@example.com>"); rep.Code != 250 {
		t.Fatal(rep)
	}
	cases := []struct {
		rcpt string
		code int
		enh  string
	}{
		{"nope@" + testDomain, 550, "5.1.1"},
		{"test-confirm+@" + testDomain, 550, "5.1.1"},
		{"test-nosuch@" + testDomain, 550, "5.1.1"},
		{"bob@example.com", 550, "5.1.1"},
		{"te st@" + testDomain, 501, "5.5.2"}, // go-smtp's own syntax check
	}
	for _, tc := range cases {
		rep := r.cmd("RCPT TO:<%s>", tc.rcpt)
		if rep.Code != tc.code || !strings.HasPrefix(rep.Text, tc.enh+" ") {
			t.Errorf("RCPT %s = %v, want %d %s", tc.rcpt, rep, tc.code, tc.enh)
		}
	}
	if rep := r.cmd("DATA"); rep.Code != 502 {
		t.Errorf("DATA without recipients = %v, want 502", rep)
	}
}

func TestResolverBugsAreTemporary(t *testing.T) {
	h := startServer(t, func(o *Options) {
		next := o.Resolve
		o.Resolve = func(rcpt string) (address.Target, *reply.Reply) {
			switch {
			case strings.HasPrefix(rcpt, "weird@"):
				return address.Target{}, &reply.Reply{Code: 250, Enhanced: [3]int{2, 0, 0}, Text: "ok?"}
			case strings.HasPrefix(rcpt, "empty@"):
				return address.Target{}, nil
			}
			return next(rcpt)
		}
	})
	r := dialRaw(t, h.addr)
	r.greet()
	r.cmd("MAIL FROM:<a@example.com>")
	for _, local := range []string{"weird", "empty"} {
		if rep := r.cmd("RCPT TO:<%s@%s>", local, testDomain); rep.Code != 451 || !strings.HasPrefix(rep.Text, "4.3.0 ") {
			t.Errorf("RCPT %s@ = %v, want 451 4.3.0", local, rep)
		}
	}
}

func TestReadOnlyDatabaseDefersThenRecovers(t *testing.T) {
	h := startServer(t, nil)
	undo := makeImmutable(t, h.st.Path())
	r := dialRaw(t, h.addr)
	r.greet()
	rcpts := []string{"test@" + testDomain, "other@" + testDomain}
	replies := r.transaction("alice@example.com", rcpts, message("<ro@example.com>", "read-only"))
	for i, rep := range replies {
		want := fmt.Sprintf("4.3.0 <%s> temporary local problem, please try again later", rcpts[i])
		if rep.Code != 451 || rep.Text != want {
			t.Errorf("reply %d = %v, want 451 %s", i, rep, want)
		}
	}
	if e := h.logs.FilterMessage("message not stored; answered temporary failure").All(); len(e) != 1 {
		t.Errorf("%d error log lines for the failed commit, want 1", len(e))
	}
	undo()
	replies = r.transaction("alice@example.com", rcpts, message("<ro@example.com>", "read-only"))
	for i, rep := range replies {
		if rep.Code != 250 {
			t.Errorf("after recovery, reply %d = %v", i, rep)
		}
	}
	if msgs := messages(t, h.st); len(msgs) != 1 {
		t.Errorf("stored %d messages, want exactly the retried one", len(msgs))
	}
}

func TestConcurrentSessionsShareFsyncs(t *testing.T) {
	h := startServer(t, nil)
	const sessions, each = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sendMessages(h.addr, i, each)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := h.srv.Stats()
	if st.Messages != sessions*each {
		t.Fatalf("committed %d messages, want %d", st.Messages, sessions*each)
	}
	if st.Commits >= st.Messages {
		t.Errorf("%d commits for %d messages: concurrent sessions did not share fsyncs", st.Commits, st.Messages)
	}
	t.Logf("%d messages in %d commits", st.Messages, st.Commits)
	if n := len(messages(t, h.st)); n != sessions*each {
		t.Errorf("stored %d messages, want %d", n, sessions*each)
	}
}

// sendMessages delivers n messages over one LMTP connection with go-smtp's
// client.
func sendMessages(addr string, session, n int) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	for i := range n {
		if err := c.Mail("alice@example.com", nil); err != nil {
			return err
		}
		if err := c.Rcpt("test@"+testDomain, nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte(message(fmt.Sprintf("<s%d.%d@example.com>", session, i), "load"))); err != nil {
			return err
		}
		if _, err := w.CloseWithLMTPResponse(); err != nil {
			return fmt.Errorf("session %d message %d: %w", session, i, err)
		}
	}
	return c.Quit()
}

func TestSessionLimit(t *testing.T) {
	h := startServer(t, func(o *Options) {
		o.MaxSessions = 1
		o.SessionWait = 300 * time.Millisecond
	})
	first := dialRaw(t, h.addr)
	first.greet()

	// Over the limit: no greeting while waiting, then 421 4.3.2.
	start := time.Now()
	second := dialRaw(t, h.addr)
	rep := second.read()
	if rep.Code != 421 || rep.Text != "4.3.2 too many concurrent sessions, try again later" {
		t.Errorf("second session = %v, want 421 4.3.2", rep)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("refused after %v, want a wait of about 300ms first", waited)
	}

	// A connection waiting when the slot frees up is served.
	third := dialRaw(t, h.addr)
	time.Sleep(50 * time.Millisecond) // let it start waiting
	if rep := first.cmd("QUIT"); rep.Code != 221 {
		t.Errorf("QUIT = %v", rep)
	}
	third.greet()
	if out := third.transaction("a@example.com", []string{"test@" + testDomain}, message("<slot@example.com>", "slot")); out[0].Code != 250 {
		t.Errorf("third session: %v", out[0])
	}
}

func TestIdleTimeout(t *testing.T) {
	h := startServer(t, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	r := dialRaw(t, h.addr)
	r.greet()
	rep := r.read()
	if rep.Code != 421 || !strings.HasPrefix(rep.Text, "4.4.2 ") {
		t.Errorf("idle session = %v, want 421 4.4.2", rep)
	}
	if rep := r.read(); rep.Code != 0 {
		t.Errorf("connection still open after the timeout: %v", rep)
	}
}

func TestShutdownDrains(t *testing.T) {
	h := startServer(t, nil)
	idle := dialRaw(t, h.addr)
	idle.greet()
	busy := dialRaw(t, h.addr)
	busy.greet()
	if rep := busy.cmd("MAIL FROM:<a@example.com>"); rep.Code != 250 {
		t.Fatal(rep)
	}
	if rep := busy.cmd("RCPT TO:<test@%s>", testDomain); rep.Code != 250 {
		t.Fatal(rep)
	}

	done := make(chan error, 1)
	h.shutByTest = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()

	// The idle session is told at once.
	if rep := idle.read(); rep.Code != 421 || rep.Text != "4.3.2 postlist shutting down, try again later" {
		t.Errorf("idle session = %v, want 421 4.3.2", rep)
	}
	// The open transaction completes and is committed...
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a transaction was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	out := busy.data(message("<drain@example.com>", "drain"), 1)
	if out[0].Code != 250 {
		t.Errorf("transaction during shutdown = %v, want 250", out[0])
	}
	// ...then the session is closed with 421.
	if rep := busy.read(); rep.Code != 421 {
		t.Errorf("after the transaction = %v, want 421", rep)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if n := len(messages(t, h.st)); n != 1 {
		t.Errorf("stored %d messages, want 1", n)
	}
	if c, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		c.Close()
		t.Error("new connection accepted after Shutdown")
	}
}

func TestShutdownTimeoutClosesStuckSession(t *testing.T) {
	h := startServer(t, nil)
	busy := dialRaw(t, h.addr)
	busy.greet()
	if rep := busy.cmd("MAIL FROM:<a@example.com>"); rep.Code != 250 {
		t.Fatal(rep)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	h.shutByTest = true
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	if rep := busy.read(); rep.Code != 0 {
		t.Errorf("stuck session still open: %v", rep)
	}
}

func TestQueueIDFromReceived(t *testing.T) {
	cases := []struct{ received, want string }{
		{"from mx.example.net (mx.example.net [192.0.2.7]) by pfharness.test (Postfix) with ESMTP id 4F1B2C3D4E for <test@lists.example.org>; Wed, 26 Nov 2025 07:11:00 +0000", "4F1B2C3D4E"},
		{"from x by mail.example.org (Postfix) with ESMTPS id 4dHb0Y5x2Qz9sQK for <a@b>; date", "4dHb0Y5x2Qz9sQK"},
		{"by host.example.org (Postfix, from userid 0) id 9A8B7C6D5E; Wed, 26 Nov 2025 07:11:00 +0000", "9A8B7C6D5E"},
		{"from x by mx.google.com with ESMTPS id a1b2c3 for <a@b>", ""},
		{"from x by exim.example.org with esmtp (Exim 4.96) id 1vO3a2-000abc-3D", ""},
		{"", ""},
	}
	for _, tc := range cases {
		if got := postfixQueueID(tc.received); got != tc.want {
			t.Errorf("postfixQueueID(%q) = %q, want %q", tc.received, got, tc.want)
		}
	}
	// Only the topmost Received counts: lower ones are upstream servers'.
	msg := "Received: from a by mx.example.org (Postfix) with ESMTP id TOPMOST1\r\n" +
		"Received: from b by upstream.example.net (Postfix) with ESMTP id LOWER2\r\n" +
		"From: a@b\r\n\r\nbody\r\n"
	info, err := inspect([]byte(msg))
	if err != nil || info.QueueID != "TOPMOST1" {
		t.Errorf("inspect = %+v, %v; want queue id TOPMOST1", info, err)
	}
	info, err = inspect([]byte("Received: from b by exim.example.net with esmtp id X\r\nReceived: from a by mx.example.org (Postfix) with ESMTP id LOWER\r\nFrom: a@b\r\n\r\n"))
	if err != nil || info.QueueID != "" {
		t.Errorf("inspect = %+v, %v; want no queue id when the topmost is not Postfix's", info, err)
	}
}

func TestReadMessageAllocation(t *testing.T) {
	body := bytes.Repeat([]byte("a"), 100<<10)
	got, err := readMessage(bytes.NewReader(body), int64(len(body)), 10<<20)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("readMessage: %v", err)
	}
	if cap(got) > len(body)+4<<10 {
		t.Errorf("buffer grew to %d for a %d-byte message announced with SIZE", cap(got), len(body))
	}
}

func TestShutdownRefusesWaitingConnection(t *testing.T) {
	h := startServer(t, func(o *Options) {
		o.MaxSessions = 1
		o.SessionWait = 10 * time.Second
	})
	first := dialRaw(t, h.addr)
	first.greet()
	waiting := dialRaw(t, h.addr)
	testenv.WaitFor(t, 5*time.Second, "the second connection waits for a slot", func() bool { return h.srv.waiting.Load() > 0 })
	h.shutByTest = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	for name, r := range map[string]*raw{"idle": first, "waiting": waiting} {
		if rep := r.read(); rep.Code != 421 || rep.Text != "4.3.2 postlist shutting down, try again later" {
			t.Errorf("%s connection = %v, want 421 4.3.2", name, rep)
		}
	}
}

func TestBDATGetsPerRecipientReplies(t *testing.T) {
	// go-smtp advertises CHUNKING; Postfix does not use it for LMTP, but
	// a client that does must get the same per-recipient answers.
	h := startServer(t, nil)
	r := dialRaw(t, h.addr)
	r.greet()
	rcpts := []string{"test@" + testDomain, "other-join@" + testDomain}
	r.cmd("MAIL FROM:<a@example.com>")
	for _, rc := range rcpts {
		if rep := r.cmd("RCPT TO:<%s>", rc); rep.Code != 250 {
			t.Fatal(rep)
		}
	}
	msg := message("<bdat@example.com>", "chunked")
	half := len(msg) / 2
	chunk := func(last string, data string) {
		t.Helper()
		// The chunk follows the command line byte for byte.
		fmt.Fprintf(r.tp.W, "BDAT %d%s\r\n%s", len(data), last, data)
		if err := r.tp.W.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	chunk("", msg[:half])
	if rep := r.read(); rep.Code != 250 {
		t.Fatalf("first chunk = %v", rep)
	}
	chunk(" LAST", msg[half:])
	for i, rc := range rcpts {
		if rep := r.read(); rep.Code != 250 || !strings.Contains(rep.Text, "<"+rc+"> queued as ") {
			t.Errorf("reply %d = %v", i, rep)
		}
	}
	msgs := messages(t, h.st)
	if len(msgs) != 1 || string(msgs[0].Body) != msg {
		t.Errorf("stored %+v", msgs)
	}
}

func TestOverlongLine(t *testing.T) {
	h := startServer(t, nil)
	r := dialRaw(t, h.addr)
	r.greet()
	rcpts := []string{"test@" + testDomain, "other@" + testDomain}
	msg := "From: a@example.com\r\nX-Long: " + strings.Repeat("z", 2100) + "\r\n\r\nbody\r\n"
	for i, rep := range r.transaction("a@example.com", rcpts, msg) {
		want := fmt.Sprintf("5.6.0 <%s> message is not readable mail: line too long", rcpts[i])
		if rep.Code != 554 || rep.Text != want {
			t.Errorf("reply %d = %v, want 554 %s", i, rep, want)
		}
	}
	// go-smtp cannot resynchronise after an overlong line and hangs up.
	if rep := r.read(); rep.Code != 500 {
		t.Errorf("after the replies = %v, want go-smtp's 500 and a closed connection", rep)
	}
	if n := len(messages(t, h.st)); n != 0 {
		t.Errorf("stored %d messages", n)
	}
}
