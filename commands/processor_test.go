package commands_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"postlist/commands"
	"postlist/internal/testenv/stack"
	"postlist/notice"
	"postlist/store"
)

// env is a fixture with a Processor that a test runs by hand.
type env struct {
	*stack.Fixture
	p *commands.Processor
}

func newEnv(t *testing.T) *env {
	f := stack.NewFixture(t)
	p := commands.New(commands.Options{Store: f.Store, Log: zaptest.NewLogger(t), Delimiter: "+", SiteOwner: "postmaster@example.com"})
	return &env{Fixture: f, p: p}
}

// run processes everything pending and checks the row is finished.
func (e *env) run(t *testing.T, it store.IntakeItem) store.IntakeItem {
	t.Helper()
	if _, err := e.p.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	row := e.Row(t, it)
	if row.State != store.IntakeDone {
		t.Fatalf("intake row %d is %s: %s", row.ID, row.State, row.Result)
	}
	return row
}

// send injects a message to rcpt and processes it.
func (e *env) send(t *testing.T, from, rcpt, subject, body string, extra ...string) store.IntakeItem {
	t.Helper()
	return e.run(t, e.Inject(t, from, rcpt, stack.Message(from, rcpt, subject, body, extra...)))
}

// only returns the single message queued to rcpt since skip messages.
func only(t *testing.T, ms []stack.Mail, skip int) stack.Mail {
	t.Helper()
	if len(ms) != skip+1 {
		var subjects []string
		for _, m := range ms {
			subjects = append(subjects, m.Get("Subject"))
		}
		t.Fatalf("%d message(s) %q, want %d", len(ms), subjects, skip+1)
	}
	return ms[skip]
}

// checkRobotMarks checks what every message postlist writes must carry.
func checkRobotMarks(t *testing.T, m stack.Mail, kind, auto string) {
	t.Helper()
	if m.EnvelopeFrom != "test-bounces@lists.example.org" {
		t.Errorf("%s: envelope sender %q, want the list's bounce address", kind, m.EnvelopeFrom)
	}
	for field, want := range map[string]string{"Auto-Submitted": auto, "Precedence": "bulk", notice.Header: kind, "List-Id": "<test.lists.example.org>"} {
		if got := m.Get(field); got != want {
			t.Errorf("%s: %s %q, want %q", kind, field, got, want)
		}
	}
	if m.Get("Message-ID") == "" || m.Get("Date") == "" {
		t.Errorf("%s: no Message-ID or Date", kind)
	}
}

func TestJoinConfirmWelcome(t *testing.T) {
	e := newEnv(t)
	row := e.send(t, "Bob Example <bob@example.net>", "test-join@lists.example.org", "", "")
	if !strings.Contains(row.Result, "Confirmation email sent to bob@example.net") {
		t.Errorf("result %q", row.Result)
	}
	conf := only(t, e.MailTo(t, "bob@example.net"), 0)
	checkRobotMarks(t, conf, "confirm", "auto-replied")
	token := stack.ConfirmToken(t, conf)
	if from := conf.Get("From"); from != "test-confirm+"+token+"@lists.example.org" {
		t.Errorf("From %q", from)
	}
	if to := conf.Get("To"); to != `"Bob Example" <bob@example.net>` {
		t.Errorf("To %q", to)
	}
	if s := conf.Get("Subject"); !strings.Contains(s, "join the test@lists.example.org mailing list") || !strings.Contains(s, "confirm "+token) {
		t.Errorf("Subject %q", s)
	}
	if !strings.Contains(conf.Text(), "    confirm "+token+"\n") || !strings.Contains(conf.Text(), "test-request@lists.example.org") {
		t.Errorf("body lacks the confirm line or the request address:\n%s", conf.Text())
	}
	if e.IsMember(t, "bob@example.net") {
		t.Fatal("member before confirming")
	}

	// Replying to the confirmation's From: address completes it. The
	// token's case does not matter (an MTA may upper-case the address).
	e.send(t, "bob@example.net", "test-confirm+"+strings.ToUpper(token)+"@lists.example.org", "Re: "+conf.Get("Subject"), "> quoted text\n")
	if !e.IsMember(t, "bob@example.net") {
		t.Fatal("not a member after confirming")
	}
	mail := e.MailTo(t, "bob@example.net")
	welcome := only(t, mail, 1)
	checkRobotMarks(t, welcome, "welcome", "auto-generated")
	if welcome.Get("From") != "test-request@lists.example.org" || welcome.Get("X-No-Archive") != "yes" ||
		welcome.Get("Subject") != `Welcome to the "Test" mailing list` || !strings.Contains(welcome.Text(), "test-leave@lists.example.org") {
		t.Errorf("welcome: From %q, X-No-Archive %q, Subject %q\n%s", welcome.Get("From"), welcome.Get("X-No-Archive"), welcome.Get("Subject"), welcome.Text())
	}
	if evs := e.Events(t, store.EventMemberAdded); len(evs) != 1 || evs[0].Address != "bob@example.net" {
		t.Errorf("events %+v", evs)
	}

	// The token was used up: a second reply is told so.
	e.send(t, "bob@example.net", "test-confirm+"+token+"@lists.example.org", "Re: again", "")
	reply := only(t, e.MailTo(t, "bob@example.net"), 2)
	checkRobotMarks(t, reply, "results", "auto-replied")
	if !strings.Contains(reply.Text(), "Confirmation token did not match") {
		t.Errorf("reply to a used token:\n%s", reply.Text())
	}
}

