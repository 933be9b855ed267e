package address

import (
	"fmt"
	"strings"
)

// Kind is what a list address is for.
type Kind string

// The kinds of list address, named by the canonical subaddress word
// (Post has none).
const (
	Post    Kind = "post"
	Bounces Kind = "bounces"
	Confirm Kind = "confirm"
	Join    Kind = "join"
	Leave   Kind = "leave"
	Owner   Kind = "owner"
	Request Kind = "request"
)

// subaddresses maps every word accepted after the last "-" to its Kind;
// subscribe and unsubscribe are Mailman's aliases.
var subaddresses = map[string]Kind{
	"bounces":     Bounces,
	"confirm":     Confirm,
	"join":        Join,
	"leave":       Leave,
	"owner":       Owner,
	"request":     Request,
	"subscribe":   Join,
	"unsubscribe": Leave,
}

// Target is a resolved list address.
type Target struct {
	List string // canonical posting address, lower-case: name@maildomain
	Kind Kind
	Ext  string // text after the first delimiter of the local part, case preserved ("" if none)
}

// Directory is what the resolver needs to know about configured lists; the
// milter's in-memory index and the store implement it.
type Directory interface {
	// Domain returns the canonical mail domain for d (an alias domain maps
	// to its main domain), and whether d is a list domain at all. d is
	// lower-case.
	Domain(d string) (canonical string, ok bool)
	// HasList reports whether the lower-case posting address name@domain
	// exists.
	HasList(addr string) bool
}

// maxRecipientLen bounds what Resolve reads. It is far above RFC 5321's
// 254 octets because VERP return paths legitimately exceed that (a 254-octet
// member address inside a -bounces address), while still refusing abuse.
// VERP never produces anything longer (at most about 600 octets).
const maxRecipientLen = 1000

// Resolver decides which list address a recipient names.
//
// Delimiter is the recipient delimiter, as Postfix's recipient_delimiter:
// every character of it is a delimiter and the local part is cut at the
// first occurrence of any of them. "" means "+". Characters that cannot work
// are ignored: "-" (it would turn every subaddress into an extension of the
// posting address, so test-bounces would read as a post to test), letters
// and digits, and anything that cannot appear in an unquoted local part. If
// nothing usable is left, "+" is used. CheckDelimiter reports such
// settings so that configuration checks can warn.
type Resolver struct {
	Delimiter string
}

// delimiters returns the usable delimiter characters of d, never empty.
func delimiters(d string) string {
	var b strings.Builder
	for i := 0; i < len(d); i++ {
		if c := d[i]; usableDelimiter(c) {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "+"
	}
	return b.String()
}

// usableDelimiter excludes "-" (see Resolver), characters that would need
// quoting, and letters and digits, which would make list names containing
// them unreachable and whose case-folding would change where an address
// splits.
func usableDelimiter(c byte) bool {
	switch {
	case c == '-', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return false
	}
	return isAtext(c) || c == '.'
}

// CheckDelimiter reports recipient delimiter characters that the resolver
// ignores (see Resolver), so that a configuration check can say so.
func CheckDelimiter(d string) error {
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case c == '-':
			return fmt.Errorf("recipient delimiter %q: '-' separates list names from subaddresses and cannot be a delimiter", d)
		case !usableDelimiter(c):
			return fmt.Errorf("recipient delimiter %q: %q cannot be a delimiter", d, c)
		}
	}
	return nil
}

