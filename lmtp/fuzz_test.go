package lmtp

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

var queueIDChars = regexp.MustCompile(`^[0-9A-Za-z]*$`)

// FuzzIntake feeds arbitrary DATA to the intake checks. Whatever arrives,
// intake must not panic, a refusal must be one printable ASCII line (it
// becomes SMTP reply text), and an accepted message keeps its bytes, with
// at most a Message-ID line in front.
func FuzzIntake(f *testing.F) {
	seeds := []string{
		message("<a@example.com>", "seed"),
		message("", "no id"),
		"From: a@b\n\nbare lf\n",
		"",
		"\r\n\r\nbody",
		" leading space: x\r\n",
		"No-Colon\r\n\r\n",
		"Received: by h (Postfix) id ABC\r\nFrom: x\r\n\r\n",
		"Message-ID:\r\n\tfolded@example.com\r\n\r\n",
		"X: " + strings.Repeat("y", 1200) + "\r\n\r\n",
		"\x00\xff\xfe:\x01\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		info, err := inspect(body)
		if err != nil {
			why := err.Error()
			if why == "" || len(why) > maxReason+3 || strings.ContainsFunc(why, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
				t.Fatalf("refusal reason %q is not one short printable line", why)
			}
			return
		}
		if !queueIDChars.MatchString(info.QueueID) {
			t.Fatalf("queue id %q", info.QueueID)
		}
		if info.MessageID != "" {
			return
		}
		out, id := withMessageID(body, "postlist.test")
		if !bytes.HasSuffix(out, body) || !bytes.HasPrefix(out, []byte("Message-ID: "+id)) {
			t.Fatalf("withMessageID changed the message: %q", out)
		}
		again, err := inspect(out)
		if err != nil || again.MessageID != id {
			t.Fatalf("after adding a Message-ID: %+v, %v; want id %s", again, err, id)
		}
	})
}
