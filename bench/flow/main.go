// Command flow measures one post's whole way through the real daemon: a
// member's post handed over LMTP, committed, run through the posting rules,
// fanned out to 1,000, 10,000 and 100,000 members, and sent to a loopback
// SMTP sink with one VERP transaction per member. The figure is the time
// from the LMTP 250 to the sink's last RCPT; it includes the pipeline's
// fan-out insert, which bench/deliver leaves out.
//
// Each size gets a fresh database on a real disk (members added with
// `postlist members add --file`), a fresh `postlist serve` of the binary
// under test, and a fresh sink in a process of its own: Postfix's
// smtp-sink when it is installed (little CPU, so the machine's cores go to
// postlist), else a go-smtp server that times its first and last RCPT.
// smtp-sink only reports finished messages, so with it the times are those
// of the first and last end of data, one round trip after the RCPT. The floors on a 2-core machine are
// ≥ 10,000 recipients/s, 100,000 members in under 20 s and a daemon peak
// RSS under 150 MB.
//
//	go run ./bench/flow [-bin bin/postlist] [-sizes 1000,10000,100000]
//	    [-workers 20] [-body 3000] [-sink auto|smtp-sink|go] [-one-click=false]
//	    [-dir DIR] [-keep]
//
// By default the list has a base_url, so every member's copy differs (its
// own List-Unsubscribe URL), as on a site that offers RFC 8058 one-click
// unsubscribe; -one-click=false sends every member the same copy.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"postlist/bench/internal/benchenv"
)

const list = "flow@lists.example.org"

// poster is member 0, so the post is accepted and the poster gets a copy
// like every other member (receive_own_postings defaults to yes).
const poster = "member0@example0.com"

func main() {
	role := flag.String("role", "", "internal: sink (child process)")
	n := flag.Int("n", 0, "internal: RCPTs the sink waits for")
	bin := flag.String("bin", "bin/postlist", "postlist binary")
	sizes := flag.String("sizes", "1000,10000,100000", "fan-out sizes")
	workers := flag.Int("workers", 20, "max_delivery_threads")
	body := flag.Int("body", 3000, "message size in bytes")
	dir := flag.String("dir", "", "directory for the databases (default: the temporary directory unless it is tmpfs)")
	sink := flag.String("sink", "auto", "auto (smtp-sink if installed, else go), smtp-sink (Postfix's C sink) or go (a go-smtp server)")
	oneClick := flag.Bool("one-click", true, "set [http] base_url, so that every member's copy carries its own one-click unsubscribe URL")
	keep := flag.Bool("keep", false, "keep each size's directory (database, config, daemon log)")
	timeout := flag.Duration("timeout", 3*time.Minute, "limit per size")
	flag.Parse()

	var err error
	switch *role {
	case "sink":
		err = runSink(*n)
	case "":
		err = run(config{bin: *bin, sizes: *sizes, workers: *workers, body: *body, sink: *sink, oneClick: *oneClick, dir: *dir, keep: *keep, timeout: *timeout})
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench flow:", err)
		os.Exit(1)
	}
}

type config struct {
	bin      string
	sizes    string
	workers  int
	body     int
	sink     string
	oneClick bool
	dir      string
	keep     bool
	timeout  time.Duration
}

// result is one size's measurements.
type result struct {
	members    int
	importSecs float64 // members add --file
	firstSecs  float64 // LMTP 250 → the sink's first RCPT
	lastSecs   float64 // LMTP 250 → the sink's last RCPT
	sentSecs   float64 // LMTP 250 → every outcome committed as sent
	peakRSSMB  float64 // the daemon's VmHWM
	cpuSecs    float64 // the daemon's user+system time, start to end
	sinkCPU    float64
	failed     int64
}

