package commands

import (
	"strings"

	"postlist/address"
	"postlist/message"
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
	if m.Has(NoticeHeader) {
		// One of our own notices come back (forwarded, or sent to a
		// list address it named).
		return NoticeHeader + " present"
	}
	if v := strings.ToLower(strings.TrimSpace(m.Get("Auto-Submitted"))); v != "" && !strings.HasPrefix(v, "no") {
		return "Auto-Submitted: " + clipLine(v)
	}
	switch v := strings.ToLower(strings.TrimSpace(m.Get("Precedence"))); v {
	case "bulk", "junk", "list":
		return "Precedence: " + v
	}
	for _, f := range m.Fields {
		// Any List-* field (RFC 2369, 2919, 8058) marks list mail, as in
		// Mailman's can_acknowledge.
		if len(f.Name) > 5 && strings.EqualFold(f.Name[:5], "list-") {
			return clipLine(f.Name) + " present"
		}
	}
	for _, f := range []string{"X-Autoreply", "X-Autorespond"} {
		if m.Has(f) {
			return f + " present"
		}
	}
	// Microsoft's way of asking not to be auto-answered.
	if v := strings.ToLower(m.Get("X-Auto-Response-Suppress")); strings.Contains(v, "all") || strings.Contains(v, "autoreply") {
		return "X-Auto-Response-Suppress: " + clipLine(v)
	}
	if robot(envSender) {
		return "envelope sender is a robot (" + clipLine(envSender) + ")"
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

// Sender returns who a command message is from: the first From address,
// else the envelope sender, normalised, with the From display name.
// Mailman answers From rather than the envelope sender; either way the
// confirmation request goes to the address it would subscribe, so only its
// owner can complete it.
func Sender(m *message.Message, envSender string) (name, addr string) {
	for _, v := range m.Values("From") {
		as, err := message.ParseAddressList(v)
		if err != nil {
			continue
		}
		for _, a := range as {
			if n, err := address.Normalize(a.Address); err == nil {
				return message.OneLine(a.Name), n
			}
		}
	}
	if n, err := address.Normalize(envSender); err == nil {
		return "", n
	}
	return "", ""
}

// TextBody returns the decoded text of raw's first text/plain part
// (Mailman reads commands from that part only) and whether raw has other,
// non-text parts that were not read. Undecodable text is returned as
// written rather than dropped.
func TextBody(raw []byte) (text string, otherParts bool) {
	if message.CheckHeader(raw) != nil {
		return string(message.Parse(raw).Body), false
	}
	found := false
	for _, p := range message.Walk(raw) {
		mt := p.MediaType
		if mt == "" {
			mt = "text/plain"
		}
		switch {
		case p.Multipart():
		case mt == "text/plain" && !found:
			text, found = p.Text(maxBody), true
		case mt != "text/plain" && mt != "text/html":
			otherParts = true
		}
	}
	return text, otherParts
}
