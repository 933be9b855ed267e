package socketmap

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"postlist/metrics"
)

// FuzzRequest feeds arbitrary request payloads to the lookup: it must
// never panic, and every reply must be one Postfix understands, with the
// value each map promises.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"transport test@lists.example.org", "transport test-bounces+alice=example.com@alias.example.org",
		"recipients TEST-OWNER@lists.example.org", "domains lists.example.org", "domains .", "transport",
		"transport <test@lists.example.org>", "transport \"a b\"@lists.example.org", "virtual x", " ",
	} {
		f.Add([]byte(s))
	}
	ix := loaded(f, source())
	s := New(Options{Index: ix, Transport: testTransport})
	f.Fuzz(func(t *testing.T, req []byte) {
		reply := string(s.answer(zap.NewNop(), req))
		word, value, ok := strings.Cut(reply, " ")
		if !ok {
			t.Fatalf("reply %q has no space after the status word", reply)
		}
		name, _, _ := strings.Cut(string(req), " ")
		switch word {
		case metrics.ResultOK:
			switch name {
			case MapTransport:
				if value != testTransport {
					t.Fatalf("transport value %q", value)
				}
			case MapRecipients:
				if !ix.Snapshot().HasList(value) {
					t.Fatalf("recipients value %q is not a list", value)
				}
			case MapDomains:
				if _, found := ix.Snapshot().Domain(value); !found {
					t.Fatalf("domains value %q is not a list domain", value)
				}
			default:
				t.Fatalf("OK from map %q", name)
			}
		case metrics.ResultNotFound:
			if value != "" {
				t.Fatalf("NOTFOUND with text %q", value)
			}
		case metrics.ResultPerm:
			if name == MapTransport || name == MapRecipients || name == MapDomains {
				if strings.Contains(string(req), " ") {
					t.Fatalf("PERM %q for a well-formed request %q", value, req)
				}
			}
		default:
			t.Fatalf("reply %q: status word %q", reply, word)
		}
	})
}