func TestConfirmBySubjectAndByRequest(t *testing.T) {
	cases := []struct {
		name    string
		rcpt    string
		subject func(tok string) string
		body    func(tok string) string
	}{
		{"reply that lost the extension", "test-confirm@lists.example.org",
			func(tok string) string { return "Re: Your confirmation is needed (confirm " + tok + ")" }, func(string) string { return "" }},
		{"confirm line to -request", "test-request@lists.example.org",
			func(string) string { return "" }, func(tok string) string { return "confirm " + tok + "\n" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.send(t, "bob@example.net", "test-subscribe@lists.example.org", "", "")
			tok := stack.ConfirmToken(t, only(t, e.MailTo(t, "bob@example.net"), 0))
			e.send(t, "bob@example.net", c.rcpt, c.subject(tok), c.body(tok))
			if !e.IsMember(t, "bob@example.net") {
				t.Fatal("not a member")
			}
		})
	}
}

func TestExpiredTokenDoesNotMatch(t *testing.T) {
	e := newEnv(t)
	e.send(t, "bob@example.net", "test-join@lists.example.org", "", "")
	tok := stack.ConfirmToken(t, only(t, e.MailTo(t, "bob@example.net"), 0))
	e.Clock.Add(commands.DefaultTokenLifetime + time.Minute)
	e.send(t, "bob@example.net", "test-confirm+"+tok+"@lists.example.org", "Re: confirm", "")
	if e.IsMember(t, "bob@example.net") {
		t.Fatal("an expired token subscribed")
	}
	if r := only(t, e.MailTo(t, "bob@example.net"), 1); !strings.Contains(r.Text(), "Confirmation token did not match") {
		t.Errorf("reply:\n%s", r.Text())
	}
}

func TestJoinRefusals(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(t *testing.T, e *env)
		from   string
		want   string
		member bool
	}{
		{"closed list", func(t *testing.T, e *env) { e.Set(t, "subscription_policy", "closed") },
			"bob@example.net", "does not accept subscription requests", false},
		{"banned", func(t *testing.T, e *env) {
			if err := e.Store.Ban(context.Background(), stack.List, "^.*@example\\.net$"); err != nil {
				t.Fatal(err)
			}
		}, "bob@example.net", "may not subscribe", false},
		{"already a member", func(*testing.T, *env) {}, "alice@example.com", "is already a member", true},
		{"already pending", func(t *testing.T, e *env) {
			e.send(t, "bob@example.net", "test-join@lists.example.org", "", "")
		}, "bob@example.net", "already has a pending subscription request", false},
		// Its VERP return path would need quoting: refused with the reason
		// (the reply itself then fails alone at delivery).
		{"undeliverable address", func(*testing.T, *env) {}, `"a>b"@example.net`, "cannot be subscribed: a local part that needs quotes", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			c.setup(t, e)
			before := len(e.MailTo(t, c.from))
			e.send(t, c.from, "test-join@lists.example.org", "", "")
			// An implicit join that fails is answered (Mailman forces a
			// reply for errors), with no confirmation request.
			r := only(t, e.MailTo(t, c.from), before)
			if r.Get(notice.Header) != "results" || !strings.Contains(r.Text(), c.want) {
				t.Errorf("%s reply:\n%s", r.Get(notice.Header), r.Text())
			}
			if e.IsMember(t, c.from) != c.member {
				t.Errorf("membership changed")
			}
		})
	}
}

