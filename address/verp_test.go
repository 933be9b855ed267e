package address

import (
	"errors"
	"strings"
	"testing"
)

func TestVERP(t *testing.T) {
	tests := []struct {
		list, member, delim, want string
	}{
		{"test@lists.example.org", "alice@example.com", "", "test-bounces+alice=example.com@lists.example.org"},
		{"test@lists.example.org", "alice@example.com", "+", "test-bounces+alice=example.com@lists.example.org"},
		{"test@lists.example.org", "alice@example.com", "-#+", "test-bounces#alice=example.com@lists.example.org"},
		{"Test@Lists.Example.ORG", "Alice@Example.COM", "", "test-bounces+Alice=example.com@lists.example.org"},
		{"test@lists.example.org", "<alice@example.com>", "", "test-bounces+alice=example.com@lists.example.org"},
		{"test@lists.example.org", "a+tag@example.com", "", "test-bounces+a+tag=example.com@lists.example.org"},
		{"test@lists.example.org", "a=b@example.com", "", "test-bounces+a=b=example.com@lists.example.org"},
		{"test@lists.example.org", `"a b"@example.com`, "", `"test-bounces+a b=example.com"@lists.example.org`},
		{"test@lists.example.org", `"a\"b"@example.com`, "", `"test-bounces+a\"b=example.com"@lists.example.org`},
		{"test@lists.example.org", `"alice"@example.com`, "", "test-bounces+alice=example.com@lists.example.org"},
		{"foo-owner@lists.example.org", "alice@example.com", "", "foo-owner-bounces+alice=example.com@lists.example.org"},
		// Not an address: the plain bounces address, as Mailman does.
		{"test@lists.example.org", "alice", "", "test-bounces@lists.example.org"},
		{"test@lists.example.org", "", "", "test-bounces@lists.example.org"},
		{"test@lists.example.org", "a@[192.0.2.1]", "", "test-bounces@lists.example.org"},
	}
	for _, tt := range tests {
		if got := VERP(tt.list, tt.member, tt.delim); got != tt.want {
			t.Errorf("VERP(%q, %q, %q) = %q, want %q", tt.list, tt.member, tt.delim, got, tt.want)
		}
	}
}

func TestDecodeVERP(t *testing.T) {
	tests := []struct {
		ext, want string
		ok        bool
	}{
		{"alice=example.com", "alice@example.com", true},
		{"Alice=Example.COM", "Alice@example.com", true},
		{"a+tag=example.com", "a+tag@example.com", true},
		{"a=b=example.com", "a=b@example.com", true},
		{"a==example.com", `a=@example.com`, true},
		{"a b=example.com", `"a b"@example.com`, true},
		{`a"b=example.com`, `"a\"b"@example.com`, true},
		{"a..b=example.com", `"a..b"@example.com`, true},
		{"", "", false},
		{"alice", "", false},
		{"=example.com", "", false},
		{"alice=", "", false},
		{"alice=exa_mple.com", "", false},
		{"alice=[192.0.2.1]", "", false},
		{"alice@x=example.com", `"alice@x"@example.com`, true},
		{"jörg=example.com", "", false},
		{"a\r\n=example.com", "", false},
		{strings.Repeat("a", 65) + "=example.com", "", false},
	}
	for _, tt := range tests {
		got, ok := DecodeVERP(tt.ext)
		if got != tt.want || ok != tt.ok {
			t.Errorf("DecodeVERP(%q) = %q, %v; want %q, %v", tt.ext, got, ok, tt.want, tt.ok)
		}
	}
}

