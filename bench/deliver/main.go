// Command deliver measures outgoing delivery: one post fanned out to
// 1,000, 10,000 and 100,000 members, one VERP transaction per member, sent
// by the deliver package straight to an SMTP sink on loopback.
//
// Each size runs in a fresh child process (so that its peak RSS is its
// own) against a sink in another process: Postfix's smtp-sink when it is
// installed (it comes with the postfix package and costs little CPU, so
// the numbers are postlist's), else a go-smtp server. It prints a table;
// the floors on a 2-core machine are ≥ 10,000 recipients/s, 100,000
// members in under 20 s and a peak RSS under 150 MB.
//
//	go run ./bench/deliver [-sizes 1000,10000,100000] [-workers 20]
//	    [-sink auto|smtp-sink|go] [-no-pipelining] [-target HOST:PORT]
//
// The database lives in a fresh directory on a real disk (-dir, default the
// temporary directory unless it is tmpfs, where fsync is free).
//
// -no-pipelining makes smtp-sink hide PIPELINING, which shows what one
// command per round trip costs. With -target the mail goes to that server
// instead (for example a private Postfix's re-injection listener); only
// point it at a server that discards mail or relays it to a sink.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/bench/internal/benchenv"
	"postlist/deliver"
	"postlist/store"
)

const list = "bench@lists.example.org"

var (
	cpuProfile string
	flushRows  int
	sinkKind   string
	noPipe     bool
	dbDir      string
)

