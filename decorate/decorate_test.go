package decorate

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"
	"testing"

	"github.com/emersion/go-message"
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

// TestPrefixSubjectNumbered: a %d prefix carries this post's number,
// and the numbered prefix a reply brings along is replaced, not stacked.
func TestPrefixSubjectNumbered(t *testing.T) {
	cases := []struct {
		name, raw string
		present   bool
		prefix    string
		number    int64
		want      string
	}{
		{"first post", "Hello", true, "[Test %d] ", 1, "[Test 1] Hello"},
		{"reply to an earlier post", "Re: [Test 12] Hello", true, "[Test %d] ", 13, "[Test 13] Re: Hello"},
		{"reply markers kept as written", "AW: Fwd: [test 3] Hello", true, "[Test %d] ", 4, "[Test 4] AW: Fwd: Hello"},
		{"a resent post gets its new number", "[Test 7] Hello", true, "[Test %d] ", 9, "[Test 9] Hello"},
		{"unnumbered form of the prefix", "Re: [Test] Hello", true, "[Test %d] ", 5, "[Test 5] Re: Hello"},
		{"another list's prefix stays", "[Other 3] Hello", true, "[Test %d] ", 2, "[Test 2] [Other 3] Hello"},
		{"number alone", "Hello", true, "%d: ", 42, "42: Hello"},
		{"missing subject", "", false, "[Test %d] ", 1, "[Test 1] (no subject)"},
		{"encoded reply", "=?utf-8?q?Re:_[Test_2]_Gr=C3=BC=C3=9Fe?=", true, "[Test %d] ", 3, "[Test 3] =?utf-8?q?Re:_Gr=C3=BC=C3=9Fe?="},
		{"post from before numbering", "Hello", true, "[Test %d] ", 0, "[Test] Hello"},
		{"no %d: as PrefixSubject", "Re: [Test] Hello", true, "[Test] ", 8, "Re: [Test] Hello"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := PrefixSubjectNumbered(tc.raw, tc.present, tc.prefix, tc.number)
			if got != tc.want {
				t.Errorf("PrefixSubjectNumbered(%q, %q, %d) = %q, want %q", tc.raw, tc.prefix, tc.number, got, tc.want)
			}
			if changed != (got != tc.raw) {
				t.Errorf("changed = %v for %q -> %q", changed, tc.raw, got)
			}
		})
	}
}

