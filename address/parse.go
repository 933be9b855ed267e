package address

import (
	"errors"
	"fmt"
	"strings"
)

// RFC 5321 section 4.5.3.1 limits. The whole-address limit is the 256-octet
// path limit minus the angle brackets.
const (
	maxLocalLen   = 64
	maxDomainLen  = 255
	maxLabelLen   = 63
	maxAddressLen = 254
)

// Sentinel errors. Every error from Parse, Normalize, ParseMailbox and
// Resolve wraps exactly one of them, so callers can choose an SMTP reply (or
// an exit status) with errors.Is.
var (
	// ErrMalformed means the text is not an address postlist can handle.
	ErrMalformed = errors.New("malformed address")
	// ErrNotOurs means the domain is not a list domain: the milter must
	// leave the recipient to Postfix.
	ErrNotOurs = errors.New("not a list domain")
	// ErrNoSuchList means the domain is a list domain but nothing there has
	// this name (550 5.1.1).
	ErrNoSuchList = errors.New("no such list address")
)

// SyntaxError explains why a text is not an acceptable address. Its message
// is meant to be shown to an admin as it is; it unwraps to ErrMalformed.
type SyntaxError struct {
	Addr   string // the text as given
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("address %q: %s", clip(e.Addr), e.Reason)
}

func (e *SyntaxError) Unwrap() error { return ErrMalformed }

// clip keeps error messages readable (and log lines bounded) when someone
// feeds a megabyte of garbage.
func clip(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

func syntaxErr(addr, format string, args ...any) error {
	return &SyntaxError{Addr: addr, Reason: fmt.Sprintf(format, args...)}
}

// Addr is a parsed mailbox.
type Addr struct {
	// Local is the local part with any quoting removed: `"a b"@x` has
	// Local `a b`. Keeping the value rather than the wire form means
	// `"alice"@x` and `alice@x` are the same member.
	Local string
	// Domain is the host name as given; Normalize lower-cases it.
	Domain string
}

// String formats the address for the wire, quoting the local part only when
// it is not a dot-atom.
func (a Addr) String() string {
	return formatLocal(a.Local) + "@" + a.Domain
}

// Parse checks s against RFC 5321 mailbox syntax, restricted as the package
// documentation explains (ASCII only, no address literals).
func Parse(s string) (Addr, error) {
	if s == "" {
		return Addr{}, syntaxErr(s, "empty address")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 {
			return Addr{}, syntaxErr(s, "non-ASCII characters are not supported (give domain names in their xn-- form)")
		} else if c < 0x20 || c == 0x7f {
			return Addr{}, syntaxErr(s, "control character %q", c)
		}
	}

	var local, rawLocal, domain string
	if s[0] == '"' {
		content, n, reason := parseQuoted(s)
		if reason != "" {
			return Addr{}, syntaxErr(s, "%s", reason)
		}
		rest := s[n:]
		if rest == "" {
			return Addr{}, syntaxErr(s, "missing @")
		}
		if rest[0] != '@' {
			return Addr{}, syntaxErr(s, "text after the closing quote of the local part")
		}
		local, rawLocal, domain = content, s[:n], rest[1:]
	} else {
		at := strings.IndexByte(s, '@')
		if at < 0 {
			return Addr{}, syntaxErr(s, "missing @")
		}
		rawLocal, domain = s[:at], s[at+1:]
		if rawLocal == "" {
			return Addr{}, syntaxErr(s, "empty local part")
		}
		if strings.IndexByte(domain, '@') >= 0 {
			return Addr{}, syntaxErr(s, "more than one @")
		}
		if reason := checkDotAtom(rawLocal); reason != "" {
			return Addr{}, syntaxErr(s, "%s", reason)
		}
		local = rawLocal
	}
	if local == "" {
		return Addr{}, syntaxErr(s, "empty local part")
	}
	if len(rawLocal) > maxLocalLen {
		return Addr{}, syntaxErr(s, "local part is %d octets, more than %d", len(rawLocal), maxLocalLen)
	}
	if strings.IndexByte(domain, '@') >= 0 {
		return Addr{}, syntaxErr(s, "more than one @")
	}
	if reason := checkDomain(domain); reason != "" {
		return Addr{}, syntaxErr(s, "%s", reason)
	}
	if len(s) > maxAddressLen {
		return Addr{}, syntaxErr(s, "address is %d octets, more than %d", len(s), maxAddressLen)
	}
	return Addr{Local: local, Domain: domain}, nil
}

// Normalize returns the canonical form of an address an admin or a protocol
// peer wrote: surrounding whitespace and one pair of angle brackets removed,
// unnecessary quoting removed, domain lower-cased. The local part keeps its
// case because RFC 5321 makes it case-sensitive; postlist compares addresses
// case-insensitively where that matters. Normalize is idempotent.
func Normalize(s string) (string, error) {
	a, err := Parse(trimAngles(s))
	if err != nil {
		return "", err
	}
	a.Domain = lowerASCII(a.Domain)
	return a.String(), nil
}

// trimAngles removes surrounding whitespace and one pair of <>, tolerating
// whitespace inside the brackets because RFC 5322 allows it there.
func trimAngles(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

// isAtext reports whether c may appear in an RFC 5321 atom.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkDotAtom returns why s is not a dot-atom, or "".
func checkDotAtom(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			switch {
			case i == 0:
				return "local part starts with a dot"
			case i == len(s)-1:
				return "local part ends with a dot"
			case s[i-1] == '.':
				return "two consecutive dots in the local part (quote it)"
			}
		case c == ' ':
			return "space outside quotes"
		case !isAtext(c):
			return fmt.Sprintf("character %q is not allowed outside quotes", c)
		}
	}
	return ""
}

