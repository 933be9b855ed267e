package address

import (
	"errors"
	"strings"
	"testing"
)

// Boundary inputs built once: the limits are where off-by-one bugs live.
var (
	local64 = strings.Repeat("a", 64)
	local65 = strings.Repeat("a", 65)
	label63 = strings.Repeat("b", 63)
	label64 = strings.Repeat("b", 64)
	// 64 + 1 + 189 = 254 octets.
	addr254 = local64 + "@" + label63 + "." + label63 + "." + strings.Repeat("c", 61)
	addr255 = local64 + "@" + label63 + "." + label63 + "." + strings.Repeat("c", 62)
	// 255 octets of domain, 4 labels.
	domain255 = label63 + "." + label63 + "." + label63 + "." + strings.Repeat("d", 63)
	domain256 = domain255 + "e"
)

func TestBoundaryFixtures(t *testing.T) {
	for name, got := range map[string]int{"addr254": len(addr254), "addr255": len(addr255), "domain255": len(domain255), "domain256": len(domain256)} {
		want := map[string]int{"addr254": 254, "addr255": 255, "domain255": 255, "domain256": 256}[name]
		if got != want {
			t.Fatalf("%s is %d octets, want %d", name, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in     string
		local  string // want; ignored on error
		domain string
		err    string // substring of the error; "" means success
	}{
		{in: "alice@example.com", local: "alice", domain: "example.com"},
		{in: "Alice.Smith@Example.COM", local: "Alice.Smith", domain: "Example.COM"},
		{in: "a+tag@example.com", local: "a+tag", domain: "example.com"},
		{in: "a=b@example.com", local: "a=b", domain: "example.com"},
		{in: "!#$%&'*+-/=?^_`{|}~@example.com", local: "!#$%&'*+-/=?^_`{|}~", domain: "example.com"},
		{in: "root@localhost", local: "root", domain: "localhost"},
		{in: "x@xn--bcher-kva.example", local: "x", domain: "xn--bcher-kva.example"},
		{in: "x@a-b.c", local: "x", domain: "a-b.c"},
		{in: "x@1.2.3.4", local: "x", domain: "1.2.3.4"},
		{in: `"alice"@example.com`, local: "alice", domain: "example.com"},
		{in: `"a b"@example.com`, local: "a b", domain: "example.com"},
		{in: `"a@b"@example.com`, local: "a@b", domain: "example.com"},
		{in: `"a\"b\\c"@example.com`, local: `a"b\c`, domain: "example.com"},
		{in: `"a\bc"@example.com`, local: "abc", domain: "example.com"},
		{in: `"a..b"@example.com`, local: "a..b", domain: "example.com"},
		{in: local64 + "@example.com", local: local64, domain: "example.com"},
		{in: "x@" + label63 + ".com", local: "x", domain: label63 + ".com"},
		{in: addr254, local: local64, domain: addr254[65:]},

		{in: "", err: "empty address"},
		{in: "alice", err: "missing @"},
		{in: "a@b@c", err: `address "a@b@c": more than one @`},
		{in: `"a"@b@c`, err: "more than one @"},
		{in: "@example.com", err: "empty local part"},
		{in: `""@example.com`, err: "empty local part"},
		{in: "alice@", err: "empty domain"},
		{in: "a b@example.com", err: "space outside quotes"},
		{in: " a@example.com", err: "space outside quotes"},
		{in: "a\r\n@example.com", err: `control character '\r'`},
		{in: "a\x00@example.com", err: `control character '\x00'`},
		{in: "a\t@example.com", err: "control character"},
		{in: "a\x7f@example.com", err: "control character"},
		{in: "a@exa\nmple.com", err: "control character"},
		{in: `"a` + "\x01" + `"@example.com`, err: "control character"},
		{in: "jörg@example.com", err: "non-ASCII"},
		{in: "x@bücher.example", err: "xn--"},
		{in: ".a@example.com", err: "starts with a dot"},
		{in: "a.@example.com", err: "ends with a dot"},
		{in: "a..b@example.com", err: "consecutive dots"},
		{in: "a(b)@example.com", err: `character '(' is not allowed outside quotes`},
		{in: "a,b@example.com", err: "not allowed outside quotes"},
		{in: `a"b"@example.com`, err: "not allowed outside quotes"},
		{in: `"ab@example.com`, err: "unterminated"},
		{in: `"ab\`, err: "unterminated"},
		{in: `"ab"x@example.com`, err: "after the closing quote"},
		{in: `"ab"`, err: "missing @"},
		{in: "<a@example.com>", err: "not allowed outside quotes"},
		{in: "a@[192.0.2.1]", err: "address literals"},
		{in: "a@[IPv6:2001:db8::1]", err: "address literals"},
		{in: "a@example.com.", err: "empty label"},
		{in: "a@.example.com", err: "empty label"},
		{in: "a@example..com", err: "empty label"},
		{in: "a@exa_mple.com", err: `character '_' is not allowed in a domain name`},
		{in: "a@-example.com", err: "starts with a hyphen"},
		{in: "a@example-.com", err: "ends with a hyphen"},
		{in: "a@exa mple.com", err: "not allowed in a domain"},
		{in: local65 + "@example.com", err: "local part is 65 octets, more than 64"},
		{in: `"` + local64 + `"@example.com`, err: "local part is 66 octets"},
		{in: "x@" + label64 + ".com", err: "is 64 octets, more than 63"},
		{in: addr255, err: "address is 255 octets, more than 254"},
		{in: "x@" + domain255, err: "address is 257 octets"},
		{in: "x@" + domain256, err: "domain is 256 octets, more than 255"},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		if tt.err != "" {
			if err == nil {
				t.Errorf("Parse(%q) = %+v, want error containing %q", tt.in, a, tt.err)
				continue
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Parse(%q) error %q, want it to contain %q", tt.in, err, tt.err)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse(%q) error %q is not ErrMalformed", tt.in, err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Addr != tt.in {
				t.Errorf("Parse(%q) error %#v does not carry the input", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if a.Local != tt.local || a.Domain != tt.domain {
			t.Errorf("Parse(%q) = %+v, want {%q %q}", tt.in, a, tt.local, tt.domain)
		}
	}
}

func TestAddrString(t *testing.T) {
	tests := []struct {
		a    Addr
		want string
	}{
		{Addr{"alice", "example.com"}, "alice@example.com"},
		{Addr{"a b", "example.com"}, `"a b"@example.com`},
		{Addr{`a"b\c`, "example.com"}, `"a\"b\\c"@example.com`},
		{Addr{"a..b", "x"}, `"a..b"@x`},
		{Addr{".a", "x"}, `".a"@x`},
		{Addr{"", "x"}, `""@x`},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.a, got, tt.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "alice@example.com", want: "alice@example.com"},
		{in: "Alice@Example.COM", want: "Alice@example.com"},
		{in: "  <Alice@Example.COM>\n", want: "Alice@example.com"},
		{in: "< alice@example.com >", want: "alice@example.com"},
		{in: `"alice"@example.com`, want: "alice@example.com"},
		{in: `"a\b"@example.com`, want: "ab@example.com"},
		{in: `"a b"@EXAMPLE.com`, want: `"a b"@example.com`},
		{in: "<<a@example.com>>", err: "not allowed outside quotes"},
		{in: "<>", err: "empty address"},
		{in: "<a@example.com", err: "not allowed outside quotes"},
		{in: "a@b@c", err: "more than one @"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Normalize(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestErrorMessageIsBounded(t *testing.T) {
	_, err := Parse(strings.Repeat("x", 100000))
	if err == nil || len(err.Error()) > 400 {
		t.Fatalf("error for a huge input is %d octets", len(err.Error()))
	}
}
