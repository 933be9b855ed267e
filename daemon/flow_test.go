package daemon_test

// The core job end to end: a post goes into a private real Postfix, through
// postlist's milter and LMTP into SQLite, through the pipeline, and back out
// through Postfix to every member at the sink, each with a VERP return path
// naming them. Everything runs as in production: the real `postlist serve`
// binary, the real Postfix, the admin CLI as a separate process.

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
)

const (
	listDomain = "lists.example.org"
	list       = "test@" + listDomain
)

type stack struct {
	pl *testenv.Postlist
	pf *testenv.Postfix
}

// startStack runs Postfix and postlist wired to each other. Outgoing list
// mail goes back through Postfix's milter-free listener unless smtpAddr
// names another smart host.
func startStack(t *testing.T, smtpAddr, extra string) *stack {
	t.Helper()
	pl := testenv.NewPostlist(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		Milter:      "inet:" + pl.Milter,
		ListDomains: []string{listDomain},
		LMTP:        "inet:" + pl.LMTP,
	})
	if smtpAddr == "" {
		smtpAddr = pf.SubmitAddr
	}
	pl.Configure(smtpAddr, extra, list)
	pl.CLI("members", "add", list, "alice@example.com", "Bob <bob@example.com>", "carol@example.net")
	pl.CLI("members", "add", list, "owner@example.com", "--role", "owner")
	pl.Start()
	return &stack{pl: pl, pf: pf}
}

func post(from, subject string) []byte {
	return []byte(fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.com>\r\n\r\nHello list.\r\n",
		from, list, subject, strings.ReplaceAll(subject, " ", "-")))
}

func send(t *testing.T, s *stack, from, subject string) {
	t.Helper()
	res := testenv.SendMail(t, s.pf.SMTPAddr, from, []string{list}, post(from, subject))
	if !res.Data.OK() {
		t.Fatalf("post not accepted: %v", res)
	}
}

// copiesOf returns the sink's envelopes whose message has the subject in
// its own header (a notice quoting the post in its body does not count).
func copiesOf(envs []testenv.Envelope, subject string) map[string]testenv.Envelope {
	out := map[string]testenv.Envelope{}
	re := regexp.MustCompile(`(?m)^Subject: .*` + regexp.QuoteMeta(subject) + `\r?$`)
	unfold := strings.NewReplacer("\r\n ", " ", "\r\n\t", " ")
	for _, e := range envs {
		header, _, _ := strings.Cut(string(e.Data), "\r\n\r\n")
		if re.MatchString(unfold.Replace(header)) {
			for _, r := range e.To {
				out[r] = e
			}
		}
	}
	return out
}

func waitCopies(t *testing.T, sink *testenv.Sink, subject string, n int, timeout time.Duration) map[string]testenv.Envelope {
	t.Helper()
	var got map[string]testenv.Envelope
	testenv.WaitForWhy(t, timeout, fmt.Sprintf("%d copies of %q are at the sink", n, subject), func() (bool, string) {
		got = copiesOf(sink.Envelopes(), subject)
		return len(got) >= n, fmt.Sprintf("%d there", len(got))
	})
	return got
}

func TestMemberPostReachesEveryMember(t *testing.T) {
	s := startStack(t, "", "")
	send(t, s, "alice@example.com", "first post")
	copies := waitCopies(t, s.pf.Sink, "first post", 3, 60*time.Second)
	// Return paths are signed with the site's key, kept in the database.
	st := storetest.OpenPath(t, s.pl.DB)
	signer, err := st.VERPSigner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"alice@example.com", "bob@example.com", "carol@example.net"} {
		e, ok := copies[m]
		if !ok {
			t.Errorf("%s got no copy", m)
			continue
		}
		if len(e.To) != 1 {
			t.Errorf("%s shared a transaction with %v: VERP needs one each", m, e.To)
		}
		if want := signer.VERP(list, m, "+", time.Now()); e.From != want {
			t.Errorf("%s: envelope sender %q, want %q", m, e.From, want)
		}
		data := string(e.Data)
		for _, h := range []string{
			"List-Id: <test.lists.example.org>",
			"List-Post: <mailto:test@lists.example.org>",
			"List-Unsubscribe: <mailto:test-leave@lists.example.org>",
			"Subject: [Test] first post",
			"Precedence: list",
			"X-BeenThere: test@lists.example.org",
		} {
			if !strings.Contains(data, h) {
				t.Errorf("%s's copy lacks %q:\n%s", m, h, data)
			}
		}
	}
	if n := len(copiesOf(s.pf.Sink.Envelopes(), "first post")); n != 3 {
		t.Errorf("%d copies, want exactly 3", n)
	}
	// The owner is not a member and gets no copy.
	if _, ok := copies["owner@example.com"]; ok {
		t.Error("the owner, not a member, got a copy")
	}
}

