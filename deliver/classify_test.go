package deliver

import (
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postlist/store"
)

func TestClassify(t *testing.T) {
	e := func(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
	}
	none := smtp.EnhancedCodeNotSet
	tests := []struct {
		name          string
		err           *smtp.SMTPError
		aboutRcpt     bool
		state, bounce string
		scored        bool
		reply         string
		code          int
	}{
		{"4xx defers", e(450, smtp.EnhancedCode{4, 2, 0}, "busy"), true, store.DeliveryDeferred, "", false, "450 4.2.0 busy", 450},
		{"421 defers", e(421, smtp.EnhancedCode{4, 3, 2}, "shutting down"), true, store.DeliveryDeferred, "", false, "421 4.3.2 shutting down", 421},
		{"unexpected 3xx defers", e(354, none, "go ahead"), true, store.DeliveryDeferred, "", false, "354 go ahead", 354},
		{"user unknown", e(550, smtp.EnhancedCode{5, 1, 1}, "no such user"), true, store.DeliveryFailed, store.BouncePermanent, true, "550 5.1.1 no such user", 550},
		{"mailbox disabled", e(550, smtp.EnhancedCode{5, 2, 1}, "disabled"), true, store.DeliveryFailed, store.BouncePermanent, true, "550 5.2.1 disabled", 550},
		{"no such domain", e(550, smtp.EnhancedCode{5, 4, 4}, "unroutable"), true, store.DeliveryFailed, store.BouncePermanent, true, "550 5.4.4 unroutable", 550},
		{"plain 550 counts, as in Mailman", e(550, none, "User unknown"), true, store.DeliveryFailed, store.BouncePermanent, true, "550 User unknown", 550},
		{"5.7.1 is policy", e(550, smtp.EnhancedCode{5, 7, 1}, "rejected"), true, store.DeliveryFailed, store.BouncePolicy, false, "550 5.7.1 rejected", 550},
		{"policy words", e(554, none, "Message blocked by RBL"), true, store.DeliveryFailed, store.BouncePolicy, false, "554 Message blocked by RBL", 554},
		{"DMARC words with a mailbox code", e(550, smtp.EnhancedCode{5, 1, 0}, "rejected due to DMARC policy"), true, store.DeliveryFailed, store.BouncePolicy, false, "550 5.1.0 rejected due to DMARC policy", 550},
		{"552 mailbox full defers", e(552, smtp.EnhancedCode{5, 2, 2}, "mailbox full"), true, store.DeliveryDeferred, "", false, "552 5.2.2 mailbox full", 552},
		{"552 too many recipients defers", e(552, none, "too many recipients"), true, store.DeliveryDeferred, "", false, "552 too many recipients", 552},
		{"552 message too big fails, unscored", e(552, smtp.EnhancedCode{5, 3, 4}, "message too big"), true, store.DeliveryFailed, store.BounceUnknown, false, "552 5.3.4 message too big", 552},
		{"syntax error is not the member's fault", e(501, smtp.EnhancedCode{5, 5, 4}, "bad parameter"), true, store.DeliveryFailed, store.BounceUnknown, false, "501 5.5.4 bad parameter", 501},
		{"refused envelope sender is not the member's fault", e(553, smtp.EnhancedCode{5, 1, 8}, "bad sender domain"), false, store.DeliveryFailed, store.BounceUnknown, false, "553 5.1.8 bad sender domain", 553},
		{"multi-line reply is one line", e(550, smtp.EnhancedCode{5, 1, 1}, "no\nsuch user"), true, store.DeliveryFailed, store.BouncePermanent, true, "550 5.1.1 no such user", 550},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := classify(tc.err, tc.aboutRcpt)
			if v.state != tc.state || v.bounce != tc.bounce || v.scored != tc.scored || v.reply != tc.reply || v.code != tc.code {
				t.Errorf("classify = %+v; want state %s bounce %q scored %v reply %q", v, tc.state, tc.bounce, tc.scored, tc.reply)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const m = time.Minute
	tests := []struct {
		attempt  int
		interval time.Duration
		maxWait  time.Duration
		jitter   float64
		want     time.Duration
		why      string
	}{
		{1, 15 * m, 240 * m, 0.5, 15 * m, "first retry after the interval"},
		{2, 15 * m, 240 * m, 0.5, 30 * m, "doubles"},
		{4, 15 * m, 240 * m, 0.5, 120 * m, ""},
		{5, 15 * m, 240 * m, 0.5, 240 * m, "reaches the cap"},
		{40, 15 * m, 240 * m, 0.5, 240 * m, "stays capped, no overflow"},
		{1, 15 * m, 240 * m, 0, 15 * m * 9 / 10, "jitter -10%"},
		{1, 15 * m, 240 * m, 0.999999, 15 * m * 11 / 10, "jitter just under +10%"},
		{3, 10 * time.Millisecond, 240 * m, 0.5, 40 * time.Millisecond, "test-sized intervals"},
	}
	for _, tc := range tests {
		got := backoff(tc.attempt, tc.interval, tc.maxWait, tc.jitter)
		if d := got - tc.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("backoff(%d, %v, %v, %v) = %v, want %v (%s)", tc.attempt, tc.interval, tc.maxWait, tc.jitter, got, tc.want, tc.why)
		}
	}
}

func TestDecide(t *testing.T) {
	d := New(Options{RetryInterval: time.Hour, RetryPeriod: 24 * time.Hour})
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	row := store.Delivery{ID: 7, CreatedAt: created, Attempts: 2}
	deferred := verdict{state: store.DeliveryDeferred, reply: "451 later", code: 451}
	tests := []struct {
		name      string
		v         verdict
		now       time.Time
		wantState string
		wantNext  func(time.Time) bool
		wantEvent string
		bounce    string
	}{
		{"sent", verdict{state: store.DeliverySent, reply: "250 ok"}, created.Add(time.Minute), store.DeliverySent, nil, "", ""},
		{"deferred with back-off (3rd attempt: 4h ±10%)", deferred, created.Add(time.Hour), store.DeliveryDeferred,
			func(n time.Time) bool {
				w := n.Sub(created.Add(time.Hour))
				return w >= 216*time.Minute && w <= 264*time.Minute
			}, "", ""},
		{"deferred near the deadline: last try at the deadline", deferred, created.Add(23 * time.Hour), store.DeliveryDeferred,
			func(n time.Time) bool { return n.Equal(created.Add(24 * time.Hour)) }, "", ""},
		{"deferred at the deadline: expired", deferred, created.Add(24 * time.Hour), store.DeliveryFailed, nil, store.EventDeliveryExpired, store.BounceTemporary},
		{"failed", verdict{state: store.DeliveryFailed, reply: "550 no", bounce: store.BouncePermanent, scored: true}, created, store.DeliveryFailed, nil, store.EventDeliveryFailed, store.BouncePermanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := d.decide(row, tc.v, tc.now)
			if out.ID != row.ID || out.State != tc.wantState || out.Event != tc.wantEvent || out.Bounce != tc.bounce {
				t.Errorf("decide = %+v", out)
			}
			if tc.wantNext != nil && !tc.wantNext(out.NextAttempt) {
				t.Errorf("next attempt %v", out.NextAttempt)
			}
		})
	}
}
