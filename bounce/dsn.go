package bounce

import (
	"errors"
	"regexp"
	"strings"

	"postlist/address"
	"postlist/message"
	"postlist/store"
)

// Failure is one recipient a bounce reports on.
type Failure struct {
	// Address is the recipient that failed, normalised (address.Normalize).
	Address string
	// Status is the RFC 3463 status ("5.1.1"), "" when the report gives
	// none.
	Status string
	// Action is the RFC 3464 action: "failed" or "delayed" (reports of
	// delivered, relayed or expanded recipients are not failures).
	Action string
	// Diagnostic is the remote server's reply or the reporting MTA's
	// explanation, on one line.
	Diagnostic string
	// Kind is store.BouncePermanent, store.BounceTemporary or
	// store.BouncePolicy.
	Kind string
}

// Bounds on the work one bounce costs: reports are small, but a bounce
// comes from the network and may carry anything.
const (
	maxPartBytes = 64 << 10
	maxFailures  = 100
	maxDiag      = 500
)

// ErrUnreadable means a message is not readable as mail at all.
var ErrUnreadable = errors.New("not readable as a message")

// ParseDSN finds the recipients a bounce reports as failed or delayed. An
// RFC 3464 delivery status notification (a message/delivery-status part,
// usually inside multipart/report) is read first, as Mailman's
// flufl.bounce does; a message without one is tried against the common
// non-DSN formats: Exim's X-Failed-Recipients header and text, qmail's and
// Postfix's plain text. It is pure and never panics; nil without an error
// means the message is no bounce it recognises (a vacation reply, spam).
//
// Each failure is classified: a delay is temporary; a failure is a policy
// rejection when its status is x.7.x (security or policy) or its
// diagnostic speaks of spam, DMARC, DKIM, SPF, block lists, reputation or
// content, else permanent. Policy rejections say nothing about the
// mailbox, so they must never count against the member: a DMARC-rejecting
// provider would otherwise unsubscribe its users one innocent post at a
// time.
func ParseDSN(msg []byte) ([]Failure, error) {
	m := message.Parse(msg)
	if message.CheckHeader(msg) != nil {
		// A broken header: the plain text may still be a bounce.
		if fs := textFailures(m, string(limit(m.Body))); len(fs) > 0 {
			return fs, nil
		}
		return nil, ErrUnreadable
	}
	dsn, haveText := false, false
	var failures []Failure
	var text string
	for _, p := range message.Walk(msg) {
		switch p.MediaType {
		case "message/delivery-status", "message/global-delivery-status":
			dsn = true
			failures = append(failures, statusFailures(p.Text(maxPartBytes))...)
		case "text/plain", "":
			if !haveText {
				text, haveText = p.Text(maxPartBytes), true
			}
		}
		// message/rfc822 and text/rfc822-headers are the returned
		// original: whatever it says is not about this delivery.
	}
	if dsn {
		return dedupe(failures), nil
	}
	return textFailures(m, text), nil
}

func limit(b []byte) []byte {
	if len(b) > maxPartBytes {
		return b[:maxPartBytes]
	}
	return b
}

// statusFailures reads the fields of a message/delivery-status body: a
// per-message block, then one block per recipient (RFC 3464 section 2).
func statusFailures(body string) []Failure {
	var out []Failure
	for _, block := range fieldBlocks(body) {
		// Mailman's choice: the address as we sent it when the report
		// has it, else the one that failed (after any aliasing).
		addr := recipientAddress(block["original-recipient"])
		if addr == "" {
			addr = recipientAddress(block["final-recipient"])
		}
		action := strings.ToLower(firstWord(block["action"]))
		if addr == "" || action == "" {
			continue
		}
		diag := block["diagnostic-code"]
		if typ, v, ok := strings.Cut(diag, ";"); ok && !strings.ContainsAny(typ, " <@") {
			// "smtp; 550 5.1.1 ..." - drop the diagnostic type.
			diag = v
		}
		diag = clip(message.OneLine(diag), maxDiag)
		status := statusRE.FindString(block["status"])
		kind := classify(action, status, diag)
		if kind == "" {
			continue
		}
		out = append(out, Failure{Address: addr, Status: status, Action: action, Diagnostic: diag, Kind: kind})
		if len(out) >= maxFailures {
			break
		}
	}
	return out
}