func TestNonMemberPostHeldThenApproved(t *testing.T) {
	s := startStack(t, "", "")
	send(t, s, "stranger@example.net", "outsider post")
	var held []struct {
		ID     int64  `json:"id"`
		Sender string `json:"sender"`
	}
	if !testenv.Eventually(30*time.Second, func() bool {
		if err := json.Unmarshal([]byte(s.pl.CLI("--json", "held", "ls", list)), &held); err != nil {
			t.Fatal(err)
		}
		return len(held) > 0
	}) {
		t.Fatalf("post never held:\n%s", s.pl.LogTail())
	}
	if held[0].Sender != "stranger@example.net" {
		t.Errorf("held = %+v", held)
	}
	// The owner is told about the held post; members get nothing yet.
	notice := waitCopies(t, s.pf.Sink, "requires approval", 1, 30*time.Second)
	if _, ok := notice["owner@example.com"]; !ok {
		t.Errorf("held notice went to %v, want the owner", notice)
	}
	if n := len(copiesOf(s.pf.Sink.Envelopes(), "outsider post")); n != 0 {
		t.Fatalf("held post reached %d members before approval", n)
	}
	s.pl.CLI("held", "approve", fmt.Sprint(held[0].ID))
	waitCopies(t, s.pf.Sink, "outsider post", 3, 60*time.Second)
}

// TestHeldPostApprovedByMail: a moderator without shell access replies to
// the hold notice with the moderator password; the reply goes through
// Postfix to the post's NAME-confirm+TOKEN address (accepted at RCPT only
// because the token is live) and the post reaches every member.
func TestHeldPostApprovedByMail(t *testing.T) {
	s := startStack(t, "", "")
	s.pl.CLI("lists", "set", list, "moderator_password", "s3cret")
	send(t, s, "stranger@example.net", "post for the moderators")
	notice := waitCopies(t, s.pf.Sink, "requires approval", 1, 30*time.Second)["owner@example.com"]
	header, _, _ := strings.Cut(string(notice.Data), "\r\n\r\n")
	m := regexp.MustCompile(`(?m)^Reply-To: (test-confirm\+[0-9a-f]+@` + regexp.QuoteMeta(listDomain) + `)\r?$`).FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("hold notice without a confirmation Reply-To:\n%s", header)
	}
	if n := len(copiesOf(s.pf.Sink.Envelopes(), "post for the moderators")); n != 0 {
		t.Fatalf("held post reached %d members before approval", n)
	}
	reply := "From: Owner <owner@example.com>\r\nTo: " + m[1] + "\r\nSubject: Re: held post\r\n\r\nApproved: s3cret\r\n\r\n> the notice\r\n"
	// The notice can arrive before the milter's index has seen the new
	// token (it polls the database); a moderator is never that fast.
	var res testenv.SendResult
	if !testenv.Eventually(15*time.Second, func() bool {
		res = testenv.SendMail(t, s.pf.SMTPAddr, "owner@example.com", []string{m[1]}, []byte(reply))
		return res.Data.OK()
	}) {
		t.Fatalf("reply to the hold notice: %v", res)
	}
	// A forged token is refused while the sender is connected.
	forged := strings.Repeat("0", len(m[1])-len("test-confirm+@"+listDomain))
	if res := testenv.SendMail(t, s.pf.SMTPAddr, "owner@example.com", []string{"test-confirm+" + forged + "@" + listDomain},
		[]byte("Subject: x\r\n\r\nx\r\n")); res.Rcpt[0].Code != 550 {
		t.Errorf("forged confirmation token: %v, want 550 at RCPT", res)
	}
	waitCopies(t, s.pf.Sink, "post for the moderators", 3, 60*time.Second)
	var held struct {
		State     string `json:"state"`
		DecidedBy string `json:"decided_by"`
	}
	if err := json.Unmarshal([]byte(s.pl.CLI("--json", "held", "show", "1")), &held); err != nil {
		t.Fatal(err)
	}
	if held.State != "approved" || held.DecidedBy != "mail from owner@example.com" {
		t.Errorf("held #1 = %+v, want approved by mail from owner@example.com", held)
	}
}

