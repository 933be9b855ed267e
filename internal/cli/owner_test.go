package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"postlist/internal/testenv"
)

// TestRootCLIWorksAsDatabaseOwner: the CLI run as root on a database
// owned by another user (or, for a new one, in that user's directory)
// works as that user: the database and the Postfix maps it writes are
// theirs, so the daemon running as them can still write them. In a
// root-owned directory it stays root. The real binary runs, since the
// switch cannot be undone in the test process.
func TestRootCLIWorksAsDatabaseOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: checks that postlist run as root works as the database's owner")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody to own the database: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	bin := testenv.Binary(t)

	tests := []struct {
		name      string
		owner     int
		rootFiles bool // the database was made by root before
		wantUID   int
	}{
		{"directory of another user", uid, false, uid},
		{"root's database in another user's directory", uid, true, uid},
		{"root's directory", 0, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			// t.TempDir's parent is root's alone; the owner must get in.
			if err := os.Chmod(filepath.Dir(base), 0o711); err != nil {
				t.Fatal(err)
			}
			home := filepath.Join(base, "home")
			if err := os.Mkdir(home, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(home, tc.owner, -1); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(home, "var", "postlist.db")
			maps := filepath.Join(home, "data")
			cfg := filepath.Join(base, "postlist.toml")
			text := fmt.Sprintf("[database]\npath = %q\n[postfix]\nmap_dir = %q\ntransport_file_type = \"regex\"\n", db, maps)
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			run := func(args ...string) {
				t.Helper()
				out, err := exec.Command(bin, append([]string{"-c", cfg}, args...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("postlist %v: %v\n%s", args, err, out)
				}
			}
			if tc.rootFiles {
				// As a root CLI of an older postlist left it.
				if err := os.MkdirAll(filepath.Dir(db), 0o750); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(filepath.Dir(db), tc.owner, -1); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(db, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// A new database, then the existing one again.
			run("lists", "create", "test@lists.example.org")
			run("genaliases")
			run("lists", "set", "test@lists.example.org", "subject_prefix", "[t]")

			owned := func(path string, mode fs.FileMode) {
				t.Helper()
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := int(fi.Sys().(*syscall.Stat_t).Uid); got != tc.wantUID {
					t.Errorf("%s is owned by uid %d, want %d", path, got, tc.wantUID)
				}
				if mode != 0 && fi.Mode().Perm() != mode {
					t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
				}
			}
			owned(filepath.Dir(db), 0)
			owned(db, 0o600)
			owned(maps, 0)
			entries, err := os.ReadDir(maps)
			if err != nil || len(entries) == 0 {
				t.Fatalf("no maps written: %v", err)
			}
			for _, e := range entries {
				// Postfix reads the maps as another user.
				owned(filepath.Join(maps, e.Name()), 0o644)
			}
		})
	}
}

// TestUnwritableDatabaseNamesOwner: a user who may not write the
// database (one root made in root's directory) is told whose it is and
// how to run postlist instead, not SQLite's "unable to open database
// file".
func TestUnwritableDatabaseNamesOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a database root's and runs postlist as nobody on it")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// The shared build is in a directory only root may enter.
	b, err := os.ReadFile(testenv.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "postlist")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(base, "var", "postlist.db")
	cfg := filepath.Join(base, "postlist.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[database]\npath = %q\n", db)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", cfg, "lists", "create", "test@lists.example.org").CombinedOutput(); err != nil {
		t.Fatalf("create as root: %v\n%s", err, out)
	}
	if err := os.Chmod(filepath.Dir(db), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cfg, "lists", "ls")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitFailure {
		t.Fatalf("postlist lists ls as nobody: %v, want exit %d\n%s", err, ExitFailure, out)
	}
	for _, want := range []string{db + " belongs to root (mode -rw-------)", "running as " + nobody.Username, "sudo -u root postlist"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("message lacks %q:\n%s", want, out)
		}
	}
}