func TestLeave(t *testing.T) {
	t.Run("confirm policy", func(t *testing.T) {
		e := newEnv(t)
		e.send(t, "alice@example.com", "test-leave@lists.example.org", "", "")
		conf := only(t, e.MailTo(t, "alice@example.com"), 0)
		if !strings.Contains(conf.Get("Subject"), "leave the test@lists.example.org mailing list") {
			t.Errorf("Subject %q", conf.Get("Subject"))
		}
		if !e.IsMember(t, "alice@example.com") {
			t.Fatal("removed before confirming")
		}
		e.send(t, "alice@example.com", "test-confirm+"+stack.ConfirmToken(t, conf)+"@lists.example.org", "Re: leave", "")
		if e.IsMember(t, "alice@example.com") {
			t.Fatal("still a member after confirming")
		}
		bye := only(t, e.MailTo(t, "alice@example.com"), 1)
		checkRobotMarks(t, bye, "goodbye", "auto-generated")
		if bye.Get("Subject") != "You have been unsubscribed from the Test mailing list" {
			t.Errorf("goodbye Subject %q", bye.Get("Subject"))
		}
	})
	t.Run("open policy without goodbye", func(t *testing.T) {
		e := newEnv(t)
		e.Set(t, "unsubscription_policy", "open")
		e.Set(t, "send_goodbye_message", "no")
		row := e.send(t, "alice@example.com", "test-unsubscribe@lists.example.org", "", "")
		if e.IsMember(t, "alice@example.com") || !strings.Contains(row.Result, "left") {
			t.Fatalf("open leave: %q", row.Result)
		}
		if n := len(e.MailTo(t, "alice@example.com")); n != 0 {
			t.Errorf("%d message(s) with send_goodbye_message off", n)
		}
		if evs := e.Events(t, store.EventMemberRemoved); len(evs) != 1 || evs[0].Detail != "role=member by email (leave)" {
			t.Errorf("events %+v", evs)
		}
	})
	t.Run("not a member", func(t *testing.T) {
		e := newEnv(t)
		e.send(t, "bob@example.net", "test-leave@lists.example.org", "", "")
		if r := only(t, e.MailTo(t, "bob@example.net"), 0); !strings.Contains(r.Text(), "bob@example.net is not a member of test@lists.example.org") {
			t.Errorf("reply:\n%s", r.Text())
		}
	})
}

func TestModeratedSubscription(t *testing.T) {
	for _, policy := range []string{"moderate", "confirm_then_moderate"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t)
			e.Set(t, "subscription_policy", policy)
			e.send(t, "bob@example.net", "test-join@lists.example.org", "", "")
			tok := stack.ConfirmToken(t, only(t, e.MailTo(t, "bob@example.net"), 0))
			e.send(t, "bob@example.net", "test-confirm+"+tok+"@lists.example.org", "Re: confirm", "")
			if e.IsMember(t, "bob@example.net") {
				t.Fatal("member without a moderator's approval")
			}
			if r := only(t, e.MailTo(t, "bob@example.net"), 1); !strings.Contains(r.Text(), "waits for a moderator") {
				t.Errorf("subscriber told:\n%s", r.Text())
			}
			req := only(t, e.MailTo(t, "owner@example.com"), 0)
			if got := req.To; len(got) != 2 {
				t.Errorf("moderation request to %v, want owner and moderator", got)
			}
			modTok := stack.ConfirmToken(t, req)
			if modTok == tok || !strings.Contains(req.Get("Subject"), "bob@example.net") {
				t.Errorf("moderation request: token reused or Subject %q", req.Get("Subject"))
			}
			// The subscriber's own token is spent: it cannot approve.
			e.send(t, "bob@example.net", "test-confirm+"+tok+"@lists.example.org", "Re: confirm", "")
			if e.IsMember(t, "bob@example.net") {
				t.Fatal("the subscriber's token approved the subscription")
			}
			e.send(t, "mod@example.com", "test-confirm+"+modTok+"@lists.example.org", "Re: "+req.Get("Subject"), "ok\n")
			if !e.IsMember(t, "bob@example.net") {
				t.Fatal("not a member after approval")
			}
			if w := e.MailTo(t, "bob@example.net"); w[len(w)-1].Get(notice.Header) != "welcome" {
				t.Errorf("last mail to the subscriber is %q, want the welcome", w[len(w)-1].Get(notice.Header))
			}
		})
	}
}

