package daemon_test

import (
	"fmt"
	"net/smtp"
	"regexp"
	"strings"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// rcptOnly asks Postfix whether it takes rcpt and then resets the
// transaction: no message is queued, so nothing can be misrouted while a
// map change is still on its way to Postfix's long-running daemons.
func rcptOnly(addr, rcpt string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return err
	}
	if err := c.Mail("carol@example.net"); err != nil {
		return err
	}
	rerr := c.Rcpt(rcpt)
	_ = c.Reset()
	_ = c.Quit()
	return rerr
}

// TestRegeneratedMapsReachPostfix: a list created while Postfix runs on
// the generated hash maps. The maps are replaced by rename, and Postfix
// must still see that as a change: a new smtpd takes the new address
// (relay_recipient_maps) without a reload. After the documented remedy,
// `postfix reload`, a post to the new list is routed to LMTP and
// delivered.
func TestRegeneratedMapsReachPostfix(t *testing.T) {
	pl, pf := startOnHashMaps(t, "alice@example.com")

	fresh := "fresh@" + listDomain
	if err := rcptOnly(pf.SMTPAddr, fresh); err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("RCPT to a list that does not exist yet: %v, want 550", err)
	}
	pl.CLI("lists", "create", fresh)
	pl.CLI("members", "add", fresh, "carol@example.net")

	testenv.WaitForWhy(t, 10*time.Second, "Postfix accepts the new list after its maps were replaced", func() (bool, string) {
		err := rcptOnly(pf.SMTPAddr, fresh)
		return err == nil, fmt.Sprintf("RCPT: %v", err)
	})
	if !regexp.MustCompile(`postfix_(lmtp|domains)\(.*\) has changed -- restarting`).MatchString(pf.Log()) {
		t.Error("Postfix log does not show a daemon noticing the replaced maps")
	}

	pf.Reload(t)
	// postlist's own index picks the list up within its poll interval;
	// the post must not race that, this test is about Postfix's side.
	indexed := regexp.MustCompile(`"index reloaded".*"lists":2,"members":2`)
	testenv.WaitFor(t, 10*time.Second, "postlist's index loads the new list and its member", func() bool {
		return indexed.MatchString(pl.Log())
	})
	res := testenv.SendMail(t, pf.SMTPAddr, "carol@example.net", []string{fresh},
		[]byte("From: carol@example.net\r\nTo: "+fresh+"\r\nSubject: after reload\r\nMessage-ID: <after-reload@example.net>\r\n\r\nhi\r\n"))
	if !res.Data.OK() {
		t.Fatalf("post to the new list not accepted: %v", res)
	}
	waitCopies(t, pf.Sink, "after reload", 1, 60*time.Second)
	if !strings.Contains(pf.Log(), "to=<"+fresh+">, relay=127.0.0.1["+strings.ReplaceAll(pl.LMTP, ":", "]:")) {
		t.Errorf("Postfix log shows no delivery of the new list's post to the LMTP server at %s", pl.LMTP)
	}
}
