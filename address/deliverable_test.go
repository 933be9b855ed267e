package address

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDeliverable(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		addr string
		ok   bool
		why  string // a word of the reason, for refusals
	}{
		{"alice@example.com", true, ""},
		{"Alice.Smith+tag@Example.COM", true, ""},
		{"o'brien@example.ie", true, ""},
		{"a=b@example.com", true, ""},
		{"x!#$%&'*+-/=?^_`{|}~@example.com", true, ""},
		{`"alice"@example.com`, true, ""}, // needless quotes: the value is a dot-atom
		{"root@localhost", true, ""},
		{long(64) + "@example.com", true, ""},
		{long(64) + "@" + long(63) + "." + long(63) + "." + long(57) + ".com", true, ""}, // 254 octets

		{`"a>b"@example.com`, false, "quotes"},
		{`"a<b"@example.com`, false, "quotes"},
		{`"john smith"@example.com`, false, "quotes"},
		{`"a..b"@example.com`, false, "quotes"},
		{`"a\"b"@example.com`, false, "quotes"},
		{`"a@b"@example.com`, false, "quotes"},
		{`""@example.com`, false, "empty"},
		{"<alice@example.com>", false, "<"},
		{"alice@example.com>", false, ">"},
		{" alice@example.com", false, "space"},
		{"", false, "empty"},
		{"alice", false, "@"},
		{"alice@", false, "empty domain"},
		{"alice@example.com\r\nRCPT TO:<x@y>", false, "control"},
		{"ali\x00ce@example.com", false, "control"},
		{"ali\x7fce@example.com", false, "control"},
		{"al\tice@example.com", false, "control"},
		{"jörg@example.de", false, "non-ASCII"},
		{"jorg@exämple.de", false, "non-ASCII"},
		{"alice@[192.0.2.1]", false, "literal"},
		{"alice@[IPv6:2001:db8::1]", false, "literal"},
		{long(65) + "@example.com", false, "local part"},
		{long(64) + "@" + long(63) + "." + long(63) + "." + long(58) + ".com", false, "254"},
		{"alice@exa_mple.com", false, "domain"},
		{"alice@-example.com", false, "hyphen"},
		{"alice@example..com", false, "label"},
		{".alice@example.com", false, "dot"},
		{"a..b@example.com", false, "dot"},
		{"a@b@example.com", false, "@"},
	}
	for _, tc := range tests {
		err := Deliverable(tc.addr)
		if tc.ok {
			if err != nil {
				t.Errorf("Deliverable(%q) = %v, want nil", tc.addr, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Deliverable(%q) = nil, want an error about %q", tc.addr, tc.why)
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Deliverable(%q) = %v, does not wrap ErrMalformed", tc.addr, err)
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Deliverable(%q) = %q, want the reason to mention %q", tc.addr, err, tc.why)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("Deliverable(%q): reason %q is not one line", tc.addr, err)
		}
	}
}

// TestDeliverableVERP ties the rule to what it protects: for every address
// Deliverable accepts, the signed VERP return path is an unquoted dot-atom
// that the resolver reads back to the same member, so its bounces count.
func TestDeliverableVERP(t *testing.T) {
	s := VERPSigner{Key: []byte("k")}
	const list = "test@lists.example.org"
	for _, m := range []string{
		"alice@example.com", "a=b@example.com", "a+b@example.com", "x!#$%&'*/?^_`{|}~@example.com",
		strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 57) + ".com",
	} {
		if err := Deliverable(m); err != nil {
			t.Fatalf("Deliverable(%q): %v", m, err)
		}
		v := s.VERP(list, m, "+", time.Now())
		local := v[:strings.LastIndexByte(v, '@')]
		if !isDotAtom(local) {
			t.Errorf("VERP of %q is %q: its local part needs quoting", m, v)
		}
		_, ext, _ := strings.Cut(local, "+")
		got, status := s.Member(list, ext, false, time.Now())
		want, _ := Normalize(m)
		if status != VERPCurrent || got != want {
			t.Errorf("VERP %q decodes to (%q, %v), want %q", v, got, status, want)
		}
		if len(v) > maxRecipientLen {
			t.Errorf("VERP %q is %d octets, more than the resolver reads", v, len(v))
		}
	}
	// The refused case, for contrast: its VERP local part needs quotes.
	if v := s.VERP(list, `"a>b"@example.com`, "+", time.Now()); !strings.HasPrefix(v, `"`) {
		t.Errorf("VERP of a quoted member is %q; the rule above assumes it is quoted", v)
	}
}
