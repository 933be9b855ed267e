package address

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// Seeds shared by the fuzz targets; testdata/fuzz holds more, including
// inputs the fuzzers found.
var fuzzAddresses = []string{
	"test@lists.example.org",
	"test-bounces+alice=example.com@lists.example.org",
	"TEST-Confirm+0123456789abcdef0123456789abcdef@Lists.Example.NET",
	"<test-join-join@lists.example.org>",
	"foo-owner-owner@lists.example.org",
	"-join@lists.example.org",
	`"test-bounces+a b=example.com"@lists.example.org`,
	`"a\"b\\c"@example.com`,
	"test-confirm+@lists.example.org",
	"test@lists.example.org.",
	"a@b@c",
	"a@[192.0.2.1]",
	"jörg@example.com",
	"a..b@example.com",
	"a=b+c@Example.COM",
	"x@" + label63 + ".com",
	addr254,
	addr255,
	"",
	"<>",
	"\x00@\x00",
	`"test+ 0"@lists.example.org`,
	`test+ 0@lists.example.org`,
	`te"st"@lists.example.org`,
	`"te\st"@lists.example.org`,
	`"test+a@b"@lists.example.org`,
	`test-bounces+"a b"=example.com@lists.example.org`,
}

// spellingsAgree checks that every spelling of rcpt's local part value
// resolves as rcpt did: the value quoted, and the value quoted with every
// octet escaped, as the milter may see it; and, when rcpt's local part is
// one quoted string, the bare value, as the LMTP server and a policy
// service see it. A value holding a quote character is left out of the
// last check: its bare form is the one spelling that can also be read as
// quoting (see resolverLocal).
func spellingsAgree(t *testing.T, r Resolver, dir Directory, rcpt string, got Target, err error) {
	t.Helper()
	s := trimAngles(rcpt)
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return
	}
	local, domain := s[:at], s[at:]
	var spellings []string
	if !strings.ContainsAny(local, `"\`) {
		var esc strings.Builder
		for i := 0; i < len(local); i++ {
			esc.WriteByte('\\')
			esc.WriteByte(local[i])
		}
		spellings = append(spellings, `"`+local+`"`+domain, `"`+esc.String()+`"`+domain)
	}
	if content, n, reason := parseQuoted(local); strings.HasPrefix(local, `"`) && reason == "" && n == len(local) && strings.IndexByte(content, '"') < 0 {
		spellings = append(spellings, content+domain)
	}
	for _, sp := range spellings {
		if len(sp) > 2*maxRecipientLen+2 {
			continue
		}
		g, e := r.Resolve(sp, dir)
		var se1, se2 *SyntaxError
		errors.As(err, &se1)
		errors.As(e, &se2)
		same := g == got && (err == nil) == (e == nil)
		for _, sentinel := range []error{ErrMalformed, ErrNotOurs, ErrNoSuchList} {
			same = same && errors.Is(err, sentinel) == errors.Is(e, sentinel)
		}
		if se1 != nil && se2 != nil && se1.Reason != se2.Reason {
			same = false
		}
		if !same {
			t.Fatalf("%q resolves to %+v, %v, but its spelling %q to %+v, %v", rcpt, got, err, sp, g, e)
		}
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range fuzzAddresses {
		for _, d := range []string{"", "+-", "#"} {
			f.Add(s, d)
		}
	}
	dir := newTestDir()
	f.Fuzz(func(t *testing.T, rcpt, delim string) {
		r := Resolver{Delimiter: delim}
		got, err := r.Resolve(rcpt, dir)
		spellingsAgree(t, r, dir, rcpt, got, err)
		if err != nil {
			n := 0
			for _, e := range []error{ErrMalformed, ErrNotOurs, ErrNoSuchList} {
				if errors.Is(err, e) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("Resolve(%q) error %v wraps %d sentinels", rcpt, err, n)
			}
			return
		}
		if got.List != strings.ToLower(got.List) || !dir.HasList(got.List) {
			t.Fatalf("Resolve(%q) = %+v: List is not a lower-case existing list", rcpt, got)
		}
		if _, ok := subaddresses[string(got.Kind)]; !ok && got.Kind != Post {
			t.Fatalf("Resolve(%q) = %+v: bad Kind", rcpt, got)
		}
		addr := r.Address(got, dir)
		again, err := r.Resolve(addr, dir)
		if err != nil || again != got {
			t.Fatalf("Resolve(%q) = %+v, but its address %q resolves to %+v, %v", rcpt, got, addr, again, err)
		}
		// Postfix may hand the LMTP server the quoted spelling of what the
		// milter saw, or change the case of what the remote MTA sent.
		at := strings.LastIndexByte(addr, '@')
		if local := addr[:at]; !strings.HasPrefix(local, `"`) && len(addr)+2 <= maxRecipientLen {
			quoted := `"` + local + `"` + addr[at:]
			if q, err := r.Resolve(quoted, dir); err != nil || q != got {
				t.Fatalf("%q resolves to %+v, %v, but %q to %+v", quoted, q, err, addr, got)
			}
		}
		upper, err := r.Resolve(strings.ToUpper(addr), dir)
		if err != nil || upper.List != got.List || upper.Kind != got.Kind || !strings.EqualFold(upper.Ext, got.Ext) {
			t.Fatalf("%q resolves to %+v, %v, but %q to %+v", strings.ToUpper(addr), upper, err, addr, got)
		}
	})
}

