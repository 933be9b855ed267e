package lmtp

import (
	"context"
	"strings"
	"testing"

	"postlist/address/addresstest"
	"postlist/index"
)

// postfixQuote spells a local part value as Postfix's LMTP client writes
// it (quote_821_local): unchanged when it is a dot-string, otherwise the
// whole local part quoted with " and \ escaped.
func postfixQuote(v string) string {
	dotString := v != ""
	for atom := range strings.SplitSeq(v, ".") {
		if atom == "" || strings.ContainsFunc(atom, func(r rune) bool {
			return !(r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
				strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)))
		}) {
			dotString = false
		}
	}
	if dotString {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// TestLMTPAgreesWithMilterOnOddLocalParts: for every row of the shared
// table, the LMTP server, reached with the RCPT TO that Postfix writes,
// accepts exactly what the milter's decision (on the client's spelling)
// accepted. A recipient accepted at SMTP time and refused here is a bounce
// to the sender.
func TestLMTPAgreesWithMilterOnOddLocalParts(t *testing.T) {
	var h *harness
	var ix *index.Index
	h = startServer(t, func(o *Options) {
		var err error
		ix, err = index.Load(context.Background(), o.Store, "+", nil)
		if err != nil {
			t.Fatal(err)
		}
		o.Resolve = ix.Resolve
	})
	r := dialRaw(t, h.addr)
	r.greet()
	checked := 0
	for _, row := range addresstest.LocalParts {
		domain := strings.TrimSuffix(row.Domain, ".")
		if row.NoSMTP || domain != "" && domain != addresstest.Domain {
			continue
		}
		milter := ix.Decide(row.Addr())
		if rep := r.cmd("MAIL FROM:<%s>", addresstest.Victim); rep.Code != 250 {
			t.Fatal(rep)
		}
		wire := postfixQuote(row.Value) + "@" + addresstest.Domain
		rep := r.cmd("RCPT TO:<%s>", wire)
		if milter.Accepted() != (rep.Code == 250) {
			t.Errorf("%s: milter decision on %q is %+v, but LMTP RCPT TO:<%s> = %v", row.Name, row.Addr(), milter, wire, rep)
		}
		if rep.Code != 250 && rep.Code/100 != 5 {
			t.Errorf("%s: LMTP RCPT TO:<%s> = %v, want 250 or a permanent refusal", row.Name, wire, rep)
		}
		if rep := r.cmd("RSET"); rep.Code != 250 {
			t.Fatal(rep)
		}
		checked++
	}
	if checked < 30 {
		t.Errorf("only %d rows checked", checked)
	}
}
