package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestHeaderMatchVerbs(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", "test@lists.example.org")
	out := e.mustRun("lists", "header-match", "add", "test@lists.example.org", "X-Spam-Flag", "^yes$")
	if !strings.Contains(out, "added header check 1") || !strings.Contains(out, "-> hold") {
		t.Errorf("add said %q", out)
	}
	e.mustRun("lists", "header-match", "add", "test@lists.example.org", "subject", "pills", "--action", "discard")
	var hms []struct {
		ID     int64  `json:"id"`
		Header string `json:"header"`
		Action string `json:"action"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("--json", "lists", "header-match", "ls", "test@lists.example.org")), &hms); err != nil {
		t.Fatal(err)
	}
	if len(hms) != 2 || hms[0].Header != "x-spam-flag" || hms[1].Action != "discard" {
		t.Fatalf("ls = %+v", hms)
	}
	e.mustRun("lists", "header-match", "rm", "test@lists.example.org", "1")
	if out := e.mustRun("lists", "header-match", "ls", "test@lists.example.org"); strings.Contains(out, "x-spam-flag") || !strings.Contains(out, "pills") {
		t.Errorf("after rm: %q", out)
	}
	for _, bad := range [][]string{
		{"lists", "header-match", "add", "test@lists.example.org", "subject", "("},
		{"lists", "header-match", "add", "test@lists.example.org", "subject", "x", "--action", "defer"},
		{"lists", "header-match", "rm", "test@lists.example.org", "1"},
		{"lists", "header-match", "rm", "test@lists.example.org", "x"},
		{"lists", "header-match", "ls", "nope@lists.example.org"},
	} {
		if code, out, _ := e.run("", bad...); code == 0 {
			t.Errorf("%v succeeded: %q", bad, out)
		}
	}
}
