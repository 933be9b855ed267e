// Command hookup measures what postlist's Postfix hookup costs mail that
// is not for a list: how many messages per second a real Postfix accepts,
// each on a new connection, with (a) no postlist hookup at all and (b)
// contrib/postfix/main.cf and master.cf applied as written (ports and
// paths changed) with postlist running. Both instances run side by side
// and the rounds alternate between them, so noise on the shared machine
// spreads over both; the ratio is taken per round and its median printed.
// The floor is 0.98: non-list mail must not pay for the lists.
//
//	go run ./bench/hookup [-msgs 600] [-rounds 9] [-conc 20]
//
// Accepted mail is discarded by Postfix itself (default_transport =
// discard), so delivery costs nothing in either setup. It needs root and
// an installed Postfix, like the end-to-end tests.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postlist/internal/testenv"
)

const (
	listDomain = "lists.example.org"
	closedList = "closed@" + listDomain
	floor      = 0.98
)

var (
	msgs   = flag.Int("msgs", 600, "messages per measured run")
	rounds = flag.Int("rounds", 9, "measured runs per setup (the median is reported)")
	conc   = flag.Int("conc", 20, "concurrent SMTP clients")
)

func main() {
	testing.Init()
	flag.Parse()
	var err error
	// testing.Benchmark gives testenv the testing.TB it starts Postfix
	// and postlist with, and runs their cleanups when it returns. The
	// function ignores b.N: it is one fixed run that prints a table.
	testing.Benchmark(func(b *testing.B) {
		defer func() {
			if b.Failed() && err == nil {
				err = errors.New("setup failed (see above)")
			}
		}()
		err = run(b)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hookup:", err)
		os.Exit(1)
	}
}

type setup struct {
	name  string
	pf    *testenv.Postfix
	rates []float64
	cpus  []float64 // Postfix's CPU seconds per message, per round
}

// postfixCPU is the CPU time (s) of a Postfix instance so far: every live
// process of the master's process group, plus the master's reaped
// children (smtpd processes that have exited). Unlike a rate, it hardly
// depends on what else runs on the machine.
func postfixCPU(pf *testenv.Postfix) (float64, error) {
	master, ok := pf.MasterPID()
	if !ok {
		return 0, errors.New("postfix master not running")
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var ticks uint64
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		st := string(b)
		f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
		// After ')': state, ppid, pgrp, ... utime, stime, cutime, cstime
		// are fields 3, 4, 5, 14-17 of proc(5), so f[0], f[1], f[2], f[11]-f[14].
		if len(f) < 15 || f[2] != strconv.Itoa(master) {
			continue
		}
		n := []int{11, 12}
		if pid == master {
			n = append(n, 13, 14)
		}
		for _, i := range n {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			ticks += v
		}
	}
	const clockTicks = 100 // USER_HZ
	return float64(ticks) / clockTicks, nil
}

func run(b *testing.B) error {
	sink := testenv.StartSink(b)
	discard := map[string]string{"default_transport": "discard:benchmark"}

	plain := &setup{name: "no postlist hookup"}
	plain.pf = testenv.StartPostfix(b, testenv.PostfixOptions{Sink: sink, ExtraMain: discard})

	hooked := &setup{name: "policy hookup (contrib/postfix), postlist running"}
	pf, err := startHooked(b, sink, discard, true)
	if err != nil {
		return err
	}
	hooked.pf = pf
	// The same hookup with postlist stopped separates what Postfix's
	// lookups cost from what a running postlist takes from the machine.
	stopped := &setup{name: "policy hookup, postlist stopped"}
	if stopped.pf, err = startHooked(b, sink, discard, false); err != nil {
		return err
	}

	setups := []*setup{plain, hooked, stopped}
	for _, s := range setups {
		// Warm up: smtpd processes, map and policy connections.
		if _, _, why, err := runLoad(s.pf.SMTPAddr, 100, *conc, 0); err != nil || why != "" {
			return fmt.Errorf("%s: warm-up: %v %s", s.name, err, why)
		}
	}
	for round := range *rounds {
		order := slices.Clone(setups)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			cpu0, err := postfixCPU(s.pf)
			if err != nil {
				return err
			}
			ok, took, why, err := runLoad(s.pf.SMTPAddr, *msgs, *conc, round**msgs)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			cpu1, err := postfixCPU(s.pf)
			if err != nil {
				return err
			}
			s.cpus = append(s.cpus, (cpu1-cpu0)/float64(*msgs))
			if ok != *msgs {
				return fmt.Errorf("%s: %d of %d messages not accepted, e.g. %s", s.name, *msgs-ok, *msgs, why)
			}
			s.rates = append(s.rates, float64(ok)/took.Seconds())
		}
	}

	fmt.Printf("\nPostfix accept rate for non-list mail, new connection per message, %d messages x %d runs, %d concurrent clients, loopback\n",
		*msgs, *rounds, *conc)
	fmt.Printf("%-52s %10s %14s  %s\n", "setup", "median/s", "Postfix CPU/msg", "runs (msgs/s)")
	for _, s := range setups {
		fmt.Printf("%-52s %10.0f %12.2f ms  %s\n", s.name, med(s.rates), med(s.cpus)*1000, fmtRates(s.rates))
	}
	ratio := func(x *setup) (float64, string) {
		ratios := make([]float64, len(plain.rates))
		parts := make([]string, len(ratios))
		for i := range ratios {
			ratios[i] = x.rates[i] / plain.rates[i]
			parts[i] = fmt.Sprintf("%.2f", ratios[i])
		}
		return med(ratios), strings.Join(parts, " ")
	}
	rs, parts := ratio(stopped)
	fmt.Printf("ratio hookup, postlist stopped / none: %.3f [%s]\n", rs, parts)
	fmt.Printf("Postfix CPU per message, hookup with postlist running / none: %.3f (%.2f / %.2f ms)\n",
		med(hooked.cpus)/med(plain.cpus), med(hooked.cpus)*1000, med(plain.cpus)*1000)
	r, parts := ratio(hooked)
	fmt.Printf("ratio hookup, postlist running / none: %.3f [%s] (floor %.2f)\n", r, parts, floor)
	if r < floor {
		return fmt.Errorf("non-list mail runs at %.3f of its rate without the hookup, below the %.2f floor", r, floor)
	}
	return nil
}