// Resolve decides which list address rcpt names. rcpt may be surrounded by
// whitespace and one pair of angle brackets, as in an SMTP RCPT command.
//
// Errors wrap exactly one of:
//   - ErrNotOurs: the domain is not a list domain (including domains that
//     are not host names at all, such as address literals): leave the
//     recipient to Postfix. The local part is not judged, so mail for other
//     domains is never refused because of what postlist can parse.
//   - ErrNoSuchList: a list domain, but no list or subaddress of that name
//     (550 5.1.1).
//   - ErrMalformed (as a *SyntaxError): whatever the domain, no @, an empty
//     domain or more than 1000 octets; in a list domain, a local part that
//     is empty or invalid (control characters, unquoted specials, bad
//     quoting, non-ASCII).
//
// Extensions: Post, Join, Leave, Owner and Request accept any extension and
// preserve it in Ext (Mailman accepts list+anything@ and ignores it);
// Bounces carries VERP data in Ext, to be checked by the caller; Confirm
// carries the token, and an empty token after the delimiter
// (list-confirm+@) is ErrNoSuchList.
//
// rcpt may be spelled as a client wrote it (quoted: `"test+a"@`) or as
// Postfix keeps it internally (unquoted: test+a@); the local part is
// judged on its value, so both spellings always get the same answer (see
// resolverLocal). One trailing dot on the domain is ignored because Postfix
// drops it.
func (r Resolver) Resolve(rcpt string, dir Directory) (Target, error) {
	s := trimAngles(rcpt)
	if s == "" {
		return Target{}, syntaxErr(rcpt, "empty address")
	}
	// Quoting at most doubles an address plus its quotes; the limit that
	// decides is applied to the value below, so that the quoted spelling
	// of an address is not refused where its value is accepted.
	if len(s) > 2*maxRecipientLen+2 {
		return Target{}, syntaxErr(rcpt, "address is %d octets, more than %d", len(s), maxRecipientLen)
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Target{}, syntaxErr(rcpt, "missing @")
	}
	rawLocal, domain := s[:at], lowerASCII(strings.TrimSuffix(s[at+1:], "."))
	if domain == "" {
		return Target{}, syntaxErr(rcpt, "empty domain")
	}
	if checkDomain(domain) != "" {
		// Not a host name, so it cannot be one of our domains; keep garbage
		// away from Directory implementations.
		return Target{}, fmt.Errorf("address %q: domain %q: %w", clip(rcpt), clip(domain), ErrNotOurs)
	}
	canonical, ok := dir.Domain(domain)
	if !ok {
		return Target{}, fmt.Errorf("address %q: domain %q: %w", clip(rcpt), domain, ErrNotOurs)
	}
	canonical = lowerASCII(canonical)

	local, reason := resolverLocal(rawLocal)
	if reason != "" {
		return Target{}, syntaxErr(rcpt, "%s", reason)
	}
	if n := len(local) + 1 + len(domain); n > maxRecipientLen {
		return Target{}, syntaxErr(rcpt, "address is %d octets, more than %d", n, maxRecipientLen)
	}
	t, ok := r.match(local, canonical, dir)
	if !ok {
		return Target{}, fmt.Errorf("address %q: %w", clip(rcpt), ErrNoSuchList)
	}
	// The canonical form can be longer than what was given (quoting added,
	// alias domain replaced); bounding it keeps Resolver.Address resolvable.
	if n := len(r.Address(t, dir)); n > maxRecipientLen {
		return Target{}, syntaxErr(rcpt, "address is %d octets in canonical form, more than %d", n, maxRecipientLen)
	}
	return t, nil
}

// match applies the address model to an unquoted local part.
func (r Resolver) match(local, domain string, dir Directory) (Target, bool) {
	base, ext := local, ""
	cut := strings.IndexAny(local, delimiters(r.Delimiter))
	if cut >= 0 {
		base, ext = local[:cut], local[cut+1:]
	}
	base = lowerASCII(base)
	if base == "" {
		return Target{}, false
	}
	// The whole base as a list name first: a list called foo-owner wins
	// over the owner of foo.
	if list := base + "@" + domain; dir.HasList(list) {
		return Target{List: list, Kind: Post, Ext: ext}, true
	}
	dash := strings.LastIndexByte(base, '-')
	if dash <= 0 {
		return Target{}, false
	}
	kind, ok := subaddresses[base[dash+1:]]
	if !ok {
		return Target{}, false
	}
	list := base[:dash] + "@" + domain
	if !dir.HasList(list) {
		return Target{}, false
	}
	if kind == Confirm && cut >= 0 && ext == "" {
		// list-confirm+@ can only be a mangled confirmation: there is no
		// token to look up, and unlike a bare list-confirm@ there is no
		// reason to read commands from the body.
		return Target{}, false
	}
	return Target{List: list, Kind: kind, Ext: ext}, true
}

// resolverLocal returns the value of a local part in a list domain or why
// it cannot be one. The same recipient reaches postlist spelled in
// different ways:
//   - the milter is handed the RCPT TO argument as the client wrote it,
//     only the angle brackets removed by go-milter (`"test+a"@`). postlist
//     requests no {rcpt_addr} macro (see milter/server.go), so the
//     argument is all it sees. Postfix itself refuses partial quoting
//     such as te"st"@ with 501 before it asks.
//   - a policy service or socketmap lookup gets Postfix's internal form,
//     with the quoting removed (test+a@).
//   - the LMTP server gets what go-smtp makes of the RCPT TO that
//     Postfix's LMTP client writes: Postfix quotes the whole local part
//     when it is not a dot-string, and go-smtp removes those quotes and
//     backslashes again, so it too sees the unquoted value.
//
// The decision is therefore made on the value alone, and every check runs
// on the value, never on its spelling: a quoted spelling and the bare
// value get the same answer for the same reason. A value that would need
// quoting is refused, on every path alike: no list name, subaddress or
// token needs quoting, and on the paths that see the bare value a quote
// character inside it could not be told from quoting.
//
// Dots are judged as leniently as Postfix does: it accepts test.@ and
// te..st@ unquoted and quotes them towards the LMTP server, so they are
// values like any other (and, naming no list, get 550).
//
// One spelling stays ambiguous: a bare value that itself contains a
// quoted string (the value "test", quotes included, whose wire form is
// "\"test\""). It reads as test on the paths that see the value, while
// the milter, which sees the escapes, refuses it. A refusal at RCPT never
// causes backscatter, and the LMTP server reads it as a policy service
// does.
func resolverLocal(raw string) (string, string) {
	local := localValue(raw)
	if local == "" {
		return "", "empty local part"
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c >= 0x80 {
			return "", "non-ASCII characters are not supported in list addresses"
		} else if c < 0x20 || c == 0x7f {
			return "", fmt.Sprintf("control character %q", c)
		}
	}
	if i := strings.IndexFunc(local, func(r rune) bool { return r > 0x7f || !plainByte(byte(r)) }); i >= 0 {
		return "", fmt.Sprintf("local part %q has %q, which would need quoting; no list address does", clip(local), local[i])
	}
	return local, ""
}

