package address

import (
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"
)

// ParseMailbox parses one line of a bulk member file: "addr", "<addr>",
// "Name <addr>" or "\"Quoted, Name\" <addr>". The address comes back
// normalized (see Normalize). Blank lines and comments are the caller's
// business: an empty line is an error here.
//
// The display name is returned decoded: quoted strings are unquoted and RFC
// 2047 encoded words (=?utf-8?q?...?=) are decoded, because that is how
// Mailman's member export writes non-ASCII names. A name may contain any
// UTF-8 text except control characters, since it ends up in mail headers
// where CR or LF would let a member file inject header fields.
//
// Unquoted commas, semicolons, colons, @ and brackets in the name are
// refused rather than guessed at: "a@x, b@y" is two addresses on one line,
// and "Smith, John <j@x>" is better written with quotes.
func ParseMailbox(line string) (name, addr string, err error) {
	fail := func(format string, args ...any) (string, string, error) {
		return "", "", syntaxErr(line, format, args...)
	}
	s := strings.TrimSpace(line)
	if s == "" {
		return fail("empty line")
	}
	if i := strings.IndexAny(s, "\r\n\x00"); i >= 0 {
		return fail("contains %q: a member entry must be a single line", s[i])
	}
	if !strings.HasSuffix(s, ">") {
		addr, err := Normalize(s)
		if err != nil {
			return "", "", err
		}
		return "", addr, nil
	}

	type word struct {
		text    string
		encoded bool
	}
	var (
		words []word
		dec   mime.WordDecoder
		i     int
	)
scan:
	for i < len(s) {
		switch c := s[i]; c {
		case ' ', '\t':
			i++
		case '<':
			break scan
		case '"':
			content, n, reason := parseQuotedName(s[i:])
			if reason != "" {
				return fail("%s", reason)
			}
			words = append(words, word{text: content})
			i += n
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\"<", s[j]) < 0 {
				if strings.IndexByte(",;:@>[]\\", s[j]) >= 0 {
					return fail("unquoted %q in the display name: put the name in double quotes", s[j])
				}
				j++
			}
			atom := s[i:j]
			w := word{text: atom}
			if strings.HasPrefix(atom, "=?") && strings.HasSuffix(atom, "?=") {
				// An undecodable word (unknown charset) stays as written:
				// the name is informational and the admin can fix it later.
				if d, err := dec.Decode(atom); err == nil {
					w = word{text: d, encoded: true}
				}
			}
			words = append(words, w)
			i = j
		}
	}
	if i == len(s) {
		return fail("'>' without a matching '<'")
	}
	addr, err = Normalize(s[i:])
	if err != nil {
		return "", "", err
	}

	var b strings.Builder
	for k, w := range words {
		// RFC 2047 section 6.2: whitespace between adjacent encoded words
		// is not part of the text.
		if k > 0 && !(w.encoded && words[k-1].encoded) {
			b.WriteByte(' ')
		}
		b.WriteString(w.text)
	}
	name = b.String()
	if reason := checkName(name); reason != "" {
		return fail("%s", reason)
	}
	return name, addr, nil
}

// parseQuotedName reads an RFC 5322 quoted string at the start of s,
// allowing UTF-8 (RFC 6532) and turning tabs into spaces.
func parseQuotedName(s string) (content string, n int, reason string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), i + 1, ""
		case '\\':
			i++
			if i == len(s) {
				return "", 0, "unterminated quoted display name"
			}
			c = s[i]
		}
		if c == '\t' {
			c = ' '
		}
		b.WriteByte(c)
	}
	return "", 0, "unterminated quoted display name"
}

// checkName is applied after decoding because an encoded word can smuggle
// in exactly the control characters the raw line was checked for.
func checkName(name string) string {
	if !utf8.ValidString(name) {
		return "display name is not valid UTF-8"
	}
	for _, r := range name {
		if r < 0x20 || 0x7f <= r && r <= 0x9f {
			return fmt.Sprintf("display name contains control character %q", r)
		}
	}
	return ""
}