// startHooked runs a Postfix with the contrib snippets, and postlist if
// run is set, and checks the hookup is live: a non-member's post to a
// list that rejects them is refused by the policy service (with postlist
// stopped: deferred).
func startHooked(b *testing.B, sink *testenv.Sink, extra map[string]string, run bool) (*testenv.Postfix, error) {
	pl := testenv.NewPostlist(b)
	base := b.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		return nil, err
	}
	mapDir := filepath.Join(base, "data")
	postmapCF := filepath.Join(base, "postmap")
	if err := os.Mkdir(postmapCF, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(postmapCF, "main.cf"), []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		return nil, err
	}
	postmap, err := exec.LookPath("postmap")
	if err != nil {
		postmap = "/usr/sbin/postmap" // command_directory, not always on the PATH
	}
	reinject := testenv.FreeAddr(b)
	pl.Configure(reinject, fmt.Sprintf("[postfix]\nmap_dir = %q\npostmap_command = %q\n", mapDir, postmap+" -c "+postmapCF), closedList)
	pl.CLI("lists", "set", closedList, "default_nonmember_action", "reject")
	pl.CLI("genaliases")
	files, err := testenv.Hookup(mapDir, pl.Policy, reinject)
	if err != nil {
		return nil, err
	}
	pf := testenv.StartPostfix(b, testenv.PostfixOptions{Sink: sink, MainCF: files.MainCF, MasterCF: files.MasterCF, ExtraMain: extra})
	if run {
		pl.Start()
	}
	res, err := testenv.Transact(pf.SMTPAddr, testenv.SendOptions{}, "stranger@example.net", []string{closedList},
		[]byte("Subject: probe\r\n\r\nprobe\r\n"))
	if err != nil {
		return nil, err
	}
	if r := res.Rcpt[0]; run && (r.Code != 550 || !strings.Contains(r.Text, "only members may post")) || !run && r.Code != 451 {
		return nil, fmt.Errorf("hookup not live: a non-member's post to %s got %v", closedList, r)
	}
	return pf, nil
}

// runLoad sends n messages to non-list addresses with c clients, each on
// a new connection, and returns how many were accepted, how long it took
// and one refusal.
func runLoad(addr string, n, c, offset int) (int, time.Duration, string, error) {
	var next, accepted atomic.Int64
	var refusal atomic.Value
	var wg sync.WaitGroup
	errc := make(chan error, c)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= n {
					return
				}
				why, err := sendOne(addr, fmt.Sprintf("sender%d@example.com", offset+k), fmt.Sprintf("user%d@example.net", offset+k))
				if err != nil {
					errc <- err
					return
				}
				if why == "" {
					accepted.Add(1)
				} else {
					refusal.Store(why)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errc)
	why, _ := refusal.Load().(string)
	return int(accepted.Load()), took, why, <-errc
}

var body = strings.Repeat("This line pads the message to about one kilobyte, as smtp-source -l 1024 does.\r\n", 11)

// sendOne runs one session with one transaction. A refusal is returned as
// its reply text with a nil error.
func sendOne(addr, from, to string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	text := textproto.NewConn(conn)
	for _, step := range []struct {
		cmd  string
		code int
	}{{"", 220}, {"EHLO load.example.net", 250}, {"MAIL FROM:<" + from + ">", 250}, {"RCPT TO:<" + to + ">", 250}, {"DATA", 354}} {
		if step.cmd != "" {
			if err := text.PrintfLine("%s", step.cmd); err != nil {
				return "", err
			}
		}
		if _, msg, err := text.ReadResponse(step.code); err != nil {
			var perr *textproto.Error
			if errors.As(err, &perr) {
				return fmt.Sprintf("%s: %d %s", step.cmd, perr.Code, msg), nil
			}
			return "", err
		}
	}
	w := text.DotWriter()
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: load\r\n\r\n%s", from, to, body)
	if err := w.Close(); err != nil {
		return "", err
	}
	if _, msg, err := text.ReadResponse(250); err != nil {
		var perr *textproto.Error
		if errors.As(err, &perr) {
			return fmt.Sprintf("end of data: %d %s", perr.Code, msg), nil
		}
		return "", err
	}
	_ = text.PrintfLine("QUIT")
	_, _, _ = text.ReadResponse(221)
	return "", nil
}

func med(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
