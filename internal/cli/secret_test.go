package cli

import (
	"context"
	"strings"
	"testing"

	"postlist/store"
)

// TestSetPasswordFromStdin: `lists set L moderator_password -` takes the
// password from standard input (line ending dropped), stores only a hash
// that the password matches, and show prints neither.
func TestSetPasswordFromStdin(t *testing.T) {
	tests := []struct {
		name, stdin, want string
		code              int
	}{
		{"newline stripped", "from stdin\n", "from stdin", ExitOK},
		{"CRLF stripped", "crlf pw\r\n", "crlf pw", ExitOK},
		{"no newline", "bare", "bare", ExitOK},
		{"only the first line", "first\nsecond\n", "first", ExitOK},
		{"empty stdin is a usage error", "", "", ExitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustRun("lists", "create", "test@lists.example.org")
			code, _, errs := e.run(tc.stdin, "lists", "set", "test@lists.example.org", "moderator_password", "-")
			if code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.code, errs)
			}
			show := e.mustRun("lists", "show", "test@lists.example.org")
			st, err := store.Open(context.Background(), e.db)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			l, err := st.GetList(context.Background(), "test@lists.example.org")
			if err != nil {
				t.Fatal(err)
			}
			stored := l.Setting("moderator_password")
			if tc.code != ExitOK {
				if stored != "" || !strings.Contains(show, "(not set)") {
					t.Errorf("after a refused set: stored %q, show:\n%s", stored, show)
				}
				return
			}
			if ok, err := store.CheckPassword(stored, tc.want); !ok || err != nil {
				t.Errorf("stored %q does not match %q: %v", stored, tc.want, err)
			}
			if ok, _ := store.CheckPassword(stored, "-"); ok {
				t.Error("the dash itself became the password")
			}
			if strings.Contains(show, tc.want) || strings.Contains(show, stored) || !strings.Contains(show, "set") {
				t.Errorf("show prints the password or its hash:\n%s", show)
			}
			js := e.mustRun("--json", "lists", "show", "test@lists.example.org")
			if strings.Contains(js, stored) || strings.Contains(js, tc.want) {
				t.Errorf("--json show prints the password or its hash:\n%s", js)
			}
		})
	}
}
