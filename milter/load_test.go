package milter_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"postlist/index"
	"postlist/index/indextest"
	"postlist/internal/testenv"
	"postlist/milter"
)

// BenchmarkPostfixAcceptRate compares how many messages a real Postfix
// accepts per second with no milter, with do-nothing go-milters, and with
// postlist's milter holding 10,000 lists and 1,000,000 members. It is one
// fixed run (b.N is ignored) that prints a table; `make bench` runs it.
// Each milter runs in its own process (this test binary, re-executed) so
// that its CPU time per message can be read from /proc.
var (
	loadMsgs   = flag.Int("milterload.msgs", 600, "messages per measured run")
	loadRounds = flag.Int("milterload.rounds", 5, "measured runs per setup and mode (the median is reported)")
	loadConc   = flag.Int("milterload.conc", 20, "concurrent SMTP clients")
	loadSetups = flag.String("milterload.setups", "none,noop,noop-rcpt-data,postlist",
		"setups to compare: none, noop, noop-rcpt-data, noop-rcpt, postlist")
)

// setupNames describes the setups -milterload.setups can name.
var setupNames = map[string]string{
	"none":           "no milter",
	"noop":           "do-nothing milter, every event",
	"noop-rcpt-data": "do-nothing milter, RCPT+DATA only",
	"noop-rcpt":      "do-nothing milter, RCPT only",
	"postlist":       "postlist milter, 10k lists/1M members",
}

const helperEnv = "POSTLIST_MILTER_LOAD_HELPER"

var loadScale = indextest.Synthetic{Lists: 10_000, Members: 1_000_000}

func TestMain(m *testing.M) {
	if kind := os.Getenv(helperEnv); kind != "" {
		if err := runHelper(kind); err != nil {
			fmt.Fprintln(os.Stderr, "milter helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper serves one kind of milter until stdin is closed.
func runHelper(kind string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var serve func(net.Listener) error
	var stop func() error
	switch kind {
	case "noop":
		// go-milter's defaults: every event, a reply to each.
		s := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }))
		serve, stop = s.Serve, s.Close
	case "noop-rcpt", "noop-rcpt-data":
		// Only what an RCPT check needs: RCPT with a reply, and the end
		// of message, which the protocol always sends; with or without
		// the DATA event (see docs/milter.md for why that matters).
		proto := gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom |
			gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoBody | gomilter.OptNoUnknown
		if kind == "noop-rcpt" {
			proto |= gomilter.OptNoData
		}
		s := gomilter.NewServer(
			gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }),
			gomilter.WithProtocols(proto),
		)
		serve, stop = s.Serve, s.Close
	case "postlist":
		ix := index.New(loadScale, index.Options{})
		if err := ix.Reload(context.Background()); err != nil {
			return err
		}
		// Logging as in production: one JSON line per decision.
		log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
		s := milter.New(milter.Options{Index: ix, Log: log, MaxMessageSize: 10 << 20})
		serve, stop = s.Serve, s.Close
	default:
		return fmt.Errorf("unknown helper %q", kind)
	}
	go serve(ln)
	fmt.Printf("LISTEN %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return stop()
}

type helper struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	addr string
}

func startHelper(b *testing.B, kind string) *helper {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+kind)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	h := &helper{cmd: cmd, in: in}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("milter helper %s did not start: %v", kind, err)
	}
	h.addr = strings.TrimSpace(strings.TrimPrefix(line, "LISTEN "))
	return h
}

// cpu is the helper's user+system CPU time so far.
func (h *helper) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// the 14th and 15th fields, in USER_HZ (100 on Linux) ticks.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

type setup struct {
	name   string
	helper string // "" for no milter
	h      *helper
	pf     *testenv.Postfix
	rates  map[bool][]float64 // by reuse
	cpus   map[bool][]time.Duration
	failed int
	sample string // one refusal, for the error message
}