func run(c config) error {
	var sizes []int
	for _, f := range strings.Split(c.sizes, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return fmt.Errorf("bad size %q", f)
		}
		sizes = append(sizes, v)
	}
	bin, err := filepath.Abs(c.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("postlist binary: %w (run make build)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	switch c.sink {
	case "auto":
		c.sink = "go"
		if benchenv.SMTPSinkPath() != "" {
			c.sink = "smtp-sink"
		}
	case "go", "smtp-sink":
	default:
		return fmt.Errorf("-sink %q: want auto, smtp-sink or go", c.sink)
	}
	fmt.Printf("flow: one member post over LMTP to postlist serve, fanned out with one VERP transaction per member,\n")
	copies := "the same copy for every member (no base_url)"
	if c.oneClick {
		copies = "each copy with the member's own one-click unsubscribe URL"
	}
	fmt.Printf("%d sessions, %d-byte message, %s,\nto a loopback sink (%s) in its own process\n\n", c.workers, c.body, copies, c.sink)
	fmt.Printf("%9s %9s %10s %10s %10s %12s %10s %8s %8s  %s\n",
		"members", "import s", "1st RCPT s", "last RCPT", "all sent", "rcpts/s", "peak RSS", "CPU s", "sink CPU", "floors")
	for _, size := range sizes {
		r, err := runSize(c, bin, self, size)
		if err != nil {
			return fmt.Errorf("%d members: %w", size, err)
		}
		rate := float64(r.members) / r.lastSecs
		var bad []string
		if rate < 10000 {
			bad = append(bad, "rate < 10,000/s")
		}
		if r.members >= 100000 && r.lastSecs >= 20 {
			bad = append(bad, "100k: 250 → last RCPT >= 20 s")
		}
		if r.peakRSSMB >= 150 {
			bad = append(bad, "RSS >= 150 MB")
		}
		if r.failed > 0 {
			bad = append(bad, fmt.Sprintf("%d failed", r.failed))
		}
		floors := "ok"
		if len(bad) > 0 {
			floors = "BELOW: " + strings.Join(bad, ", ")
		}
		fmt.Printf("%9d %9.2f %10.2f %10.2f %10.2f %12.0f %7.1f MB %8.2f %8.2f  %s\n",
			r.members, r.importSecs, r.firstSecs, r.lastSecs, r.sentSecs, rate, r.peakRSSMB, r.cpuSecs, r.sinkCPU, floors)
	}
	fmt.Println("\nAll times but import count from the LMTP 250. 1st RCPT: commit, posting rules, fan-out insert and the first")
	fmt.Println("transaction; last RCPT: the sink has every recipient; all sent: every delivery row committed as sent.")
	if c.sink == "smtp-sink" {
		fmt.Println("smtp-sink reports finished messages: its RCPT times are those of the end of data, one round trip later.")
	}
	fmt.Println("rcpts/s: members / last RCPT. peak RSS and CPU s: the daemon's; sink CPU: the sink process's.")
	return nil
}

