package listen

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"postlist/config"
)

func TestUnixSocketLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "milter.sock")
	// A stale socket from a crashed run: bound then abandoned.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	l, err := Open(config.Listen{Network: "unix", Address: path}, 0o660, "")
	if err != nil {
		t.Fatalf("Open over stale socket: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("mode = %v, want 0660", fi.Mode().Perm())
	}
	// A second server on the same live socket is refused, not stolen.
	if _, err := Open(config.Listen{Network: "unix", Address: path}, 0o660, ""); err == nil {
		t.Error("second Open on a live socket succeeded")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket not removed on close: %v", err)
	}
}

func TestRegularFileNotRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(config.Listen{Network: "unix", Address: path}, 0, ""); err == nil {
		t.Fatal("Open replaced a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("regular file damaged")
	}
}

func TestTCP(t *testing.T) {
	l, err := Open(config.Listen{Network: "tcp", Address: "127.0.0.1:0"}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
