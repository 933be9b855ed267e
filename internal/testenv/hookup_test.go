package testenv

import (
	"strings"
	"testing"
)

func TestParseMainCF(t *testing.T) {
	tests := []struct {
		name, in string
		want     []mainParam
		err      string
	}{
		{name: "settings, comments, continuations",
			in:   "# c\na = 1\n\nb =\n    x,\n\ty { z }\n  # indented comment\nc=3\n",
			want: []mainParam{{"a", "1"}, {"b", "x, y { z }"}, {"c", "3"}}},
		{name: "empty", in: "", want: nil},
		{name: "continuation first", in: "  x = 1\n", err: "line 1: continuation line before any setting"},
		{name: "no equals", in: "a = 1\nnonsense\n", err: "line 2: want name = value"},
		{name: "space in name", in: "a b = 1\n", err: "line 1: want name = value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMainCF(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("setting %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestHookupAdaptsContrib: the contrib snippets are read from the
// repository and only the documented ports and paths change.
func TestHookupAdaptsContrib(t *testing.T) {
	f, err := Hookup("/tmp/maps", "127.0.0.1:1111", "127.0.0.1:2222")
	if err != nil {
		t.Fatal(err)
	}
	params, err := parseMainCF(f.MainCF)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, p := range params {
		byName[p.Name] = p.Value
	}
	for name, want := range map[string]string{
		"relay_recipient_maps":         "hash:/tmp/maps/postfix_lmtp",
		"smtpd_recipient_restrictions": "check_recipient_access hash:/tmp/maps/postfix_policy",
		"smtpd_restriction_classes":    "postlist_rcpt",
	} {
		if byName[name] != want {
			t.Errorf("%s = %q, want %q", name, byName[name], want)
		}
	}
	if !strings.Contains(byName["postlist_rcpt"], "check_policy_service { inet:127.0.0.1:1111,") {
		t.Errorf("postlist_rcpt = %q: policy address not adapted", byName["postlist_rcpt"])
	}
	if _, ok := byName["smtpd_milters"]; ok {
		t.Error("the contrib main.cf sets smtpd_milters: postlist must not be a milter by default")
	}
	if !strings.HasPrefix(f.MasterCF[strings.Index(f.MasterCF, "127.0.0.1:"):], "127.0.0.1:2222 inet") ||
		strings.Contains(f.MasterCF, "smtpd_milters=") || !strings.Contains(f.MasterCF, "-o content_filter=") {
		t.Errorf("master.cf not as documented:\n%s", f.MasterCF)
	}
}
