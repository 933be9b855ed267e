package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPostmapCommand runs the command as postlist would: it must build a
// map from the private main.cf, which is old enough that postmap does not
// wait for it to settle.
func TestPostmapCommand(t *testing.T) {
	cmd := strings.Fields(PostmapCommand(t))
	if len(cmd) != 3 || cmd[1] != "-c" {
		t.Fatalf("PostmapCommand = %q, want \"postmap -c DIR\"", cmd)
	}
	fi, err := os.Stat(filepath.Join(cmd[2], "main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(fi.ModTime()); age < 30*time.Second {
		t.Errorf("main.cf is %v old; postmap would wait for it to settle", age)
	}
	src := filepath.Join(t.TempDir(), "m")
	if err := os.WriteFile(src, []byte("key value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cmd[0], cmd[1], cmd[2], "hash:"+src).CombinedOutput(); err != nil {
		t.Fatalf("postmap: %v: %s", err, out)
	}
	out, err := exec.Command(cmd[0], cmd[1], cmd[2], "-q", "key", "hash:"+src).Output()
	if err != nil || strings.TrimSpace(string(out)) != "value" {
		t.Errorf("postmap -q key = %q (%v), want value", out, err)
	}
}
