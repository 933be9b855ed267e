package bounce_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/internal/testenv/stack"
	"postlist/store"
)

const wait = 60 * time.Second

// TestBouncesThroughPostfix lets a real Postfix write the bounces: list
// mail to alice leaves postlist with her signed VERP return path, her
// server (the sink) refuses it with 550 5.1.1, and Postfix returns its
// DSN to that address, which comes back through LMTP to the bounce
// processor. The clock bounces are scored by moves one day per round, so
// five rounds are five bouncing days.
func TestBouncesThroughPostfix(t *testing.T) {
	s := startAliceRefused(t)
	ctx := context.Background()

	// post queues one list message to alice as the posting pipeline
	// does: her signed VERP address as envelope sender.
	post := func(t *testing.T, n int) {
		t.Helper()
		body := fmt.Sprintf("From: bob@example.net\r\nTo: test@lists.example.org\r\nSubject: post %d\r\nMessage-ID: <post.%d.%d@example.net>\r\n\r\nhello\r\n", n, n, time.Now().UnixNano())
		id, err := s.Store.StoreMessage(ctx, "bob@example.net", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		rows := []store.NewDelivery{{Recipient: "alice@example.com", EnvelopeFrom: s.Signer.VERP(stack.List, "alice@example.com", "+", s.Store.Now())}}
		if err := s.Store.QueueDeliveries(ctx, id, s.List.ID, rows); err != nil {
			t.Fatal(err)
		}
		s.Deliver.Kick()
	}
	record := func() store.MemberBounce {
		r, err := s.Store.MemberBounceRecord(ctx, s.List.ID, "alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("a DSN raises the score", func(t *testing.T) {
		post(t, 1)
		stack.WaitUntil(t, "the DSN is scored", wait, func() bool { return record().Score == 1 })
		rows, err := s.Store.BounceRows(ctx, stack.List, "alice@example.com")
		if err != nil || len(rows) != 1 {
			t.Fatalf("bounce rows %+v, %v", rows, err)
		}
		if r := rows[0]; r.Kind != store.BouncePermanent || r.Status != "5.1.1" || !r.Scored || r.MessageID == 0 {
			t.Errorf("bounce row %+v", r)
		}
		if evs := s.Events(t, store.EventBounceScored); len(evs) != 1 || !strings.Contains(evs[0].Detail, "signed VERP") {
			t.Errorf("events %+v", evs)
		}
	})

	t.Run("five bouncing days disable delivery", func(t *testing.T) {
		for day := 2; day <= 5; day++ {
			s.Clock.Add(24 * time.Hour)
			post(t, day)
			stack.WaitUntil(t, fmt.Sprintf("day %d's DSN is scored", day), wait, func() bool { return record().Score == float64(day) })
			want := "enabled"
			if day == 5 {
				want = "by_bounces"
			}
			if r := record(); r.DeliveryStatus != want {
				t.Fatalf("day %d: delivery %s, want %s", day, r.DeliveryStatus, want)
			}
		}
		for _, admin := range []string{"owner@example.com", "mod@example.com"} {
			n := s.WaitMail(t, admin, "alice@example.com's subscription disabled on Test", wait)
			if n.From != "test-bounces@lists.example.org" {
				t.Errorf("owners' notice envelope sender %q", n.From)
			}
		}
		// Disabled members get no list mail.
		got, err := s.Store.FanOutRecipients(ctx, s.List.ID, "bob@example.net")
		if err != nil || len(got) != 0 {
			t.Errorf("fan-out after the disable: %v, %v", got, err)
		}
	})

	t.Run("a forged bounce is refused at RCPT", func(t *testing.T) {
		good := s.Signer.VERP(stack.List, "alice@example.com", "+", s.Store.Now())
		local, domain, _ := strings.Cut(good, "@")
		forged := local[:len(local)-8] + "aaaaaaaa@" + domain
		if forged == good {
			t.Fatal("the forged signature is the real one")
		}
		unsigned := "test-bounces+alice=example.com@lists.example.org"
		for _, rcpt := range []string{forged, unsigned} {
			res := testenv.SendMail(t, s.Postfix.SMTPAddr, "", []string{rcpt}, nil)
			if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 550 {
				t.Errorf("RCPT %s: %v, want 550", rcpt, res.Rcpt)
			}
		}
		// The genuine address is still accepted (it names a member).
		if res := testenv.SendMail(t, s.Postfix.SMTPAddr, "", []string{good}, nil); len(res.Rcpt) != 1 || res.Rcpt[0].Code != 250 {
			t.Errorf("RCPT %s: %v, want 250", good, res.Rcpt)
		}
	})
}

// TestOldVERPThroughPostfix: Postfix writes a DSN to a genuine return path
// whose day stamp is older than verp_bounce_window (a replayed
// Return-Path looks just like it). The milter takes it (250 at RCPT: no
// bounce of the bounce), the bounce processor records it and scores
// nothing; the same DSN to a fresh return path scores, and the old one
// with its day altered is refused.
func TestOldVERPThroughPostfix(t *testing.T) {
	s := startAliceRefused(t)
	ctx := context.Background()
	old := s.Signer.VERP(stack.List, "alice@example.com", "+", s.Store.Now().Add(-address.DefaultVERPWindow-2*24*time.Hour))
	fresh := s.Signer.VERP(stack.List, "alice@example.com", "+", s.Store.Now())
	post := func(t *testing.T, n int, envelopeFrom string) {
		t.Helper()
		body := fmt.Sprintf("From: bob@example.net\r\nTo: test@lists.example.org\r\nSubject: post %d\r\nMessage-ID: <old.%d.%d@example.net>\r\n\r\nhello\r\n", n, n, time.Now().UnixNano())
		id, err := s.Store.StoreMessage(ctx, "bob@example.net", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Store.QueueDeliveries(ctx, id, s.List.ID, []store.NewDelivery{{Recipient: "alice@example.com", EnvelopeFrom: envelopeFrom}}); err != nil {
			t.Fatal(err)
		}
		s.Deliver.Kick()
	}
	score := func() float64 {
		r, err := s.Store.MemberBounceRecord(ctx, s.List.ID, "alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		return r.Score
	}
	ignored := func() []store.Event {
		var out []store.Event
		for _, ev := range s.Events(t, store.EventBounceRecorded) {
			if strings.Contains(ev.Detail, "older than verp_bounce_window") {
				out = append(out, ev)
			}
		}
		return out
	}

	t.Run("its DSN is taken and not scored", func(t *testing.T) {
		post(t, 1, old)
		stack.WaitUntil(t, "the DSN to the old return path is recorded", wait, func() bool { return len(ignored()) == 1 })
		if got := score(); got != 0 {
			t.Errorf("score %v after a bounce to an old return path, want 0", got)
		}
		if evs := s.Events(t, store.EventBounceScored); len(evs) != 0 {
			t.Errorf("scored events %+v", evs)
		}
		if evs := ignored(); evs[0].Address != "alice@example.com" {
			t.Errorf("ignored bounce recorded for %q", evs[0].Address)
		}
	})

	t.Run("a DSN to a fresh return path is scored", func(t *testing.T) {
		post(t, 2, fresh)
		stack.WaitUntil(t, "the DSN is scored", wait, func() bool { return score() == 1 })
		if evs := s.Events(t, store.EventBounceScored); len(evs) != 1 || !strings.Contains(evs[0].Detail, "signed VERP") {
			t.Errorf("scored events %+v", evs)
		}
	})
	// Last, since the message sent here is a bounce to the old return
	// path too.
	t.Run("RCPT to an old return path is accepted", func(t *testing.T) {
		res := testenv.SendMail(t, s.Postfix.SMTPAddr, "", []string{old}, nil)
		if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 250 {
			t.Fatalf("RCPT %s: %v, want 250", old, res.Rcpt)
		}
		// Its day altered to look recent, the signature no longer checks.
		local, domain, _ := strings.Cut(old, "@")
		stamp := len(local) - 11
		forged := local[:stamp] + string("ab"[strings.IndexByte("ba", local[stamp])&1]) + local[stamp+1:] + "@" + domain
		if forged == old {
			t.Fatal("the forged address is the real one")
		}
		if res := testenv.SendMail(t, s.Postfix.SMTPAddr, "", []string{forged}, nil); len(res.Rcpt) != 1 || res.Rcpt[0].Code != 550 {
			t.Errorf("RCPT %s: %v, want 550", forged, res.Rcpt)
		}
	})
}

// startAliceRefused starts the whole stack with alice's server (the sink)
// refusing her mail with 550 5.1.1, so that Postfix writes the DSNs, and
// the clock at noon of today.
func startAliceRefused(t *testing.T) *stack.Stack {
	t.Helper()
	s := stack.StartStack(t)
	s.Sink.SetRcptHook(func(from, to string) *smtp.SMTPError {
		if strings.EqualFold(to, "alice@example.com") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<alice@example.com>: no such user here"}
		}
		return nil
	})
	y, m, d := s.Clock.Now().Date()
	s.Clock.Set(time.Date(y, m, d, 12, 0, 0, 0, time.UTC))
	return s
}
