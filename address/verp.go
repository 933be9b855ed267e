package address

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strings"
	"time"
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
// Signed extensions (member=STAMPSIG) must go through VERPSigner.Member:
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

// VERPSigner makes VERP addresses that cannot be forged without Key and
// that expire, so that a bounce naming a member only counts if postlist
// sent the message it bounces, recently:
//
//	list-bounces+alice=example.com=TTTSSSSSSSS@lists.example.org
//
// The member stays readable. TTT is the day of signing (days since
// 1970-01-01 UTC, modulo 32768, three characters of lower-case base32) and
// SSSSSSSS 40 bits of HMAC-SHA256 over list, member and TTT: enough
// against online guessing, short enough for a local part that is already
// long, no "=" and nothing that needs quoting, and lower-case so that an
// MTA folding the case of the address breaks nothing. A return path whose
// day is more than Window old is still genuine (it is accepted at RCPT
// time, so Postfix never bounces a bounce) but no longer scores: whoever
// saw one copy's Return-Path can replay it for Window at most.
//
// Return paths signed before time stamps existed (8 characters, no TTT)
// are taken as signed at LegacySince, when the installation upgraded:
// they score until LegacySince + Window and are expired after.
//
// Key must not be empty; Member refuses every signature if it is.
type VERPSigner struct {
	Key []byte
	// Window is how long a signed return path scores after the day it
	// was signed; 0 means DefaultVERPWindow ([mta] verp_bounce_window).
	Window time.Duration
	// LegacySince is when time-stamped signatures replaced the old ones
	// (store.VERPSigner reads it from the database). Zero: old signatures
	// are expired.
	LegacySince time.Time
}

// DefaultVERPWindow is VERPSigner.Window when none is set.
const DefaultVERPWindow = 30 * 24 * time.Hour

// VERPStatus is what VERPSigner.Member found in a -bounces+ extension.
type VERPStatus uint8

const (
	// VERPBad: forged, mangled, or unsigned where a signature is
	// required. Refused at RCPT time, never scored.
	VERPBad VERPStatus = iota
	// VERPCurrent: signed by us within the window. Scores.
	VERPCurrent
	// VERPExpired: signed by us, but longer ago than the window.
	// Accepted (it is a genuine bounce address), not scored.
	VERPExpired
	// VERPUnsigned: Mailman's unsigned member=domain on a list that
	// accepts it (accept_unsigned_verp). Scores.
	VERPUnsigned
)

// Accepted reports whether mail to the address is taken at RCPT time.
func (v VERPStatus) Accepted() bool { return v != VERPBad }

// Scores reports whether a bounce to the address counts against the
// member it names.
func (v VERPStatus) Scores() bool { return v == VERPCurrent || v == VERPUnsigned }

func (v VERPStatus) String() string {
	switch v {
	case VERPCurrent:
		return "signed"
	case VERPExpired:
		return "expired"
	case VERPUnsigned:
		return "unsigned"
	}
	return "bad"
}

// sigEncoding is lower-case so an MTA that lower-cases the local part does
// not break signatures; 5 bytes encode to exactly 8 characters, no padding.
var sigEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

const (
	sigBytes = 5
	sigLen   = 8 // sigEncoding.EncodedLen(sigBytes)
	// stampLen base32 characters hold the day modulo stampMod: 89 years,
	// far beyond any window, so the wrap-around is never ambiguous.
	stampLen = 3
	stampMod = 1 << (5 * stampLen)
	day      = 24 * time.Hour
)

const stampDigits = "abcdefghijklmnopqrstuvwxyz234567"

// dayOf is the number of the day t falls on, in days since 1970-01-01
// UTC.
func dayOf(t time.Time) int64 {
	const secs = int64(day / time.Second)
	u := t.Unix()
	d := u / secs
	if u < 0 && u%secs != 0 {
		d--
	}
	return d
}

// stampOf is the time stamp of day d.
func stampOf(d int64) string {
	n := ((d % stampMod) + stampMod) % stampMod
	var b [stampLen]byte
	for i := stampLen - 1; i >= 0; i-- {
		b[i] = stampDigits[n&31]
		n >>= 5
	}
	return string(b[:])
}

