package daemon_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// TestLogsRedactTokensAndSignatures: through a subscription confirmed by
// mail and a bounce to a signed VERP address, the daemon's log (at debug
// level, the most it says) never carries the confirmation token or the
// VERP signature, while it still names the member.
func TestLogsRedactTokensAndSignatures(t *testing.T) {
	s := startStack(t, "", "")
	const dave = "dave@example.com"
	join := "test-join@" + listDomain

	// Subscribe by mail; the confirmation request names the token.
	res := testenv.SendMail(t, s.pf.SMTPAddr, dave, []string{join}, []byte("From: "+dave+"\r\nTo: "+join+"\r\nSubject: join\r\n\r\n"))
	if !res.Data.OK() {
		t.Fatalf("join: %v", res)
	}
	confirmRE := regexp.MustCompile(`test-confirm\+([0-9A-Za-z]+)@` + regexp.QuoteMeta(listDomain))
	var token string
	deadline := time.Now().Add(30 * time.Second)
	for token == "" && time.Now().Before(deadline) {
		for _, e := range s.pf.Sink.Envelopes() {
			if len(e.To) == 1 && e.To[0] == dave {
				if m := confirmRE.FindStringSubmatch(string(e.Data)); m != nil {
					token = m[1]
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if token == "" {
		t.Fatal("no confirmation request reached dave")
	}
	confirm := "test-confirm+" + token + "@" + listDomain
	reply := []byte("From: " + dave + "\r\nTo: " + confirm + "\r\nSubject: Re: confirm " + token + "\r\n\r\n")
	res = testenv.SendMail(t, s.pf.SMTPAddr, dave, []string{confirm}, reply)
	for !res.Data.OK() && time.Now().Before(deadline) {
		// The milter's index may not have the new token yet.
		time.Sleep(200 * time.Millisecond)
		res = testenv.SendMail(t, s.pf.SMTPAddr, dave, []string{confirm}, reply)
	}
	if !res.Data.OK() {
		t.Fatalf("confirmation reply: %v", res)
	}
	for !strings.Contains(s.pl.CLI("members", "ls", list), dave) {
		if time.Now().After(deadline) {
			t.Fatal("dave is not a member after confirming")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A post reaches dave with a signed VERP return path; bounce it.
	send(t, s, "alice@example.com", "post to bounce")
	copies := waitCopies(t, s.pf.Sink, "post to bounce", 4, 60*time.Second)
	verp := copies[dave].From
	m := regexp.MustCompile(`^test-bounces\+dave=example\.com=([^=@]+)@` + regexp.QuoteMeta(listDomain) + `$`).FindStringSubmatch(verp)
	if m == nil {
		t.Fatalf("dave's copy has return path %q, want a signed VERP address", verp)
	}
	sig := m[1]
	dsn := "From: MAILER-DAEMON@example.com\r\nTo: " + verp + "\r\nSubject: Undelivered Mail\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nreport\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n" +
		"Final-Recipient: rfc822; " + dave + "\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n--b--\r\n"
	res = testenv.SendMail(t, s.pf.SMTPAddr, "", []string{verp}, []byte(dsn))
	for !res.Data.OK() && time.Now().Before(deadline.Add(30*time.Second)) {
		time.Sleep(200 * time.Millisecond)
		res = testenv.SendMail(t, s.pf.SMTPAddr, "", []string{verp}, []byte(dsn))
	}
	if !res.Data.OK() {
		t.Fatalf("bounce: %v", res)
	}
	redactedVERP := `"rcpt":"test-bounces+dave=example.com=…@` + listDomain + `"`
	for !strings.Contains(s.pl.Log(), redactedVERP) {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("the bounce was not logged as %s", redactedVERP)
		}
		time.Sleep(200 * time.Millisecond)
	}

	log := s.pl.Log()
	for _, secret := range []string{token, "=" + sig + "@", confirm, verp} {
		if strings.Contains(log, secret) {
			i := strings.Index(log, secret)
			t.Errorf("the log carries %q:\n…%s…", secret, log[max(0, i-300):min(len(log), i+100)])
		}
	}
	for _, want := range []string{dave, `"rcpt":"test-confirm+…@` + listDomain + `"`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log never names %q", want)
		}
	}
}
