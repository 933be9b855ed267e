package message

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

func TestCheckHeader(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"ok", "From: a@b\r\n\r\nbody\r\n", ""},
		{"ok lf", "From: a@b\n\nbody\n", ""},
		{"no body", "From: a@b", ""},
		{"space before colon", "Subject : x\r\n\r\n", ""},
		{"nameless field skipped", ": x\r\nFrom: a@b\r\n\r\n", ""},
		{"only a nameless field", ": x\r\n\r\n", "no header fields"},
		{"empty", "", "no header fields"},
		{"only body", "\r\nbody", "no header fields"},
		{"no colon", "this is not a header\r\n\r\nbody\r\n", "malformed MIME header line: this is not a header\r\n"},
		{"no colon folded", "From: a\r\nbad\r\n more\r\n\r\n", "malformed MIME header line: bad\r\n more\r\n"},
		{"continuation first", " folded: x\r\nFrom: a@b\r\n\r\nbody\r\n", "malformed MIME header initial line:  folded: x"},
		{"bad field name", "From: a@b\r\nBad Name: x\r\n\r\nbody\r\n", "malformed MIME header key: Bad Name"},
		{"colon on the continuation", "abc\r\n def: x\r\n\r\n", "malformed MIME header key: abc\r\n def"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := CheckHeader([]byte(tc.in)); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("CheckHeader(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzCheckHeader holds CheckHeader to the MIME reader's judgement:
// whatever go-message's textproto refuses, CheckHeader refuses with the
// same words, and what it accepts CheckHeader accepts, so intake refuses
// exactly the mail it always refused.
func FuzzCheckHeader(f *testing.F) {
	for _, s := range []string{
		"From: a@b\r\n\r\nx", "A: b\n c\n\nd", ": x\r\n", "X\r\n", " x\r\n", "",
		"a b: c\r\n\r\n", "From: a\r\n: b\r\nc\r\n d\r\n", "\x00\xff\xfe:\x01\r\n", "A: b\r\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := ""
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
		switch {
		case err != nil:
			want = strings.TrimPrefix(err.Error(), "message: ")
		case h.Len() == 0:
			want = "no header fields"
		}
		got := ""
		if err := CheckHeader(b); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Fatalf("CheckHeader(%q) = %q, the MIME reader says %q", b, got, want)
		}
		if got == "" {
			// Every field the MIME reader saw, Parse sees.
			m := Parse(b)
			if n := h.Len(); len(m.Fields) != n && !bytes.Contains(b, []byte("\n:")) && !bytes.HasPrefix(b, []byte(":")) {
				t.Fatalf("Parse found %d fields, the MIME reader %d, in %q", len(m.Fields), n, b)
			}
		}
	})
}
