package address

import (
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	signer := VERPSigner{Key: []byte("k")}
	signed := signer.VERP("test@lists.example.org", "alice@example.com", "+", time.Now())
	tests := []struct {
		name, in, delim, want string
	}{
		{"confirm token", "test-confirm+4f3kqzz7abcd@lists.example.org", "+", "test-confirm+…@lists.example.org"},
		{"confirm token, delimiter unknown", "test-confirm+4f3kqzz7abcd@lists.example.org", "", "test-confirm+…@lists.example.org"},
		{"confirm in angles", "<test-confirm+4f3kq@lists.example.org>", "+", "<test-confirm+…@lists.example.org>"},
		{"upper-case subaddress", "Test-Confirm+4F3KQ@lists.example.org", "+", "Test-Confirm+…@lists.example.org"},
		{"signed VERP", "test-bounces+alice=example.com=abcdefgh@lists.example.org", "+", "test-bounces+alice=example.com=…@lists.example.org"},
		{"signed VERP from the signer", signed, "", "test-bounces+alice=example.com=…@lists.example.org"},
		{"signed VERP with a time stamp", "test-bounces+alice=example.com=k3j4.abcdefgh@lists.example.org", "+", "test-bounces+alice=example.com=…@lists.example.org"},
		{"member local part with =", "test-bounces+a=b=example.com=abcdefgh@lists.example.org", "+", "test-bounces+a=b=example.com=…@lists.example.org"},
		{"other delimiter", "test-bounces#alice=example.com=abcdefgh@lists.example.org", "#", "test-bounces#alice=example.com=…@lists.example.org"},
		{"list name with underscore", "my_list-confirm+tok@lists.example.org", "", "my_list-confirm+…@lists.example.org"},
		{"quoted local part", `"test-bounces+a b=example.com=abcdefgh"@lists.example.org`, "+", `"test-bounces+a b=example.com=…"@lists.example.org`},
		{"unsigned VERP kept", "test-bounces+alice=example.com@lists.example.org", "+", "test-bounces+alice=example.com@lists.example.org"},
		{"bare bounces kept", "test-bounces@lists.example.org", "+", "test-bounces@lists.example.org"},
		{"bare confirm kept", "test-confirm@lists.example.org", "+", "test-confirm@lists.example.org"},
		{"member address kept", "alice+tag@example.com", "+", "alice+tag@example.com"},
		{"post extension kept", "test+confirm@lists.example.org", "+", "test+confirm@lists.example.org"},
		{"wrong delimiter kept", "test-confirm#tok@lists.example.org", "+", "test-confirm#tok@lists.example.org"},
		{"empty", "", "+", ""},
		{"not an address", "MAILER-DAEMON", "+", "MAILER-DAEMON"},
		{"one-click link", "https://lists.example.org/unsubscribe?l=test%40lists.example.org&a=alice%40example.com&t=SECRETTOKEN", "+",
			"https://lists.example.org/unsubscribe?l=test%40lists.example.org&a=alice%40example.com&t=…"},
		{"link path only", "/unsubscribe?t=SECRETTOKEN&l=x", "+", "/unsubscribe?t=…&l=x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Redact(tc.in, tc.delim); got != tc.want {
				t.Errorf("Redact(%q, %q) = %q, want %q", tc.in, tc.delim, got, tc.want)
			}
		})
	}
	if strings.Contains(Redact(signed, "+"), signed[strings.LastIndexByte(signed, '=')+1:strings.IndexByte(signed, '@')]) {
		t.Errorf("signature left in %q", Redact(signed, "+"))
	}
}

func TestRedactText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"550 5.1.1 <test-bounces+dave=example.com=e7mpegjh@lists.example.org>: unknown or forged bounce address",
			"550 5.1.1 <test-bounces+dave=example.com=…@lists.example.org>: unknown or forged bounce address"},
		{"550 5.1.1 <test-confirm+48f6b3fd@lists.example.org>: unknown token; also test-confirm+abc@lists.example.org",
			"550 5.1.1 <test-confirm+…@lists.example.org>: unknown token; also test-confirm+…@lists.example.org"},
		{"see https://lists.example.org/unsubscribe?a=x&t=SECRET now", "see https://lists.example.org/unsubscribe?a=x&t=… now"},
		{"250 2.0.0 <alice@example.com> queued as 12", "250 2.0.0 <alice@example.com> queued as 12"},
		{"no address here", "no address here"},
	}
	for _, tc := range tests {
		if got := RedactText(tc.in, "+"); got != tc.want {
			t.Errorf("RedactText(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactVERP(t *testing.T) {
	for in, want := range map[string]string{
		"alice=example.com=abcdefgh": "alice=example.com=…",
		"a=b=example.com=abcdefgh":   "a=b=example.com=…",
		"alice=example.com":          "alice=example.com",
		"":                           "",
	} {
		if got := RedactVERP(in); got != want {
			t.Errorf("RedactVERP(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("test-confirm+tok@lists.example.org", "+")
	f.Add("test-bounces+a=b=c@d", "")
	f.Fuzz(func(t *testing.T, in, delim string) {
		out := Redact(in, delim)
		// Redacting twice changes nothing more, and the domain stays.
		if again := Redact(out, delim); again != out {
			t.Fatalf("Redact not idempotent: %q -> %q -> %q", in, out, again)
		}
		if at := strings.LastIndexByte(in, '@'); at > 0 && !strings.Contains(in, "://") && !strings.HasPrefix(in, "/") && !strings.HasSuffix(out, in[at:]) {
			t.Fatalf("Redact(%q) = %q lost the domain", in, out)
		}
	})
}
