package address

import (
	"errors"
	"testing"

	"postlist/address/addresstest"
)

// sentinel names the one sentinel err wraps, "" for nil.
func sentinel(err error) string {
	for _, e := range []error{ErrMalformed, ErrNotOurs, ErrNoSuchList} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err != nil {
		return "unknown: " + err.Error()
	}
	return ""
}

// TestLocalPartSpellingsAgree resolves every row of the shared table in
// both spellings: quoted as the milter sees it, unquoted as the LMTP
// server and a policy service see it. The answers, and for a refusal the
// reason given, must be the same.
func TestLocalPartSpellingsAgree(t *testing.T) {
	dir := newTestDir()
	r := Resolver{}
	for _, row := range addresstest.LocalParts {
		wt, werr := r.Resolve(row.Addr(), dir)
		vt, verr := r.Resolve(row.ValueAddr(), dir)
		if wt != vt || sentinel(werr) != sentinel(verr) {
			t.Errorf("%s: %q resolves to %+v, %v but %q to %+v, %v", row.Name, clip(row.Addr()), wt, werr, clip(row.ValueAddr()), vt, verr)
			continue
		}
		var ws, vs *SyntaxError
		if errors.As(werr, &ws) != errors.As(verr, &vs) || ws != nil && ws.Reason != vs.Reason {
			t.Errorf("%s: refused for different reasons: %v / %v", row.Name, werr, verr)
		}
		if got := werr == nil; got != row.Resolves {
			t.Errorf("%s: Resolve(%q) = %+v, %v; want resolved %v", row.Name, clip(row.Addr()), wt, werr, row.Resolves)
		}
		if row.Resolves && wt.List != addresstest.List {
			t.Errorf("%s: resolves to %+v, want list %s", row.Name, wt, addresstest.List)
		}
		if row.RCPT == addresstest.Refuse && !row.Resolves && row.Domain != "[127.0.0.1]" && werr == nil {
			t.Errorf("%s: accepted, want refused", row.Name)
		}
	}
}
