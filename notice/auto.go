package notice

import (
	"postlist/message"
	"strings"
)

// Automatic says why a message must not be answered automatically, or ""
// if it may be (RFC 3834 section 2, and Mailman's Precedence rule): mail
// from the null sender or a robot's address, mail that says it was
// generated automatically or sent in bulk, and list mail. Answering any of
// these risks a loop with another robot; a vacation reply to a
// confirmation request would even confirm the subscription.
func Automatic(m *message.Message, envSender string) string {
	if envSender == "" {
		return "null envelope sender"
	}
	if m.Has(Header) {
		// One of our own notices come back (forwarded, or sent to a
		// list address it named).
		return Header + " present"
	}
	if v := strings.ToLower(strings.TrimSpace(m.Get("Auto-Submitted"))); v != "" && !strings.HasPrefix(v, "no") {
		return "Auto-Submitted: " + Clip(v)
	}
	switch v := strings.ToLower(strings.TrimSpace(m.Get("Precedence"))); v {
	case "bulk", "junk", "list":
		return "Precedence: " + v
	}
	for _, f := range m.Fields {
		// Any List-* field (RFC 2369, 2919, 8058) marks list mail, as in
		// Mailman's can_acknowledge.
		if len(f.Name) > 5 && strings.EqualFold(f.Name[:5], "list-") {
			return Clip(f.Name) + " present"
		}
	}
	for _, f := range []string{"X-Autoreply", "X-Autorespond"} {
		if m.Has(f) {
			return f + " present"
		}
	}
	// Microsoft's way of asking not to be auto-answered.
	if v := strings.ToLower(m.Get("X-Auto-Response-Suppress")); strings.Contains(v, "all") || strings.Contains(v, "autoreply") {
		return "X-Auto-Response-Suppress: " + Clip(v)
	}
	if robot(envSender) {
		return "envelope sender is a robot (" + Clip(envSender) + ")"
	}
	return ""
}

// robot reports the addresses RFC 3834 section 2 names as never to be
// answered (MAILER-DAEMON, LISTSERV, majordomo, owner-*, *-request),
// and list bounce addresses (*-bounces, with or without VERP).
func robot(addr string) bool {
	local, _, _ := strings.Cut(strings.ToLower(addr), "@")
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	switch {
	case local == "mailer-daemon", local == "listserv", local == "majordomo":
		return true
	case strings.HasPrefix(local, "owner-"), strings.HasSuffix(local, "-request"), strings.HasSuffix(local, "-bounces"):
		return true
	}
	return false
}

// maxLineLen is how much of a line from the network a notice quotes.
const maxLineLen = 200

// Clip makes s one line of at most maxLineLen bytes (cut at a character
// boundary, "..." marking the cut), for quoting text from the network in
// a notice or a reason.
func Clip(s string) string {
	s = message.OneLine(s)
	if len(s) <= maxLineLen {
		return s
	}
	cut := maxLineLen
	for cut > 0 && !runeStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }
