package milter

import (
	"fmt"
	"strings"

	"postlist/index"
)

// Answer is what the milter would answer Postfix for one RCPT, as
// `postlist lookup` shows it.
type Answer struct {
	Recipient string `json:"recipient"`
	Sender    string `json:"sender,omitempty"`
	// Verdict is accept (Postfix is told "continue" and keeps asking
	// about later recipients), reject, tempfail, or continue for an
	// address outside the list domains, which Postfix decides alone.
	Verdict string `json:"verdict"`
	Reply   string `json:"reply,omitempty"` // the SMTP reply of a refusal
	Reason  string `json:"reason"`
	List    string `json:"list,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Policy  string `json:"policy,omitempty"` // sender check of an accepted post
}

// Lookup runs the RCPT decision for rcpt on the current snapshot of ix.
// sender is the envelope sender as Postfix gives it; "<>" is the null
// sender, and "" means no sender was given, so the sender policy is not
// checked. End-of-message checks (size, loops, header From) need a
// message and are not covered.
func Lookup(ix *index.Index, rcpt, sender string) Answer {
	known := sender != ""
	if sender == "<>" {
		sender = ""
	}
	d, policy := decide(ix.Snapshot(), rcpt, sender, known)
	a := Answer{Recipient: rcpt, Reason: d.Reason, List: d.Target.List, Kind: string(d.Target.Kind), Policy: policy}
	if known {
		a.Sender = senderForLog(sender, true)
	}
	switch {
	case !d.Ours:
		a.Verdict = VerdictContinue
	case d.Reply != nil:
		a.Verdict, a.Reply = verdictOf(*d.Reply), d.Reply.String()
	default:
		a.Verdict = VerdictAccept
	}
	return a
}

// Explain is Lookup as one line, in the spirit of `postmap -q`: the
// recipient, then what Postfix would be told and why.
func Explain(ix *index.Index, rcpt, sender string) string {
	return Lookup(ix, rcpt, sender).String()
}

// String formats the answer as one line.
func (a Answer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", a.Recipient)
	switch a.Verdict {
	case VerdictContinue:
		b.WriteString("continue: not a list domain, left to Postfix")
	case VerdictAccept:
		b.WriteString("accept")
	default:
		b.WriteString(a.Reply)
	}
	details := []string{"reason=" + a.Reason}
	if a.List != "" {
		details = append(details, "list="+a.List)
	}
	if a.Kind != "" {
		details = append(details, "kind="+a.Kind)
	}
	if a.Sender != "" {
		details = append(details, "sender="+a.Sender)
	}
	if a.Policy != "" {
		details = append(details, "policy="+a.Policy)
	}
	fmt.Fprintf(&b, " (%s)", strings.Join(details, " "))
	return b.String()
}
