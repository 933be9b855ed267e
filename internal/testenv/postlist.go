package testenv

import (
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Postlist is a real `postlist serve` process for end-to-end tests, built
// by Binary, with its own configuration, database and log in a temporary
// directory. Create it with NewPostlist, point a Postfix at its LMTP and
// Milter addresses, then Configure and Start it.
type Postlist struct {
	t      testing.TB
	Bin    string
	Dir    string
	Config string // the configuration file
	DB     string // the SQLite database
	LMTP   string // host:port
	Milter string // host:port
	// Policy is where the daemon's Postfix policy service listens
	// (host:port), always on: its default port would clash between tests.
	Policy  string
	HTTP    string // host:port
	LogPath string

	// Socketmap, when set (host:port, e.g. from FreeAddr) before
	// Configure, makes the daemon serve Postfix socketmap lookups there
	// ([http] socketmap_listen). Empty: no socketmap server.
	Socketmap string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// NewPostlist picks the daemon's addresses, so that Postfix can be
// configured with them before the daemon runs. The process is stopped with
// SIGTERM when the test ends, and its log tail printed if the test failed.
func NewPostlist(t testing.TB) *Postlist {
	t.Helper()
	dir := t.TempDir()
	d := &Postlist{
		t:       t,
		Bin:     Binary(t),
		Dir:     dir,
		Config:  filepath.Join(dir, "postlist.toml"),
		DB:      filepath.Join(dir, "var", "postlist.db"),
		LMTP:    FreeAddr(t),
		Milter:  FreeAddr(t),
		Policy:  FreeAddr(t),
		HTTP:    FreeAddr(t),
		LogPath: filepath.Join(dir, "postlist.log"),
	}
	t.Cleanup(d.cleanup)
	return d
}

// Configure writes the configuration and creates the lists. Outgoing mail
// goes to smtpAddr; extra is TOML inserted at the end of the [mta] table,
// so it may set more [mta] keys or open tables of its own.
func (d *Postlist) Configure(smtpAddr, extra string, lists ...string) {
	d.t.Helper()
	lh, lp, _ := net.SplitHostPort(d.LMTP)
	sh, sp, _ := net.SplitHostPort(smtpAddr)
	cfg := fmt.Sprintf(`[database]
path = %q

[mta]
lmtp_host = %q
lmtp_port = %s
milter_listen = "inet:%s"
policy_listen = "inet:%s"
smtp_host = %q
smtp_port = %s

%s
[http]
listen = %q
%s
[log]
format = "json"
level = "debug"
`, d.DB, lh, lp, d.Milter, d.Policy, sh, sp, extra, d.HTTP, d.socketmapLine())
	if err := os.WriteFile(d.Config, []byte(cfg), 0o600); err != nil {
		d.t.Fatal(err)
	}
	for _, l := range lists {
		d.CLI("lists", "create", l)
	}
}

func (d *Postlist) socketmapLine() string {
	if d.Socketmap == "" {
		return ""
	}
	return fmt.Sprintf("socketmap_listen = \"inet:%s\"\n", d.Socketmap)
}

// CLI runs a postlist admin verb against the daemon's configuration and
// fails the test if it exits non-zero.
func (d *Postlist) CLI(args ...string) string {
	d.t.Helper()
	out, err := exec.Command(d.Bin, append([]string{"-c", d.Config}, args...)...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("postlist %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Start runs `postlist serve` and returns once its LMTP server greets.
func (d *Postlist) Start() {
	d.t.Helper()
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(d.Bin, "-c", d.Config, "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	d.mu.Lock()
	d.cmd, d.done = cmd, done
	d.mu.Unlock()

	if !Eventually(20*time.Second, func() bool {
		// The socketmap listener opens after the LMTP one; Postfix
		// answers 451 for list recipients until it accepts.
		if lmtpGreets(d.LMTP) && (d.Socketmap == "" || accepts(d.Socketmap)) {
			return true
		}
		select {
		case <-done:
			d.t.Fatalf("postlist serve exited at start:\n%s", d.LogTail())
		default:
		}
		return false
	}) {
		d.t.Fatalf("postlist LMTP at %s not ready in time:\n%s", d.LMTP, d.LogTail())
	}
}

// accepts reports whether something listens on addr.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func lmtpGreets(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	tp := textproto.NewConn(c)
	code, _, err := tp.ReadResponse(0)
	if err == nil && code == 220 {
		_ = tp.PrintfLine("QUIT")
		_, _, _ = tp.ReadResponse(0)
		return true
	}
	return false
}

// Signal sends sig (SIGTERM for a clean stop, SIGKILL for a crash) and
// waits for the process to exit.
func (d *Postlist) Signal(sig syscall.Signal) {
	d.t.Helper()
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		d.t.Errorf("postlist did not exit on %v", sig)
	}
}

func (d *Postlist) cleanup() {
	d.Signal(syscall.SIGTERM)
	if d.t.Failed() {
		d.t.Logf("postlist log:\n%s", d.LogTail())
	}
}

// Log returns the daemon's whole log.
func (d *Postlist) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// LogTail returns the last lines of the daemon's log.
func (d *Postlist) LogTail() string {
	b, _ := os.ReadFile(d.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
