package commands_test

import (
	"strings"
	"testing"
	"time"

	"postlist/internal/testenv"
	"postlist/internal/testenv/stack"
)

// TestJoinThroughDaemon runs the real `postlist serve` behind a real
// Postfix, as in production, and checks that the daemon runs the email
// interface: a join is answered with a confirmation request, replying to
// it subscribes, and -request answers help.
func TestJoinThroughDaemon(t *testing.T) {
	pl := testenv.NewPostlist(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		Milter: "inet:" + pl.Milter, ListDomains: []string{"lists.example.org"}, LMTP: "inet:" + pl.LMTP,
	})
	pl.Configure(pf.SubmitAddr, "", stack.List)
	pl.Start()
	w := stack.NewWatch(pf.Sink)

	res := testenv.SendMail(t, pf.SMTPAddr, "bob@example.net", []string{"test-join@lists.example.org"},
		stack.Message("bob@example.net", "test-join@lists.example.org", "", ""))
	if !res.Data.OK() {
		t.Fatalf("join refused: %v", res)
	}
	req := w.WaitMail(t, "bob@example.net", "Your confirmation is needed to join", wait)
	addr, _ := confirmAddress(t, req)
	// The daemon's address index learns the token within a second; until
	// then the milter refuses the reply at RCPT.
	stack.WaitUntil(t, "the confirmation address is accepted", wait, func() bool {
		r := testenv.SendMail(t, pf.SMTPAddr, "bob@example.net", []string{addr}, stack.Message("bob@example.net", addr, "Re: confirm", "ok\n"))
		return len(r.Rcpt) == 1 && r.Rcpt[0].OK() && r.Data.OK()
	})
	w.WaitMail(t, "bob@example.net", `Welcome to the "Test" mailing list`, wait)
	if out := pl.CLI("members", "ls", stack.List); !strings.Contains(out, "bob@example.net") {
		t.Errorf("bob is not listed as a member:\n%s", out)
	}

	testenv.SendMail(t, pf.SMTPAddr, "carol@example.org", []string{"test-request@lists.example.org"},
		stack.Message("carol@example.org", "test-request@lists.example.org", "help", ""))
	w.WaitMail(t, "carol@example.org", "The results of your email commands", 30*time.Second)
}
