package decorate

import (
	"mime"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// wordDecoder decodes RFC 2047 encoded words in any charset go-message
// knows, not only the UTF-8 and Latin-1 the standard library handles.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// DecodeHeader returns the text of an unstructured header value (Subject)
// with encoded words decoded; an undecodable value comes back as written.
func DecodeHeader(v string) string {
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// ParseAddressList parses an address header value (From, To, Cc),
// decoding encoded display names.
func ParseAddressList(v string) ([]*mail.Address, error) {
	p := mail.AddressParser{WordDecoder: wordDecoder}
	return p.ParseList(v)
}

// encodePhrase renders s as an RFC 5322 phrase (a display name): as is
// when it is only atoms, quoted when it is printable ASCII, and as a
// base64 encoded word otherwise. Base64 rather than Q, because Go's Q
// encoder leaves specials such as "," and "<" unencoded, which is wrong in
// a phrase and could make a reader see a second address.
func encodePhrase(s string) string {
	s = strings.Join(strings.FieldsFunc(s, isSpaceOrControl), " ")
	if s == "" {
		return ""
	}
	atoms, printable := true, true
	for _, r := range s {
		switch {
		case r >= 0x80:
			atoms, printable = false, false
		case r == ' ':
		case !isAtext(r):
			atoms = false
		}
	}
	switch {
	case atoms:
		return s
	case printable:
		return quoteString(s)
	}
	return mime.BEncoding.Encode("utf-8", s)
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f || 0x80 <= r && r <= 0x9f || r == utf8.RuneError
}

// isAtext is RFC 5322 atext.
func isAtext(r rune) bool {
	if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
		return true
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// formatAddress renders a mailbox with an optional display name.
func formatAddress(name, addr string) string {
	if p := encodePhrase(name); p != "" {
		return p + " <" + addr + ">"
	}
	return addr
}

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
	decoded := DecodeHeader(raw)
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
	decoded := DecodeHeader(raw)
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
