package notice

import (
	"bytes"
	"io"
	"mime"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"

	"postlist/message"

	"postlist/store"
)

var now = time.Date(2026, 12, 8, 4, 0, 0, 0, time.UTC)

// fieldNames lists a rendered header's field names in order.
func fieldNames(b []byte) []string {
	var names []string
	for _, f := range message.Parse(b).Fields {
		names = append(names, f.Name)
	}
	return names
}

func TestMailBytes(t *testing.T) {
	post := []byte("From: bob@example.net\r\nSubject: hi\r\n\r\nthe body\r\n")
	big := append(append([]byte{}, post...), bytes.Repeat([]byte("x"), MaxAttached)...)
	base := Mail{From: "test-owner@lists.example.org", To: "Bob <bob@example.net>", Subject: "Hello", Kind: "held", Auto: "auto-generated", Text: "one\ntwo\n"}
	tests := []struct {
		name   string
		edit   func(m *Mail)
		fields []string
		// attached is the attachment's Content-Type ("" for none).
		attached string
		// whole says the attachment is the whole post.
		whole bool
		text  string
	}{
		{"plain", func(*Mail) {},
			[]string{"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Precedence", "X-Postlist-Notice", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"},
			"", false, "one\r\ntwo\r\n"},
		{"every optional field", func(m *Mail) {
			m.ReplyTo, m.InReplyTo, m.ListID, m.NoArchive = "test-confirm+abc@lists.example.org", "<a@b>", "test.lists.example.org", true
		},
			[]string{"From", "To", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "List-Id", "Auto-Submitted", "Precedence", "X-Postlist-Notice", "X-No-Archive", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"},
			"", false, "one\r\ntwo\r\n"},
		{"a Message-ID with a space is not answered", func(m *Mail) { m.InReplyTo = "<a b@c>" },
			[]string{"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Precedence", "X-Postlist-Notice", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"},
			"", false, "one\r\ntwo\r\n"},
		{"non-ASCII text", func(m *Mail) { m.Text = "café\r\n" },
			[]string{"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Precedence", "X-Postlist-Notice", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"},
			"", false, "café\r\n"},
		{"small attachment whole", func(m *Mail) { m.Attach = post },
			[]string{"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Precedence", "X-Postlist-Notice", "MIME-Version", "Content-Type"},
			"message/rfc822", true, "one\r\ntwo\r\n"},
		{"big attachment: header only", func(m *Mail) { m.Attach = big },
			[]string{"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Precedence", "X-Postlist-Notice", "MIME-Version", "Content-Type"},
			"text/rfc822-headers", false, "one\r\ntwo\r\n"},
		{"header only asked", func(m *Mail) { m.Attach, m.HeaderOnly = post, true },
			[]string{"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Precedence", "X-Postlist-Notice", "MIME-Version", "Content-Type"},
			"text/rfc822-headers", false, "one\r\ntwo\r\n"},
		{"empty attachment", func(m *Mail) { m.Attach = []byte{} },
			[]string{"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "Precedence", "X-Postlist-Notice", "MIME-Version", "Content-Type"},
			"message/rfc822", true, "one\r\ntwo\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base
			tc.edit(&m)
			b := m.Bytes("lists.example.org", now)
			if got := strings.Join(fieldNames(b), " "); got != strings.Join(tc.fields, " ") {
				t.Errorf("fields\n got %s\nwant %s", got, strings.Join(tc.fields, " "))
			}
			if bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n")) {
				t.Error("a bare LF in the rendered mail")
			}
			h := message.Parse(b)
			if h.Get("Date") != "Tue, 08 Dec 2026 04:00:00 +0000" || h.Get("Precedence") != "bulk" ||
				h.Get(Header) != "held" || h.Get("Auto-Submitted") != "auto-generated" ||
				!strings.HasSuffix(h.Get("Message-ID"), "@lists.example.org>") {
				t.Errorf("marks: %q", h.Header())
			}
			e, err := gomessage.Read(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			var parts []*gomessage.Entity
			if mr := e.MultipartReader(); mr != nil {
				for {
					p, err := mr.NextPart()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(p.Body)
					p.Body = bytes.NewReader(body)
					parts = append(parts, p)
				}
			} else {
				parts = []*gomessage.Entity{e}
			}
			if want := map[bool]int{true: 2, false: 1}[tc.attached != ""]; len(parts) != want {
				t.Fatalf("%d part(s), want %d", len(parts), want)
			}
			text, _ := io.ReadAll(parts[0].Body)
			if string(text) != tc.text {
				t.Errorf("text %q, want %q", text, tc.text)
			}
			if tc.attached == "" {
				return
			}
			mt, _, _ := mime.ParseMediaType(parts[1].Header.Get("Content-Type"))
			att, _ := io.ReadAll(parts[1].Body)
			if mt != tc.attached {
				t.Errorf("attachment %s, want %s", mt, tc.attached)
			}
			want := message.Parse(m.Attach).Header()
			if tc.whole {
				want = m.Attach
			}
			if !bytes.Equal(att, want) {
				t.Errorf("attachment %q, want %q", att, want)
			}
		})
	}
}

// TestMailUnique: every notice has its own Message-ID.
func TestMailUnique(t *testing.T) {
	m := Mail{From: "a@b", To: "c@d", Subject: "s", Kind: "k", Auto: "auto-generated", Text: "t"}
	a := message.Parse(m.Bytes("b", now)).Get("Message-ID")
	b := message.Parse(m.Bytes("b", now)).Get("Message-ID")
	if a == b || a == "" {
		t.Errorf("Message-IDs %q and %q", a, b)
	}
}

func TestNewAndAuto(t *testing.T) {
	m := Mail{From: "test-request@lists.example.org", To: "bob@example.net", Subject: "s", Kind: "results", Auto: "auto-replied", Text: "hello\n"}
	tests := []struct {
		name     string
		cap      int
		wantLast bool
	}{
		{"no cap", 0, false},
		{"cap 3", 3, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			n := Auto("test@lists.example.org", m, now, tc.cap, func(string, int) { calls++ }, "bob@example.net")
			if n.Sender != "test-bounces@lists.example.org" || len(n.Recipients) != 1 ||
				n.Recipients[0] != (store.NewDelivery{Recipient: "bob@example.net", EnvelopeFrom: "test-bounces@lists.example.org"}) {
				t.Errorf("envelope %q %+v", n.Sender, n.Recipients)
			}
			if n.DailyCap != tc.cap || (n.LastBody != nil) != tc.wantLast || (n.Limited != nil) != tc.wantLast {
				t.Errorf("cap %d, last body %v, limited %v", n.DailyCap, n.LastBody != nil, n.Limited != nil)
			}
			note := strings.ReplaceAll(LastAutoresponseNote, "\n", "\r\n")
			if bytes.Contains(n.Body, []byte(note)) {
				t.Error("the ordinary body carries the last-reply note")
			}
			if tc.wantLast && !bytes.Contains(n.LastBody, []byte("hello\r\n"+note)) {
				t.Errorf("the last body does not end with the note:\n%s", n.LastBody)
			}
		})
	}
	n := New("test@lists.example.org", m, now, "a@example.com", "b@example.com")
	if len(n.Recipients) != 2 || n.DailyCap != 0 || n.LastBody != nil {
		t.Errorf("New: %+v", n)
	}
}

func TestAdmins(t *testing.T) {
	tests := []struct {
		admins []string
		site   string
		want   string
	}{
		{[]string{"o@x"}, "site@x", "o@x"},
		{nil, "site@x", "site@x"},
		{nil, "", ""},
	}
	for _, tc := range tests {
		if got := strings.Join(Admins(tc.admins, tc.site), ","); got != tc.want {
			t.Errorf("Admins(%v, %q) = %q, want %q", tc.admins, tc.site, got, tc.want)
		}
	}
}

func TestAutomatic(t *testing.T) {
	tests := []struct {
		name, header, env string
		want              string // a part of the reason; "" means may answer
	}{
		{"person", "From: bob@example.net\r\n", "bob@example.net", ""},
		{"null sender", "From: bob@example.net\r\n", "", "null envelope sender"},
		{"our notice", Header + ": results\r\n", "bob@example.net", Header},
		{"auto-replied", "Auto-Submitted: auto-replied\r\n", "bob@example.net", "Auto-Submitted"},
		{"Auto-Submitted no", "Auto-Submitted: no\r\n", "bob@example.net", ""},
		{"bulk", "Precedence: Bulk\r\n", "bob@example.net", "Precedence: bulk"},
		{"list mail", "List-Unsubscribe: <mailto:x@y>\r\n", "bob@example.net", "List-Unsubscribe present"},
		{"vacation", "X-Autoreply: yes\r\n", "bob@example.net", "X-Autoreply"},
		{"suppress", "X-Auto-Response-Suppress: OOF, AutoReply\r\n", "bob@example.net", "X-Auto-Response-Suppress"},
		{"mailer-daemon", "", "MAILER-DAEMON@example.net", "robot"},
		{"verp bounces", "", "other-bounces+x=y@example.net", "robot"},
		{"owner-", "", "owner-list@example.net", "robot"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := message.Parse([]byte(tc.header + "Subject: x\r\n\r\nbody\r\n"))
			got := Automatic(m, tc.env)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("Automatic = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes
	tests := []struct{ in, want string }{
		{"short", "short"},
		{"two\r\nlines", "two lines"},
		{strings.Repeat("a", maxLineLen), strings.Repeat("a", maxLineLen)},
		{strings.Repeat("a", maxLineLen+1), strings.Repeat("a", maxLineLen) + "..."},
		{"a" + long, "a" + strings.Repeat("é", (maxLineLen-1)/2) + "..."},
	}
	for _, tc := range tests {
		if got := Clip(tc.in); got != tc.want {
			t.Errorf("Clip(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
