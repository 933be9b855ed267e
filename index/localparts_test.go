package index_test

import (
	"strings"
	"testing"

	"postlist/address/addresstest"
)

// TestDecideSpellingsAgree: the whole RCPT decision (resolver, VERP and
// token checks, reply chosen) is the same for the quoted spelling the
// milter passes and the unquoted one the LMTP server and a policy
// service pass, for every row of the shared table.
func TestDecideSpellingsAgree(t *testing.T) {
	ix := load(t, newStore(t))
	for _, row := range addresstest.LocalParts {
		w, v := ix.Decide(row.Addr()), ix.Decide(row.ValueAddr())
		if w.Ours != v.Ours || w.Reason != v.Reason || w.Target != v.Target || (w.Reply == nil) != (v.Reply == nil) {
			t.Errorf("%s: Decide(%q) = %+v but Decide(%q) = %+v", row.Name, clip(row.Addr()), w, clip(row.ValueAddr()), v)
			continue
		}
		if w.Reply != nil {
			if w.Reply.Code != v.Reply.Code || w.Reply.Enhanced != v.Reply.Enhanced || why(w.Reply.Text) != why(v.Reply.Text) {
				t.Errorf("%s: replies differ: %v / %v", row.Name, w.Reply, v.Reply)
			}
			if w.Reason == "malformed" && (w.Reply.Code != 553 || w.Reply.Enhanced != [3]int{5, 1, 3}) {
				t.Errorf("%s: malformed address answered %v, want 553 5.1.3", row.Name, w.Reply)
			}
		}
		// The LMTP server's view: a refusal is permanent and never 250.
		_, wr := ix.Resolve(row.Addr())
		_, vr := ix.Resolve(row.ValueAddr())
		if (wr == nil) != (vr == nil) || wr != nil && wr.Code != vr.Code {
			t.Errorf("%s: Resolve answers %v / %v", row.Name, wr, vr)
		}
		if row.Domain == "" && row.RCPT == addresstest.Accept && (w.Reply != nil || !w.Ours) {
			t.Errorf("%s: Decide(%q) = %+v, want accepted", row.Name, clip(row.Addr()), w)
		}
	}
}

// why is a reply text without the address it echoes, which is given as
// spelled.
func why(text string) string {
	if i := strings.Index(text, ">: "); i >= 0 {
		return text[i+3:]
	}
	return text
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