// plainByte reports whether c may appear in a list domain's local part
// value: atom characters and dots, nothing that would need quoting.
func plainByte(c byte) bool { return c == '.' || isAtext(c) }

// plainLocal reports whether a local part value can reach a list address:
// not empty and made of plainByte octets only.
func plainLocal(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainByte(s[i]) {
			return false
		}
	}
	return s != ""
}

// localValue undoes quoting the way Postfix does when it reads an address:
// quoted strings anywhere in the local part lose their quotes, and a
// backslash inside them stands for the octet after it. Text that is not
// well-formed quoting (an unterminated quote, as in the value a"b) is
// already a value and is returned as it is.
func localValue(raw string) string {
	if strings.IndexByte(raw, '"') < 0 {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	quoted := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '"':
			quoted = !quoted
			continue
		case c == '\\' && quoted:
			i++
			if i == len(raw) {
				return raw
			}
			c = raw[i]
		}
		b.WriteByte(c)
	}
	if quoted {
		return raw
	}
	return b.String()
}

// Address rebuilds the address of t, e.g. test-bounces@lists.example.org,
// with the extension (if any) after the first usable character of delim
// (see Resolver). The local part is quoted when it must be. It always uses
// the canonical subaddress words, so for a list NAME next to a list called
// NAME-join (or NAME-leave) it names that other list; Resolver.Address
// knows the directory and avoids this.
func (t Target) Address(delim string) string {
	word := string(t.Kind)
	if t.Kind == Post {
		word = ""
	}
	return format(t.List, word, t.Ext, delim)
}

// aliasWords are the second spellings of Join and Leave, the only way to
// reach them when a list has the canonical name.
var aliasWords = map[Kind]string{Join: "subscribe", Leave: "unsubscribe"}

// Address is the address of t that Resolve maps back to t: like
// Target.Address, but for a list NAME that has a neighbouring list called
// NAME-join (NAME-leave) it uses NAME-subscribe (NAME-unsubscribe), as
// addresses in List-Subscribe headers and replies must.
func (r Resolver) Address(t Target, dir Directory) string {
	if alias, ok := aliasWords[t.Kind]; ok {
		name, domain := ListName(t.List)
		if dir.HasList(name + "-" + string(t.Kind) + "@" + domain) {
			return format(t.List, alias, t.Ext, r.Delimiter)
		}
	}
	return t.Address(r.Delimiter)
}

func format(list, word, ext, delim string) string {
	name, domain := ListName(list)
	local := name
	if word != "" {
		local += "-" + word
	}
	if ext != "" {
		local += delimiters(delim)[:1] + ext
	}
	return formatLocal(local) + "@" + domain
}

// ListName splits a posting address into the lower-case list name and
// domain. Without an @ the whole text is the name.
func ListName(addr string) (name, domain string) {
	addr = lowerASCII(addr)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, ""
	}
	return addr[:at], addr[at+1:]
}

// maxListNameLen keeps the longest subaddress (NAME-unsubscribe) within the
// 64-octet local part limit.
const maxListNameLen = maxLocalLen - len("-unsubscribe")

// CheckListName reports whether name can be a list name that the resolver
// reaches: Mailman's default listname_chars ([-_.0-9a-z]), a valid dot-atom,
// at most 52 octets, and free of the resolver's delimiter characters (a
// list named a+b could never be addressed: the resolver would read list a
// with extension b).
func (r Resolver) CheckListName(name string) error {
	if name == "" {
		return fmt.Errorf("list name is empty")
	}
	if len(name) > maxListNameLen {
		return fmt.Errorf("list name %q is %d octets, more than %d", clip(name), len(name), maxListNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("list name %q: character %q not allowed (use lower-case letters, digits, '-', '_' and '.')", name, c)
		}
		if strings.IndexByte(delimiters(r.Delimiter), c) >= 0 {
			return fmt.Errorf("list name %q: %q is the recipient delimiter", name, c)
		}
	}
	if reason := checkDotAtom(name); reason != "" {
		return fmt.Errorf("list name %q: %s", name, strings.Replace(reason, "local part", "name", 1))
	}
	return nil
}
