package address

import (
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if !ValidToken(tok) {
			t.Fatalf("NewToken() = %q, which ValidToken refuses", tok)
		}
		if seen[tok] {
			t.Fatalf("NewToken() repeated %q", tok)
		}
		seen[tok] = true
	}
}

func TestValidToken(t *testing.T) {
	good := "0123456789abcdef0123456789abcdef"
	tests := map[string]bool{
		good:                    true,
		strings.Repeat("f", 32): true,
		"":                      false,
		good[:31]:               false,
		good + "0":              false,
		strings.ToUpper(good):   false,
		good[:31] + "g":         false,
		good[:31] + "=":         false,
		good[:31] + "\x00":      false,
		strings.Repeat("0", 40): false, // a Mailman token
	}
	for s, want := range tests {
		if got := ValidToken(s); got != want {
			t.Errorf("ValidToken(%q) = %v, want %v", s, got, want)
		}
	}
}
