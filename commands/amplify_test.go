package commands_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"postlist/commands"
	"postlist/internal/testenv/stack"
	"postlist/message"
	"postlist/notice"
	"postlist/store"
)

// newCappedEnv is newEnv with a daily cap on automatic mail.
func newCappedEnv(t *testing.T, cap int) *env {
	f := stack.NewFixture(t)
	p := commands.New(commands.Options{Store: f.Store, Log: zaptest.NewLogger(t), Delimiter: "+", SiteOwner: "postmaster@example.com",
		MaxAutoresponsesPerDay: cap})
	return &env{Fixture: f, p: p}
}

// injectMany stores msg as one LMTP transaction for all of rcpts (local
// parts of lists.example.org, as the milter resolves them), under queue
// id queue, and returns the message's row ids.
func (e *env) injectMany(t *testing.T, envSender, queue string, msg []byte, rcpts ...string) store.IntakeResult {
	t.Helper()
	var rs []store.IntakeRecipient
	for _, r := range rcpts {
		local, _, _ := strings.Cut(r, "@")
		base, ext, _ := strings.Cut(local, "+")
		_, kind, _ := strings.Cut(base, "-")
		switch kind {
		case "":
			kind = "post"
		case "subscribe":
			kind = "join"
		case "unsubscribe":
			kind = "leave"
		}
		rs = append(rs, store.IntakeRecipient{Recipient: r, List: stack.List, Kind: kind, Extension: ext})
	}
	res, err := e.Store.Intake(context.Background(), &store.IntakeMessage{
		MessageID: message.Parse(msg).Get("Message-ID"), Sender: envSender, QueueID: queue, Body: msg, Recipients: rs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// drain runs the processor until nothing is pending.
func (e *env) drain(t *testing.T) {
	t.Helper()
	for {
		n, err := e.p.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func rcpts(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i+1)
	}
	return out
}

func TestOneReplyPerMessage(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		rcpts   []string
		// want is the kind (X-Postlist-Notice) of the only mail the
		// sender gets.
		want string
	}{
		{"request+N", "echo http://spam.example/", rcpts("test-request+%d@lists.example.org", 300), "results"},
		{"join+N", "", rcpts("test-join+%d@lists.example.org", 50), "confirm"},
		{"the same address twice", "help", []string{"test-request@lists.example.org", "test-request@lists.example.org"}, "results"},
		{"every command address", "help", []string{"test-request+a@lists.example.org", "test-join@lists.example.org",
			"test-subscribe+b@lists.example.org", "test-leave@lists.example.org", "test-unsubscribe+c@lists.example.org"}, "results"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			msg := stack.Message("victim@example.org", "test-request@lists.example.org", tc.subject, "")
			res := e.injectMany(t, "victim@example.org", "4QUEUE1", msg, tc.rcpts...)
			e.drain(t)
			mail := e.MailTo(t, "victim@example.org")
			if len(mail) != 1 || mail[0].Get(notice.Header) != tc.want {
				var kinds []string
				for _, m := range mail {
					kinds = append(kinds, m.Get(notice.Header))
				}
				t.Fatalf("%d recipient(s) gave the sender %q, want one %s", len(tc.rcpts), kinds, tc.want)
			}
			items, err := e.Store.IntakeByMessageID(context.Background(), message.Parse(msg).Get("Message-ID"))
			if err != nil {
				t.Fatal(err)
			}
			collapsed := 0
			for _, it := range items {
				if it.State != store.IntakeDone {
					t.Errorf("row %d is %s", it.ID, it.State)
				}
				if strings.Contains(it.Result, fmt.Sprintf("answered through intake row %d", res.IntakeIDs[0])) {
					collapsed++
				}
			}
			if collapsed != len(tc.rcpts)-1 {
				t.Errorf("%d row(s) answered by the first, want %d", collapsed, len(tc.rcpts)-1)
			}
		})
	}
}

// TestOneReplyAcrossTransactionsAndRestarts: Postfix hands a message
// with many recipients over in several LMTP transactions (50 each by
// default), each a message of its own with the same queue id; a
// processor that starts afresh between them must not answer again.
func TestOneReplyAcrossTransactionsAndRestarts(t *testing.T) {
	e := newEnv(t)
	msg := stack.Message("victim@example.org", "test-request@lists.example.org", "echo hi", "")
	e.injectMany(t, "victim@example.org", "4QUEUE2", msg, rcpts("test-request+%d@lists.example.org", 50)...)
	e.drain(t)
	// A restart: a new processor on the same store, and the next
	// transactions of the same queued message.
	e.p = commands.New(commands.Options{Store: e.Store, Log: zaptest.NewLogger(t), Delimiter: "+"})
	for i := 1; i < 4; i++ {
		e.injectMany(t, "victim@example.org", "4QUEUE2", msg, rcpts(fmt.Sprintf("test-request+%d%%d@lists.example.org", i), 50)...)
	}
	e.drain(t)
	if n := len(e.MailTo(t, "victim@example.org")); n != 1 {
		t.Fatalf("200 recipients in 4 transactions gave %d replies, want 1", n)
	}
	// Another message from the same sender is answered as usual.
	e.injectMany(t, "victim@example.org", "4QUEUE3", stack.Message("victim@example.org", "test-request@lists.example.org", "echo again", ""),
		"test-request+1@lists.example.org", "test-request+2@lists.example.org")
	e.drain(t)
	if n := len(e.MailTo(t, "victim@example.org")); n != 2 {
		t.Fatalf("a second message gave %d replies in all, want 2", n)
	}
}

func TestOneAddressPerMessage(t *testing.T) {
	e := newEnv(t)
	var body strings.Builder
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&body, "join address=v%d@victims.example\n", i)
	}
	e.send(t, "mallory@example.net", "test-request@lists.example.org", "", body.String())
	if n := len(e.MailTo(t, "v1@victims.example")); n != 1 {
		t.Errorf("the first address got %d message(s), want its confirmation request", n)
	}
	for i := 2; i <= 10; i++ {
		if n := len(e.MailTo(t, fmt.Sprintf("v%d@victims.example", i))); n != 0 {
			t.Errorf("v%d got %d message(s), want none", i, n)
		}
	}
	reply := only(t, e.MailTo(t, "mallory@example.net"), 0)
	if n := strings.Count(reply.Text(), "ignored: only one address= per message"); n != 9 {
		t.Errorf("reply says %d time(s) that address= was ignored, want 9:\n%s", n, reply.Text())
	}
	if strings.Contains(reply.Text(), "Confirmation email sent") {
		t.Errorf("the requester is told what happened to another address:\n%s", reply.Text())
	}
}

