package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Postfix's own defaults for the unprivileged user and the group of
// postdrop, as created by the distribution package.
const (
	mailOwner   = "postfix"
	setgidGroup = "postdrop"
)

// notInstalled is the failure message when Postfix is missing. Tests fail
// rather than skip: a skipped end-to-end suite looks green while testing
// nothing.
const notInstalled = "postfix is not installed: run `apt-get install postfix` (make test installs it when run as root)"

// PostfixOptions configures a private Postfix instance.
type PostfixOptions struct {
	// Sink receives all mail for non-list domains. If nil, StartPostfix
	// starts one, available as Postfix.Sink.
	Sink *Sink

	// Milter is smtpd_milters for the inbound listener (SMTPAddr), e.g.
	// "inet:127.0.0.1:PORT" or "unix:/abs/path". Empty means no milter.
	// The re-injection listener (SubmitAddr) never has a milter.
	Milter string
	// MilterDefaultAction is milter_default_action: what happens when the
	// milter is unreachable or misbehaves. Default "tempfail".
	MilterDefaultAction string

	// ListDomains are routed to LMTP through a transport map written by
	// the harness, and are the relay_domains (unless RelayDomains is set).
	ListDomains []string
	// LMTP is the Postfix LMTP next hop for ListDomains, e.g.
	// "inet:127.0.0.1:PORT" or "unix:/abs/path" (see SocketPath); a
	// leading "lmtp:" is optional.
	LMTP string
	// TransportMaps, when set, replaces transport_maps entirely (for
	// postlist-generated maps or a socketmap); no map is written then.
	TransportMaps string
	// RelayDomains, when set, replaces relay_domains.
	RelayDomains string

	// ExtraMain holds further main.cf settings. A setting the harness
	// generates itself is replaced, not duplicated.
	ExtraMain map[string]string

	// MainCF is main.cf text in Postfix's own syntax (comments,
	// continuation lines), such as contrib/postfix/main.cf with its ports
	// and paths adapted: each setting replaces the harness's, so that
	// the instance runs the hookup exactly as the text says. ExtraMain is
	// applied after it.
	MainCF string
	// MasterCF is appended to master.cf, e.g. contrib/postfix/master.cf
	// with its port adapted.
	MasterCF string
}

// Postfix is a running private Postfix instance. It is stopped, and its
// directory removed, when the test ends.
type Postfix struct {
	// SMTPAddr is the inbound listener ("127.0.0.1:port"), with the
	// milter when one was configured: where the internet delivers.
	SMTPAddr string
	// SubmitAddr is the listener without milter, where postlist re-injects
	// its outgoing mail.
	SubmitAddr string
	// Sink receives everything relayed to non-list domains.
	Sink *Sink

	cfg      *instanceConfig
	tools    *postfixTools
	watchdog *exec.Cmd
}

// listenerAddr picks the address of a Postfix listener; a variable so that
// a test can provoke the port-conflict retry.
var listenerAddr = FreeAddr

// QueuedMessage is one message in the Postfix queue, as reported by
// `postqueue -j`.
type QueuedMessage struct {
	QueueName   string            `json:"queue_name"` // active, deferred, hold, incoming, maildrop
	QueueID     string            `json:"queue_id"`
	ArrivalTime int64             `json:"arrival_time"` // Unix seconds
	MessageSize int64             `json:"message_size"`
	Sender      string            `json:"sender"`
	Recipients  []QueuedRecipient `json:"recipients"`
}

// QueuedRecipient is a recipient still to be delivered.
type QueuedRecipient struct {
	Address string `json:"address"`
	// DelayReason says why delivery was deferred, e.g. the remote reply;
	// empty if no delivery was attempted yet.
	DelayReason string `json:"delay_reason"`
}

type postfixTools struct {
	postfix, postconf, postqueue, postmap string
}

var (
	toolsOnce sync.Once
	tools     *postfixTools
	toolsErr  error
)

