package commands_test

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"
	"time"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/internal/testenv/stack"
)

const wait = 60 * time.Second

// confirmAddress returns the From address of a confirmation request the
// sink received (NAME-confirm+TOKEN@DOMAIN) and its token.
func confirmAddress(t *testing.T, e testenv.Envelope) (addr, token string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(e.Data))
	if err != nil {
		t.Fatal(err)
	}
	from, err := mail.ParseAddress(m.Header.Get("From"))
	if err != nil {
		t.Fatal(err)
	}
	local, _, _ := strings.Cut(from.Address, "@")
	_, token, _ = strings.Cut(local, "+")
	if !strings.HasPrefix(local, "test-confirm+") || !address.ValidToken(token) {
		t.Fatalf("confirmation request From %q", from.Address)
	}
	return from.Address, token
}

// TestEmailInterfaceThroughPostfix drives the email interface as people
// do: mail to the list's robot addresses through a real Postfix, whose
// milter, LMTP and relaying are postlist's, and answers read from the
// sink that stands in for the people's servers. The subtests share one
// stack and run in order.
func TestEmailInterfaceThroughPostfix(t *testing.T) {
	s := stack.StartStack(t)
	smtp := s.Postfix.SMTPAddr

	// confirm replies to a confirmation request the way a mail program
	// does, once the address index knows the token (the milter refuses
	// unknown tokens at RCPT time).
	confirm := func(t *testing.T, who string, req testenv.Envelope) {
		t.Helper()
		addr, _ := confirmAddress(t, req)
		stack.WaitUntil(t, "the index knows the token", wait, func() bool { return s.Index.Decide(addr).Accepted() })
		s.Send(t, who, []string{addr}, stack.Message(who, addr, "Re: your confirmation", "Yes.\n\n> confirm ...\n"))
	}

	t.Run("join round trip", func(t *testing.T) {
		s.Send(t, "bob@example.net", []string{"test-join@lists.example.org"}, stack.Message("Bob <bob@example.net>", "test-join@lists.example.org", "", ""))
		req := s.WaitMail(t, "bob@example.net", "Your confirmation is needed to join", wait)
		if req.From != "test-bounces@lists.example.org" {
			t.Errorf("confirmation request's envelope sender %q, want the list's bounce address", req.From)
		}
		for _, want := range []string{"Auto-Submitted: auto-replied", "Precedence: bulk"} {
			if !bytes.Contains(req.Data, []byte(want)) {
				t.Errorf("confirmation request lacks %q", want)
			}
		}
		if s.IsMember(t, "bob@example.net") {
			t.Fatal("member before confirming")
		}
		confirm(t, "bob@example.net", req)
		stack.WaitUntil(t, "bob is a member", wait, func() bool { return s.IsMember(t, "bob@example.net") })
		welcome := s.WaitMail(t, "bob@example.net", `Welcome to the "Test" mailing list`, wait)
		if welcome.From != "test-bounces@lists.example.org" {
			t.Errorf("welcome envelope sender %q", welcome.From)
		}
	})

	t.Run("leave round trip", func(t *testing.T) {
		s.Send(t, "bob@example.net", []string{"test-leave@lists.example.org"}, stack.Message("bob@example.net", "test-leave@lists.example.org", "", ""))
		req := s.WaitMail(t, "bob@example.net", "Your confirmation is needed to leave", wait)
		confirm(t, "bob@example.net", req)
		stack.WaitUntil(t, "bob has left", wait, func() bool { return !s.IsMember(t, "bob@example.net") })
		s.WaitMail(t, "bob@example.net", "You have been unsubscribed from the Test mailing list", wait)
	})

	t.Run("help reply", func(t *testing.T) {
		s.Send(t, "carol@example.org", []string{"test-request@lists.example.org"}, stack.Message("carol@example.org", "test-request@lists.example.org", "help", "thanks\n"))
		r := s.WaitMail(t, "carol@example.org", "The results of your email commands", wait)
		for _, want := range []string{"> help", "join         - Join this mailing list", "No such command: thanks", "- Done."} {
			if !bytes.Contains(r.Data, []byte(want)) {
				t.Errorf("reply lacks %q:\n%s", want, r.Data)
			}
		}
	})

	t.Run("auto-submitted command mail gets no reply", func(t *testing.T) {
		auto := stack.Message("dave@example.org", "test-request@lists.example.org", "help", "join\n", "Auto-Submitted: auto-replied")
		s.Send(t, "dave@example.org", []string{"test-request@lists.example.org"}, auto)
		rows := s.WaitProcessed(t, msgID(t, auto), wait)
		if len(rows) != 1 || !strings.HasPrefix(rows[0].Result, "ignored, no reply") {
			t.Fatalf("intake %+v", rows)
		}
		if n := len(s.MailTo(t, "dave@example.org")); n != 0 {
			t.Fatalf("%d message(s) queued for the robot", n)
		}
		// Mail is processed in order: once a later request from the same
		// address is answered, an answer to the first would have come too.
		s.Send(t, "dave@example.org", []string{"test-request@lists.example.org"}, stack.Message("dave@example.org", "test-request@lists.example.org", "echo hi", ""))
		s.WaitMail(t, "dave@example.org", "The results of your email commands", wait)
		n := 0
		for _, e := range s.Sink.Envelopes() {
			for _, r := range e.To {
				if r == "dave@example.org" {
					n++
				}
			}
		}
		if n != 1 || s.IsMember(t, "dave@example.org") {
			t.Errorf("dave got %d message(s), want only the answer to the second request", n)
		}
	})

	t.Run("owner mail forwarded", func(t *testing.T) {
		s.Send(t, "erin@example.org", []string{"test-owner@lists.example.org"}, stack.Message("erin@example.org", "test-owner@lists.example.org", "a question for the owners", "Hello.\n"))
		for _, admin := range []string{"owner@example.com", "mod@example.com"} {
			e := s.WaitMail(t, admin, "a question for the owners", wait)
			if e.From != "test-bounces@lists.example.org" {
				t.Errorf("forward to %s: envelope sender %q, want the list's bounce address", admin, e.From)
			}
		}
	})

	t.Run("unknown token refused at RCPT", func(t *testing.T) {
		tok, _ := address.NewToken()
		res := testenv.SendMail(t, smtp, "eve@example.org", []string{"test-confirm+" + tok + "@lists.example.org"}, nil)
		if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 550 {
			t.Errorf("RCPT with a made-up token: %v", res.Rcpt)
		}
	})
}

func msgID(t *testing.T, msg []byte) string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get("Message-ID")
}
