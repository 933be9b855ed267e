package wire_test

// A moderator's decision from the command line reaches members exactly as
// a post accepted by the daemon does, and its bounces count: the real
// `postlist serve` binary behind a private real Postfix, `postlist held
// approve` run as a separate process, the copies checked at the sink, and
// bounces for them sent back through Postfix to their return paths.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/store"
)

const (
	listDomain = "lists.example.org"
	list       = "test@" + listDomain
	wait       = 60 * time.Second
)

// cliJSON runs a verb with --json and decodes what it prints into v.
func cliJSON(t *testing.T, pl *testenv.Postlist, v any, args ...string) {
	t.Helper()
	if err := json.Unmarshal([]byte(pl.CLI(append([]string{"--json"}, args...)...)), v); err != nil {
		t.Fatal(err)
	}
}

// waitFor is testenv.WaitFor with the daemon's log in the failure, where
// the reason a step never happened usually is.
func waitFor(t *testing.T, pl *testenv.Postlist, what string, cond func() bool) {
	t.Helper()
	if !testenv.Eventually(wait, cond) {
		t.Fatalf("timed out after %v waiting until %s; daemon log:\n%s", wait, what, pl.LogTail())
	}
}

// dsn is a delivery status notification for rcpt, as a remote server
// writes one after accepting a list copy it later could not deliver.
func dsn(returnPath, rcpt string) []byte {
	return []byte("From: MAILER-DAEMON@example.com\r\nTo: " + returnPath + "\r\n" +
		"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n" +
		"Message-ID: <dsn." + fmt.Sprint(time.Now().UnixNano()) + "@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nThe mailbox is gone.\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n" +
		"Final-Recipient: rfc822; " + rcpt + "\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n--b--\r\n")
}

type memberBounces struct {
	Score   float64           `json:"bounce_score"`
	Bounces []store.BounceRow `json:"bounces"`
}

func TestHeldApprovedFromCLISendsSignedVERP(t *testing.T) {
	pl := testenv.NewPostlist(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		Milter:      "inet:" + pl.Milter,
		ListDomains: []string{listDomain},
		LMTP:        "inet:" + pl.LMTP,
	})
	pl.Configure(pf.SubmitAddr, "", list)
	pl.CLI("members", "add", list, "alice@example.com", "bob@example.com")
	pl.CLI("members", "add", list, "owner@example.com", "--role", "owner")
	pl.Start()
	// Bob's server refuses his copy, so that Postfix itself writes the
	// DSN for it; Alice's accepts hers, and a DSN arrives for it later.
	pf.Sink.SetRcptHook(func(_, to string) *smtp.SMTPError {
		if strings.EqualFold(to, "bob@example.com") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<bob@example.com>: no such user here"}
		}
		return nil
	})

	const subject = "a post from outside"
	post := "From: stranger@example.net\r\nTo: " + list + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <outside@example.net>\r\n\r\nHello list.\r\n"
	if res := testenv.SendMail(t, pf.SMTPAddr, "stranger@example.net", []string{list}, []byte(post)); !res.Data.OK() {
		t.Fatalf("post not accepted: %v", res)
	}
	var held []store.Held
	waitFor(t, pl, "the post is held", func() bool {
		cliJSON(t, pl, &held, "held", "ls", list)
		return len(held) > 0
	})
	var decided store.Held
	cliJSON(t, pl, &decided, "held", "approve", fmt.Sprint(held[0].ID))
	if decided.State != store.HeldApproved || decided.ID != held[0].ID {
		t.Fatalf("approve printed %+v", decided)
	}

	var got testenv.Envelope
	waitFor(t, pl, "alice gets the approved post", func() bool {
		for _, e := range pf.Sink.Envelopes() {
			if len(e.To) == 1 && e.To[0] == "alice@example.com" && strings.Contains(string(e.Data), subject) {
				got = e
				return true
			}
		}
		return false
	})
	st := storetest.OpenPath(t, pl.DB)
	signer, err := st.VERPSigner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	local, domain, _ := strings.Cut(got.From, "@")
	base, ext, _ := strings.Cut(local, "+")
	if base != "test-bounces" || domain != listDomain {
		t.Fatalf("approved copy's envelope sender %q, want the list's -bounces address", got.From)
	}
	if m, status := signer.Member(list, ext, false, time.Now()); status != address.VERPCurrent || m != "alice@example.com" {
		t.Fatalf("approved copy's envelope sender %q is not alice's signed VERP address (member %q, status %v)", got.From, m, status)
	}

	// A DSN for Alice's got, to its return path, through Postfix's
	// public listener and so through postlist's milter.
	res := testenv.SendMail(t, pf.SMTPAddr, "", []string{got.From}, dsn(got.From, "alice@example.com"))
	if !res.Rcpt[0].OK() || !res.Data.OK() {
		t.Fatalf("DSN to %s refused: %v", got.From, res)
	}
	for _, m := range []string{"alice@example.com", "bob@example.com"} {
		var b memberBounces
		waitFor(t, pl, m+"'s bounce is scored", func() bool {
			cliJSON(t, pl, &b, "members", "bounces", list, m)
			return b.Score >= 1
		})
		if len(b.Bounces) != 1 || !b.Bounces[0].Scored || b.Bounces[0].Kind != store.BouncePermanent {
			t.Errorf("%s's bounces: %+v", m, b.Bounces)
		}
		if b.Score != 1 {
			t.Errorf("%s's bounce score %v, want 1", m, b.Score)
		}
	}
}
