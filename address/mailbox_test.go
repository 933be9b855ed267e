package address

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMailbox(t *testing.T) {
	tests := []struct {
		line, name, addr, err string
	}{
		{line: "alice@example.com", addr: "alice@example.com"},
		{line: "  Alice@Example.COM\r", addr: "Alice@example.com"},
		{line: "<alice@example.com>", addr: "alice@example.com"},
		{line: "Alice Smith <alice@Example.com>", name: "Alice Smith", addr: "alice@example.com"},
		{line: "Alice \t Smith<alice@example.com>", name: "Alice Smith", addr: "alice@example.com"},
		{line: `"Smith, Alice" <alice@example.com>`, name: "Smith, Alice", addr: "alice@example.com"},
		{line: `"Alice \"Al\" Smith" <alice@example.com>`, name: `Alice "Al" Smith`, addr: "alice@example.com"},
		{line: `Alice "the" Smith <alice@example.com>`, name: "Alice the Smith", addr: "alice@example.com"},
		{line: `J. R. Smith (work) <j@example.com>`, name: "J. R. Smith (work)", addr: "j@example.com"},
		{line: `"" <alice@example.com>`, name: "", addr: "alice@example.com"},
		{line: `Jörg <jorg@example.com>`, name: "Jörg", addr: "jorg@example.com"},
		{line: `"Jörg, Dr." <jorg@example.com>`, name: "Jörg, Dr.", addr: "jorg@example.com"},
		{line: `Name < alice@example.com >`, name: "Name", addr: "alice@example.com"},
		{line: `Name <"a b"@example.com>`, name: "Name", addr: `"a b"@example.com`},
		{line: `Name <"a<b>"@example.com>`, name: "Name", addr: `"a<b>"@example.com`},
		// Mailman's export encodes non-ASCII names (Python formataddr).
		{line: `=?utf-8?q?J=C3=B6rg?= <jorg@example.com>`, name: "Jörg", addr: "jorg@example.com"},
		{line: `=?utf-8?q?J=C3=B6?= =?utf-8?q?rg?= Meier <jorg@example.com>`, name: "Jörg Meier", addr: "jorg@example.com"},
		{line: `=?x-unknown?q?abc?= <a@example.com>`, name: "=?x-unknown?q?abc?=", addr: "a@example.com"},

		{line: "", err: "empty line"},
		{line: "   ", err: "empty line"},
		{line: "Evil\rBcc: x <a@example.com>", err: `contains '\r'`},
		{line: "Evil\nBcc: x <a@example.com>", err: `contains '\n'`},
		{line: "Ev\x00il <a@example.com>", err: `contains '\x00'`},
		{line: "Ev\x01il <a@example.com>", err: "control character"},
		{line: `"Ev` + "\x1b" + `il" <a@example.com>`, err: "control character"},
		{line: `=?utf-8?q?Evil=0D=0ABcc=3A_x?= <a@example.com>`, err: "control character"},
		{line: "\xff <a@example.com>", err: "not valid UTF-8"},
		{line: "Smith, Alice <alice@example.com>", err: `unquoted ','`},
		{line: "a@example.com, Bob <b@example.com>", err: `unquoted '@'`},
		{line: "a@example.com b@example.com", err: "more than one @"},
		{line: `"Unterminated <a@example.com>`, err: "unterminated"},
		{line: "Name a@example.com>", err: `unquoted '@'`},
		{line: "Name>", err: `unquoted '>'`},
		{line: "Name <a@b@example.com>", err: "more than one @"},
		{line: "Name <>", err: "empty address"},
		{line: "Name <a@[192.0.2.1]>", err: "address literals"},
	}
	for _, tt := range tests {
		name, addr, err := ParseMailbox(tt.line)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseMailbox(%q) = %q, %q, %v; want error containing %q", tt.line, name, addr, err, tt.err)
			} else if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseMailbox(%q) error %v is not ErrMalformed", tt.line, err)
			}
			continue
		}
		if err != nil || name != tt.name || addr != tt.addr {
			t.Errorf("ParseMailbox(%q) = %q, %q, %v; want %q, %q", tt.line, name, addr, err, tt.name, tt.addr)
		}
	}
}