// verpRoundTrip checks the whole path a bounce takes: VERP return path,
// RCPT resolved by milter and LMTP, extension decoded.
func verpRoundTrip(t *testing.T, member, delim string) {
	t.Helper()
	want, err := Normalize(member)
	if err != nil {
		t.Fatalf("Normalize(%q): %v", member, err)
	}
	rp := VERP("test@lists.example.org", member, delim)
	tg, err := Resolver{Delimiter: delim}.Resolve(rp, newTestDir())
	if a, _ := Parse(trimAngles(member)); !plainLocal(a.Local) {
		// The resolver refuses every local part that needs quoting (see
		// resolverLocal), so such a member's bounces are refused at RCPT.
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("VERP(%q) = %q resolves to %+v, %v; want it refused as malformed", member, rp, tg, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("VERP(%q) = %q does not resolve: %v", member, rp, err)
	}
	if tg.List != "test@lists.example.org" || tg.Kind != Bounces {
		t.Fatalf("VERP(%q) = %q resolves to %+v", member, rp, tg)
	}
	got, ok := DecodeVERP(tg.Ext)
	if !ok || got != want {
		t.Fatalf("VERP(%q) = %q, extension %q decodes to %q, %v; want %q", member, rp, tg.Ext, got, ok, want)
	}

	s := VERPSigner{Key: []byte("0123456789abcdef")}
	rp = s.VERP("test@lists.example.org", member, delim)
	tg, err = Resolver{Delimiter: delim}.Resolve(rp, newTestDir())
	if err != nil || tg.Kind != Bounces {
		t.Fatalf("signed VERP(%q) = %q resolves to %+v, %v", member, rp, tg, err)
	}
	got, ok = s.DecodeVERP("test@lists.example.org", tg.Ext)
	if !ok || got != want {
		t.Fatalf("signed VERP(%q) = %q, extension %q decodes to %q, %v; want %q", member, rp, tg.Ext, got, ok, want)
	}
}

func TestVERPRoundTrip(t *testing.T) {
	for _, m := range []string{
		"alice@example.com",
		"Alice.Smith@Example.COM",
		"a+b@example.com",
		"a+b+c@example.com",
		"a=b@example.com",
		"a=@example.com",
		"=a=@example.com",
		"+@example.com",
		"a+=b@example.com",
		"x@localhost",
		`"a b"@example.com`,
		`"a\"b\\c"@example.com`,
		`"a@b"@example.com`,
		`"a..b"@example.com`,
		`" "@example.com`,
		local64 + "@example.com",
		addr254,
	} {
		for _, delim := range []string{"", "+", "#+", "-+"} {
			verpRoundTrip(t, m, delim)
		}
	}
}

func TestVERPSigner(t *testing.T) {
	const list = "test@lists.example.org"
	s := VERPSigner{Key: []byte("0123456789abcdef")}
	sig := s.Sign(list, "Alice@Example.com")
	if len(sig) != 8 || strings.Trim(sig, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("Sign = %q, want 8 lower-case base32 characters", sig)
	}
	rp := s.VERP(list, "Alice@Example.com", "")
	if want := "test-bounces+Alice=example.com=" + sig + "@lists.example.org"; rp != want {
		t.Fatalf("VERP = %q, want %q", rp, want)
	}
	for _, tt := range []struct {
		name, list, member, sig string
		ok                      bool
	}{
		{"same", list, "Alice@example.com", sig, true},
		{"case-mangled by an MTA", strings.ToUpper(list), "alice@EXAMPLE.COM", strings.ToUpper(sig), true},
		{"other member", list, "bob@example.com", sig, false},
		{"other list", "other@lists.example.org", "Alice@example.com", sig, false},
		{"truncated", list, "Alice@example.com", sig[:7], false},
		{"extended", list, "Alice@example.com", sig + "a", false},
		{"empty", list, "Alice@example.com", "", false},
		{"not base32", list, "Alice@example.com", "!!!!!!!!", false},
	} {
		if got := s.Verify(tt.list, tt.member, tt.sig); got != tt.ok {
			t.Errorf("%s: Verify(%q, %q, %q) = %v, want %v", tt.name, tt.list, tt.member, tt.sig, got, tt.ok)
		}
	}
	if (VERPSigner{Key: []byte("another key")}).Verify(list, "Alice@example.com", sig) {
		t.Error("a signature verified under another key")
	}
	if (VERPSigner{}).Verify(list, "Alice@example.com", (VERPSigner{}).Sign(list, "Alice@example.com")) {
		t.Error("an empty key verified a signature")
	}
	for _, ext := range []string{
		"alice=example.com",              // unsigned
		"Alice=example.com=" + sig + "x", // tampered
		"bob=example.com=" + sig,         // signature moved to another member
		"=" + sig,
		"",
	} {
		if m, ok := s.DecodeVERP(list, ext); ok {
			t.Errorf("DecodeVERP(%q) accepted %q", ext, m)
		}
	}
}
