package daemon_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// lockedBuffer collects the daemon's log while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeStartsAndStopsCleanly runs the real binary as an admin would,
// and checks each shutdown signal ends it with exit status 0 after draining,
// with its unix socket removed.
func TestServeStartsAndStopsCleanly(t *testing.T) {
	bin := testenv.Binary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			sock := testenv.SocketPath(t, "milter.sock")
			policySock := testenv.SocketPath(t, "policy.sock")
			httpAddr := testenv.FreeAddr(t)
			cfg := filepath.Join(dir, "postlist.toml")
			text := fmt.Sprintf(`[database]
path = "var/postlist.db"
[mta]
lmtp_port = %d
milter_listen = "unix:%s"
policy_listen = "unix:%s"
[http]
listen = %q
`, testenv.FreePort(t), sock, policySock, httpAddr)
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			var log lockedBuffer
			cmd := exec.Command(bin, "-c", cfg, "serve")
			cmd.Stderr = &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			waitFor(t, &log, "postlist started", 20*time.Second)

			resp, err := http.Get("http://" + httpAddr + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
				t.Errorf("healthz: %d %q", resp.StatusCode, body)
			}
			for _, s := range []string{sock, policySock} {
				if fi, err := os.Stat(s); err != nil || fi.Mode()&os.ModeSocket == 0 {
					t.Fatalf("socket %s: %v", s, err)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "var", "postlist.db")); err != nil {
				t.Errorf("database not created next to the config: %v", err)
			}

			cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("exit after %v: %v\n%s", sig, err, log.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("still running 20s after %v\n%s", sig, log.String())
			}
			for _, s := range []string{sock, policySock} {
				if _, err := os.Lstat(s); !os.IsNotExist(err) {
					t.Errorf("socket %s left behind: %v", s, err)
				}
			}
			if !strings.Contains(log.String(), "postlist stopped") {
				t.Errorf("no clean-stop log line:\n%s", log.String())
			}
		})
	}
}

// TestServeRefusesBusyPort: a port already taken is a clear startup error
// with a non-zero exit, not a half-running daemon.
func TestServeRefusesBusyPort(t *testing.T) {
	bin := testenv.Binary(t)
	dir := t.TempDir()
	busy := testenv.FreeAddr(t)
	ln, err := net.Listen("tcp", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := filepath.Join(dir, "postlist.toml")
	text := fmt.Sprintf("[database]\npath = \"p.db\"\n[mta]\nlmtp_port = %d\nmilter_listen = \"inet:%s\"\npolicy_listen = \"inet:%s\"\n[http]\nlisten = %q\n",
		testenv.FreePort(t), busy, testenv.FreeAddr(t), testenv.FreeAddr(t))
	os.WriteFile(cfg, []byte(text), 0o644)
	out, err := exec.Command(bin, "-c", cfg, "serve").CombinedOutput()
	if err == nil {
		t.Fatalf("serve on a busy port exited 0:\n%s", out)
	}
	if !strings.Contains(string(out), "milter") || !strings.Contains(string(out), "address already in use") {
		t.Errorf("error does not say what is busy:\n%s", out)
	}
}

// waitFor waits until a line of the daemon's log contains what.
func waitFor(t *testing.T, log *lockedBuffer, what string, timeout time.Duration) {
	t.Helper()
	if !testenv.Eventually(timeout, func() bool { return strings.Contains(log.String(), what) }) {
		t.Fatalf("no %q in log after %v:\n%s", what, timeout, log.String())
	}
}