// result is what a deliver child reports.
type result struct {
	Members     int     `json:"members"`
	QueueSecs   float64 `json:"queue_s"`
	DeliverSecs float64 `json:"deliver_s"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
	CPUSecs     float64 `json:"cpu_s"`
	Conns       uint64  `json:"connections"`
	Deferred    uint64  `json:"deferred"`
	Failed      uint64  `json:"failed"`
}

func main() {
	role := flag.String("role", "", "internal: sink or deliver (child processes)")
	sizes := flag.String("sizes", "1000,10000,100000", "fan-out sizes")
	workers := flag.Int("workers", 20, "parallel SMTP sessions (max_delivery_threads)")
	bodySize := flag.Int("body", 3000, "message size in bytes")
	target := flag.String("target", "", "SMTP server to deliver to instead of the built-in sink")
	timeout := flag.Duration("timeout", 2*time.Minute, "limit per size")
	n := flag.Int("n", 0, "internal: members (deliver child)")
	flag.StringVar(&sinkKind, "sink", "auto", "auto (smtp-sink if installed, else go), smtp-sink (Postfix's C sink) or go (a go-smtp server)")
	flag.StringVar(&dbDir, "dir", "", "directory for the databases (default: the temporary directory unless it is tmpfs)")
	flag.BoolVar(&noPipe, "no-pipelining", false, "make smtp-sink not offer PIPELINING: one command per round trip")
	flag.IntVar(&flushRows, "flush-rows", 0, "outcomes committed together (0: the deliver package default)")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the delivering process (per size: FILE.N)")
	flag.Parse()

	var err error
	switch *role {
	case "sink":
		err = benchenv.ServeGoSink(nil)
	case "deliver":
		err = runDeliver(*n, *workers, *bodySize, *target, *timeout)
	case "":
		err = run(*sizes, *workers, *bodySize, *target, *timeout)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench deliver:", err)
		os.Exit(1)
	}
}

// run is the orchestrator: one sink and one deliver child per size.
func run(sizeList string, workers, bodySize int, target string, timeout time.Duration) error {
	var sizes []int
	for _, f := range strings.Split(sizeList, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return fmt.Errorf("bad size %q", f)
		}
		sizes = append(sizes, v)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	switch sinkKind {
	case "auto", "smtp-sink", "go":
	default:
		return fmt.Errorf("-sink %q: want auto, smtp-sink or go", sinkKind)
	}
	dest := target
	if dest == "" {
		if sinkKind == "auto" {
			sinkKind = "go"
			if benchenv.SMTPSinkPath() != "" {
				sinkKind = "smtp-sink"
			}
		}
		dest = "a loopback sink (" + sinkKind + ")"
		if noPipe {
			dest += " without PIPELINING"
		}
	}
	fmt.Printf("deliver: one post, one VERP transaction per member, %d sessions, %d-byte message, to %s\n\n", workers, bodySize, dest)
	fmt.Printf("%9s %9s %10s %12s %10s %8s %6s  %s\n", "members", "queue s", "deliver s", "rcpts/s", "peak RSS", "CPU s", "conns", "floors")
	for _, size := range sizes {
		res, err := runSize(self, size, workers, bodySize, target, timeout)
		if err != nil {
			return fmt.Errorf("%d members: %w", size, err)
		}
		rate := float64(res.Members) / res.DeliverSecs
		floors := "ok"
		var bad []string
		if rate < 10000 {
			bad = append(bad, "rate < 10,000/s")
		}
		if res.Members >= 100000 && res.QueueSecs+res.DeliverSecs >= 20 {
			bad = append(bad, "100k: queue + deliver >= 20 s")
		}
		if res.PeakRSSMB >= 150 {
			bad = append(bad, "RSS >= 150 MB")
		}
		if res.Deferred+res.Failed > 0 {
			bad = append(bad, fmt.Sprintf("%d deferred, %d failed", res.Deferred, res.Failed))
		}
		if len(bad) > 0 {
			floors = "BELOW: " + strings.Join(bad, ", ")
		}
		fmt.Printf("%9d %9.2f %10.2f %12.0f %7.1f MB %8.2f %6d  %s\n",
			res.Members, res.QueueSecs, res.DeliverSecs, rate, res.PeakRSSMB, res.CPUSecs, res.Conns, floors)
	}
	fmt.Println("\nqueue s: inserting the deliveries rows (the pipeline's fan-out); deliver s: first claim to last committed outcome;")
	fmt.Println("peak RSS: VmHWM of the delivering process; CPU s: its user+system time (the sink runs in another process).")
	return nil
}

func runSize(self string, size, workers, bodySize int, target string, timeout time.Duration) (*result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addr := target
	if addr == "" {
		a, stop, err := startSink(ctx, self)
		if err != nil {
			return nil, err
		}
		defer stop()
		addr = a
	}
	args := []string{"-role", "deliver", "-n", strconv.Itoa(size), "-workers", strconv.Itoa(workers),
		"-body", strconv.Itoa(bodySize), "-target", addr, "-timeout", timeout.String(), "-flush-rows", strconv.Itoa(flushRows),
		"-dir", dbDir}
	if cpuProfile != "" {
		args = append(args, "-cpuprofile", fmt.Sprintf("%s.%d", cpuProfile, size))
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("deliver child: %w", err)
	}
	var res result
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("deliver child said %q: %w", out, err)
	}
	return &res, nil
}

// startSink starts the sink process chosen by -sink and returns its
// address once it accepts connections.
func startSink(ctx context.Context, self string) (string, func(), error) {
	if sinkKind != "smtp-sink" {
		cmd := exec.CommandContext(ctx, self, "-role", "sink")
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return "", nil, err
		}
		if err := cmd.Start(); err != nil {
			return "", nil, err
		}
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			stop()
			return "", nil, fmt.Errorf("sink did not start: %w", err)
		}
		return strings.TrimSpace(line), stop, nil
	}
	var extra []string
	if noPipe {
		extra = append(extra, "-p")
	}
	addr, cmd, err := benchenv.StartSMTPSink(ctx, nil, extra...)
	if err != nil {
		return "", nil, err
	}
	return addr, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

// runDeliver queues one post for n members in a fresh database, delivers
// it to addr and prints a result as JSON.
func runDeliver(n, workers, bodySize int, addr string, timeout time.Duration) error {
	dir, err := benchenv.Dir(dbDir, "postlist-bench-deliver-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "postlist.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	l, err := st.CreateList(ctx, list)
	if err != nil {
		return err
	}
	msg, err := st.StoreMessage(ctx, "poster@example.com", message(bodySize))
	if err != nil {
		return err
	}
	rows := make([]store.NewDelivery, n)
	for i := range rows {
		rcpt := fmt.Sprintf("member%d@example%d.com", i, i%97)
		rows[i] = store.NewDelivery{Recipient: rcpt, EnvelopeFrom: address.VERP(list, rcpt, "+")}
	}
	began := time.Now()
	if err := st.QueueDeliveries(ctx, msg, l.ID, rows); err != nil {
		return err
	}
	queued := time.Since(began)
	rows = nil

	d := deliver.New(deliver.Options{
		Store: st, Log: zap.NewNop(), Addr: addr, HeloName: "bench.postlist.test",
		Workers: workers, FlushRows: flushRows,
	})
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	began = time.Now()
	go func() { done <- d.Run(runCtx) }()
	deadline := time.Now().Add(timeout)
	for {
		s := d.Stats()
		if s.Sent+s.Deferred+s.Failed >= uint64(n) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("only %d of %d outcomes after %v", s.Sent+s.Deferred+s.Failed, n, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(began)
	stop()
	if err := <-done; err != nil {
		return err
	}
	s := d.Stats()
	cpu, err := benchenv.CPUSeconds(0)
	if err != nil {
		return err
	}
	rss, err := benchenv.PeakRSSMB(0)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(result{
		Members: n, QueueSecs: queued.Seconds(), DeliverSecs: took.Seconds(), PeakRSSMB: rss,
		CPUSecs: cpu, Conns: s.Connections, Deferred: s.Deferred, Failed: s.Failed,
	})
}

// message is a plain post of about size bytes.
func message(size int) []byte {
	var b strings.Builder
	b.WriteString("Message-ID: <bench@example.com>\r\nFrom: Poster <poster@example.com>\r\nTo: " + list +
		"\r\nSubject: benchmark post\r\nDate: Thu, 26 Nov 2026 07:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < size {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	return []byte(b.String())
}
