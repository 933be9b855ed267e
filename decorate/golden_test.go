package decorate

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testList is the list every golden case starts from.
func testList() List {
	return List{
		Address:             "test@lists.example.org",
		ListID:              "test.lists.example.org",
		DisplayName:         "Test",
		SubjectPrefix:       "[Test] ",
		ReplyGoesToList:     "no_munging",
		DMARCMitigateAction: "no_mitigation",
	}
}

const oneClick = "https://lists.example.org/postlist/unsubscribe?l=1&a=alice%40example.com&t=abcdefghijklmnopqrstuvwxyz"

// goldenCases name testdata/NAME.eml and say how to decorate it; the
// result must equal testdata/NAME.golden. The .eml files are written with
// LF line endings for readability and turned into CRLF (what SMTP
// delivers) before decoration, except lf-* which stay LF; goldens are
// stored with LF too.
var goldenCases = []struct {
	name string
	list func(*List)
	rcpt Recipient
}{
	{name: "plain"},
	{name: "plain-one-click", rcpt: Recipient{UnsubscribeURL: oneClick}},
	{name: "reply", list: func(l *List) { l.Description = "Testing, one two" }},
	{name: "encoded-subject"},
	{name: "encoded-subject-utf8-prefix", list: func(l *List) { l.SubjectPrefix = "[Tëst] " }},
	{name: "no-subject"},
	{name: "long-subject", list: func(l *List) { l.ArchiveURL = "https://lists.example.org/archive/test/" }},
	{name: "footer-plain", list: withFooter("_______________\nTest mailing list -- test@lists.example.org")},
	{name: "footer-plain-utf8", list: withFooter("Grüße vom Test-Verteiler")},
	{name: "footer-qp", list: withFooter("Grüße vom Test-Verteiler")},
	{name: "footer-base64", list: withFooter("Ünïcödé footer")},
	{name: "footer-latin1", list: withFooter("Ünïcödé footer")},
	{name: "footer-html", list: withFooter("Plain footer")},
	{name: "footer-alternative", list: withFooter("Plain footer")},
	{name: "footer-mixed", list: withFooter("Plain footer")},
	{name: "signed", list: withFooter("Plain footer")},
	{name: "dmarc-munge", list: func(l *List) { l.DMARCMitigateAction = "munge_from" }},
	{name: "dmarc-munge-cc", list: func(l *List) {
		l.DMARCMitigateAction = "munge_from"
		l.ReplyGoesToList = "point_to_list"
	}},
	{name: "dmarc-noname", list: func(l *List) {
		l.DMARCMitigateAction = "munge_from"
		l.ReplyGoesToList = "explicit_header"
		l.ReplyToAddress = "discuss@example.org"
	}},
	{name: "dmarc-wrap", list: func(l *List) {
		l.DMARCMitigateAction = "wrap_message"
		l.Footer = "Plain footer"
	}},
	{name: "injection", list: func(l *List) { l.DMARCMitigateAction = "munge_from" }},
	{name: "lf-only", list: withFooter("Footer\nover two lines\n"), rcpt: Recipient{UnsubscribeURL: oneClick}},
}

func withFooter(f string) func(*List) { return func(l *List) { l.Footer = f } }

// inputFile maps a case to its .eml: several cases share one input.
func inputFile(name string) string {
	for _, p := range []struct{ prefix, file string }{
		{"plain", "plain"}, {"encoded-subject", "encoded-subject"},
		{"footer-plain", "footer-plain"}, {"dmarc-munge", "dmarc"}, {"dmarc-wrap", "dmarc"},
	} {
		if strings.HasPrefix(name, p.prefix) {
			return p.file
		}
	}
	return name
}

func readInput(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", inputFile(name)+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "lf-") {
		b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	}
	return b
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			in := readInput(t, tc.name)
			l := testList()
			if tc.list != nil {
				tc.list(&l)
			}
			out, err := Decorate(in, l, tc.rcpt)
			if err != nil {
				t.Fatal(err)
			}
			checkLineEndings(t, in, out)
			got := bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n"))
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./decorate -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decorated %s differs from %s (go test ./decorate -update rewrites it)\n--- got:\n%s\n--- want:\n%s", tc.name, path, got, want)
			}
		})
	}
}

// checkLineEndings insists that decoration writes the input's line ending
// and no other: a CRLF message must not gain bare LFs, nor an LF message
// CRs.
func checkLineEndings(t *testing.T, in, out []byte) {
	t.Helper()
	crlf := bytes.Contains(in, []byte("\r\n"))
	for i, c := range out {
		switch {
		case crlf && c == '\n' && (i == 0 || out[i-1] != '\r'):
			t.Fatalf("bare LF at byte %d of a CRLF message:\n%s", i, out)
		case !crlf && c == '\r':
			t.Fatalf("CR at byte %d of an LF message:\n%s", i, out)
		}
	}
}