// lookupTools finds the Postfix commands. They live in Postfix's
// command_directory, usually an sbin directory that is not on the PATH of
// every shell, hence the fallback.
func lookupTools() (*postfixTools, error) {
	toolsOnce.Do(func() {
		path, err := exec.LookPath("postfix")
		if err != nil {
			const fallback = "/usr/sbin/postfix"
			if _, statErr := os.Stat(fallback); statErr != nil {
				toolsErr = fmt.Errorf("postfix command not found: %w", err)
				return
			}
			path = fallback
		}
		dir := filepath.Dir(path)
		tt := &postfixTools{
			postfix:   path,
			postconf:  filepath.Join(dir, "postconf"),
			postqueue: filepath.Join(dir, "postqueue"),
			postmap:   filepath.Join(dir, "postmap"),
		}
		for _, p := range []string{tt.postconf, tt.postqueue, tt.postmap} {
			if _, err := os.Stat(p); err != nil {
				toolsErr = fmt.Errorf("postfix found at %s but not its companion command: %w", path, err)
				return
			}
		}
		tools = tt
	})
	return tools, toolsErr
}

// StartPostfix starts a private Postfix instance in a temporary directory:
// own configuration, queue, data directory and log, listening only on two
// free loopback ports, relaying list domains to opts.LMTP and everything
// else to a Sink. It returns once both listeners greet; those probes are
// complete SMTP sessions without a transaction, so a milter on SMTPAddr
// sees one connection before the test's own.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	tt, err := lookupTools()
	if err != nil {
		t.Log(err)
		t.Fatal(notInstalled)
	}
	if os.Geteuid() != 0 {
		t.Fatal("testenv: a private Postfix instance can only be started as root")
	}
	if err := opts.validate(); err != nil {
		t.Fatalf("testenv: PostfixOptions: %v", err)
	}
	sink := opts.Sink
	if sink == nil {
		sink = StartSink(t)
	}
	sinkHost, sinkPort, err := net.SplitHostPort(sink.Addr)
	if err != nil {
		t.Fatalf("testenv: sink address %q: %v", sink.Addr, err)
	}

	base, err := instanceDir(t)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cfg := &instanceConfig{
		Base:      base,
		RelayHost: "[" + sinkHost + "]:" + sinkPort,
		opts:      opts,
	}
	if err := makeInstanceDirs(cfg); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p := &Postfix{Sink: sink, cfg: cfg, tools: tt}
	// Registered before starting so that a half-started instance is
	// stopped as well.
	t.Cleanup(func() { p.cleanup(t) })

	// A port probed free may be taken before master binds it; master then
	// dies with "Address already in use", and new ports fix that.
	for attempt := 1; ; attempt++ {
		cfg.SMTPAddr, cfg.SubmitAddr = listenerAddr(t), listenerAddr(t)
		if err := writeConfig(cfg, tt); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		// postfix-script's pre-start checks (post-install, postsuper and a
		// dozen find and postconf runs) guard hand-edited installations;
		// this one is generated, and the checks cost seconds on a busy
		// machine. Postfix's own quick-start marker skips them once.
		if err := os.WriteFile(filepath.Join(cfg.spoolDir(), "quick-start"), nil, 0o644); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		conflicts := strings.Count(p.Log(), "Address already in use")
		out, err := p.command(tt.postfix, "-c", cfg.etcDir(), "start")
		if err == nil {
			break
		}
		if attempt < 3 && strings.Count(p.Log(), "Address already in use") > conflicts {
			t.Logf("testenv: postfix start attempt %d: port conflict, retrying with other ports", attempt)
			continue
		}
		t.Fatalf("testenv: postfix start: %v\n%s\nlog:\n%s", err, out, tail(p.Log(), 50))
	}
	p.SMTPAddr, p.SubmitAddr = cfg.SMTPAddr, cfg.SubmitAddr
	p.startWatchdog(t)

	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range []string{p.SMTPAddr, p.SubmitAddr} {
		if err := waitGreeting(addr, deadline); err != nil {
			t.Fatalf("testenv: postfix listener %s not ready: %v\nlog:\n%s", addr, err, tail(p.Log(), 50))
		}
	}
	return p
}

// instanceDir returns a fresh, absolute, symlink-free directory for the
// instance: `postfix -c` wants an absolute path, and maillog_file_prefixes
// is matched textually.
//
// Some daemons, the master included, open files in it as the unprivileged
// mail_owner, so every directory above it must be searchable by that
// user. t.TempDir's per-test parent is private; it is ours to open up.
func instanceDir(t testing.TB) (string, error) {
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("open up temporary directory: %w", err)
	}
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("resolve instance directory: %w", err)
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return "", fmt.Errorf("instance directory parent: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return "", fmt.Errorf("%s is not searchable by other users, so Postfix's unprivileged daemons cannot reach %s; point TMPDIR elsewhere", d, dir)
		}
		if d == filepath.Dir(d) {
			return dir, nil
		}
	}
}

