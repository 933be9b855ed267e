package address

import (
	"errors"
	"strings"
	"testing"
	"time"
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
	now := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	rp = s.VERP("test@lists.example.org", member, delim, now)
	tg, err = Resolver{Delimiter: delim}.Resolve(rp, newTestDir())
	if err != nil || tg.Kind != Bounces {
		t.Fatalf("signed VERP(%q) = %q resolves to %+v, %v", member, rp, tg, err)
	}
	got, st := s.Member("test@lists.example.org", tg.Ext, false, now)
	if st != VERPCurrent || got != want {
		t.Fatalf("signed VERP(%q) = %q, extension %q decodes to %q, %v; want %q", member, rp, tg.Ext, got, st, want)
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
	now := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	x := s.Sign(list, "Alice@Example.com", now)
	if len(x) != 11 || strings.Trim(x, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Fatalf("Sign = %q, want 11 lower-case base32 characters", x)
	}
	rp := s.VERP(list, "Alice@Example.com", "", now)
	if want := "test-bounces+Alice=example.com=" + x + "@lists.example.org"; rp != want {
		t.Fatalf("VERP = %q, want %q", rp, want)
	}
	// Another character in the time stamp, the signature kept: what a
	// replay with a fresh-looking date would try.
	tampered := []byte(x)
	tampered[2] = map[bool]byte{true: 'b', false: 'a'}[tampered[2] == 'a']
	for _, tt := range []struct {
		name, list, member, x string
		want                  VERPStatus
	}{
		{"same", list, "Alice@example.com", x, VERPCurrent},
		{"case-mangled by an MTA", strings.ToUpper(list), "alice@EXAMPLE.COM", strings.ToUpper(x), VERPCurrent},
		{"other member", list, "bob@example.com", x, VERPBad},
		{"other list", "other@lists.example.org", "Alice@example.com", x, VERPBad},
		{"tampered time stamp", list, "Alice@example.com", string(tampered), VERPBad},
		{"time stamp dropped", list, "Alice@example.com", x[3:], VERPBad},
		{"truncated", list, "Alice@example.com", x[:10], VERPBad},
		{"extended", list, "Alice@example.com", x + "a", VERPBad},
		{"empty", list, "Alice@example.com", "", VERPBad},
		{"not base32", list, "Alice@example.com", "!!!!!!!!!!!", VERPBad},
	} {
		if got := s.Verify(tt.list, tt.member, tt.x, now); got != tt.want {
			t.Errorf("%s: Verify(%q, %q, %q) = %v, want %v", tt.name, tt.list, tt.member, tt.x, got, tt.want)
		}
	}
	if got := (VERPSigner{Key: []byte("another key")}).Verify(list, "Alice@example.com", x, now); got != VERPBad {
		t.Errorf("a signature checked under another key: %v", got)
	}
	if got := (VERPSigner{}).Verify(list, "Alice@example.com", (VERPSigner{}).Sign(list, "Alice@example.com", now), now); got != VERPBad {
		t.Errorf("an empty key verified a signature: %v", got)
	}
}

// TestVERPWindow: a return path scores for Window after the end of the
// day it was signed on, is expired (still genuine) after that, and a time
// stamp from the future beyond a day's clock step is not believed.
func TestVERPWindow(t *testing.T) {
	const list, member = "test@lists.example.org", "alice@example.com"
	signedAt := time.Date(2026, 12, 8, 13, 45, 0, 0, time.UTC)
	endOfDay := time.Date(2026, 12, 9, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		window time.Duration
		at     time.Time
		want   VERPStatus
	}{
		{"just sent", 0, signedAt, VERPCurrent},
		{"default window, last second", 0, endOfDay.Add(DefaultVERPWindow), VERPCurrent},
		{"default window, a second late", 0, endOfDay.Add(DefaultVERPWindow + time.Second), VERPExpired},
		{"a year later", 0, signedAt.AddDate(1, 0, 0), VERPExpired},
		{"a century later", 0, signedAt.AddDate(100, 0, 0), VERPExpired},
		{"short window, in it", 2 * day, endOfDay.Add(2*day - time.Minute), VERPCurrent},
		{"short window, past it", 2 * day, endOfDay.Add(2*day + time.Minute), VERPExpired},
		{"clock stepped back a day", 0, signedAt.Add(-day), VERPCurrent},
		{"clock stepped back three days", 0, signedAt.Add(-3 * day), VERPExpired},
	} {
		s := VERPSigner{Key: []byte("k"), Window: tt.window}
		ext := strings.Replace(s.VERP(list, member, "+", signedAt), "test-bounces+", "", 1)
		ext = strings.TrimSuffix(ext, "@lists.example.org")
		m, got := s.Member(list, ext, false, tt.at)
		if got != tt.want || m != member {
			t.Errorf("%s: Member(%q) at %s = %q, %v; want %q, %v", tt.name, ext, tt.at, m, got, member, tt.want)
		}
	}
}

// TestVERPMember covers the forms a -bounces+ extension comes in: signed
// now or long ago, from before time stamps, Mailman's unsigned, forged.
func TestVERPMember(t *testing.T) {
	const list = "test@lists.example.org"
	upgrade := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	now := upgrade.Add(10 * day)
	s := VERPSigner{Key: []byte("0123456789abcdef"), LegacySince: upgrade}
	legacy := s.mac(list, "alice@example.com", "")
	fresh := s.Sign(list, "alice@example.com", now)
	old := s.Sign(list, "alice@example.com", now.Add(-60*day))
	for _, tt := range []struct {
		name, ext      string
		acceptUnsigned bool
		at             time.Time
		want           VERPStatus
		member         string
	}{
		{"fresh", "alice=example.com=" + fresh, false, now, VERPCurrent, "alice@example.com"},
		{"fresh, upper-cased", "ALICE=EXAMPLE.COM=" + strings.ToUpper(fresh), false, now, VERPCurrent, "ALICE@example.com"},
		{"old", "alice=example.com=" + old, false, now, VERPExpired, "alice@example.com"},
		{"old, unsigned accepted too", "alice=example.com=" + old, true, now, VERPExpired, "alice@example.com"},
		{"legacy within the window after the upgrade", "alice=example.com=" + legacy, false, upgrade.Add(DefaultVERPWindow), VERPCurrent, "alice@example.com"},
		{"legacy after it", "alice=example.com=" + legacy, false, upgrade.Add(DefaultVERPWindow + time.Second), VERPExpired, "alice@example.com"},
		{"legacy, tampered", "alice=example.com=" + legacy[:7] + "x", false, now, VERPBad, ""},
		{"unsigned, refused", "alice=example.com", false, now, VERPBad, ""},
		{"unsigned, accepted", "alice=example.com", true, now, VERPUnsigned, "alice@example.com"},
		{"signature moved to another member", "bob=example.com=" + fresh, false, now, VERPBad, ""},
		{"tampered", "alice=example.com=" + fresh + "x", false, now, VERPBad, ""},
		{"signature only", "=" + fresh, false, now, VERPBad, ""},
		{"empty", "", true, now, VERPBad, ""},
	} {
		m, got := s.Member(list, tt.ext, tt.acceptUnsigned, tt.at)
		if got != tt.want || m != tt.member {
			t.Errorf("%s: Member(%q) = %q, %v; want %q, %v", tt.name, tt.ext, m, got, tt.member, tt.want)
		}
		if got.Accepted() != (tt.want != VERPBad) || got.Scores() != (tt.want == VERPCurrent || tt.want == VERPUnsigned) {
			t.Errorf("%s: %v accepted %v, scores %v", tt.name, got, got.Accepted(), got.Scores())
		}
	}
	// Without a recorded upgrade an old-form signature never scores.
	if _, got := (VERPSigner{Key: s.Key}).Member(list, "alice=example.com="+legacy, false, now); got != VERPExpired {
		t.Errorf("legacy signature without LegacySince: %v, want expired", got)
	}
}

// BenchmarkVERPMember is the milter's cost per -bounces+ RCPT.
func BenchmarkVERPMember(b *testing.B) {
	s := VERPSigner{Key: []byte("0123456789abcdef0123456789abcdef"), LegacySince: time.Now()}
	now := time.Now()
	rp := s.VERP("test@lists.example.org", "alice@example.com", "+", now)
	ext := strings.TrimSuffix(strings.TrimPrefix(rp, "test-bounces+"), "@lists.example.org")
	for b.Loop() {
		if _, st := s.Member("test@lists.example.org", ext, false, now); st != VERPCurrent {
			b.Fatal(st)
		}
	}
}
