package bounce

import (
	"regexp"
	"strings"

	"postlist/address"
	"postlist/message"
)

// Bounces that are not RFC 3464 reports still follow a few well-known
// layouts. Each reader below is gated by its MTA's own wording, so that a
// vacation reply or a human message quoting an address is never taken
// for a bounce.

var (
	// eximStart introduces Exim's list of failed (or delayed) addresses.
	eximStart = regexp.MustCompile(`(?i)following address(\(es\)|es)? failed|address(\(es\)|es)? to which the message has not yet been delivered (is|are)`)
	// angleStart introduces qmail's and Postfix's plain-text reports,
	// whose blocks start "<addr>: ...".
	angleStart = regexp.MustCompile(`(?i)qmail-send program|this is the mail system at host|this is the postfix program|i'm afraid i wasn't able to deliver`)
	// angleLine is the first line of such a block.
	angleLine = regexp.MustCompile(`^<([^<>\s]+@[^<>\s]+)>:?\s*(.*)$`)
	// delayText marks a report that is a warning, not a failure.
	delayText = regexp.MustCompile(`(?i)this is a warning only|has not yet been delivered|delivery (has been |is )?delayed|delivery attempts will continue|will (continue to )?(retry|try again)`)
	// bounceSubject is how bounces are titled, for reports from an
	// unrecognised MTA that still use the "<addr>: reason" layout.
	bounceSubject = regexp.MustCompile(`(?i)undeliver|delivery (status|failure|failed|notification|problem)|returned mail|failure notice|mail delivery|non.?delivery|could not be delivered`)
	// separator ends the report where the returned message begins.
	separator = regexp.MustCompile(`^\s*(-{2,}|={3,}).*(below this line|copy of|original message|enclosed)|^-{5,}`)
)

// block is one address of a text report with what was said about it.
type block struct {
	addr string
	diag []string
}

// textFailures reads a non-DSN bounce: header m and the text of its first
// text/plain part.
func textFailures(m *message.Message, text string) []Failure {
	var blocks []block
	switch {
	case eximStart.MatchString(text):
		blocks = eximBlocks(text)
	case angleStart.MatchString(text) || robotSender(m) || bounceSubject.MatchString(m.Get("Subject")):
		blocks = angleBlocks(text)
	}
	// Exim (and Gmail) name the failed recipients in a header too; it is
	// the surest source, the text only adds the reasons.
	for _, v := range m.Values("X-Failed-Recipients") {
		for a := range strings.SplitSeq(v, ",") {
			if n, err := address.Normalize(a); err == nil && !hasBlock(blocks, n) {
				blocks = append(blocks, block{addr: n})
			}
		}
	}
	action := "failed"
	if delayText.MatchString(text) {
		action = "delayed"
	}
	var out []Failure
	for _, b := range blocks {
		diag := clip(message.OneLine(strings.Join(b.diag, " ")), maxDiag)
		status := statusOf(diag)
		out = append(out, Failure{Address: b.addr, Status: status, Action: action, Diagnostic: diag, Kind: classify(action, status, diag)})
		if len(out) >= maxFailures {
			break
		}
	}
	return dedupe(out)
}

func hasBlock(bs []block, addr string) bool {
	for _, b := range bs {
		if strings.EqualFold(b.addr, addr) {
			return true
		}
	}
	return false
}

// robotSender reports a bounce's usual From: the mailer daemon or the
// postmaster.
func robotSender(m *message.Message) bool {
	as, err := message.ParseAddressList(m.Get("From"))
	if err != nil || len(as) == 0 {
		return false
	}
	local, _, _ := strings.Cut(strings.ToLower(as[0].Address), "@")
	return local == "mailer-daemon" || local == "postmaster"
}

// lines splits text into lines without their line endings.
func lines(text string) []string {
	ls := strings.Split(text, "\n")
	for i, l := range ls {
		ls[i] = strings.TrimRight(l, "\r")
	}
	return ls
}

// angleBlocks reads qmail's and Postfix's layout:
//
//	<alice@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1
//	    <alice@example.com>: Recipient address rejected: User unknown
//
// A block runs from its "<addr>:" line to the next blank line or block.
func angleBlocks(text string) []block {
	var out []block
	in := false
	for _, l := range lines(text) {
		if separator.MatchString(l) {
			break
		}
		if m := angleLine.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			n, err := address.Normalize(m[1])
			in = err == nil
			if in {
				out = append(out, block{addr: n})
				if m[2] != "" {
					out[len(out)-1].diag = append(out[len(out)-1].diag, m[2])
				}
			}
			if len(out) >= maxFailures {
				break
			}
			continue
		}
		if strings.TrimSpace(l) == "" {
			in = false
			continue
		}
		if in && len(out[len(out)-1].diag) < 20 {
			out[len(out)-1].diag = append(out[len(out)-1].diag, strings.TrimSpace(l))
		}
	}
	return out
}

// eximBlocks reads Exim's layout, after its "The following address(es)
// failed:" line:
//
//	carol@example.org
//	  host mx.example.org [192.0.2.30]
//	  SMTP error from remote mail server after RCPT TO:<carol@example.org>:
//	  550 5.1.1 <carol@example.org>: Recipient address rejected
//
// An address line is indented by at most two spaces, what follows it by
// more; a line that is not indented ends the list.
func eximBlocks(text string) []block {
	ls := lines(text)
	start := -1
	for i, l := range ls {
		if eximStart.MatchString(l) {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil
	}
	var out []block
	for _, l := range ls[start:] {
		if separator.MatchString(l) {
			break
		}
		t := strings.TrimSpace(l)
		if t == "" {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " \t"))
		if indent == 0 {
			if len(out) > 0 {
				break
			}
			continue
		}
		if indent <= 2 {
			a := strings.TrimSuffix(strings.Fields(t)[0], ":")
			a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
			if n, err := address.Normalize(a); err == nil {
				out = append(out, block{addr: n})
				if rest := strings.TrimSpace(strings.TrimPrefix(t, strings.Fields(t)[0])); rest != "" {
					out[len(out)-1].diag = append(out[len(out)-1].diag, rest)
				}
				if len(out) >= maxFailures {
					break
				}
				continue
			}
		}
		if len(out) > 0 && len(out[len(out)-1].diag) < 20 {
			out[len(out)-1].diag = append(out[len(out)-1].diag, t)
		}
	}
	return out
}