// makeInstanceDirs creates the instance's directories with the owners and
// modes Postfix checks for. `postfix set-permissions` would do it, but for
// an instance it does not know as one of its own it also re-chowns the
// shared system installation, which a test must not touch.
func makeInstanceDirs(cfg *instanceConfig) error {
	owner, err := user.Lookup(mailOwner)
	if err != nil {
		return fmt.Errorf("mail_owner user: %w", err)
	}
	postdrop, err := user.LookupGroup(setgidGroup)
	if err != nil {
		return fmt.Errorf("setgid_group group: %w", err)
	}
	uid, err1 := strconv.Atoi(owner.Uid)
	ownerGID, err2 := strconv.Atoi(owner.Gid)
	dropGID, err3 := strconv.Atoi(postdrop.Gid)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("non-numeric user or group id: %w", err)
	}

	type dir struct {
		path     string
		uid, gid int
		mode     fs.FileMode
	}
	// The instance directory itself is created private by t.TempDir; the
	// unprivileged daemons need to traverse it.
	dirs := []dir{
		{cfg.Base, 0, 0, 0o755},
		{cfg.etcDir(), 0, 0, 0o755},
		{cfg.spoolDir(), 0, 0, 0o755},
		{cfg.dataDir(), uid, ownerGID, 0o700},
		{cfg.logDir(), 0, 0, 0o755},
	}
	for _, name := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, dir{filepath.Join(cfg.spoolDir(), name), uid, 0, 0o700})
	}
	dirs = append(dirs,
		dir{filepath.Join(cfg.spoolDir(), "maildrop"), uid, dropGID, 0o730},
		dir{filepath.Join(cfg.spoolDir(), "public"), uid, dropGID, 0o710},
		dir{filepath.Join(cfg.spoolDir(), "pid"), 0, 0, 0o755},
	)
	for _, d := range dirs {
		if err := os.Mkdir(d.path, d.mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", d.path, err)
		}
		if err := os.Chown(d.path, d.uid, d.gid); err != nil {
			return fmt.Errorf("chown %s: %w", d.path, err)
		}
		// Explicitly, because Mkdir's mode is filtered by the umask.
		if err := os.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", d.path, err)
		}
	}
	return nil
}

func writeConfig(cfg *instanceConfig, tt *postfixTools) error {
	mainCF, err := cfg.mainCF()
	if err != nil {
		return err
	}
	masterCF, err := cfg.masterCF()
	if err != nil {
		return err
	}
	files := map[string][]byte{"main.cf": mainCF, "master.cf": masterCF}
	if cfg.writesTransportMap() {
		files["transport"] = cfg.transportMap()
	}
	for name, content := range files {
		path := filepath.Join(cfg.etcDir(), name)
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := backdate(path); err != nil {
			return err
		}
	}
	if !cfg.writesTransportMap() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tt.postmap, "-c", cfg.etcDir(), "hash:"+cfg.transportFile()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("postmap transport map: %w: %s", err, out)
	}
	return nil
}

// backdate sets a configuration file's modification time into the past.
// Every Postfix program that reads main.cf first waits, in steps of 0.3 s,
// until the file has not been modified for a second or so, in case an
// editor is still writing it; a freshly written file would cost each
// `postfix start`, `postfix reload` and `postqueue` that much.
func backdate(path string) error {
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, past, past); err != nil {
		return fmt.Errorf("backdate %s: %w", path, err)
	}
	return nil
}

