package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postlist/internal/testenv"
)

// usePrivatePostmap points postmap_command at postmap with a private,
// backdated main.cf (testenv.PostmapCommand).
func usePrivatePostmap(t *testing.T, e *env) {
	t.Helper()
	// newEnv's config ends in the [postfix] table.
	f, err := os.OpenFile(e.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "postmap_command = %q\n", testenv.PostmapCommand(t)); err != nil {
		t.Fatal(err)
	}
}

// TestMapsFailureKeepsChangeAndOldMaps: when postmap fails after a change,
// the command says the change is saved and which map failed, exits
// non-zero, and leaves the previous maps in place; genaliases then
// catches up.
func TestMapsFailureKeepsChangeAndOldMaps(t *testing.T) {
	e := newEnv(t)
	good, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	usePrivatePostmap(t, e)
	e.mustRun("lists", "create", "first@lists.example.org")
	e.mustRun("genaliases")
	working, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(e.cfg, append(good, "postmap_command = \"false\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	lmtpMap := filepath.Join(e.dir, "data", "postfix_lmtp")
	before, err := os.ReadFile(lmtpMap)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := e.run("", "lists", "create", "second@lists.example.org")
	want := "the change is saved, but the Postfix maps were not regenerated: postmap failed for " + lmtpMap
	if code == 0 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "run postlist genaliases") {
		t.Errorf("exit %d, stderr %q; want non-zero and %q", code, stderr, want)
	}
	if after, err := os.ReadFile(lmtpMap); err != nil || !bytes.Equal(after, before) {
		t.Errorf("postfix_lmtp changed by a failed regeneration (err %v)", err)
	}
	if out := e.mustRun("lists", "ls"); !strings.Contains(out, "second@lists.example.org") {
		t.Errorf("the list was not saved:\n%s", out)
	}

	if err := os.WriteFile(e.cfg, working, 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustRun("genaliases")
	if b, err := os.ReadFile(lmtpMap); err != nil || !bytes.Contains(b, []byte("second-bounces@lists.example.org")) {
		t.Errorf("genaliases did not catch up (err %v):\n%s", err, b)
	}
}