// TestNoMembershipOracle: whatever the state of the address a join
// names, the requester reads the same, and only the address itself
// hears what there is to say.
func TestNoMembershipOracle(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, e *env, addr string)
		target string // kind of the mail the address gets, "" for none
	}{
		{"new address", func(*testing.T, *env, string) {}, "confirm"},
		{"member", func(t *testing.T, e *env, addr string) {
			if _, err := e.Store.AddMembers(context.Background(), stack.List, "member", []store.NewMember{{Address: addr}}, nil); err != nil {
				t.Fatal(err)
			}
		}, "join-state"},
		{"pending", func(t *testing.T, e *env, addr string) {
			e.send(t, addr, "test-join@lists.example.org", "", "")
			if len(e.MailTo(t, addr)) != 1 {
				t.Fatal("no first confirmation request")
			}
		}, "join-state"},
		{"banned", func(t *testing.T, e *env, addr string) {
			if err := e.Store.Ban(context.Background(), stack.List, addr); err != nil {
				t.Fatal(err)
			}
		}, ""},
	}
	var replies []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			addr := "target@example.com"
			tc.setup(t, e, addr)
			before := len(e.MailTo(t, addr))
			e.send(t, "mallory@example.net", "test-request@lists.example.org", "", "join address="+addr+"\n")
			reply := only(t, e.MailTo(t, "mallory@example.net"), 0)
			text := reply.Text()
			if i := strings.Index(text, "- Results:"); i >= 0 {
				text = text[i:]
			}
			replies = append(replies, text)
			got := e.MailTo(t, addr)[before:]
			switch {
			case tc.target == "" && len(got) != 0:
				t.Errorf("the address got %d message(s), want none", len(got))
			case tc.target != "" && (len(got) != 1 || got[0].Get(notice.Header) != tc.target):
				t.Errorf("the address got %d message(s), want one %s", len(got), tc.target)
			}
			for _, m := range got {
				if len(m.To) != 1 || m.To[0] != addr {
					t.Errorf("notice about the address queued to %v", m.To)
				}
			}
		})
	}
	for i := 1; i < len(replies); i++ {
		if replies[i] != replies[0] {
			t.Errorf("the requester's results differ with the address's state:\n%s\n---\n%s", replies[0], replies[i])
		}
	}
}