// fieldBlocks splits header-like blocks separated by blank lines into
// maps of lower-case field name to unfolded value (the first of each).
func fieldBlocks(body string) []map[string]string {
	var blocks []map[string]string
	cur := map[string]string{}
	last := ""
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, cur)
		}
		cur, last = map[string]string{}, ""
	}
	for raw := range strings.SplitSeq(body, "\n") {
		line := strings.TrimRight(raw, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				cur[last] += " " + strings.TrimSpace(line)
			}
		default:
			name, v, ok := strings.Cut(line, ":")
			if !ok {
				last = ""
				continue
			}
			last = strings.ToLower(strings.TrimSpace(name))
			if _, dup := cur[last]; dup {
				last = ""
				continue
			}
			cur[last] = strings.TrimSpace(v)
		}
		if len(blocks) > 2*maxFailures {
			break
		}
	}
	flush()
	return blocks
}

// recipientAddress reads "rfc822; alice@example.com" (the address type is
// optional in practice), returning the normalised address or "".
func recipientAddress(v string) string {
	if _, a, ok := strings.Cut(v, ";"); ok {
		v = a
	}
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ' '); i > 0 {
		v = v[:i]
	}
	n, err := address.Normalize(v)
	if err != nil {
		return ""
	}
	return n
}

func firstWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return strings.TrimRight(f[0], ";,")
}

var (
	// statusRE finds an RFC 3463 status code in a field or a diagnostic.
	statusRE = regexp.MustCompile(`\b[245]\.\d{1,3}\.\d{1,3}\b`)
	// replyRE finds a basic SMTP reply code in a diagnostic.
	replyRE = regexp.MustCompile(`\b([45])\d\d\b`)
	// policyText recognises refusals about the message or the sender's
	// reputation rather than the mailbox, for reports without a x.7.x
	// status (or with a generic one).
	policyText = regexp.MustCompile(`(?i)\b(spam|dmarc|dkim|spf|policy|policies|blocked|block ?list(ed)?|black ?list(ed)?|reputation|rbl|dnsbl|spamhaus|virus|malware|content rejected|unsolicited|rate limit(ed)?|authentication required|not authenticated)\b`)
)

// classify gives the kind of a failure, "" for an action that is no
// failure (delivered, relayed, expanded).
func classify(action, status, diag string) string {
	switch {
	case strings.HasPrefix(action, "delayed"):
		return store.BounceTemporary
	case strings.HasPrefix(action, "failed"), strings.HasPrefix(action, "error"):
	default:
		return ""
	}
	if (len(status) > 2 && status[2] == '7') || policyText.MatchString(diag) {
		return store.BouncePolicy
	}
	return store.BouncePermanent
}

// statusOf finds the status in a free-text diagnostic: an enhanced code,
// else the class of a basic reply code (550 gives 5.0.0).
func statusOf(diag string) string {
	if s := statusRE.FindString(diag); s != "" {
		return s
	}
	if m := replyRE.FindStringSubmatch(diag); m != nil {
		return m[1] + ".0.0"
	}
	return ""
}

// dedupe keeps one failure per address (case-insensitive), preferring a
// permanent failure, then a policy one, over a delay.
func dedupe(fs []Failure) []Failure {
	rank := map[string]int{store.BouncePermanent: 3, store.BouncePolicy: 2, store.BounceTemporary: 1}
	var out []Failure
	at := map[string]int{}
	for _, f := range fs {
		k := strings.ToLower(f.Address)
		if i, ok := at[k]; ok {
			if rank[f.Kind] > rank[out[i].Kind] {
				out[i] = f
			}
			continue
		}
		at[k] = len(out)
		out = append(out, f)
	}
	return out
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "..."
}
