package pipeline

import (
	"strings"
	"testing"

	"postlist/message"
	"postlist/store"
)

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestCheckApproval(t *testing.T) {
	const pw = "s3cret pass"
	cases := []struct {
		name     string
		msg      string
		password string
		valid    bool
		where    string // "" when nothing is found
		want     string // the cleaned message; "" when unchanged
	}{
		{
			name:     "no password configured",
			msg:      "From: a@example.com\nApproved: s3cret pass\n\nhi\n",
			password: "",
		},
		{
			name:     "no approval",
			msg:      "From: a@example.com\n\nhi\n",
			password: pw,
		},
		{
			name: "Approved header", password: pw, valid: true, where: "Approved: header",
			msg:  "From: a@example.com\nApproved:  s3cret pass \nSubject: x\n\nhi\n",
			want: "From: a@example.com\nSubject: x\n\nhi\n",
		},
		{
			name: "X-Approve header, wrong password, still removed", password: pw, where: "X-Approve: header",
			msg:  "From: a@example.com\nX-Approve: s3cret\n\nhi\n",
			want: "From: a@example.com\n\nhi\n",
		},
		{
			name: "Approve header wins over body line", password: pw, valid: true, where: "Approve: header",
			msg:  "Approve: s3cret pass\n\nApproved: whatever\nhi\n",
			want: "\nApproved: whatever\nhi\n",
		},
		{
			name: "first body line", password: pw, valid: true, where: "the first line of the message text",
			msg:  "From: a@example.com\n\n\nApproved: s3cret pass\n\nThe real text.\n",
			want: "From: a@example.com\n\n\nThe real text.\n",
		},
		{
			name: "first body line, wrong password, removed anyway", password: pw, where: "the first line of the message text",
			msg:  "From: a@example.com\n\nApprove: guess\nThe real text.\n",
			want: "From: a@example.com\n\nThe real text.\n",
		},
		{
			name: "not on the first line", password: pw,
			msg: "From: a@example.com\n\nHello\nApproved: s3cret pass\n",
		},
		{
			name: "quoted-printable line", password: "a=b", valid: true, where: "the first line of the message text",
			msg:  "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nApproved: a=3Db\nText\n",
			want: "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nText\n",
		},
		{
			name: "base64 text is not searched", password: pw,
			msg: "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nQXBwcm92ZWQ6IHMzY3JldCBwYXNz\n",
		},
		{
			name: "multipart alternative, html copy removed too", password: pw, valid: true, where: "the first line of the message text",
			msg: "Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nApproved: s3cret pass\n\nHello\n" +
				"--b\nContent-Type: text/html\n\n<p>Approved: s3cret pass</p><p>Hello</p>\n--b--\n",
			want: "Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nHello\n" +
				"--b\nContent-Type: text/html\n\n<p></p><p>Hello</p>\n--b--\n",
		},
		{
			// The value is the poster's bytes: not UTF-8 here, which
			// once made building a pattern from it panic.
			name: "a wrong password that is not UTF-8", password: pw, where: "the first line of the message text",
			msg: "Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nApproved: \x87\xff\nHello\n" +
				"--b\nContent-Type: text/html\n\n<p>approved: \x87\xff</p>\n--b--\n",
			want: "Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nHello\n" +
				"--b\nContent-Type: text/html\n\n<p></p>\n--b--\n",
		},
		{
			name: "nested mixed", password: pw, valid: true, where: "the first line of the message text",
			msg: "Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: multipart/alternative; boundary=a\n\n" +
				"--a\nContent-Type: text/plain; charset=utf-8\n\nApproved: s3cret pass\nHi\n--a--\n--m\nContent-Type: image/png\n\nxx\n--m--\n",
			want: "Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: multipart/alternative; boundary=a\n\n" +
				"--a\nContent-Type: text/plain; charset=utf-8\n\nHi\n--a--\n--m\nContent-Type: image/png\n\nxx\n--m--\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte(crlf(tc.msg))
			hash := ""
			if tc.password != "" {
				var err error
				if hash, err = store.HashPassword(tc.password); err != nil {
					t.Fatal(err)
				}
			}
			a := checkApproval(msg, message.Parse(msg), hash)
			if a.Valid != tc.valid || a.Where != tc.where {
				t.Errorf("valid %v where %q, want %v %q", a.Valid, a.Where, tc.valid, tc.where)
			}
			switch {
			case tc.want == "" && a.Cleaned != nil:
				t.Errorf("message changed to %q", a.Cleaned)
			case tc.want != "" && string(a.Cleaned) != crlf(tc.want):
				t.Errorf("cleaned\n%q\nwant\n%q", a.Cleaned, crlf(tc.want))
			}
		})
	}
}

func TestPasswordEqual(t *testing.T) {
	hash, err := store.HashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		given, pw string
		want      bool
	}{
		{"secret", "secret", true},
		{" secret ", "secret", true},
		{"Secret", "secret", false},
		{"secre", "secret", false},
		{"", "secret", false},
		{"secret", "", false},
	} {
		stored := ""
		if tc.pw != "" {
			stored = hash
		}
		if got := passwordEqual(tc.given, stored); got != tc.want {
			t.Errorf("passwordEqual(%q, %q) = %v", tc.given, tc.pw, got)
		}
	}
}
