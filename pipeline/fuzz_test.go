package pipeline

import (
	"strings"
	"testing"

	"postlist/decorate"
	"postlist/message"
)

// FuzzApproval feeds the Approved: search arbitrary messages: it slices
// MIME bodies by hand, it runs on every post to a list with a moderator
// password and on every moderator's reply to a hold notice, so it must
// never panic, and what it cleans must carry no password field.
func FuzzApproval(f *testing.F) {
	f.Add([]byte("Approved: s3cret\r\nSubject: x\r\n\r\nbody\r\n"), "s3cret")
	f.Add([]byte("Subject: x\r\n\r\nApproved: s3cret\r\n\r\nbody\r\n"), "s3cret")
	f.Add([]byte("Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nApproved: pw\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Approved: pw</p>\r\n--b--\r\n"), "pw")
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n"), "x")
	f.Add([]byte("X-Approve:   \r\n\r\n"), "")
	f.Fuzz(func(t *testing.T, msg []byte, password string) {
		a := findApproval(msg, message.Parse(msg), password)
		if a.Where == "" && (a.Valid || a.Cleaned != nil) {
			t.Fatalf("nothing found, yet %+v", a)
		}
		if a.Cleaned != nil {
			m := message.Parse(a.Cleaned)
			for _, name := range approvedFields {
				if m.Has(name) {
					t.Fatalf("cleaned message still has %s:\n%q", name, a.Cleaned)
				}
			}
		}
		if c := checkApproval(msg, message.Parse(msg), password); password == "" && (c.Valid || c.Cleaned != nil) {
			t.Fatalf("a list without a password approved or changed a post: %+v", c)
		}
	})
}

// FuzzPrefixSubjectNumbered: whatever the subject and prefix, the result
// is one header line that starts with the expanded prefix.
func FuzzPrefixSubjectNumbered(f *testing.F) {
	f.Add("Re: [Test 12] Hello", "[Test %d] ", int64(13))
	f.Add("=?utf-8?q?Re:_[Test_2]_Gr=C3=BC=C3=9Fe?=", "[Test %d] ", int64(3))
	f.Add("Hello", "%d%d[(.*)] ", int64(0))
	f.Fuzz(func(t *testing.T, raw, prefix string, n int64) {
		if strings.ContainsAny(raw+prefix, "\r\n") || strings.TrimSpace(prefix) == "" {
			return // header values reach us unfolded; an empty prefix adds nothing
		}
		got, _ := decorate.PrefixSubjectNumbered(raw, true, prefix, n)
		if strings.ContainsAny(got, "\r\n") {
			t.Fatalf("%q with %q: result %q spans lines", raw, prefix, got)
		}
	})
}