func TestPrefixSubject(t *testing.T) {
	cases := []struct {
		name, raw string
		present   bool
		prefix    string
		want      string
	}{
		{"plain", "Hello", true, "[Test] ", "[Test] Hello"},
		{"already", "[Test] Hello", true, "[Test] ", "[Test] Hello"},
		{"case", "[test] Hello", true, "[Test] ", "[test] Hello"},
		{"reply", "Re: [Test] Hello", true, "[Test] ", "Re: [Test] Hello"},
		{"stacked replies", "AW: Re: RE: [Test] Hello", true, "[Test] ", "AW: Re: RE: [Test] Hello"},
		{"forward", "Fwd: [Test] Hello", true, "[Test] ", "Fwd: [Test] Hello"},
		{"numbered reply", "Re[2]: [Test] Hello", true, "[Test] ", "Re[2]: [Test] Hello"},
		{"reply without prefix", "Re: Hello", true, "[Test] ", "[Test] Re: Hello"},
		{"other list prefix", "[Other] Hello", true, "[Test] ", "[Test] [Other] Hello"},
		{"prefix inside", "About [Test] tags", true, "[Test] ", "[Test] About [Test] tags"},
		{"missing", "", false, "[Test] ", "[Test] (no subject)"},
		{"blank", "   ", true, "[Test] ", "[Test] (no subject)"},
		{"no prefix configured", "Hello", true, "", "Hello"},
		{"prefix without space", "Hello", true, "[Test]", "[Test] Hello"},
		{"encoded", "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", true, "[Test] ", "[Test] =?utf-8?q?Gr=C3=BC=C3=9Fe?="},
		{"encoded already", "=?utf-8?q?Re:_[Test]_Gr=C3=BC=C3=9Fe?=", true, "[Test] ", "=?utf-8?q?Re:_[Test]_Gr=C3=BC=C3=9Fe?="},
		{"encoded prefix, plain subject", "Hello", true, "[Tëst] ", "=?utf-8?q?[T=C3=ABst]?= Hello"},
		{"encoded prefix, encoded subject", "=?utf-8?q?Gr=C3=BC=C3=9Fe?=", true, "[Tëst] ", "=?utf-8?q?[T=C3=ABst]_?= =?utf-8?q?Gr=C3=BC=C3=9Fe?="},
		{"raw utf-8", "Grüße", true, "[Test] ", "[Test] Grüße"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := PrefixSubject(tc.raw, tc.present, tc.prefix)
			if got != tc.want {
				t.Errorf("PrefixSubject(%q, %q) = %q, want %q", tc.raw, tc.prefix, got, tc.want)
			}
			if changed != (got != tc.raw) {
				t.Errorf("changed = %v for %q -> %q", changed, tc.raw, got)
			}
			// The decoded result reads as the prefix followed by the
			// subject, with exactly one space between.
			if changed && tc.raw != "" && strings.TrimSpace(tc.raw) != "" {
				dec := DecodeHeader(got)
				want := strings.TrimSpace(tc.prefix) + " " + DecodeHeader(tc.raw)
				if dec != want {
					t.Errorf("decoded %q, want %q", dec, want)
				}
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
		if got := encodePhrase(in); got != want {
			t.Errorf("encodePhrase(%q) = %q, want %q", in, got, want)
		}
		if got := encodePhrase(in); strings.ContainsAny(got, "\r\n") {
			t.Errorf("encodePhrase(%q) contains a line break", in)
		}
	}
	// What we encode decodes back.
	dec, err := new(mime.WordDecoder).DecodeHeader(encodePhrase("Müller, <A> via T"))
	if err != nil || dec != "Müller, <A> via T" {
		t.Errorf("decoded %q, %v", dec, err)
	}
}

// TestSignedPartUntouched checks the promise that matters most: with a
// footer, the signed part of a multipart/signed post is carried byte for
// byte, so its signature still verifies.
func TestSignedPartUntouched(t *testing.T) {
	in := readInput(t, "signed")
	l := testList()
	l.Footer = "footer"
	out, err := Decorate(in, l, Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	orig := Parse(in)
	var part bytes.Buffer
	for _, f := range orig.Fields {
		if strings.HasPrefix(strings.ToLower(f.Name), "content-") {
			part.Write(f.Raw)
		}
	}
	part.WriteString("\r\n")
	part.Write(orig.Body)
	if !bytes.Contains(out, part.Bytes()) {
		t.Errorf("the signed entity is not carried unchanged:\n%s", out)
	}
}

func TestBodyUntouchedWithoutFooter(t *testing.T) {
	for _, name := range []string{"plain", "signed", "footer-mixed", "footer-alternative", "reply"} {
		in := readInput(t, name)
		out, err := Decorate(in, testList(), Recipient{UnsubscribeURL: oneClick})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(Parse(out).Body, Parse(in).Body) {
			t.Errorf("%s: body changed without a footer", name)
		}
	}
}

func TestStripsSecretsAndUpstreamListFields(t *testing.T) {
	in := []byte("From: a@example.com\r\nApproved: s3cret\r\nX-Approve: s3cret\r\nReturn-Path: <a@example.com>\r\n" +
		"List-Id: <other.example.com>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nPrecedence: bulk\r\n\r\nbody\r\n")
	out, err := Decorate(in, testList(), Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("s3cret")) || bytes.Contains(out, []byte("Return-Path")) || bytes.Contains(out, []byte("other.example.com")) {
		t.Errorf("secret or upstream field kept:\n%s", out)
	}
	m := Parse(out)
	for name, want := range map[string]int{"List-Id": 1, "Precedence": 1, "List-Unsubscribe-Post": 0, "X-BeenThere": 1} {
		if got := len(m.Values(name)); got != want {
			t.Errorf("%d %s fields, want %d", got, name, want)
		}
	}
	if got := m.Get("Precedence"); got != "list" {
		t.Errorf("Precedence: %q", got)
	}
}

func TestNoHeaderInjection(t *testing.T) {
	in := readInput(t, "injection")
	l := testList()
	l.DMARCMitigateAction = "munge_from"
	l.Footer = "f"
	out, err := Decorate(in, l, Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	if m := Parse(out); m.Has("Bcc") {
		t.Errorf("a Bcc field appeared:\n%s", out)
	}
}

func TestOneClickOnlyForHTTPS(t *testing.T) {
	cases := []struct {
		url       string
		wantURL   bool
		wantPost  bool
		wantField string
	}{
		{"", false, false, "<mailto:test-leave@lists.example.org>"},
		{"https://x.example/u?t=1", true, true, "<https://x.example/u?t=1>, <mailto:test-leave@lists.example.org>"},
		{"http://127.0.0.1:8026/u?t=1", true, false, "<http://127.0.0.1:8026/u?t=1>, <mailto:test-leave@lists.example.org>"},
		{"https://x.example/u?t=1>, <https://evil", false, false, "<mailto:test-leave@lists.example.org>"},
	}
	p, err := Prepare(readInput(t, "plain"), testList())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		r := Recipient{UnsubscribeURL: tc.url}
		whole := p.For(r)
		// The deliverer sends Own then Tail; they must make For exactly,
		// with Own ending a line so it can go on the wire alone.
		own := p.Own(r)
		if split := append(own, p.Tail()...); !bytes.Equal(split, whole) || !bytes.HasSuffix(own, []byte("\n")) {
			t.Errorf("%q: Own %q + Tail differ from For", tc.url, own)
		}
		m := Parse(whole)
		if got := m.Get("List-Unsubscribe"); got != tc.wantField {
			t.Errorf("%q: List-Unsubscribe %q, want %q", tc.url, got, tc.wantField)
		}
		if got := m.Has("List-Unsubscribe-Post"); got != tc.wantPost {
			t.Errorf("%q: List-Unsubscribe-Post present %v, want %v", tc.url, got, tc.wantPost)
		}
	}
}

func TestPrepareRejectsBadList(t *testing.T) {
	for _, addr := range []string{"", "nodomain", "a b@example.org"} {
		l := testList()
		l.Address = addr
		if _, err := Prepare([]byte("From: a@b\r\n\r\n"), l); err == nil {
			t.Errorf("Prepare accepted list address %q", addr)
		}
	}
}

// TestGoldenIsValidMIME reads every decorated golden case back with
// go-message, walking all parts: decoration must produce mail a standard
// parser accepts, with the footer text findable in some text/plain part.
func TestGoldenIsValidMIME(t *testing.T) {
	for _, tc := range goldenCases {
		l := testList()
		if tc.list != nil {
			tc.list(&l)
		}
		out, err := Decorate(readInput(t, tc.name), l, tc.rcpt)
		if err != nil {
			t.Fatal(err)
		}
		e, err := message.Read(bytes.NewReader(out))
		if err != nil && !message.IsUnknownCharset(err) {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var texts []string
		err = e.Walk(func(_ []int, part *message.Entity, err error) error {
			if err != nil {
				return err
			}
			if mt, _, _ := part.Header.ContentType(); mt == "text/plain" || mt == "" {
				b, err := io.ReadAll(part.Body)
				if err != nil && !message.IsUnknownCharset(err) {
					return err
				}
				texts = append(texts, string(b))
			}
			return nil
		})
		if err != nil && !errors.Is(err, io.EOF) {
			t.Errorf("%s: walking parts: %v", tc.name, err)
			continue
		}
		if f := strings.TrimSpace(strings.ReplaceAll(l.Footer, "\n", "\r\n")); f != "" {
			found := false
			for _, s := range texts {
				if strings.Contains(strings.ReplaceAll(s, "\r\n", "\n"), strings.ReplaceAll(f, "\r\n", "\n")) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: footer %q not found in any text/plain part %q", tc.name, f, texts)
			}
		}
	}
}

// TestPersonalizeFull: with personalize full each member's copy is To:
// them, the list moves to Cc (unless Reply-To points to it already), and
// a copy for several members keeps the original To.
func TestPersonalizeFull(t *testing.T) {
	cases := []struct {
		name, replyGoesToList string
		r                     Recipient
		wantTo, wantCc        string
	}{
		{"one member", "no_munging", Recipient{Address: "bob@example.net"}, "bob@example.net", "Test <test@lists.example.org>"},
		{"several members", "no_munging", Recipient{}, "test@lists.example.org", "Test <test@lists.example.org>"},
		{"reply-to already the list", "point_to_list", Recipient{Address: "bob@example.net"}, "bob@example.net", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := testList()
			l.Personalize = "full"
			l.ReplyGoesToList = tc.replyGoesToList
			p, err := Prepare(readInput(t, "plain"), l)
			if err != nil {
				t.Fatal(err)
			}
			m := Parse(p.For(tc.r))
			if to := m.Values("To"); len(to) != 1 || to[0] != tc.wantTo {
				t.Errorf("To %q, want [%q]", to, tc.wantTo)
			}
			if cc := m.Get("Cc"); cc != tc.wantCc {
				t.Errorf("Cc %q, want %q", cc, tc.wantCc)
			}
		})
	}
	// Without full, To is the poster's, untouched.
	p, err := Prepare(readInput(t, "plain"), testList())
	if err != nil {
		t.Fatal(err)
	}
	if m := Parse(p.For(Recipient{Address: "bob@example.net"})); m.Get("To") != "test@lists.example.org" || m.Has("Cc") {
		t.Errorf("not personalized: To %q Cc %q", m.Get("To"), m.Get("Cc"))
	}
}
