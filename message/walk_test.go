package message

import (
	"fmt"
	"strings"
	"testing"
)

func TestWalk(t *testing.T) {
	type want struct {
		mediaType string
		depth     int
		body      string // msg[Start:End]
	}
	cases := []struct {
		name, in string
		want     []want
	}{
		{"plain", "Subject: x\r\n\r\nhello\r\n", []want{{"text/plain", 0, "hello\r\n"}}},
		{"no header", "\r\nhello", []want{{"text/plain", 0, "hello"}}},
		{"alternative",
			"Content-Type: multipart/alternative; boundary=b\r\n\r\npreamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nApproved: pw\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\nepilogue\r\n",
			[]want{
				{"multipart/alternative", 0, "preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nApproved: pw\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\nepilogue\r\n"},
				{"text/plain", 1, "Approved: pw\r\nhi"},
				{"text/html", 1, "<p>hi</p>"},
			}},
		{"lf and padding",
			"Content-Type: multipart/mixed; boundary=\"x y\"\n\n--x y  \n\nfirst\n--x y--\n",
			[]want{{"multipart/mixed", 0, "--x y  \n\nfirst\n--x y--\n"}, {"text/plain", 1, "first"}}},
		{"unterminated last part",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: text/html\r\n\r\ntwo\r\n",
			[]want{{"multipart/mixed", 0, "--b\r\n\r\none\r\n--b\r\nContent-Type: text/html\r\n\r\ntwo\r\n"}, {"text/plain", 1, "one"}, {"text/html", 1, "two\r\n"}}},
		{"attached message is a leaf",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n",
			[]want{{"multipart/mixed", 0, "--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n"}, {"message/rfc822", 1, "Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--"}}},
		{"no boundary", "Content-Type: multipart/mixed\r\n\r\n--\r\nx\r\n", []want{{"multipart/mixed", 0, "--\r\nx\r\n"}}},
		{"bad content type", "Content-Type: ;;\r\n\r\nx", []want{{"", 0, "x"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := Walk([]byte(tc.in))
			var got []want
			for _, p := range ps {
				got = append(got, want{p.MediaType, p.Depth, tc.in[p.Start:p.End]})
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Walk:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestWalkBounds: hostile nesting and part counts cost a bounded walk.
func TestWalkBounds(t *testing.T) {
	var nested strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&nested, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	nested.WriteString("\r\ndeep text\r\n")
	many := "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + strings.Repeat("--b\r\n\r\nx\r\n", 10000) + "--b--\r\n"
	for name, in := range map[string]string{"nested": nested.String(), "many": many} {
		t.Run(name, func(t *testing.T) {
			ps := Walk([]byte(in))
			if len(ps) == 0 || len(ps) > MaxParts {
				t.Fatalf("%d parts, want 1..%d", len(ps), MaxParts)
			}
			for _, p := range ps {
				if p.Depth > MaxDepth {
					t.Fatalf("part at depth %d, bound is %d", p.Depth, MaxDepth)
				}
			}
		})
	}
	if ps := Walk([]byte(many)); len(ps) != MaxParts {
		t.Errorf("flat message of 10000 parts: %d visited, want exactly %d", len(ps), MaxParts)
	}
	if ps := Walk([]byte(nested.String())); ps[len(ps)-1].Depth != MaxDepth {
		t.Errorf("nested message: deepest part at %d, want %d", ps[len(ps)-1].Depth, MaxDepth)
	}
}

func TestPartText(t *testing.T) {
	cases := []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "Subject: x\r\n\r\nhello", 100, "hello"},
		{"quoted-printable", "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe =\r\nx", 100, "Grüße x"},
		{"base64", "Content-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n", 100, "hello"},
		{"latin-1", "Content-Type: text/plain; charset=iso-8859-1\r\n\r\nGr\xfc\xdfe", 100, "Grüße"},
		{"unknown charset kept as written", "Content-Type: text/plain; charset=x-nonesuch\r\n\r\nGr\xfc\xdfe", 100, "Gr\xfc\xdfe"},
		{"unknown encoding kept as written", "Content-Transfer-Encoding: x-rot13\r\n\r\nuryyb", 100, "uryyb"},
		{"charset only for text", "Content-Type: message/delivery-status; charset=iso-8859-1\r\n\r\n\xfc", 100, "\xfc"},
		{"bounded", "Subject: x\r\n\r\n0123456789", 4, "0123"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := Walk([]byte(tc.in))
			if got := ps[0].Text(tc.max); got != tc.want {
				t.Errorf("Text = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzWalk: whatever arrives, the walk stays within its bounds and within
// the message, every part lies inside its container, and decoding never
// returns more than asked for.
func FuzzWalk(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nhello\r\n",
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nApproved: pw\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Approved: pw</p>\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
		"Content-Type: multipart/report; boundary=r\n\n--r\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\nQWN0aW9uOiBmYWlsZWQ=\n--r",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps := Walk(b)
		if len(ps) == 0 || len(ps) > MaxParts {
			t.Fatalf("%d parts", len(ps))
		}
		var open []Part // the containers enclosing the current part
		for i, p := range ps {
			if p.Start < 0 || p.Start > p.End || p.End > len(b) || p.Depth > MaxDepth {
				t.Fatalf("part %d: [%d, %d) at depth %d in %d bytes", i, p.Start, p.End, p.Depth, len(b))
			}
			if i == 0 {
				if p.Depth != 0 || p.End != len(b) {
					t.Fatalf("first part is not the message: %+v", p)
				}
			} else {
				open = open[:p.Depth]
				if c := open[p.Depth-1]; p.Start < c.Start || p.End > c.End {
					t.Fatalf("part %d [%d, %d) outside its container [%d, %d)", i, p.Start, p.End, c.Start, c.End)
				}
			}
			open = append(open, p)
			if got := p.Text(16); len(got) > 16 {
				t.Fatalf("Text(16) gave %d bytes", len(got))
			}
		}
	})
}

func TestContentType(t *testing.T) {
	cases := []struct {
		in, mt, params string
		bad            bool
	}{
		{"Subject: x\r\n\r\n", "text/plain", "map[]", false},
		{"Content-Type: \r\n\r\n", "text/plain", "map[]", false},
		{"Content-Type: Text/HTML; Charset=\"utf-8\"\r\n\r\n", "text/html", "map[charset:utf-8]", false},
		{"Content-Type: text/plain; charset\r\n\r\n", "text/plain", "map[]", true},
		{"Content-Type: ;;\r\n\r\n", "", "map[]", true},
	}
	for _, tc := range cases {
		mt, params, err := Parse([]byte(tc.in)).ContentType()
		if mt != tc.mt || fmt.Sprint(params) != tc.params || (err != nil) != tc.bad {
			t.Errorf("ContentType of %q = %q, %v, %v; want %q, %s, error %v", tc.in, mt, params, err, tc.mt, tc.params, tc.bad)
		}
	}
}
