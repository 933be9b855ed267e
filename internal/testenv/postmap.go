package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// PostmapPath returns the path of Postfix's postmap, which lives in an
// sbin directory that is not on every PATH. The test fails without it.
func PostmapPath(t testing.TB) string {
	t.Helper()
	tt, err := lookupTools()
	if err != nil {
		t.Fatalf("postmap not found: install postfix (make test installs it when run as root): %v", err)
	}
	return tt.postmap
}

// PostmapConfigDir returns a private Postfix configuration directory for
// postmap -c: the machine may have no Postfix configuration at all
// (postmap then refuses to run), and its own must not leak into a test.
// main.cf is backdated because every Postfix program waits for a freshly
// written main.cf to settle, about a second per postmap.
func PostmapConfigDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	mainCF := filepath.Join(dir, "main.cf")
	if err := os.WriteFile(mainCF, []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := backdate(mainCF); err != nil {
		t.Fatal(err)
	}
	return dir
}

// PostmapCommand returns "postmap -c DIR" with DIR from PostmapConfigDir,
// a value for postlist's [postfix] postmap_command.
func PostmapCommand(t testing.TB) string {
	t.Helper()
	return PostmapPath(t) + " -c " + PostmapConfigDir(t)
}