// waitGreeting waits until the server at addr sends its SMTP greeting,
// which proves that master accepted the connection and a working smtpd
// (and its milter connection attempt) served it.
func waitGreeting(addr string, deadline time.Time) error {
	var lastErr error
	for time.Now().Before(deadline) {
		if lastErr = probeGreeting(addr); lastErr == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return lastErr
}

func probeGreeting(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	text := textproto.NewConn(conn)
	// Any reply code counts: with milter_default_action=reject and no
	// milter, the greeting is a 554, and the instance is still up.
	if _, _, err := text.ReadResponse(0); err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	// A polite QUIT keeps "lost connection" noise out of the log.
	if err := text.PrintfLine("QUIT"); err == nil {
		_, _, _ = text.ReadResponse(0)
	}
	return nil
}

// command runs a Postfix command and returns its combined output.
//
// The output goes through a file, not a pipe: `postfix reload` leaves a
// postsuper running in the background with the script's stdout and
// stderr, and reading a pipe would wait for that postsuper to finish too,
// which takes seconds.
func (p *Postfix) command(name string, args ...string) (string, error) {
	f, err := os.CreateTemp(p.cfg.Base, "command-*.out")
	if err != nil {
		return "", fmt.Errorf("command output file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	runErr := cmd.Run()
	out, err := os.ReadFile(f.Name())
	if err != nil {
		return "", fmt.Errorf("read command output: %w", err)
	}
	if runErr != nil {
		return string(out), fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), runErr)
	}
	return string(out), nil
}

// ConfigDir is the instance's configuration directory, the DIR of
// `postconf -c DIR` and friends.
func (p *Postfix) ConfigDir() string { return p.cfg.etcDir() }

// LogPath is the instance's maillog file.
func (p *Postfix) LogPath() string { return p.cfg.logFile() }

// Log returns the whole maillog so far.
func (p *Postfix) Log() string {
	b, err := os.ReadFile(p.cfg.logFile())
	if err != nil {
		// Before the first line is logged the file does not exist.
		return ""
	}
	return string(b)
}

// WaitLog waits until a line of the maillog (old lines included) matches
// re and returns the first such line. On timeout it fails the test and
// shows the end of the log.
func (p *Postfix) WaitLog(t testing.TB, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	var log, found string
	if !Eventually(timeout, func() bool {
		log = p.Log()
		for line := range strings.SplitSeq(log, "\n") {
			if re.MatchString(line) {
				found = line
				return true
			}
		}
		return false
	}) {
		t.Fatalf("testenv: no Postfix log line matched %q within %v; log tail:\n%s", re, timeout, tail(log, 40))
	}
	return found
}

// Postconf changes main.cf settings ("name=value", as for `postconf -e`).
// Running processes keep the old values until Reload.
func (p *Postfix) Postconf(t testing.TB, settings ...string) {
	t.Helper()
	for _, s := range settings {
		if !strings.Contains(s, "=") || strings.ContainsAny(s, "\r\n") {
			t.Fatalf("testenv: Postconf wants name=value, got %q", s)
		}
	}
	args := append([]string{"-c", p.cfg.etcDir(), "-e"}, settings...)
	if out, err := p.command(p.tools.postconf, args...); err != nil {
		t.Fatalf("testenv: %v\n%s", err, out)
	}
	if err := backdate(filepath.Join(p.cfg.etcDir(), "main.cf")); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

var reloadRE = regexp.MustCompile(`postfix/master\[\d+\]: reload -- version`)

// Reload makes Postfix re-read its configuration and returns once it took
// effect: the master has re-read it and the daemons started before have
// exited, so that every new connection and delivery is served with the
// new settings. A daemon still busy after 10 s (one serving an SMTP
// session the test keeps open, say) is left to finish with the old ones.
func (p *Postfix) Reload(t testing.TB) {
	t.Helper()
	master, ok := p.masterPID()
	if !ok {
		t.Fatal("testenv: reload: postfix is not running")
	}
	// The master signals a reload to its children by closing their status
	// pipes, and an idle child may still accept one more connection before
	// it notices and exits; hence the wait for the old daemons.
	var old []int
	for _, pid := range groupMembers(master) {
		if pid != master {
			old = append(old, pid)
		}
	}
	before := len(reloadRE.FindAllStringIndex(p.Log(), -1))
	if out, err := p.command(p.tools.postfix, "-c", p.cfg.etcDir(), "reload"); err != nil {
		t.Fatalf("testenv: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(reloadRE.FindAllStringIndex(p.Log(), -1)) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: postfix reload not confirmed in the log within 10s; log tail:\n%s", tail(p.Log(), 30))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for len(old) > 0 {
		old = slices.DeleteFunc(old, func(pid int) bool { return !running(pid, master) })
		if time.Now().After(deadline) {
			t.Logf("testenv: reload: %d daemon(s) of the old configuration still busy: %v", len(old), old)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Flush asks Postfix to retry all deferred mail now (`postqueue -f`).
func (p *Postfix) Flush(t testing.TB) {
	t.Helper()
	if out, err := p.command(p.tools.postqueue, "-c", p.cfg.etcDir(), "-f"); err != nil {
		t.Fatalf("testenv: %v\n%s", err, out)
	}
}

// Queue lists the messages in the queue.
func (p *Postfix) Queue(t testing.TB) []QueuedMessage {
	t.Helper()
	q, err := p.queue()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return q
}

func (p *Postfix) queue() ([]QueuedMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.tools.postqueue, "-c", p.cfg.etcDir(), "-j")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("postqueue -j: %w: %s", err, stderr.String())
	}
	var msgs []QueuedMessage
	// One JSON object per line, nothing at all for an empty queue.
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m QueuedMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return nil, fmt.Errorf("postqueue -j: parse %q: %w", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// WaitQueueEmpty waits until the queue is empty; on timeout it fails the
// test and shows what is still queued and why.
func (p *Postfix) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	var q []QueuedMessage
	if !Eventually(timeout, func() bool {
		var err error
		if q, err = p.queue(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		return len(q) == 0
	}) {
		var b strings.Builder
		for _, m := range q {
			fmt.Fprintf(&b, "  %s %s from=<%s>\n", m.QueueName, m.QueueID, m.Sender)
			for _, r := range m.Recipients {
				fmt.Fprintf(&b, "    to=<%s> %s\n", r.Address, r.DelayReason)
			}
		}
		t.Fatalf("testenv: Postfix queue not empty after %v:\n%s", timeout, b.String())
	}
}

// startWatchdog starts a small shell process that stops the instance if
// the test process dies without running its cleanups, as it does when `go
// test -timeout` fires or the test binary is killed. Postfix's master runs
// as a daemon, so nothing else would ever stop it. The watchdog has its own
// process group, so that a Ctrl-C, which kills the test's group, leaves
// it alive to do its job, and /dev/null as stdio, so that `go test` does
// not wait for it to close the test's output pipe.
func (p *Postfix) startWatchdog(t testing.TB) {
	pid, ok := p.masterPID()
	if !ok {
		t.Fatalf("testenv: postfix started but left no master pid file; log:\n%s", tail(p.Log(), 30))
	}
	const script = `while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -TERM "$2"`
	cmd := exec.Command("/bin/sh", "-c", script, "testenv-watchdog", strconv.Itoa(os.Getpid()), strconv.Itoa(pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start postfix watchdog: %v", err)
	}
	p.watchdog = cmd
}

// cleanup shows the log of a failed test, then stops the instance.
func (p *Postfix) cleanup(t testing.TB) {
	if t.Failed() {
		t.Logf("testenv: end of the Postfix log %s:\n%s", p.cfg.logFile(), tail(p.Log(), 100))
	}
	if w := p.watchdog; w != nil {
		// Killed first: it must not signal a master pid that a new process
		// may have inherited once this instance is gone.
		if err := w.Process.Kill(); err != nil {
			t.Errorf("testenv: kill postfix watchdog: %v", err)
		}
		_ = w.Wait() // "signal: killed", as intended
	}
	if err := p.stop(); err != nil {
		t.Errorf("testenv: stop postfix: %v", err)
	}
}

// stop terminates the master and waits until every process of the
// instance is gone, since t.TempDir's removal fails while postlogd or the
// queue manager still write into the directory.
//
// It sends SIGTERM to the master directly: that is exactly what `postfix
// stop` does, but that script then polls only once a second, which would
// add a second to every test.
func (p *Postfix) stop() error {
	pid, ok := p.masterPID()
	if !ok {
		return nil // never started
	}
	// The master is a session leader, so its process group holds every
	// daemon of this instance and nothing else.
	if !isProcessGroupLeader(pid) {
		return nil // already gone; the pid may even belong to someone else now
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal master %d: %w", pid, err)
	}
	if waitGroupGone(pid, 10*time.Second) {
		return nil
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pid, err)
	}
	if waitGroupGone(pid, 5*time.Second) {
		return fmt.Errorf("master %d ignored SIGTERM for 10s and was killed", pid)
	}
	return fmt.Errorf("processes of group %d survive SIGKILL", pid)
}

// MasterPID is the pid of the instance's master, which leads the process
// group of all its daemons (benchmarks read their CPU time from it).
func (p *Postfix) MasterPID() (int, bool) { return p.masterPID() }

// masterPID reads the master's pid file, which exists once master runs.
func (p *Postfix) masterPID() (int, bool) {
	b, err := os.ReadFile(filepath.Join(p.cfg.spoolDir(), "pid", "master.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	return pid, true
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
