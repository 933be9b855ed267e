package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMembersAddRefusesUndeliverable: members add refuses what delivery
// would refuse, with the reason on one line, and exits 1; the good
// addresses given with it are still added, and a bulk file names the
// line.
func TestMembersAddRefusesUndeliverable(t *testing.T) {
	const list = "test@lists.example.org"
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantErr  []string // each must appear in stderr
		wantOut  string
		wantList []string // members afterwards
	}{
		{
			name:    "quoted local part with >",
			args:    []string{`"a>b"@example.com`},
			wantErr: []string{`argument:1: address "\"a>b\"@example.com": a local part that needs quotes`, "1 bad line(s) in argument not added"},
			wantOut: "added 0 member(s)",
		},
		{
			name:     "quoted local part among good ones",
			args:     []string{"alice@example.com", `"john smith"@example.com`, "Bob <bob@example.com>"},
			wantErr:  []string{"argument:2:", "needs quotes"},
			wantOut:  "added 2 member(s)",
			wantList: []string{"alice@example.com", "bob@example.com"},
		},
		{
			name:     "bulk file",
			stdin:    "alice@example.com\n\"Carol\" <\"c<d\"@example.com>\n# comment\nuser@[192.0.2.1]\ndave@example.org\n",
			args:     []string{"--file", "-"},
			wantErr:  []string{"stdin:2:", "needs quotes", "stdin:4:", "literal", "2 bad line(s) in stdin not added"},
			wantOut:  "added 2 member(s)",
			wantList: []string{"alice@example.com", "dave@example.org"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustRun("lists", "create", list)
			code, out, errs := e.run(tc.stdin, append([]string{"members", "add", list}, tc.args...)...)
			if code != ExitFailure {
				t.Errorf("exit %d, want %d", code, ExitFailure)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout %q, want %q", out, tc.wantOut)
			}
			var ms []struct {
				Address string `json:"address"`
			}
			if err := json.Unmarshal([]byte(e.mustRun("--json", "members", "ls", list)), &ms); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.Address)
			}
			if strings.Join(got, ",") != strings.Join(tc.wantList, ",") {
				t.Errorf("members %v, want %v", got, tc.wantList)
			}
		})
	}
}
