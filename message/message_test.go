package message

import (
	"bytes"
	"mime"
	"strings"
	"testing"
)

func TestParseRoundTrip(t *testing.T) {
	cases := map[string]string{
		"crlf":                 "From: a@b\r\nSubject: x\r\n\r\nbody\r\n",
		"lf":                   "From: a@b\nSubject: x\n\nbody\n",
		"folded":               "Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\n",
		"no body":              "From: a@b\r\n",
		"no final eol":         "From: a@b",
		"no separator":         "From: a@b\r\nthis is not a header\r\nmore\r\n",
		"leading continuation": " oops\r\nFrom: a@b\r\n\r\n",
		"empty":                "",
		"only body":            "\r\nbody",
		"space before colon":   "Subject : x\r\n\r\n",
		"8bit":                 "Subject: Grüße\r\n\r\nÄ\r\n",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Parse([]byte(in)).Bytes(); string(got) != in {
				t.Errorf("round trip changed the message:\n got %q\nwant %q", got, in)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"From: a@b\r\n\r\nx", "A: b\n c\n\nd", ": x\r\n", "X\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := Parse(b)
		if got := m.Bytes(); !bytes.Equal(got, b) {
			t.Fatalf("round trip changed %q into %q", b, got)
		}
		// Whatever came in, a field we add must stay one field.
		m.Add("X-Test", "a\r\nBcc: evil@example.com")
		if n := len(Parse(m.Bytes()).Values("Bcc")); n != len(m.Values("Bcc")) {
			t.Fatalf("added field injected a header: %q", m.Bytes())
		}
	})
}

func TestFieldValue(t *testing.T) {
	m := Parse([]byte("Subject:  two\r\n  lines \r\nX-Empty:\r\n\r\n"))
	if got := m.Get("subject"); got != "two  lines" {
		t.Errorf("Get(subject) = %q", got)
	}
	if got := m.Get("X-Empty"); got != "" || !m.Has("x-empty") {
		t.Errorf("X-Empty = %q, has %v", got, m.Has("x-empty"))
	}
}

func TestSetKeepsPosition(t *testing.T) {
	m := Parse([]byte("A: 1\r\nSubject: old\r\nB: 2\r\nSubject: dup\r\n\r\nbody"))
	m.Set("Subject", "new")
	want := "A: 1\r\nSubject: new\r\nB: 2\r\n\r\nbody"
	if got := string(m.Bytes()); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFormatField(t *testing.T) {
	cases := []struct {
		name, value, want string
	}{
		{"Short", "value", "Short: value\r\n"},
		{"Empty", "", "Empty:\r\n"},
		{"Spaces", "a  b", "Spaces: a  b\r\n"},
		{"Injected", "x\r\nBcc: evil@example.com", "Injected: x  Bcc: evil@example.com\r\n"},
		{"Subject", strings.Repeat("word ", 20) + "end",
			"Subject: word word word word word word word word word word word word word word\r\n word word word word word word end\r\n"},
		{"Long", strings.Repeat("x", 100), "Long: " + strings.Repeat("x", 100) + "\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := FormatField(tc.name, tc.value, "\r\n")
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			// Unfolding gives back the value (controls aside).
			f := Parse([]byte(got + "\r\n")).Fields[0]
			if v := f.Value(); !strings.Contains(tc.value, "\r") && v != tc.value {
				t.Errorf("unfolded %q, want %q", v, tc.value)
			}
		})
	}
}

func TestEncodePhrase(t *testing.T) {
	cases := map[string]string{
		"Alice Example":       "Alice Example",
		"Alice via Test":      "Alice via Test",
		"Smith, John":         `"Smith, John"`,
		`Say "hi"`:            `"Say \"hi\""`,
		"Jürgen via Test":     "=?utf-8?b?SsO8cmdlbiB2aWEgVGVzdA==?=",
		"Eve\r\nBcc: x@y.com": `"Eve Bcc: x@y.com"`,
		"Müller, <A> via T":   "=?utf-8?b?TcO8bGxlciwgPEE+IHZpYSBU?=",
		"  spaced   out  ":    "spaced out",
	}
	for in, want := range cases {
		if got := EncodePhrase(in); got != want {
			t.Errorf("EncodePhrase(%q) = %q, want %q", in, got, want)
		}
		if got := EncodePhrase(in); strings.ContainsAny(got, "\r\n") {
			t.Errorf("EncodePhrase(%q) contains a line break", in)
		}
	}
	// What we encode decodes back.
	dec, err := new(mime.WordDecoder).DecodeHeader(EncodePhrase("Müller, <A> via T"))
	if err != nil || dec != "Müller, <A> via T" {
		t.Errorf("decoded %q, %v", dec, err)
	}
}

// TestSignedPartUntouched checks the promise that matters most: with a
// footer, the signed part of a multipart/signed post is carried byte for