func isDotAtom(s string) bool { return s != "" && checkDotAtom(s) == "" }

// parseQuoted reads an RFC 5321 quoted string at the start of s. It returns
// the unescaped content, the number of octets consumed (including both
// quotes) or the reason it is invalid.
func parseQuoted(s string) (content string, n int, reason string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1, ""
		case c == '\\':
			i++
			if i == len(s) {
				return "", 0, "unterminated quoted local part"
			}
			c = s[i]
			if c < 0x20 || c > 0x7e {
				return "", 0, fmt.Sprintf("character %q not allowed in a quoted local part", c)
			}
		case c < 0x20 || c > 0x7e:
			return "", 0, fmt.Sprintf("character %q not allowed in a quoted local part", c)
		}
		b.WriteByte(c)
	}
	return "", 0, "unterminated quoted local part"
}

// formatLocal writes a local part value in its shortest valid wire form.
func formatLocal(local string) string {
	if isDotAtom(local) {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// checkDomain returns why d is not an acceptable host name, or "".
func checkDomain(d string) string {
	if d == "" {
		return "empty domain"
	}
	if d[0] == '[' {
		return "address literals such as [192.0.2.1] are not accepted; use a domain name"
	}
	if len(d) > maxDomainLen {
		return fmt.Sprintf("domain is %d octets, more than %d", len(d), maxDomainLen)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return fmt.Sprintf("domain %q has an empty label (leading, trailing or double dot)", clip(d))
		}
		if len(label) > maxLabelLen {
			return fmt.Sprintf("domain label %q is %d octets, more than %d", label, len(label), maxLabelLen)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Sprintf("character %q is not allowed in a domain name", c)
			}
		}
		if label[0] == '-' {
			return fmt.Sprintf("domain label %q starts with a hyphen", label)
		}
		if label[len(label)-1] == '-' {
			return fmt.Sprintf("domain label %q ends with a hyphen", label)
		}
	}
	return ""
}

// lowerASCII lower-cases only A-Z: list names and host names are ASCII, and
// Unicode case mapping could turn a non-ASCII byte sequence into something
// that matches a list.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
