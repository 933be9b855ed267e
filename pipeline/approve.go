package pipeline

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"regexp"
	"slices"
	"strings"

	"postlist/message"
	"postlist/store"
)

// approval is the outcome of looking for the moderator password.
type approval struct {
	// Valid: the password was there and right.
	Valid bool
	// Where names the place it was found, for the reason text.
	Where string
	// Cleaned is the message without the password fields and line, or
	// nil when nothing had to be removed.
	Cleaned []byte
}

// approvedFields are the header fields a moderator may put the password
// in, Mailman's four spellings.
var approvedFields = []string{"Approved", "Approve", "X-Approved", "X-Approve"}

// approvedLabel finds "Approved:" and its spellings, with the space after
// it, anywhere in a text part.
var approvedLabel = regexp.MustCompile(`(?i)(x-)?approved?:\s*`)

// pseudoHeader matches an Approved: line at the top of a text part.
var pseudoHeader = regexp.MustCompile(`(?i)^\s*(x-)?approved?:\s*(.*?)\s*$`)

// checkApproval looks for the list's moderator password in the Approved
// fields, else on the first non-blank line of the first text/plain part,
// and removes what it finds whether or not the password is right: a
// mistyped password must not be distributed to every member. Without a
// password set for the list, nothing is looked for and nothing removed
// (decoration still drops Approved fields at send time).
//
// The same "Approved: ..." text is also removed from the other text parts
// (the HTML alternative of the text part usually repeats it). That is best
// effort: it finds the text only when the part is not base64-encoded.
func checkApproval(msg []byte, m *message.Message, password string) approval {
	if password == "" {
		return approval{}
	}
	return findApproval(msg, m, password)
}

// findApproval is checkApproval without the guard for a list without a
// password: it also tells whether a moderator wrote Approved: at all. Its
// Valid means nothing when password is empty.
func findApproval(msg []byte, m *message.Message, password string) approval {
	var a approval
	found := false
	for _, name := range approvedFields {
		if v := m.Values(name); len(v) > 0 && !found {
			found = true
			a.Where = name + ": header"
			a.Valid = passwordEqual(v[0], password)
		}
	}

	type cut struct{ start, end int }
	var cuts []cut
	var value string // the text written after Approved: in the body
	if !found {
		parts := textParts(msg)
		for _, p := range parts {
			if p.subtype != "plain" {
				continue
			}
			start, end, v, ok := firstLinePseudoHeader(msg, p)
			if ok {
				found = true
				a.Where = "the first line of the message text"
				a.Valid = passwordEqual(v, password)
				cuts = append(cuts, cut{start, end})
				value = v
			}
			break
		}
		if value != "" {
			// The value is the poster's bytes, not necessarily UTF-8, so
			// it is compared, not compiled into a pattern.
			for _, p := range parts {
				if p.subtype == "plain" || p.cte == "base64" {
					continue
				}
				text := msg[p.start:p.end]
				for _, loc := range approvedLabel.FindAllIndex(text, -1) {
					if rest := text[loc[1]:]; len(rest) >= len(value) && bytes.EqualFold(rest[:len(value)], []byte(value)) {
						cuts = append(cuts, cut{p.start + loc[0], p.start + loc[1] + len(value)})
					}
				}
			}
		}
	}
	if !found {
		return a
	}
	body := msg
	if len(cuts) > 0 {
		slices.SortFunc(cuts, func(x, y cut) int { return x.start - y.start })
		var b bytes.Buffer
		last := 0
		for _, c := range cuts {
			if c.start < last {
				continue
			}
			b.Write(msg[last:c.start])
			last = c.end
		}
		b.Write(msg[last:])
		body = b.Bytes()
	}
	cm := message.Parse(body)
	for _, name := range approvedFields {
		cm.Del(name)
	}
	a.Cleaned = cm.Bytes()
	return a
}

// passwordEqual checks given against the list's stored bcrypt hash;
// store.CheckPassword bounds how often a stranger can make it hash.
func passwordEqual(given, hash string) bool {
	ok, _ := store.CheckPassword(hash, strings.TrimSpace(given))
	return ok
}

// textPart locates the body of a text/* entity in the message bytes.
type textPart struct {
	subtype    string // "plain", "html", ...
	cte        string
	start, end int // body bytes, msg[start:end]
}

// textParts finds the text parts of a message, depth first, in order.
func textParts(msg []byte) []textPart {
	var out []textPart
	for _, p := range message.Walk(msg) {
		if p.BadType || !strings.HasPrefix(p.MediaType, "text/") {
			continue
		}
		out = append(out, textPart{
			subtype: strings.TrimPrefix(p.MediaType, "text/"),
			cte:     p.Encoding(),
			start:   p.Start, end: p.End,
		})
	}
	return out
}

// firstLinePseudoHeader finds an Approved: line as the first non-blank
// line of a text/plain part, returning the bytes to cut (the line and the
// blank line after it) and the password written there.
func firstLinePseudoHeader(msg []byte, p textPart) (start, end int, value string, ok bool) {
	switch p.cte {
	case "", "7bit", "8bit", "binary", "quoted-printable":
	default:
		return 0, 0, "", false
	}
	for i := p.start; i < p.end; {
		lineEnd := p.end
		if j := bytes.IndexByte(msg[i:p.end], '\n'); j >= 0 {
			lineEnd = i + j + 1
		}
		line := msg[i:lineEnd]
		if len(bytes.TrimSpace(line)) == 0 {
			i = lineEnd
			continue
		}
		text := string(line)
		if p.cte == "quoted-printable" {
			dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(line)))
			if err != nil {
				return 0, 0, "", false
			}
			text = string(dec)
		}
		sm := pseudoHeader.FindStringSubmatch(strings.TrimRight(text, "\r\n"))
		if sm == nil {
			return 0, 0, "", false
		}
		end := lineEnd
		// Drop the blank line that usually separates the password from
		// the text, so the post does not start with an empty line.
		if next := nextLine(msg, end, p.end); next > end && len(bytes.TrimSpace(msg[end:next])) == 0 {
			end = next
		}
		return i, end, sm[2], true
	}
	return 0, 0, "", false
}

func nextLine(msg []byte, from, limit int) int {
	if from >= limit {
		return from
	}
	if j := bytes.IndexByte(msg[from:limit], '\n'); j >= 0 {
		return from + j + 1
	}
	return limit
}
