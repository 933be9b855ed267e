package commands_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"postlist/internal/testenv/stack"
	"postlist/store"
)

// TestNoAmplificationThroughPostfix sends the hostile messages of the
// issue through a real Postfix: one message to a thousand -request+N
// addresses, ten address= lines, an address= naming another list of the
// site, and more requests than the daily cap allows.
func TestNoAmplificationThroughPostfix(t *testing.T) {
	s := stack.StartStackWith(t, stack.StackOptions{
		MaxAutoresponsesPerDay: 3,
		Lists:                  []string{"other@lists.example.org"},
		// Postfix's default is exactly 1000; a little room keeps the
		// test about the list server, not about that limit.
		ExtraMain: map[string]string{"smtpd_recipient_limit": "1100"},
	})
	ctx := context.Background()

	// sinkCount is how many messages the sink received for rcpt.
	sinkCount := func(rcpt string) int {
		n := 0
		for _, e := range s.Sink.Envelopes() {
			for _, r := range e.To {
				if strings.EqualFold(r, rcpt) {
					n++
				}
			}
		}
		return n
	}
	// processed waits until n intake rows of the message exist and none
	// is new: Postfix hands many recipients over in several LMTP
	// transactions, so the first ones can be done before the last arrive.
	processed := func(t *testing.T, msg []byte, n int) []store.IntakeItem {
		t.Helper()
		var items []store.IntakeItem
		stack.WaitUntil(t, fmt.Sprintf("%d intake rows are processed", n), wait, func() bool {
			var err error
			items, err = s.Store.IntakeByMessageID(ctx, msgID(t, msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(items) < n {
				return false
			}
			for _, it := range items {
				if it.State == store.IntakeNew {
					return false
				}
			}
			return true
		})
		return items
	}

	t.Run("1000 command recipients, one reply", func(t *testing.T) {
		const victim = "victim@example.org"
		to := make([]string, 1000)
		for i := range to {
			to[i] = fmt.Sprintf("test-request+%d@lists.example.org", i+1)
		}
		msg := stack.Message(victim, "test-request@lists.example.org", "echo Buy now at http://spam.example/", "")
		start := time.Now()
		s.Send(t, victim, to, msg)
		items := processed(t, msg, len(to))
		copies := map[int64]bool{}
		for _, it := range items {
			copies[it.MessageID] = true
		}
		t.Logf("1000 recipients arrived in %d LMTP transaction(s), processed in %v", len(copies), time.Since(start))
		s.WaitMail(t, victim, "The results of your email commands", wait)
		if n := len(s.MailTo(t, victim)); n != 1 {
			t.Fatalf("%d messages queued for the victim, want 1", n)
		}
		// Everything is processed and queued once; give the deliverer a
		// moment to show anything else it would send.
		time.Sleep(500 * time.Millisecond)
		if n := sinkCount(victim); n != 1 {
			t.Errorf("the victim received %d messages, want 1", n)
		}
	})

	t.Run("ten address= lines, one confirmation", func(t *testing.T) {
		var body strings.Builder
		for i := 1; i <= 10; i++ {
			fmt.Fprintf(&body, "join address=v%d@victims.example\n", i)
		}
		msg := stack.Message("mallory@example.net", "test-request@lists.example.org", "", body.String())
		s.Send(t, "mallory@example.net", []string{"test-request@lists.example.org"}, msg)
		reply := s.WaitMail(t, "mallory@example.net", "The results of your email commands", wait)
		if n := bytes.Count(reply.Data, []byte("ignored: only one address= per message")); n != 9 {
			t.Errorf("the reply names %d ignored address= lines, want 9:\n%s", n, reply.Data)
		}
		s.WaitMail(t, "v1@victims.example", "Your confirmation is needed to join", wait)
		for i := 2; i <= 10; i++ {
			if n := len(s.MailTo(t, fmt.Sprintf("v%d@victims.example", i))); n != 0 {
				t.Errorf("v%d@victims.example: %d message(s) queued", i, n)
			}
		}
	})

	t.Run("address= naming another list is refused", func(t *testing.T) {
		msg := stack.Message("mallory@example.net", "test-request@lists.example.org", "", "join address=other@lists.example.org\n")
		s.Send(t, "mallory@example.net", []string{"test-request@lists.example.org"}, msg)
		s.WaitMail(t, "mallory@example.net", "is an address of this site and cannot be subscribed", wait)
		if n := len(s.MailTo(t, "other@lists.example.org")); n != 0 {
			t.Errorf("%d message(s) queued for the other list", n)
		}
		// Nothing came back to the site for the other list: no intake row
		// of it (the stack runs no posting pipeline, so a post would still
		// wait).
		if posts, err := s.Store.PendingIntake(ctx, 100, "post"); err != nil || len(posts) != 0 {
			t.Errorf("posts waiting: %+v, %v", posts, err)
		}
		other, err := s.Store.GetList(ctx, "other@lists.example.org")
		if err != nil {
			t.Fatal(err)
		}
		if ts, err := s.Store.PendingTokens(ctx, "other@lists.example.org"); err != nil || len(ts) != 0 {
			t.Errorf("requests on the other list: %+v, %v", ts, err)
		}
		if ok, _ := s.Store.IsMember(ctx, s.List.ID, other.Address); ok {
			t.Error("the other list was subscribed")
		}
	})

	t.Run("daily cap with the last-reply note", func(t *testing.T) {
		const who = "frank@example.org"
		var last []byte
		for i := 1; i <= 4; i++ {
			msg := stack.Message(who, "test-request@lists.example.org", fmt.Sprintf("echo %d", i), "")
			s.Send(t, who, []string{"test-request@lists.example.org"}, msg)
			processed(t, msg, 1)
			if i <= 3 {
				last = s.WaitMail(t, who, fmt.Sprintf("> echo %d", i), wait).Data
			}
		}
		if !bytes.Contains(last, []byte("This is the last automatic reply to you today")) {
			t.Errorf("the third reply lacks the last-reply note:\n%s", last)
		}
		if n := len(s.MailTo(t, who)); n != 3 {
			t.Errorf("%d replies queued, want 3", n)
		}
		time.Sleep(300 * time.Millisecond)
		if n := sinkCount(who); n != 3 {
			t.Errorf("%d replies received, want 3", n)
		}
		if evs := s.Events(t, store.EventAutoresponseLimit); len(evs) != 1 || evs[0].Address != who {
			t.Errorf("events %+v", evs)
		}
	})
}