func FuzzVERP(f *testing.F) {
	for _, s := range fuzzAddresses {
		f.Add(s, "")
	}
	f.Add("alice@example.com", "#")
	f.Add("a+b@example.com", "-+")
	f.Fuzz(func(t *testing.T, member, delim string) {
		if _, err := Parse(member); err != nil {
			return
		}
		verpRoundTrip(t, member, delim)
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzAddresses {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) error %v is not ErrMalformed", s, err)
			}
		} else if b, err := Parse(a.String()); err != nil || b != a {
			t.Fatalf("Parse(%q) = %+v, but Parse(%q) = %+v, %v", s, a, a.String(), b, err)
		}

		n, err := Normalize(s)
		if err != nil {
			return
		}
		if len(n) > maxAddressLen {
			t.Fatalf("Normalize(%q) = %q, longer than %d octets", s, n, maxAddressLen)
		}
		if n2, err := Normalize(n); err != nil || n2 != n {
			t.Fatalf("Normalize not idempotent: %q -> %q -> %q, %v", s, n, n2, err)
		}
	})
}

func FuzzParseMailbox(f *testing.F) {
	for _, s := range fuzzAddresses {
		f.Add(s)
		f.Add("Name " + s)
	}
	f.Add(`"Smith, Alice" <alice@example.com>`)
	f.Add(`=?utf-8?q?J=C3=B6?= =?utf-8?q?rg?= <jorg@example.com>`)
	f.Add(`Alice "the" Smith <"a<b>"@example.com>`)
	f.Fuzz(func(t *testing.T, line string) {
		name, addr, err := ParseMailbox(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseMailbox(%q) error %v is not ErrMalformed", line, err)
			}
			return
		}
		if n, err := Normalize(addr); err != nil || n != addr {
			t.Fatalf("ParseMailbox(%q) address %q is not normalized", line, addr)
		}
		if !utf8.ValidString(name) || strings.ContainsAny(name, "\r\n\x00") {
			t.Fatalf("ParseMailbox(%q) name %q", line, name)
		}
		// What a member export writes must read back the same.
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `" <` + addr + ">"
		if n2, a2, err := ParseMailbox(quoted); err != nil || n2 != name || a2 != addr {
			t.Fatalf("ParseMailbox(%q) = %q, %q, but %q reads as %q, %q, %v", line, name, addr, quoted, n2, a2, err)
		}
	})
}
