package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"postlist/config"
	"postlist/store"
)

// openStore opens the configured database for an admin verb. Run as root,
// the verb first becomes the database's owner (or, for a database still
// to be made, the owner of the directory it goes in), so that the files
// it creates or changes (the database, its -wal and -shm, the Postfix
// maps) stay the daemon's: a root-owned -wal would lock the daemon out
// of its own database. Dropping rather than refusing keeps `sudo
// postlist …` working as admins expect.
func (a *app) openStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	if err := a.repairRootOwned(cfg.Database.Path); err != nil {
		return nil, err
	}
	if err := dropToOwner(cfg.Database.Path); err != nil {
		return nil, err
	}
	return store.OpenWith(ctx, cfg.Database.Path, store.Options{Group: cfg.Database.Group})
}

// dropToOwner switches a root process to the user owning the database at
// path, or the nearest existing directory above it; it does nothing for
// other users or when root owns it. syscall.Setuid changes every thread
// of the process on Linux, so no goroutine keeps root.
func dropToOwner(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, of, err := ownerOf(path)
	if err != nil {
		return err
	}
	if uid == 0 {
		return nil
	}
	name := strconv.Itoa(uid)
	groups := []int{gid}
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
		if g, err := strconv.Atoi(u.Gid); err == nil {
			gid = g
		}
		groups = []int{gid}
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := strconv.Atoi(id); err == nil && g != gid {
					groups = append(groups, g)
				}
			}
		}
	}
	fail := func(step string, err error) error {
		return fmt.Errorf("%s is owned by %s; running as root, postlist works as that user but could not (%s: %w); run it as sudo -u %s postlist …", of, name, step, err, name)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fail("setgroups", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fail("setgid", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fail("setuid", err)
	}
	if os.Geteuid() != uid || os.Getuid() != uid {
		return fail("setuid", errors.New("still root"))
	}
	return nil
}

// ownerOf returns the owner of path or, while it does not exist, of the
// nearest directory above it, and which of them it looked at.
func ownerOf(path string) (uid, gid int, of string, err error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return 0, 0, "", fmt.Errorf("database %s: %w", path, err)
	}
	for {
		fi, err := os.Stat(p)
		if err == nil {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return 0, 0, p, nil
			}
			return int(st.Uid), int(st.Gid), p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return 0, 0, "", fmt.Errorf("database %s: %w", path, err)
		}
		up := filepath.Dir(p)
		if up == p {
			return 0, 0, p, nil
		}
		p = up
	}
}

// repairRootOwned gives back to the owner of the database's directory the
// database files a root CLI of an older postlist made there as root: the
// daemon, running as that owner, cannot write them and would fail to
// start until they are. Only root can do this, and only then.
func (a *app) repairRootOwned(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil // a new database: dropToOwner deals with it
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != 0 {
		return nil
	}
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return nil
	}
	dst, ok := dir.Sys().(*syscall.Stat_t)
	if !ok || dst.Uid == 0 {
		return nil
	}
	uid, gid := int(dst.Uid), int(dst.Gid)
	name := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
		if g, err := strconv.Atoi(u.Gid); err == nil {
			gid = g
		}
	}
	for _, f := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Chown(f, uid, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("database %s belongs to root, in a directory of %s: giving it to %s: %w", path, name, name, err)
		}
	}
	fmt.Fprintf(a.stderr, "postlist: %s belonged to root; it now belongs to %s, the owner of its directory, as the daemon needs\n", path, name)
	return nil
}