func TestRequestReply(t *testing.T) {
	e := newEnv(t)
	body := "help\nfrobnicate\njoin\njoin\nend\nleave\n"
	row := e.send(t, "Bob <bob@example.net>", "test-request@lists.example.org", "help join", body)
	ms := e.MailTo(t, "bob@example.net")
	if len(ms) != 2 {
		t.Fatalf("%d messages, want a confirmation request and one reply", len(ms))
	}
	reply := ms[1]
	checkRobotMarks(t, reply, "results", "auto-replied")
	if reply.Get("Subject") != "The results of your email commands" || reply.Get("From") != "test-request@lists.example.org" ||
		reply.Get("In-Reply-To") != row.HeaderMessageID {
		t.Errorf("reply header: Subject %q From %q In-Reply-To %q", reply.Get("Subject"), reply.Get("From"), reply.Get("In-Reply-To"))
	}
	text := reply.Text()
	for _, want := range []string{
		"- Original message details:\n    From: Bob <bob@example.net>\n    Subject: help join\n",
		"> help join\n    join [address=ADDRESS]\n",
		"    leave        - Leave this mailing list",
		"> frobnicate\n    No such command: frobnicate\n",
		"Confirmation email sent to bob@example.net",
		"> join\n    (already done above)\n",
		"- Ignored:\n    leave\n",
		"- Done.\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("reply lacks %q:\n%s", want, text)
		}
	}
}

func TestAutomaticMailGetsNoReply(t *testing.T) {
	cases := []struct {
		name, envSender, rcpt string
		extra                 []string
	}{
		{"auto-replied", "bob@example.net", "test-request@lists.example.org", []string{"Auto-Submitted: auto-replied"}},
		{"auto-generated join", "bob@example.net", "test-join@lists.example.org", []string{"Auto-Submitted: auto-generated"}},
		{"bulk", "bob@example.net", "test-request@lists.example.org", []string{"Precedence: bulk"}},
		{"list mail", "bob@example.net", "test-request@lists.example.org", []string{"List-Id: <other.example.org>"}},
		{"List-Post only", "bob@example.net", "test-request@lists.example.org", []string{"list-post: <mailto:other@example.org>"}},
		{"our own notice", "bob@example.net", "test-request@lists.example.org", []string{notice.Header + ": results"}},
		{"null sender", "", "test-request@lists.example.org", nil},
		{"mailer daemon", "MAILER-DAEMON@example.net", "test-join@lists.example.org", nil},
		{"another list's bounces", "other-bounces+bob=example.net@lists.example.com", "test-request@lists.example.org", nil},
	}
	ownMail := stack.Message("test@lists.example.org", "test-request@lists.example.org", "help", "help\n")
	e0 := newEnv(t)
	if row := e0.run(t, e0.Inject(t, "test@lists.example.org", "test-request@lists.example.org", ownMail)); !strings.Contains(row.Result, "list's own address") || len(e0.Outbox(t)) != 0 {
		t.Errorf("mail from the list itself: %q, %d message(s)", row.Result, len(e0.Outbox(t)))
	}
	e0.send(t, "bob@example.net", "test-request@lists.example.org", "", "join address=test-owner@lists.example.org\n")
	if r := only(t, e0.MailTo(t, "bob@example.net"), 0); !strings.Contains(r.Text(), "one of the list's own addresses") || len(e0.Outbox(t)) != 1 {
		t.Errorf("subscribing the list's own address:\n%s", r.Text())
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			msg := stack.Message("bob@example.net", c.rcpt, "help", "help\njoin\n", c.extra...)
			row := e.run(t, e.Inject(t, c.envSender, c.rcpt, msg))
			if !strings.HasPrefix(row.Result, "ignored, no reply: automatic mail") {
				t.Errorf("result %q", row.Result)
			}
			if out := e.Outbox(t); len(out) != 0 {
				t.Errorf("%d message(s) queued in answer to automatic mail", len(out))
			}
		})
	}
	// A vacation reply to a confirmation request must not confirm it.
	e := newEnv(t)
	e.send(t, "bob@example.net", "test-join@lists.example.org", "", "")
	tok := stack.ConfirmToken(t, only(t, e.MailTo(t, "bob@example.net"), 0))
	e.send(t, "bob@example.net", "test-confirm+"+tok+"@lists.example.org", "Out of office", "I am away.", "Auto-Submitted: auto-replied")
	if e.IsMember(t, "bob@example.net") {
		t.Fatal("an autoresponder confirmed the subscription")
	}
}

