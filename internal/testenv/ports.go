package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Ports handed out by FreePort are never handed out twice by the same test
// process, so two parallel Postfix instances cannot be given the same port
// even if the first one has not bound it yet. Across processes (go test
// runs packages in parallel) each port is also reserved with a lock file
// held until the process exits, since another package's test could
// otherwise probe the same port free in the moment before ours binds it.
var (
	portsMu     sync.Mutex
	portsIssued = map[int]bool{}
	portLocks   []*os.File // kept open: closing would release the lock
)

// reserve takes the cross-process lock for port, or reports that another
// test process holds it.
func reserve(port int) bool {
	dir := filepath.Join(os.TempDir(), "postlist-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true // no lock directory: fall back to the in-process rule
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	portLocks = append(portLocks, f)
	return true
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on right
// now. It is meant for servers that must be told their port before they
// start (Postfix's master.cf); a Go server should rather listen on
// "127.0.0.1:0" and keep its listener, which has no race at all.
//
// The port is picked below the kernel's ephemeral range when possible:
// ports from that range are also used as the local side of outgoing
// connections (Postfix's own smtp client connecting to the sink, say), so a
// port probed free there may be taken before the server binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: no free loopback port: %v", err)
	}
	return port
}

// FreeAddr is FreePort as "127.0.0.1:port".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()

	if low, ok := ephemeralLow(); ok && low > minPickedPort+1000 {
		for range 64 {
			port := minPickedPort + rand.IntN(low-minPickedPort)
			if portsIssued[port] || !canListen(port) || !reserve(port) {
				continue
			}
			portsIssued[port] = true
			return port, nil
		}
	}
	// Fall back to letting the kernel choose; still never repeat a port.
	for range 64 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("close probe listener: %w", err)
		}
		if !portsIssued[port] && reserve(port) {
			portsIssued[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("kernel keeps returning ports already handed out")
}

// minPickedPort keeps clear of the well-known and commonly used registered
// ports, where a developer's own services tend to live.
const minPickedPort = 20000

// ephemeralLow reads the lower bound of the kernel's ephemeral port range.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 0, false
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0, false
	}
	return low, true
}

func canListen(port int) bool {
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	return ln.Close() == nil
}

// SocketPath returns an absolute path for a Unix socket (for an LMTP server
// or a milter that Postfix connects to) in a fresh directory that is removed
// when the test ends.
//
// t.TempDir is unsuitable for two reasons: its paths, which embed the test
// name, easily exceed the 108-byte limit of a socket address, and its top
// directory is private to root, while Postfix's lmtp and smtpd processes run
// as the unprivileged mail_owner and must reach the socket. The directory is
// therefore short and world-searchable; the server must still make the
// socket itself writable for that user, e.g. os.Chmod(path, 0o666) after
// listening.
func SocketPath(t testing.TB, name string) string {
	t.Helper()
	if name == "" || strings.ContainsRune(name, '/') {
		t.Fatalf("testenv: SocketPath needs a plain file name, got %q", name)
	}
	dir, err := os.MkdirTemp("", "pl")
	if err != nil {
		t.Fatalf("testenv: socket directory: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("testenv: remove socket directory: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: socket directory: %v", err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatalf("testenv: socket directory: %v", err)
	}
	return filepath.Join(dir, name)
}
