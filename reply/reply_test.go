package reply

import (
	"strings"
	"testing"
)

func TestReplies(t *testing.T) {
	cases := []struct {
		r    Reply
		want string
	}{
		{NoSuchList("nope@lists.example.org"), "550 5.1.1 <nope@lists.example.org>: no such list address here"},
		{TooBig(1024), "552 5.3.4 message too big for this list (limit 1024 bytes)"},
		{TempFail(), "451 4.3.0 temporary local problem, please try again later"},
		{Malformed("a@", "empty domain"), "553 5.1.3 <a@>: malformed address: empty domain"},
		{NonMemberRejected("test@l.org", "eve@x.org"), "550 5.7.1 <eve@x.org>: only members may post to test@l.org"},
		{QueuedAs(42), "250 2.0.0 queued as 42"},
	}
	for _, c := range cases {
		if got := c.r.String(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

func TestReplyTextCannotInjectLines(t *testing.T) {
	r := NoSuchList("x\r\n250 ok@lists.example.org")
	if strings.ContainsAny(r.String(), "\r\n") {
		t.Fatalf("reply contains a line break: %q", r.String())
	}
}

// TestReplyTextInvalidUTF8 keeps a clipped address with bytes that are not
// UTF-8 as long as it was, so the reply still fits on one line.
func TestReplyTextInvalidUTF8(t *testing.T) {
	addr := "a" + strings.Repeat("\xd5", 300) + "@example.com"
	r := NonMemberRejected("test@lists.example.org", addr)
	if want := len(addr) + len("<>: only members may post to test@lists.example.org"); len(r.Text) != want {
		t.Fatalf("reply text is %d bytes, want %d: %q", len(r.Text), want, r.Text)
	}
}

func TestClasses(t *testing.T) {
	if !TempFail().Temporary() || TempFail().Permanent() {
		t.Error("TempFail must be temporary")
	}
	if !NoSuchList("x").Permanent() {
		t.Error("NoSuchList must be permanent")
	}
	e := TempFail().SMTPError()
	if e.Code != 451 || e.EnhancedCode != [3]int{4, 3, 0} || !e.Temporary() {
		t.Errorf("SMTPError = %+v", e)
	}
}
