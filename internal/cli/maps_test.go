package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// usePrivatePostmap points postmap_command at a private, backdated
// main.cf: the machine may have no Postfix configuration at all (postmap
// then refuses to run), and a fresh main.cf makes every postmap wait a
// second for it to settle.
func usePrivatePostmap(t *testing.T, e *env, postmap string) {
	t.Helper()
	etc := t.TempDir()
	mainCF := filepath.Join(etc, "main.cf")
	if err := os.WriteFile(mainCF, []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(mainCF, past, past); err != nil {
		t.Fatal(err)
	}
	// newEnv's config ends in the [postfix] table.
	f, err := os.OpenFile(e.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "postmap_command = %q\n", postmap+" -c "+etc); err != nil {
		t.Fatal(err)
	}
}

// TestMapsFailureKeepsChangeAndOldMaps: when postmap fails after a change,
// the command says the change is saved and which map failed, exits
// non-zero, and leaves the previous maps in place; genaliases then
// catches up.
func TestMapsFailureKeepsChangeAndOldMaps(t *testing.T) {
	e := newEnv(t)
	postmap, err := exec.LookPath("postmap")
	if err != nil {
		t.Fatal("postmap not found: install postfix")
	}
	good, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	usePrivatePostmap(t, e, postmap)
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