func runSize(c config, bin, self string, size int) (*result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	dir, err := benchenv.Dir(c.dir, "postlist-bench-flow-")
	if err != nil {
		return nil, err
	}
	if c.keep {
		fmt.Fprintf(os.Stderr, "flow: %d members in %s\n", size, dir)
	} else {
		defer os.RemoveAll(dir)
	}

	var sink *sinkProc
	if c.sink == "go" {
		sink, err = startGoSink(self, size)
	} else {
		sink, err = startSMTPSink(ctx, size)
	}
	if err != nil {
		return nil, err
	}
	defer sink.stop()

	cfgPath, lmtpAddr, err := writeConfig(dir, sink.addr, c.workers, c.oneClick)
	if err != nil {
		return nil, err
	}
	cli := func(args ...string) error {
		out, err := exec.CommandContext(ctx, bin, append([]string{"-c", cfgPath}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("postlist %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	r := &result{members: size}
	file, err := writeMembers(dir, size)
	if err != nil {
		return nil, err
	}
	if err := cli("lists", "create", list); err != nil {
		return nil, err
	}
	began := time.Now()
	if err := cli("members", "add", list, "--file", file); err != nil {
		return nil, err
	}
	r.importSecs = time.Since(began).Seconds()

	d, err := startDaemon(ctx, bin, cfgPath, filepath.Join(dir, "postlist.log"), lmtpAddr)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	cpu0, err := benchenv.CPUSeconds(d.pid())
	if err != nil {
		return nil, err
	}

	accepted, err := post(lmtpAddr, message(c.body))
	if err != nil {
		return nil, fmt.Errorf("post: %w", err)
	}
	first, last, err := sink.wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w; daemon log:\n%s", err, d.logTail())
	}
	r.firstSecs = first.Sub(accepted).Seconds()
	r.lastSecs = last.Sub(accepted).Seconds()

	// The last RCPT precedes the outcomes' commit; wait for that too, so
	// the peak RSS covers the whole job and nothing is left undone.
	for {
		sent, failed, err := outcomes(ctx, bin, cfgPath)
		if err != nil {
			return nil, err
		}
		if sent+failed >= int64(size) {
			r.sentSecs = time.Since(accepted).Seconds()
			r.failed = failed
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d sent when time ran out; daemon log:\n%s", sent, size, d.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if r.peakRSSMB, err = benchenv.PeakRSSMB(d.pid()); err != nil {
		return nil, err
	}
	cpu1, err := benchenv.CPUSeconds(d.pid())
	if err != nil {
		return nil, err
	}
	r.cpuSecs = cpu1 - cpu0
	if r.sinkCPU, err = benchenv.CPUSeconds(sink.pid); err != nil {
		return nil, err
	}
	return r, nil
}

// writeConfig writes a configuration on loopback ports picked now, and
// returns its path and the LMTP address.
func writeConfig(dir, sinkAddr string, workers int, oneClick bool) (string, string, error) {
	ports := make([]int, 4)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return "", "", err
		}
		ports[i] = p
	}
	sh, sp, err := net.SplitHostPort(sinkAddr)
	if err != nil {
		return "", "", err
	}
	baseURL := ""
	if oneClick {
		baseURL = "base_url = \"https://lists.example.org/postlist\"\n"
	}
	cfg := fmt.Sprintf(`[database]
path = %q

[mta]
lmtp_host = "127.0.0.1"
lmtp_port = %d
milter_listen = "inet:127.0.0.1:%d"
policy_listen = "inet:127.0.0.1:%d"
smtp_host = %q
smtp_port = %s
max_delivery_threads = %d

[http]
listen = "127.0.0.1:%d"
%s
[postfix]
map_dir = %q

[log]
format = "json"
level = "info"
`, filepath.Join(dir, "postlist.db"), ports[0], ports[1], ports[3], sh, sp, workers, ports[2], baseURL, filepath.Join(dir, "maps"))
	path := filepath.Join(dir, "postlist.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", "", err
	}
	return path, fmt.Sprintf("127.0.0.1:%d", ports[0]), nil
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the daemon binds it; the daemon then fails loudly.
func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// writeMembers writes n member addresses over 97 domains, one per line.
func writeMembers(dir string, n int) (string, error) {
	path := filepath.Join(dir, "members.txt")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(w, "member%d@example%d.com\n", i, i%97)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// message is a plain member post of about size bytes.
func message(size int) []byte {
	var b strings.Builder
	b.WriteString("Message-ID: <flow-bench@example0.com>\r\nFrom: Member Zero <" + poster + ">\r\nTo: " + list +
		"\r\nSubject: flow benchmark\r\nDate: Thu, 26 Nov 2026 07:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < size {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	return []byte(b.String())
}

// post hands msg to the daemon over LMTP and returns when its 250 came.
func post(addr string, msg []byte) (time.Time, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return time.Time{}, err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("bench.flow"); err != nil {
		return time.Time{}, err
	}
	if err := c.Mail(poster, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		return time.Time{}, err
	}
	if err := c.Rcpt(list, nil); err != nil {
		return time.Time{}, err
	}
	w, err := c.Data()
	if err != nil {
		return time.Time{}, err
	}
	if _, err := w.Write(msg); err != nil {
		return time.Time{}, err
	}
	// A refusal comes back as an error naming the recipient and the reply.
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		return time.Time{}, err
	}
	accepted := time.Now()
	_ = c.Quit()
	return accepted, nil
}

// outcomes reads the sent and failed delivery counts through the CLI.
func outcomes(ctx context.Context, bin, cfg string) (sent, failed int64, err error) {
	out, err := exec.CommandContext(ctx, bin, "-c", cfg, "--json", "queue", "ls", "--all").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("postlist queue ls: %w", err)
	}
	var q struct {
		States []struct {
			State      string `json:"state"`
			Deliveries int64  `json:"deliveries"`
		} `json:"states"`
	}
	if err := json.Unmarshal(out, &q); err != nil {
		return 0, 0, fmt.Errorf("postlist queue ls said %q: %w", out, err)
	}
	for _, s := range q.States {
		switch s.State {
		case "sent":
			sent = s.Deliveries
		case "failed":
			failed = s.Deliveries
		}
	}
	return sent, failed, nil
}

// daemon is a running `postlist serve`.
type daemon struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startDaemon(ctx context.Context, bin, cfg, logPath, lmtpAddr string) (*daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-c", cfg, "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	for {
		if c, err := net.DialTimeout("tcp", lmtpAddr, time.Second); err == nil {
			c.Close()
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("postlist serve exited at start:\n%s", d.logTail())
		case <-ctx.Done():
			d.stop()
			return nil, fmt.Errorf("postlist serve not listening on %s:\n%s", lmtpAddr, d.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop asks the daemon to drain and exit, and kills it if it does not.
func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	s := string(b)
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// sinkProc is a sink process that reports, once, the times of its first
// and n-th recipient.
type sinkProc struct {
	addr  string
	pid   int
	times chan [2]time.Time // first, last; closed if the sink ends first
	stop  func()
}

// startGoSink runs this program as a go-smtp sink. The child prints its
// address, then one line with the Unix times (ns) of its first and n-th
// RCPT.
func startGoSink(self string, n int) (*sinkProc, error) {
	cmd := exec.Command(self, "-role", "sink", "-n", strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &sinkProc{pid: cmd.Process.Pid, times: make(chan [2]time.Time, 1), stop: func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}}
	out := bufio.NewReader(pipe)
	line, err := out.ReadString('\n')
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("sink did not start: %w", err)
	}
	s.addr = strings.TrimSpace(line)
	go func() {
		defer close(s.times)
		var f, l int64
		if line, err := out.ReadString('\n'); err == nil {
			if _, err := fmt.Sscan(line, &f, &l); err == nil {
				s.times <- [2]time.Time{time.Unix(0, f), time.Unix(0, l)}
			}
		}
	}()
	return s, nil
}

// startSMTPSink runs Postfix's smtp-sink with running counters (-c): it
// writes "sess=A quit=B mesg=C" records, separated by CRs, each time a
// message ends; the first and n-th messages are timed as they are read.
func startSMTPSink(ctx context.Context, n int) (*sinkProc, error) {
	pr, pw := io.Pipe()
	addr, cmd, err := benchenv.StartSMTPSink(ctx, pw, "-c")
	if err != nil {
		return nil, err
	}
	s := &sinkProc{addr: addr, pid: cmd.Process.Pid, times: make(chan [2]time.Time, 1), stop: func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pw.Close()
	}}
	go func() {
		defer close(s.times)
		sc := bufio.NewScanner(pr)
		sc.Split(splitCR)
		var first time.Time
		for sc.Scan() {
			_, v, ok := strings.Cut(sc.Text(), "mesg=")
			if !ok {
				continue
			}
			m, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				continue
			}
			now := time.Now()
			if first.IsZero() && m >= 1 {
				first = now
			}
			if m >= n {
				s.times <- [2]time.Time{first, now}
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return s, nil
}

// splitCR splits smtp-sink's counter records, which end in CR.
func splitCR(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\r'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func (s *sinkProc) wait(ctx context.Context) (first, last time.Time, err error) {
	select {
	case t, ok := <-s.times:
		if !ok {
			return first, last, errors.New("the sink ended before it had every recipient")
		}
		return t[0], t[1], nil
	case <-ctx.Done():
		return first, last, errors.New("the sink did not get every recipient in time")
	}
}

// runSink is the go-smtp sink child: it prints its address, then the
// times of its first and n-th RCPT.
func runSink(n int) error {
	st := &sinkState{n: int64(n)}
	return benchenv.ServeGoSink(st.rcpt)
}

type sinkState struct {
	n     int64
	rcpts atomic.Int64
	first atomic.Int64
}

func (st *sinkState) rcpt() {
	now := time.Now().UnixNano()
	st.first.CompareAndSwap(0, now)
	if st.rcpts.Add(1) == st.n {
		fmt.Println(st.first.Load(), now)
	}
}