// stampDay returns the start of the latest day whose time stamp is stamp,
// no later than tomorrow (a clock stepped back a little).
func stampDay(stamp string, now time.Time) (time.Time, bool) {
	if len(stamp) != stampLen {
		return time.Time{}, false
	}
	var n int64
	for i := 0; i < stampLen; i++ {
		c := strings.IndexByte(stampDigits, stamp[i])
		if c < 0 {
			return time.Time{}, false
		}
		n = n<<5 | int64(c)
	}
	tomorrow := dayOf(now) + 1
	d := tomorrow - ((tomorrow-n)%stampMod+stampMod)%stampMod
	return time.Unix(d*int64(day/time.Second), 0).UTC(), true
}

func (s VERPSigner) window() time.Duration {
	if s.Window > 0 {
		return s.Window
	}
	return DefaultVERPWindow
}

// mac is the signature of member on list; stamp is "" for the old,
// untimed form.
func (s VERPSigner) mac(list, member, stamp string) string {
	// Case-folded in full, since MTAs may change the case of a bounced
	// address; the separators make the encoding of (list, member, stamp)
	// unambiguous.
	if n, err := Normalize(member); err == nil {
		member = n
	}
	h := hmac.New(sha256.New, s.Key)
	if stamp == "" {
		h.Write([]byte("postlist-verp-v1\x00"))
	} else {
		h.Write([]byte("postlist-verp-v2\x00"))
	}
	h.Write([]byte(strings.ToLower(strings.TrimSpace(list))))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(member)))
	if stamp != "" {
		h.Write([]byte{0})
		h.Write([]byte(stamp))
	}
	return sigEncoding.EncodeToString(h.Sum(nil)[:sigBytes])
}

// Sign returns what follows the member in its VERP extension on list,
// signed at now: the time stamp and the signature (11 characters).
func (s VERPSigner) Sign(list, member string, now time.Time) string {
	stamp := stampOf(dayOf(now))
	return stamp + s.mac(list, member, stamp)
}

// Verify checks x, what Sign returned (or an old 8-character signature),
// for member on list at now. It never returns VERPUnsigned.
func (s VERPSigner) Verify(list, member, x string, now time.Time) VERPStatus {
	if len(s.Key) == 0 {
		return VERPBad
	}
	// Compared as text, in constant time: decoding would accept a last
	// character that differs only in padding bits, a second spelling of
	// the same signature.
	x = strings.ToLower(x)
	var signed time.Time
	switch len(x) {
	case stampLen + sigLen:
		stamp := x[:stampLen]
		t, ok := stampDay(stamp, now)
		if !ok || !hmac.Equal([]byte(x[stampLen:]), []byte(s.mac(list, member, stamp))) {
			return VERPBad
		}
		// Counted from the end of the day of signing: a return path
		// scores for at least Window, at most a day more.
		signed = t.Add(day)
	case sigLen:
		if !hmac.Equal([]byte(x), []byte(s.mac(list, member, ""))) {
			return VERPBad
		}
		if s.LegacySince.IsZero() {
			return VERPExpired
		}
		signed = s.LegacySince
	default:
		return VERPBad
	}
	if now.Sub(signed) > s.window() {
		return VERPExpired
	}
	return VERPCurrent
}

// VERP is the signed counterpart of the package-level VERP: member's
// return path on list for mail sent at now.
func (s VERPSigner) VERP(list, member, delim string, now time.Time) string {
	return verp(list, member, delim, func(m string) string { return s.Sign(list, m, now) })
}

// Member returns the member a -bounces+ extension of list names and what
// its signature says at now: alice=example.com=TTTSSSSSSSS (or an old
// alice=example.com=SSSSSSSS) signed by s is VERPCurrent within the
// window and VERPExpired after it; Mailman's unsigned alice=example.com is
// VERPUnsigned when acceptUnsigned (the list's accept_unsigned_verp, for
// bounces of mail a Mailman installation sent before the migration).
// Anything else, a forged or mangled address that must not score against
// anyone, is VERPBad with member "".
//
// It is pure and cheap (one HMAC, no clock read), so that the milter can
// call it at RCPT time and refuse a forged bounce before it is queued.
func (s VERPSigner) Member(list, ext string, acceptUnsigned bool, now time.Time) (member string, status VERPStatus) {
	if i := strings.LastIndexByte(ext, '='); i >= 0 {
		if m, ok := DecodeVERP(ext[:i]); ok {
			if st := s.Verify(list, m, ext[i+1:], now); st != VERPBad {
				return m, st
			}
		}
	}
	if acceptUnsigned {
		if m, ok := DecodeVERP(ext); ok {
			return m, VERPUnsigned
		}
	}
	return "", VERPBad
}
