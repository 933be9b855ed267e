package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// The database holds every member's address, the unsubscribe and VERP
// keys and the moderator password hashes: it is nobody else's to read.
// Modes are set with chmod rather than through the umask, which is the
// whole process's and would also change the Postfix map files, which
// Postfix (another user) must read.

// filePerm is the mode and group the database files get.
type filePerm struct {
	mode fs.FileMode
	gid  int // -1: leave the group alone
}

func (o Options) files() (filePerm, error) {
	if o.Group == "" {
		return filePerm{mode: 0o600, gid: -1}, nil
	}
	g, err := user.LookupGroup(o.Group)
	if err != nil {
		return filePerm{}, fmt.Errorf("[database] group %q: %w", o.Group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return filePerm{}, fmt.Errorf("[database] group %q: gid %q: %w", o.Group, g.Gid, err)
	}
	return filePerm{mode: 0o660, gid: gid}, nil
}

// create makes an empty database file (SQLite takes an empty file for an
// empty database) with the mode, before SQLite would create it with
// 0644, so that it is never readable by others, not even for a moment.
func (p filePerm) create(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, p.mode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	defer f.Close()
	if err := f.Chmod(p.mode); err != nil { // past the umask
		return fmt.Errorf("create database file: %w", err)
	}
	if p.gid >= 0 {
		if err := f.Chown(-1, p.gid); err != nil {
			return fmt.Errorf("create database file: group: %w", err)
		}
	}
	return nil
}

// fix brings the database files that exist to the mode and group. A file
// this user does not own cannot be changed (a group member running the
// CLI); that is left to the owner's next open rather than refused.
func (p filePerm) fix(path string) error {
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("database file mode: %w", err)
		}
		if fi.Mode().Perm() != p.mode {
			if err := os.Chmod(name, p.mode); err != nil && !errors.Is(err, fs.ErrPermission) {
				return fmt.Errorf("database file mode: %w", err)
			}
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && p.gid >= 0 && int(st.Gid) != p.gid {
			if err := os.Chown(name, -1, p.gid); err != nil && !errors.Is(err, fs.ErrPermission) {
				return fmt.Errorf("database file group: %w", err)
			}
		}
	}
	return nil
}

// checkWritable names the owner of a database file this process may not
// write, rather than letting SQLite fail later with "unable to open
// database file" or "attempt to write a readonly database". Only a
// permission refusal counts: a read-only mount or an immutable file is
// a fault the store rides out (see reopenWriter).
func checkWritable(path string) error {
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if err == nil {
			f.Close()
			continue
		}
		if !errors.Is(err, syscall.EACCES) {
			continue
		}
		owner, mode := "someone else", ""
		if fi, serr := os.Stat(name); serr == nil {
			mode = fmt.Sprintf(" (mode %v)", fi.Mode().Perm())
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				owner = userName(int(st.Uid))
			}
		}
		return fmt.Errorf("%s belongs to %s%s and this process, running as %s, may not write it: "+
			"run postlist as %s (sudo -u %s postlist …); a database root made in the daemon's directory "+
			"goes back to the directory's owner with `sudo postlist check`: %w",
			name, owner, mode, userName(os.Geteuid()), owner, owner, fs.ErrPermission)
	}
	return nil
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}
