package store

import (
	"context"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// someGroup returns a group other than the process's, to see a chown.
func someGroup(t *testing.T) (string, int) {
	t.Helper()
	for _, name := range []string{"nogroup", "daemon", "users"} {
		g, err := user.LookupGroup(name)
		if err != nil {
			continue
		}
		gid, _ := strconv.Atoi(g.Gid)
		if gid != os.Getegid() {
			return name, gid
		}
	}
	t.Skip("no group other than the process's to test [database] group with")
	return "", 0
}

func checkFiles(t *testing.T, path string, want fs.FileMode, gid int) {
	t.Helper()
	seen := 0
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(name), err)
			continue
		}
		seen++
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(name), fi.Mode().Perm(), want)
		}
		if gid >= 0 && int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
			t.Errorf("%s: gid %d, want %d", filepath.Base(name), fi.Sys().(*syscall.Stat_t).Gid, gid)
		}
	}
	if seen != 3 {
		t.Errorf("%d of the database, -wal and -shm files exist while the store is open, want 3", seen)
	}
}

// TestDatabaseFileModes: a new database and its -wal and -shm are 0600
// (0660 and the group's with [database] group), and an existing database
// left world-readable by an older postlist is fixed at open.
func TestDatabaseFileModes(t *testing.T) {
	ctx := context.Background()
	group, gid := "", -1
	tests := []struct {
		name     string
		before   fs.FileMode // 0: a new database
		group    bool
		wantMode fs.FileMode
	}{
		{"new database", 0, false, 0o600},
		{"world-readable database fixed", 0o644, false, 0o600},
		{"new database with a group", 0, true, 0o660},
		{"existing database joins the group", 0o644, true, 0o660},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "var", "postlist.db")
			var o Options
			wantGID := -1
			if tc.group {
				if group == "" {
					group, gid = someGroup(t)
				}
				o.Group, wantGID = group, gid
			}
			if tc.before != 0 {
				s, err := Open(ctx, path)
				if err != nil {
					t.Fatal(err)
				}
				for _, name := range []string{path, path + "-wal", path + "-shm"} {
					if err := os.Chmod(name, tc.before); err != nil {
						t.Fatal(err)
					}
				}
				// Files left while a writer is open, as after a crash.
				defer s.Close()
			}
			s, err := OpenWith(ctx, path, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.CreateList(ctx, "test@lists.example.org"); err != nil {
				t.Fatal(err)
			}
			checkFiles(t, path, tc.wantMode, wantGID)
		})
	}
}

func TestOpenWithUnknownGroup(t *testing.T) {
	_, err := OpenWith(context.Background(), filepath.Join(t.TempDir(), "postlist.db"), Options{Group: "no-such-group-postlist"})
	if err == nil {
		t.Fatal("opened with a group that does not exist")
	}
	if want := `[database] group "no-such-group-postlist"`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
}
