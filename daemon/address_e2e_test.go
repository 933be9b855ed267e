package daemon_test

// Quoted, escaped and odd local parts through a real Postfix: whatever
// postlist accepts at RCPT its LMTP server accepts too, and nothing is
// ever bounced back to the (forged) envelope sender. A recipient that
// Postfix accepted and the LMTP server then refused would come back to
// that sender as a bounce carrying the attacker's text: backscatter.

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"postlist/address/addresstest"
	"postlist/internal/testenv"
)

// addrHookup is one way Postfix can reach postlist for the RCPT decision.
// The table runs once per hookup; the LMTP delivery is the same for all.
type addrHookup struct {
	name string
	// start returns the running stack; the list addresstest.List exists,
	// has addresstest.Member as a member and discards non-member posts
	// (so that accepted rows make no mail of their own).
	start func(t *testing.T) *stack
}

var addrHookups = []addrHookup{
	{name: "milter", start: func(t *testing.T) *stack {
		pl := testenv.NewPostlist(t)
		pf := testenv.StartPostfix(t, testenv.PostfixOptions{
			Milter:      "inet:" + pl.Milter,
			ListDomains: []string{addresstest.Domain},
			LMTP:        "inet:" + pl.LMTP,
		})
		pl.Configure(pf.SubmitAddr, "", addresstest.List)
		pl.CLI("members", "add", addresstest.List, addresstest.Member)
		pl.CLI("lists", "set", addresstest.List, "default_nonmember_action", "discard")
		pl.Start()
		return &stack{pl: pl, pf: pf}
	}},
	// The documented hookup: contrib/postfix as written, postlist's
	// policy service deciding list recipients, no milter.
	{name: "policy", start: func(t *testing.T) *stack {
		h := startHookup(t)
		h.pl.CLI("lists", "set", addresstest.List, "default_nonmember_action", "discard")
		h.pl.Start()
		return &stack{pl: h.pl, pf: h.pf}
	}},
}

func TestOddLocalPartsNoBackscatter(t *testing.T) {
	for _, h := range addrHookups {
		t.Run(h.name, func(t *testing.T) {
			s := h.start(t)
			relay := "relay=127.0.0.1[" + strings.ReplaceAll(s.pl.LMTP, ":", "]:")
			for i, row := range addresstest.LocalParts {
				if row.NoSMTP {
					continue
				}
				subject := "odd local part " + string(rune('A'+i%26)) + strings.Repeat("x", i/26)
				msg := []byte("From: " + addresstest.Victim + "\r\nTo: " + addresstest.List + "\r\nSubject: " + subject +
					"\r\n\r\nattacker's text\r\n")
				res := testenv.SendMail(t, s.pf.SMTPAddr, addresstest.Victim, []string{row.Addr()}, msg)
				r := res.Rcpt[0]
				t.Logf("%s: %s -> %v", row.Name, clipRow(row.Addr()), r)
				if row.RCPT != addresstest.AnyClass && Class(r.Code) != row.RCPT {
					t.Errorf("%s: RCPT TO:<%s> answered %v, want %dxx", row.Name, clipRow(row.Addr()), r, row.RCPT)
				}
				if !r.OK() {
					continue
				}
				qid := res.QueueID()
				if qid == "" {
					t.Errorf("%s: RCPT accepted but the message was not queued: %v", row.Name, res)
					continue
				}
				line := s.pf.WaitLog(t, regexp.MustCompile(regexp.QuoteMeta(qid)+`: to=<.*status=`), 60*time.Second)
				if row.Domain == "" || strings.TrimSuffix(row.Domain, ".") == addresstest.Domain {
					if !strings.Contains(line, "status=sent") || !strings.Contains(line, relay) {
						t.Errorf("%s: accepted at RCPT but not committed by the LMTP server:\n%s", row.Name, line)
					}
				}
			}

			s.pf.WaitQueueEmpty(t, 60*time.Second)
			for _, e := range s.pf.Sink.Envelopes() {
				for _, to := range e.To {
					if strings.HasSuffix(strings.ToLower(to), "victim.example") {
						t.Errorf("mail to %s (from <%s>) reached the outside:\n%s", to, e.From, clipRow(string(e.Data)))
					}
				}
				if e.From == "" {
					t.Errorf("a bounce was sent to %v:\n%s", e.To, clipRow(string(e.Data)))
				}
			}
			if log := s.pf.Log(); strings.Contains(log, "status=bounced") {
				t.Errorf("Postfix bounced a message:\n%s", grepLines(log, "status=bounced"))
			}
		})
	}
}

// Class is the reply class of an SMTP code.
func Class(code int) addresstest.Class { return addresstest.Class(code / 100) }

func clipRow(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func grepLines(s, sub string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
