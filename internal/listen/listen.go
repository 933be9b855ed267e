// Package listen opens the sockets postlist serves on, in Postfix's
// inet:/unix: forms. A unix socket left behind by a crash would make the
// next start fail, and a socket Postfix cannot open is an outage, so stale
// sockets are removed and mode and group are set here, once, for every
// server.
package listen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"postlist/config"
)

// Listener wraps a net.Listener and removes its unix socket on Close.
type Listener struct {
	net.Listener
	path string
}

// Close closes the listener and removes the socket file it created.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	if l.path != "" {
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	return err
}

// Open listens on addr. For a unix socket, a stale socket file is removed
// first (but never a regular file: that would be someone else's data), and
// mode and group (optional) are applied.
func Open(addr config.Listen, mode os.FileMode, group string) (*Listener, error) {
	if addr.Network != "unix" {
		ln, err := net.Listen("tcp", addr.Address)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return &Listener{Listener: ln}, nil
	}
	path := addr.Address
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: %s exists and is not a socket", addr, path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is serving on %s", addr, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: remove stale socket: %w", addr, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	l := &Listener{Listener: ln, path: path}
	// Go removes the socket on Close by default; we do it ourselves so
	// the behaviour does not depend on that detail.
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	if mode != 0 {
		if err := os.Chmod(path, mode); err != nil {
			l.Close()
			return nil, fmt.Errorf("listen %s: chmod: %w", addr, err)
		}
	}
	if group != "" {
		gid, err := lookupGroup(group)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		if err := os.Chown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("listen %s: chgrp %s: %w", addr, group, err)
		}
	}
	return l, nil
}

func lookupGroup(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group %s: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// IsAddrInUse reports whether err is "address already in use", so callers
// can give the admin a hint rather than a raw syscall error.
func IsAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