func TestOwnerMailForwarded(t *testing.T) {
	e := newEnv(t)
	it := e.Inject(t, "bob@example.net", "test-owner@lists.example.org", stack.Message("bob@example.net", "test-owner@lists.example.org", "hi", "Hello owners."))
	row := e.run(t, it)
	out := e.Outbox(t)
	if len(out) != 1 || out[0].ID != it.MessageID {
		t.Fatalf("owner mail not forwarded as stored: %d message(s)", len(out))
	}
	fwd := out[0]
	if strings.Join(fwd.To, ",") != "mod@example.com,owner@example.com" || fwd.EnvelopeFrom != "test-bounces@lists.example.org" {
		t.Errorf("forwarded to %v from %q", fwd.To, fwd.EnvelopeFrom)
	}
	if evs := e.Events(t, store.EventOwnerMailForwarded); len(evs) != 1 || !strings.Contains(row.Result, "owner@example.com") {
		t.Errorf("events %+v, result %q", evs, row.Result)
	}

	// Without owners or moderators, the site owner gets it.
	if _, err := e.Store.RemoveMembers(context.Background(), stack.List, "owner", []string{"owner@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.RemoveMembers(context.Background(), stack.List, "moderator", []string{"mod@example.com"}); err != nil {
		t.Fatal(err)
	}
	e.send(t, "bob@example.net", "test-owner@lists.example.org", "again", "Anyone?")
	if n := len(e.MailTo(t, "postmaster@example.com")); n != 1 {
		t.Errorf("site owner got %d message(s)", n)
	}
}

func TestNoHeaderInjectionFromDisplayName(t *testing.T) {
	e := newEnv(t)
	from := "=?utf-8?q?Evil=0D=0ABcc=3A_victim=40example.org?= <bob@example.net>"
	e.run(t, e.Inject(t, "bob@example.net", "test-join@lists.example.org", stack.Message(from, "test-join@lists.example.org", "", "")))
	conf := only(t, e.MailTo(t, "bob@example.net"), 0)
	if conf.Msg.Has("Bcc") {
		t.Fatalf("a display name injected a header field:\n%s", conf.Body)
	}
	for _, f := range conf.Msg.Fields {
		if strings.HasPrefix(strings.ToLower(f.Name), "bcc") || strings.Contains(string(f.Raw), "\r\nBcc") {
			t.Fatalf("injected field %q", f.Raw)
		}
	}
	if to := conf.Get("To"); !strings.Contains(to, "bob@example.net") || strings.ContainsAny(to, "\r\n") {
		t.Errorf("To %q", to)
	}
	if len(conf.To) != 1 {
		t.Errorf("queued to %v", conf.To)
	}
}
