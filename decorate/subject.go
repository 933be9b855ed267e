package decorate

import (
	"mime"
	"regexp"
	"strconv"
	"strings"

	"postlist/message"
)

// replyMarkers matches the reply and forward markers MUAs put in front of
// a subject, in the languages Mailman knows plus the common forwards, so
// that "Re: [Test] x" and "AW: Fwd: [Test] x" count as already prefixed.
var replyMarkers = regexp.MustCompile(`(?i)^(\s*(re|aw|sv|vs|antw|fwd?|tr|wg|rif|r)\s*(\[\d+\]|\(\d+\))?\s*:)*\s*`)

// hasPrefix reports whether the decoded subject already carries prefix,
// possibly after reply markers.
func hasPrefix(subject, prefix string) bool {
	p := strings.TrimSpace(prefix)
	if p == "" {
		return true
	}
	s := subject[len(replyMarkers.FindString(subject)):]
	return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p)
}

// PrefixSubjectNumbered is PrefixSubject for a prefix that may hold %d,
// Mailman's post number: %d becomes number, and a numbered prefix of an
// earlier post, as a reply carries it ("Re: [Test 12] x"), is replaced by
// this post's, with the reply markers after it ("[Test 13] Re: x"), as
// Mailman does. A number of 0 (a post accepted before posts were
// numbered) drops the %d.
func PrefixSubjectNumbered(raw string, present bool, prefix string, number int64) (string, bool) {
	if !strings.Contains(prefix, "%d") {
		return PrefixSubject(raw, present, prefix)
	}
	n := ""
	if number > 0 {
		n = strconv.FormatInt(number, 10)
	}
	expanded := strings.ReplaceAll(prefix, "%d", n)
	if n == "" {
		expanded = strings.ReplaceAll(expanded, " ]", "]")
	}
	if !present {
		return PrefixSubject(raw, present, expanded)
	}
	decoded := message.DecodeHeader(raw)
	markers := replyMarkers.FindString(decoded)
	rest := decoded[len(markers):]
	end := numberedPrefixEnd(prefix, rest)
	if end < 0 {
		return PrefixSubject(raw, present, expanded)
	}
	subject := strings.TrimLeft(rest[end:], " \t")
	if m := strings.TrimSpace(markers); m != "" {
		subject = m + " " + subject
	}
	if !isASCII(subject) {
		subject = mime.QEncoding.Encode("utf-8", subject)
	}
	v, _ := PrefixSubject(subject, true, expanded)
	return v, true
}

// numberedPrefixEnd reports where a prefix holding %d ends at the start
// of s, with any number in place of %d, or none ("[Test]" for
// "[Test %d]"); -1 when s does not start with it. The spaces around %d
// are optional; the rest of the prefix matches regardless of case. It
// compares bytes rather than compiling a pattern: the prefix is an
// admin's text and need not be UTF-8.
func numberedPrefixEnd(prefix, s string) int {
	parts := strings.Split(strings.TrimSpace(prefix), "%d")
	i := 0
	for k, p := range parts {
		if k > 0 {
			i = skipSpaces(s, i)
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			i = skipSpaces(s, i)
			p = strings.TrimLeft(p, " ")
		}
		if k < len(parts)-1 {
			p = strings.TrimRight(p, " ")
		}
		if len(s)-i < len(p) || !strings.EqualFold(s[i:i+len(p)], p) {
			return -1
		}
		i += len(p)
	}
	return i
}

func skipSpaces(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// PrefixSubject returns the Subject value with the list's prefix added
// once. raw is the field's unfolded value as written (encoded words and
// all) and present says whether the message had a Subject at all. A
// subject that already carries the prefix, at the start or after reply
// markers ("Re: [Test] x"), is left alone: replies must not stack
// prefixes. The original encoded words are kept as written; only the
// prefix is added, encoded itself when it is not ASCII.
func PrefixSubject(raw string, present bool, prefix string) (value string, changed bool) {
	if strings.TrimSpace(prefix) == "" {
		return raw, false
	}
	decoded := message.DecodeHeader(raw)
	if present && hasPrefix(decoded, prefix) {
		return raw, false
	}
	if !present || strings.TrimSpace(decoded) == "" {
		raw = "(no subject)"
	}
	if isASCII(prefix) {
		if !strings.HasSuffix(prefix, " ") {
			prefix += " "
		}
		return prefix + raw, true
	}
	// White space between two encoded words is dropped when decoding, but
	// kept between an encoded word and plain text: the prefix's trailing
	// space goes inside the word only when an encoded word follows.
	if strings.HasPrefix(raw, "=?") {
		p := strings.TrimRight(prefix, " ") + " "
		return mime.QEncoding.Encode("utf-8", p) + " " + raw, true
	}
	return mime.QEncoding.Encode("utf-8", strings.TrimRight(prefix, " ")) + " " + raw, true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isASCIIBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
