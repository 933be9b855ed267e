package deliver

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"time"

	"github.com/emersion/go-smtp"

	"postlist/store"
)

// verdict is what one transaction said about one recipient.
type verdict struct {
	state  string // store.DeliverySent, DeliveryDeferred or DeliveryFailed
	reply  string // for last_reply
	code   int    // the SMTP code, 0 for a local error
	bounce string // for a failure: the bounces.kind to record
	scored bool   // for a failure: whether the bounce counts toward the score
	// session marks a failure to open the session at all, logged once
	// per job rather than per recipient.
	session bool
}

// policyText recognises refusals about the message or the sender's
// reputation rather than the mailbox, for servers that send no enhanced
// status code (or a generic one). They must not count against the member:
// a DMARC-rejecting provider would otherwise unsubscribe its users one
// innocent post at a time.
var policyText = regexp.MustCompile(`(?i)\b(spam|dmarc|dkim|spf|policy|blocked|block ?list(ed)?|black ?list(ed)?|reputation|rbl|dnsbl|virus|malware|content rejected|rate limit(ed)?)\b`)

// classify maps a server's reply to a verdict. aboutRecipient says whether
// the reply can concern the recipient (a RCPT reply, or the reply to the
// data of a one-recipient transaction); a refused MAIL FROM or a refused
// multi-recipient message is never the members' fault.
//
// 4xx defers. So does 552 without a message-size enhanced code: RFC 5321
// §4.5.3.1.10 has servers use it at RCPT for "too many recipients", and
// "mailbox full" is usually temporary too (Mailman also retries 552).
// Other 5xx fail, with a bounce kind:
//
//   - policy (5.7.x, or policy words in the text): not scored;
//   - permanent (5.1.x bad mailbox, 5.2.x mailbox unavailable, 5.4.x bad
//     destination, or no specific enhanced code): scored;
//   - unknown (message-level: 5.3.x, 5.5.x, 5.6.x, 5.2.3 too big, or not
//     about the recipient): not scored.
func classify(se *smtp.SMTPError, aboutRecipient bool) verdict {
	v := verdict{code: se.Code, reply: formatReply(se)}
	enh := se.EnhancedCode
	hasEnh := enh != smtp.EnhancedCodeNotSet && enh != smtp.NoEnhancedCode
	size := hasEnh && (enh == smtp.EnhancedCode{5, 3, 4} || enh == smtp.EnhancedCode{5, 2, 3})
	switch {
	case se.Code >= 500 && se.Code < 600 && !(se.Code == 552 && !size):
		v.state = store.DeliveryFailed
	default:
		// 4xx, 552, and anything unexpected (a 3xx or 2xx where it makes
		// no sense) are worth another try.
		v.state = store.DeliveryDeferred
		return v
	}
	switch {
	case (hasEnh && enh[1] == 7) || policyText.MatchString(se.Message):
		v.bounce = store.BouncePolicy
	case !aboutRecipient || size:
		v.bounce = store.BounceUnknown
	case !hasEnh || enh[1] == 0 || enh[1] == 1 || enh[1] == 2 || enh[1] == 4:
		v.bounce, v.scored = store.BouncePermanent, true
	default:
		v.bounce = store.BounceUnknown
	}
	return v
}

// formatReply renders a reply as the server sent it: "550 5.1.1 text".
func formatReply(se *smtp.SMTPError) string {
	enh := se.EnhancedCode
	if enh == smtp.EnhancedCodeNotSet || enh == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d %s", se.Code, oneLine(se.Message))
	}
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, enh[0], enh[1], enh[2], oneLine(se.Message))
}

// decide turns a verdict for row r into the outcome to record at time now.
// A deferral is scheduled with back-off but never past the end of the
// retry period, so the last attempt happens at the deadline; a temporary
// failure at or after the deadline fails the row.
func (d *Deliverer) decide(r store.Delivery, v verdict, now time.Time) store.DeliveryOutcome {
	out := store.DeliveryOutcome{ID: r.ID, State: v.state, Reply: v.reply}
	switch v.state {
	case store.DeliveryFailed:
		out.Bounce, out.Scored, out.Event = v.bounce, v.scored, store.EventDeliveryFailed
	case store.DeliveryDeferred:
		deadline := r.CreatedAt.Add(d.o.RetryPeriod)
		if !now.Before(deadline) {
			out.State = store.DeliveryFailed
			out.Reply = "retry period over: " + v.reply
			out.Bounce, out.Event = store.BounceTemporary, store.EventDeliveryExpired
			return out
		}
		next := now.Add(backoff(r.Attempts+1, d.o.RetryInterval, d.o.MaxBackoff, rand.Float64()))
		if next.After(deadline) {
			next = deadline
		}
		out.NextAttempt = next
	}
	return out
}

// backoff is the wait after the attempt-th failed attempt: interval
// doubled per earlier failure, capped at maxWait, then spread by ±10%
// (jitter in [0,1)) so that rows deferred together, such as a whole
// fan-out when the smart host was down, do not return as one burst.
func backoff(attempt int, interval, maxWait time.Duration, jitter float64) time.Duration {
	w := interval
	for i := 1; i < attempt && w < maxWait; i++ {
		w *= 2
	}
	w = min(w, maxWait)
	return time.Duration(float64(w) * (0.9 + 0.2*jitter))
}
