package decorate

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"

	"postlist/message"
)

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
				dec := message.DecodeHeader(got)
				want := strings.TrimSpace(tc.prefix) + " " + message.DecodeHeader(tc.raw)
				if dec != want {
					t.Errorf("decoded %q, want %q", dec, want)
				}
			}
		})
	}
}

// byte, so its signature still verifies.
func TestSignedPartUntouched(t *testing.T) {
	in := readInput(t, "signed")
	l := testList()
	l.Footer = "footer"
	out, err := Decorate(in, l, Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	orig := message.Parse(in)
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
		if !bytes.Equal(message.Parse(out).Body, message.Parse(in).Body) {
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
	m := message.Parse(out)
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
	if m := message.Parse(out); m.Has("Bcc") {
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
		m := message.Parse(whole)
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
		e, err := gomessage.Read(bytes.NewReader(out))
		if err != nil && !gomessage.IsUnknownCharset(err) {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var texts []string
		err = e.Walk(func(_ []int, part *gomessage.Entity, err error) error {
			if err != nil {
				return err
			}
			if mt, _, _ := part.Header.ContentType(); mt == "text/plain" || mt == "" {
				b, err := io.ReadAll(part.Body)
				if err != nil && !gomessage.IsUnknownCharset(err) {
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
			m := message.Parse(p.For(tc.r))
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
	if m := message.Parse(p.For(Recipient{Address: "bob@example.net"})); m.Get("To") != "test@lists.example.org" || m.Has("Cc") {
		t.Errorf("not personalized: To %q Cc %q", m.Get("To"), m.Get("Cc"))
	}
}
