package bounce_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"postlist/bounce"
	"postlist/store"
)

// TestParseDSNSamples reads realistic bounces, in LF and CRLF form.
func TestParseDSNSamples(t *testing.T) {
	const (
		perm   = store.BouncePermanent
		temp   = store.BounceTemporary
		policy = store.BouncePolicy
	)
	cases := []struct {
		file string
		want []bounce.Failure // Diagnostic is checked for being non-empty only
	}{
		{"postfix-5.1.1.eml", []bounce.Failure{{Address: "alice@example.com", Status: "5.1.1", Action: "failed", Kind: perm}}},
		{"gmail-dmarc-5.7.26.eml", []bounce.Failure{{Address: "carol@gmail.com", Status: "5.7.26", Action: "failed", Kind: policy}}},
		{"postfix-delayed-4.4.1.eml", []bounce.Failure{{Address: "dave@example.org", Status: "4.4.1", Action: "delayed", Kind: temp}}},
		{"exim-failed.eml", []bounce.Failure{{Address: "dave@example.org", Status: "5.1.1", Action: "failed", Kind: perm}}},
		{"exim-delayed.eml", []bounce.Failure{{Address: "erin@example.org", Status: "", Action: "delayed", Kind: temp}}},
		{"qmail.eml", []bounce.Failure{{Address: "frank@example.net", Status: "5.2.1", Action: "failed", Kind: perm}}},
		{"mixed-report.eml", []bounce.Failure{
			{Address: "hank@example.com", Status: "5.7.1", Action: "failed", Kind: policy},
			{Address: "Ivy@example.com", Status: "5.2.2", Action: "failed", Kind: perm},
		}},
		{"vacation.eml", nil},
	}
	for _, c := range cases {
		raw, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatal(err)
		}
		for _, form := range []struct {
			name string
			msg  []byte
		}{{"lf", raw}, {"crlf", bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))}} {
			t.Run(c.file+"/"+form.name, func(t *testing.T) {
				got, err := bounce.ParseDSN(form.msg)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(c.want) {
					t.Fatalf("got %d failures %+v, want %+v", len(got), got, c.want)
				}
				for i, w := range c.want {
					g := got[i]
					if g.Address != w.Address || g.Status != w.Status || g.Action != w.Action || g.Kind != w.Kind {
						t.Errorf("failure %d = %+v, want %+v", i, g, w)
					}
					if g.Diagnostic == "" || bytes.ContainsAny([]byte(g.Diagnostic), "\r\n") {
						t.Errorf("failure %d diagnostic %q: want one non-empty line", i, g.Diagnostic)
					}
				}
			})
		}
	}
}

func TestParseDSNClassification(t *testing.T) {
	dsn := func(action, status, diag string) []byte {
		return []byte("From: MAILER-DAEMON@example.com\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\nreport\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n" +
			"Final-Recipient: rfc822; m@example.com\r\nAction: " + action + "\r\nStatus: " + status + "\r\nDiagnostic-Code: smtp; " + diag + "\r\n--b--\r\n")
	}
	cases := []struct {
		action, status, diag, want string
	}{
		{"failed", "5.1.1", "550 5.1.1 user unknown", store.BouncePermanent},
		{"failed", "5.0.0", "550 mailbox unavailable", store.BouncePermanent},
		{"failed", "5.7.1", "550 5.7.1 relaying denied", store.BouncePolicy},
		{"failed", "5.0.0", "554 rejected: message looks like SPAM", store.BouncePolicy},
		{"failed", "5.7.26", "550 5.7.26 DMARC", store.BouncePolicy},
		{"failed", "5.0.0", "550 sender IP listed in Spamhaus", store.BouncePolicy},
		{"failed", "4.4.1", "connect: timed out (gave up after 5 days)", store.BouncePermanent},
		{"delayed", "4.2.2", "452 4.2.2 mailbox full", store.BounceTemporary},
		{"Failed (permanent)", "5.1.2", "bad host", store.BouncePermanent},
	}
	for _, c := range cases {
		fs, err := bounce.ParseDSN(dsn(c.action, c.status, c.diag))
		if err != nil || len(fs) != 1 {
			t.Fatalf("%v: %+v, %v", c, fs, err)
		}
		if fs[0].Kind != c.want {
			t.Errorf("%s %s %q: kind %s, want %s", c.action, c.status, c.diag, fs[0].Kind, c.want)
		}
	}
	for _, action := range []string{"delivered", "relayed", "expanded"} {
		if fs, _ := bounce.ParseDSN(dsn(action, "2.0.0", "250 ok")); len(fs) != 0 {
			t.Errorf("action %s reported as a failure: %+v", action, fs)
		}
	}
}

func TestParseDSNUnreadable(t *testing.T) {
	for _, msg := range []string{"", "no header at all", "\x00\x01\x02"} {
		fs, err := bounce.ParseDSN([]byte(msg))
		if len(fs) != 0 {
			t.Errorf("%q: failures %+v", msg, fs)
		}
		_ = err // either "unreadable" or "no bounce": both leave it unrecognised
	}
}