func BenchmarkPostfixAcceptRate(b *testing.B) {
	var setups []*setup
	for _, k := range strings.Split(*loadSetups, ",") {
		name, ok := setupNames[k]
		if !ok {
			b.Fatalf("-milterload.setups: unknown setup %q", k)
		}
		if k == "none" {
			k = ""
		}
		setups = append(setups, &setup{name: name, helper: k})
	}
	sink := testenv.StartSink(b)
	transport := filepath.Join(b.TempDir(), "transport")
	// Accepted list mail is thrown away by Postfix itself, so delivery
	// costs the same small amount in every setup.
	if err := os.WriteFile(transport, []byte("lists.example.org discard:\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, s := range setups {
		opts := testenv.PostfixOptions{Sink: sink, ListDomains: []string{"lists.example.org"}, TransportMaps: "texthash:" + transport}
		if s.helper != "" {
			s.h = startHelper(b, s.helper)
			opts.Milter = "inet:" + s.h.addr
		}
		s.pf = testenv.StartPostfix(b, opts)
		s.rates = map[bool][]float64{}
		s.cpus = map[bool][]time.Duration{}
		// Warm up: smtpd processes, the milter connection code paths.
		for _, reuse := range []bool{false, true} {
			if _, _, _, err := runLoad(s.pf.SMTPAddr, 100, *loadConc, reuse, 0); err != nil {
				b.Fatalf("%s: warm-up: %v", s.name, err)
			}
		}
	}
	b.ResetTimer()
	// Rounds alternate the setups, so that noise from the shared machine
	// spreads over all of them rather than hitting one.
	for round := range *loadRounds {
		order := slices.Clone(setups)
		if round%2 == 1 {
			// Alternate the order too, so no setup always follows another.
			slices.Reverse(order)
		}
		for _, reuse := range []bool{false, true} {
			for _, s := range order {
				var cpu0 time.Duration
				if s.h != nil {
					cpu0 = s.h.cpu()
				}
				ok, took, refusal, err := runLoad(s.pf.SMTPAddr, *loadMsgs, *loadConc, reuse, round**loadMsgs)
				if err != nil {
					b.Fatalf("%s: %v", s.name, err)
				}
				s.failed += *loadMsgs - ok
				if refusal != "" {
					s.sample = refusal
				}
				s.rates[reuse] = append(s.rates[reuse], float64(ok)/took.Seconds())
				if s.h != nil {
					s.cpus[reuse] = append(s.cpus[reuse], (s.h.cpu()-cpu0)/time.Duration(*loadMsgs))
				}
			}
		}
	}
	b.StopTimer()

	fmt.Printf("\nPostfix accept rate, %d messages x %d runs per cell, %d concurrent clients, loopback (median msgs/s; milter CPU per message)\n",
		*loadMsgs, *loadRounds, *loadConc)
	fmt.Printf("%-40s %20s %20s %12s %12s\n", "setup", "new conn/message", "reused session", "CPU/msg new", "CPU/msg reuse")
	median := map[string]map[bool]float64{}
	for _, s := range setups {
		median[s.helper] = map[bool]float64{false: med(s.rates[false]), true: med(s.rates[true])}
		cpu := func(reuse bool) string {
			if s.h == nil {
				return "-"
			}
			return fmt.Sprintf("%.3f ms", float64(medDur(s.cpus[reuse]).Microseconds())/1000)
		}
		fmt.Printf("%-40s %20s %20s %12s %12s\n", s.name,
			fmt.Sprintf("%.0f %v", median[s.helper][false], fmtRates(s.rates[false])),
			fmt.Sprintf("%.0f %v", median[s.helper][true], fmtRates(s.rates[true])), cpu(false), cpu(true))
		if s.failed > 0 {
			b.Errorf("%s: %d messages not accepted, e.g. %s", s.name, s.failed, s.sample)
		}
	}
	// Ratios are taken per round, between runs made seconds apart, and
	// the median of those is reported: on a shared machine that is far
	// steadier than a ratio of two medians.
	byKind := map[string]*setup{}
	for _, s := range setups {
		byKind[s.helper] = s
	}
	ratio := func(a, b string, reuse bool) (float64, []float64, bool) {
		x, y := byKind[a], byKind[b]
		if x == nil || y == nil {
			return 0, nil, false
		}
		rs := make([]float64, len(x.rates[reuse]))
		for i := range rs {
			rs[i] = x.rates[reuse][i] / y.rates[reuse][i]
		}
		return med(rs), rs, true
	}
	for _, reuse := range []bool{false, true} {
		mode := map[bool]string{false: "new-conn", true: "reuse"}[reuse]
		for _, p := range [][2]string{{"postlist", "noop"}, {"postlist", "noop-rcpt-data"}, {"postlist", "noop-rcpt"}, {"noop", ""}, {"postlist", ""}} {
			r, rs, ok := ratio(p[0], p[1], reuse)
			if !ok {
				continue
			}
			floor := ""
			if p == [2]string{"postlist", "noop"} {
				floor = " (floor 0.95)"
				b.ReportMetric(r, "ratio-"+mode)
				if r < 0.95 {
					b.Errorf("postlist's accept rate is %.2f of the do-nothing milter's with %s, below the 0.95 floor", r, mode)
				}
			}
			parts := make([]string, len(rs))
			for i, x := range rs {
				parts[i] = fmt.Sprintf("%.2f", x)
			}
			fmt.Printf("%-9s %s / %s: %.2f [%s]%s\n", mode, setupNames[orNone(p[0])], setupNames[orNone(p[1])], r, strings.Join(parts, " "), floor)
		}
	}
}

func orNone(k string) string {
	if k == "" {
		return "none"
	}
	return k
}

func fmtRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(int(x))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func med(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medDur(xs []time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// runLoad sends n member posts to list addresses with conc clients, each
// message on a new connection or all of a client's on one session, and
// returns how many were accepted, how long it took, and one refusal.
func runLoad(addr string, n, conc int, reuse bool, offset int) (int, time.Duration, string, error) {
	var next, accepted atomic.Int64
	var refusal atomic.Value
	var wg sync.WaitGroup
	errc := make(chan error, conc)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtpClient
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for {
				k := int(next.Add(1)) - 1
				if k >= n {
					return
				}
				if c == nil {
					var err error
					if c, err = dialSMTP(addr); err != nil {
						errc <- err
						return
					}
				}
				i := (offset + k) % loadScale.Lists
				from := loadScale.MemberAddr(i, (offset+k)%loadScale.PerList(i))
				why, err := c.send(from, loadScale.ListAddr(i))
				if err != nil {
					errc <- err
					return
				}
				if why == "" {
					accepted.Add(1)
				} else {
					refusal.Store(why)
				}
				if !reuse {
					c.close()
					c = nil
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

type smtpClient struct {
	conn net.Conn
	text *textproto.Conn
}

var body = strings.Repeat("This line pads the message to about one kilobyte, as smtp-source -l 1024 does.\r\n", 11)

func dialSMTP(addr string) (*smtpClient, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &smtpClient{conn: conn, text: textproto.NewConn(conn)}
	if err := c.expect("", 220); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.expect("EHLO load.example.net", 250); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *smtpClient) expect(cmd string, code int) error {
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if cmd != "" {
		if err := c.text.PrintfLine("%s", cmd); err != nil {
			return err
		}
	}
	_, msg, err := c.text.ReadResponse(code)
	if err != nil {
		return fmt.Errorf("%s: %w (%s)", cmd, err, msg)
	}
	return nil
}

// send runs one transaction. A refusal is returned as its reply text,
// with a nil error: the session goes on.
func (c *smtpClient) send(from, to string) (string, error) {
	for _, step := range []struct {
		cmd  string
		code int
	}{{"MAIL FROM:<" + from + ">", 250}, {"RCPT TO:<" + to + ">", 250}, {"DATA", 354}} {
		if err := c.expect(step.cmd, step.code); err != nil {
			var perr *textproto.Error
			if errors.As(err, &perr) {
				_ = c.expect("RSET", 250)
				return err.Error(), nil
			}
			return "", err
		}
	}
	w := c.text.DotWriter()
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: load\r\n\r\n%s", from, to, body)
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := c.expect("", 250); err != nil {
		var perr *textproto.Error
		if errors.As(err, &perr) {
			return err.Error(), nil
		}
		return "", err
	}
	return "", nil
}

func (c *smtpClient) close() {
	_ = c.text.PrintfLine("QUIT")
	_, _, _ = c.text.ReadResponse(221)
	c.conn.Close()
}
