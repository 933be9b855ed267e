package address

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// VERP returns the envelope sender for mail from list (its posting address)
// to member: list-bounces+alice=example.com@lists.example.org, the form
// Mailman uses, so a bounce names the member who bounced. The extension
// follows the first usable character of delim (see Resolver).
//
// The member's domain is lower-cased and its local part kept. When the
// combined local part is not a dot-atom (a member with a quoted local part)
// the whole local part is quoted, which Resolve undoes. If member is not a
// valid address (Parse), the plain bounces address is returned, as Mailman
// does for unqualified recipients: the bounce then still arrives, it just
// cannot be attributed by VERP.
//
// The result may exceed RFC 5321's 64-octet local part; Postfix and the
// resolver accept that, as they must for Mailman's VERP too.
func VERP(list, member, delim string) string {
	return verp(list, member, delim, nil)
}

func verp(list, member, delim string, sign func(member string) string) string {
	name, domain := ListName(list)
	bounces := name + "-" + string(Bounces)
	m, err := Parse(trimAngles(member))
	if err != nil {
		return bounces + "@" + domain
	}
	m.Domain = lowerASCII(m.Domain)
	ext := m.Local + "=" + m.Domain
	if sign != nil {
		ext += "=" + sign(m.String())
	}
	return formatLocal(bounces+delimiters(delim)[:1]+ext) + "@" + domain
}

// DecodeVERP returns the member address encoded in the extension of a
// -bounces address (Target.Ext): alice=example.com gives alice@example.com.
// It splits at the last "=" because a domain never contains one while a
// local part may (Mailman's decoder gets those wrong). The result is in
// Normalize form; ok is false if it is not a valid address.
//
// Signed extensions (member=SIG) must go through VERPSigner.DecodeVERP:
// read here, the signature would be taken for the domain.
func DecodeVERP(ext string) (member string, ok bool) {
	i := strings.LastIndexByte(ext, '=')
	if i <= 0 || i == len(ext)-1 {
		return "", false
	}
	member, err := Normalize(Addr{Local: ext[:i], Domain: ext[i+1:]}.String())
	if err != nil {
		return "", false
	}
	return member, true
}

// VERPSigner makes VERP addresses that cannot be forged without Key, so
// that a bounce naming a member only counts if postlist sent the message
// it bounces: list-bounces+alice=example.com=SIG@lists.example.org. The
// member stays readable; SIG is 8 characters of lower-case base32 (40 bits
// of HMAC-SHA256), enough against online guessing, short enough for the
// local part. Key must not be empty; Verify refuses everything if it is.
type VERPSigner struct {
	Key []byte
}

// sigEncoding is lower-case so an MTA that lower-cases the local part does
// not break signatures; 5 bytes encode to exactly 8 characters, no padding.
var sigEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

const sigBytes = 5

func (s VERPSigner) mac(list, member string) []byte {
	// Case-folded in full, since MTAs may change the case of a bounced
	// address; the separators make the encoding of (list, member)
	// unambiguous.
	if n, err := Normalize(member); err == nil {
		member = n
	}
	h := hmac.New(sha256.New, s.Key)
	h.Write([]byte("postlist-verp-v1\x00"))
	h.Write([]byte(strings.ToLower(strings.TrimSpace(list))))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(member)))
	return h.Sum(nil)[:sigBytes]
}

// Sign returns the signature of member's VERP address on list.
func (s VERPSigner) Sign(list, member string) string {
	return sigEncoding.EncodeToString(s.mac(list, member))
}

// Verify reports whether sig is Sign(list, member), in constant time.
func (s VERPSigner) Verify(list, member, sig string) bool {
	if len(s.Key) == 0 {
		return false
	}
	// Compared as text: decoding would accept 9 characters whose last one
	// carries only padding bits, a second spelling of the same signature.
	return hmac.Equal([]byte(strings.ToLower(sig)), []byte(s.Sign(list, member)))
}

// VERP is the signed counterpart of the package-level VERP.
func (s VERPSigner) VERP(list, member, delim string) string {
	return verp(list, member, delim, func(m string) string { return s.Sign(list, m) })
}

// DecodeVERP decodes a signed extension (alice=example.com=SIG) of list's
// -bounces address and checks its signature.
func (s VERPSigner) DecodeVERP(list, ext string) (member string, ok bool) {
	i := strings.LastIndexByte(ext, '=')
	if i < 0 {
		return "", false
	}
	member, ok = DecodeVERP(ext[:i])
	if !ok || !s.Verify(list, member, ext[i+1:]) {
		return "", false
	}
	return member, true
}

// Member returns the member a -bounces+ extension of list names, and
// whether its signature checked: alice=example.com=SIG, signed by s, is
// always accepted; Mailman's unsigned alice=example.com only when
// acceptUnsigned (the list's accept_unsigned_verp, for bounces of mail a
// Mailman installation sent before the migration). ok is false for
// anything else: a forged or mangled address, which must not score
// against anyone.
//
// It is pure and cheap (one HMAC), so that the milter can call it at RCPT
// time and refuse a forged bounce before it is queued.
func (s VERPSigner) Member(list, ext string, acceptUnsigned bool) (member string, signed, ok bool) {
	if m, ok := s.DecodeVERP(list, ext); ok {
		return m, true, true
	}
	if acceptUnsigned {
		if m, ok := DecodeVERP(ext); ok {
			return m, false, true
		}
	}
	return "", false, false
}