func TestSiteAddressesRefused(t *testing.T) {
	tests := []struct {
		name, body, from string
		// reply is what the requester's results say; "" means no
		// reply at all.
		reply string
	}{
		{"another list", "join address=other@lists.example.org\n", "mallory@example.net", "is an address of this site"},
		{"another list's subaddress", "join address=other-request@lists.example.org\n", "mallory@example.net", "is an address of this site"},
		{"no such address in a list domain", "join address=nobody@lists.example.org\n", "mallory@example.net", "is an address of this site"},
		{"an alias domain", "join address=other@alias.example.org\n", "mallory@example.net", "is an address of this site"},
		{"upper case", "join address=OTHER@Lists.Example.ORG\n", "mallory@example.net", "is an address of this site"},
		{"From another list", "join\n", "other@lists.example.org", ""},
		{"From an alias domain", "help\n", "other@alias.example.org", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			if _, err := e.Store.CreateList(ctx, "other@lists.example.org"); err != nil {
				t.Fatal(err)
			}
			if err := e.Store.AddAlias(ctx, "alias.example.org", "lists.example.org"); err != nil {
				t.Fatal(err)
			}
			row := e.send(t, tc.from, "test-request@lists.example.org", "", tc.body)
			for _, m := range e.Outbox(t) {
				for _, r := range m.To {
					if strings.HasSuffix(strings.ToLower(r), "example.org") && r != "mallory@example.net" {
						t.Errorf("mail %q queued to the site's own %s", m.Get("Subject"), r)
					}
				}
			}
			if tc.reply == "" {
				if !strings.HasPrefix(row.Result, "ignored, no reply: from an address of this site") || len(e.Outbox(t)) != 0 {
					t.Errorf("result %q, %d message(s)", row.Result, len(e.Outbox(t)))
				}
				return
			}
			if r := only(t, e.MailTo(t, tc.from), 0); !strings.Contains(r.Text(), tc.reply) {
				t.Errorf("reply lacks %q:\n%s", tc.reply, r.Text())
			}
			if ts, err := e.Store.PendingTokens(ctx, stack.List); err != nil || len(ts) != 0 {
				t.Errorf("requests %+v, %v; want none", ts, err)
			}
		})
	}
}

func TestOwnNoticeIsAutomatic(t *testing.T) {
	m := message.Parse(stack.Message("bob@example.net", "test-request@lists.example.org", "help", "", notice.Header+": results"))
	if why := notice.Automatic(m, "bob@example.net"); !strings.Contains(why, notice.Header) {
		t.Errorf("Automatic = %q, want the notice mark named", why)
	}
}

func TestDailyCapOnReplies(t *testing.T) {
	tests := []struct {
		name string
		cap  int
		// each step is a message from victim's address (or naming it)
		steps []string // "echo": victim asks; "named": someone else's join address=victim
		want  []string // what the victim gets for each: "plain", "last", ""
	}{
		{"results", 3, []string{"echo", "echo", "echo", "echo", "echo"}, []string{"plain", "plain", "last", "", ""}},
		{"confirmations count too", 2, []string{"named", "echo", "named"}, []string{"plain", "last", ""}},
		{"no limit", 0, []string{"echo", "echo", "echo", "echo", "echo", "echo", "echo", "echo", "echo", "echo", "echo", "echo"},
			[]string{"plain", "plain", "plain", "plain", "plain", "plain", "plain", "plain", "plain", "plain", "plain", "plain"}},
	}
	const victim = "victim@example.org"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newCappedEnv(t, tc.cap)
			for i, step := range tc.steps {
				before := len(e.MailTo(t, victim))
				if step == "echo" {
					e.send(t, victim, "test-request@lists.example.org", fmt.Sprintf("echo %d", i), "")
				} else {
					e.send(t, fmt.Sprintf("m%d@example.net", i), "test-request@lists.example.org", "", "join address="+victim+"\n")
				}
				got := e.MailTo(t, victim)[before:]
				switch want := tc.want[i]; {
				case want == "" && len(got) != 0:
					t.Errorf("step %d: the victim got %d message(s), want none", i+1, len(got))
				case want != "" && len(got) != 1:
					t.Fatalf("step %d: the victim got %d message(s), want one", i+1, len(got))
				case want == "plain" && strings.Contains(got[0].Text(), "last automatic reply to you today"):
					t.Errorf("step %d: early last-reply note:\n%s", i+1, got[0].Text())
				case want == "last" && !strings.Contains(got[0].Text(), "This is the last automatic reply to you today"):
					t.Errorf("step %d: no last-reply note:\n%s", i+1, got[0].Text())
				}
			}
			limited := 0
			for _, w := range tc.want {
				if w == "" {
					limited++
				}
			}
			if evs := e.Events(t, store.EventAutoresponseLimit); (limited > 0) != (len(evs) == 1) || len(evs) > 1 {
				t.Errorf("events %+v", evs)
			}
			// The next UTC day starts afresh.
			e.Clock.Add(24 * time.Hour)
			before := len(e.MailTo(t, victim))
			e.send(t, victim, "test-request@lists.example.org", "echo tomorrow", "")
			if n := len(e.MailTo(t, victim)) - before; n != 1 {
				t.Errorf("next day: %d message(s), want 1", n)
			}
		})
	}
}