// TestOversizedPost: a post over the list's max_message_size is refused
// while the sender is connected (552 5.3.4), unless the list's
// oversize_action is hold; then it is accepted, held for a moderator like
// Mailman does, and delivered once approved.
func TestOversizedPost(t *testing.T) {
	s := startStack(t, "", "")
	s.pl.CLI("lists", "set", list, "max_message_size", "1")
	// The probes sent while the index has not yet seen the new limit are
	// accepted and then held by the pipeline, so each phase has its own
	// subject and only the second phase's is counted.
	msgWith := func(subject string) []byte {
		return []byte(string(post("alice@example.com", subject)) + strings.Repeat("0123456789 abcdefghij\r\n", 120))
	}
	msg := msgWith("big probe")
	refused := func() testenv.SendResult {
		return testenv.SendMail(t, s.pf.SMTPAddr, "alice@example.com", []string{list}, msg)
	}
	// The index takes a moment to see the CLI's change.
	var res testenv.SendResult
	testenv.Eventually(15*time.Second, func() bool { res = refused(); return !res.Data.OK() })
	if res.Data.Code != 552 || res.Data.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
		t.Fatalf("oversized post: %v, want 552 5.3.4", res)
	}

	s.pl.CLI("lists", "set", list, "oversize_action", "hold")
	msg = msgWith("big post")
	if !testenv.Eventually(15*time.Second, func() bool { res = refused(); return res.Data.OK() }) {
		t.Fatalf("oversized post on a holding list: %v, want 250", res)
	}
	type heldPost struct {
		ID      int64  `json:"id"`
		Reason  string `json:"reason"`
		Subject string `json:"subject"`
	}
	var held []heldPost
	if !testenv.Eventually(30*time.Second, func() bool {
		var all []heldPost
		if err := json.Unmarshal([]byte(s.pl.CLI("--json", "held", "ls", list)), &all); err != nil {
			t.Fatal(err)
		}
		held = held[:0]
		for _, h := range all {
			if strings.Contains(h.Subject, "big post") {
				held = append(held, h)
			}
		}
		return len(held) > 0
	}) {
		t.Fatalf("oversized post never held:\n%s", s.pl.LogTail())
	}
	if len(held) != 1 || !strings.Contains(held[0].Reason, "more than the list's limit of 1 KiB") {
		t.Errorf("held = %+v, want one post held for its size", held)
	}
	if n := len(copiesOf(s.pf.Sink.Envelopes(), "big post")); n != 0 {
		t.Fatalf("held post reached %d members before approval", n)
	}
	s.pl.CLI("held", "approve", fmt.Sprint(held[0].ID))
	waitCopies(t, s.pf.Sink, "big post", 3, 60*time.Second)
}

// TestSmartHostFaults talks to a sink directly as the smart host so that its
// answers reach postlist's deliverer: a 451 is retried until it passes, a
// 550 fails that member only and is recorded as a bounce.
func TestSmartHostFaults(t *testing.T) {
	sink := testenv.StartSink(t)
	var bobTries atomic.Int32
	sink.SetRcptHook(func(from, to string) *smtp.SMTPError {
		switch to {
		case "bob@example.com":
			if bobTries.Add(1) == 1 {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try later"}
			}
		case "carol@example.net":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	s := startStack(t, sink.Addr, "delivery_retry_interval = \"1s\"\n")
	send(t, s, "alice@example.com", "faulty post")
	copies := waitCopies(t, sink, "faulty post", 2, 60*time.Second)
	if _, ok := copies["bob@example.com"]; !ok || bobTries.Load() < 2 {
		t.Errorf("bob: copy %v after %d tries, want delivery on a retry", ok, bobTries.Load())
	}
	if _, ok := copies["carol@example.net"]; ok {
		t.Error("carol's 550 was recorded as a delivery")
	}
	failed := regexp.MustCompile(`"failed": 1\b`)
	var out string
	if !testenv.Eventually(20*time.Second, func() bool {
		out = s.pl.CLI("--json", "queue", "ls", "--all")
		return failed.MatchString(out)
	}) {
		t.Fatalf("queue never shows carol failed:\n%s", out)
	}
	if !strings.Contains(out, "550 5.1.1 no such user") {
		t.Errorf("queue does not keep the 550 reply:\n%s", out)
	}
}
