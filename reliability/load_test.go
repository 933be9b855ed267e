package reliability

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// loadDuration is how long TestLoad keeps its 100 sessions busy.
func loadDuration() time.Duration {
	if longRun() {
		return 60 * time.Second
	}
	return 5 * time.Second
}

// TestLoad keeps 100 concurrent SMTP sessions sending posts through the
// real Postfix, with postlist as its milter, for loadDuration. Every
// reply must be a success, every accepted post must be stored once and
// reach the list's member once, neither Postfix nor the daemon may log a
// milter or storage error, and the milter's latency is reported as seen
// by a recording proxy between Postfix and the milter.
func TestLoad(t *testing.T) {
	t.Parallel()
	const sessions = 100
	var proxy *milterProxy
	l := listSpec{name: "load", members: 1}
	s := startStack(t, stackOptions{
		MilterVia: func(milter string) string {
			proxy = startMilterProxy(t, milter)
			return proxy.addr
		},
		Extra: "delivery_retry_interval = \"1s\"\n",
	}, l)
	s.checkHealthy(t, l.addr())
	proxy.reset()
	logStart := len(s.pl.Log())
	pfLogStart := len(s.pf.Log())

	type result struct {
		sent     []string // Message-IDs answered 250
		errs     []string
		lat      []time.Duration
		sessions int
	}
	results := make([]result, sessions)
	deadline := time.Now().Add(loadDuration())
	var wg sync.WaitGroup
	for g := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[g]
			fail := func(format string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(format, args...)) }
			for time.Now().Before(deadline) {
				c, gr, err := dial(s.pf.SMTPAddr, time.Minute)
				if err != nil {
					fail("session %d: greeting %v: %v", g, gr, err)
					return
				}
				r.sessions++
				if rp, err := c.cmd("EHLO load%d.example.net", g); err != nil || rp.code != 250 {
					fail("session %d: EHLO %v %v", g, rp, err)
					c.close()
					return
				}
				// Up to 100 transactions per session (Postfix's
				// smtpd_client_... limits are per connection), then a
				// new one, as a busy remote MTA would.
				for i := 0; i < 100 && time.Now().Before(deadline); i++ {
					id := fmt.Sprintf("<load-%d-%d-%d@example.com>", g, r.sessions, i)
					began := time.Now()
					steps := []func() (reply, error){
						func() (reply, error) { return c.cmd("MAIL FROM:<sender%d@example.com>", g) },
						func() (reply, error) { return c.cmd("RCPT TO:<%s>", l.addr()) },
						func() (reply, error) {
							return c.data(message(l.addr(), id, "load "+id, "Load test message.\r\n"))
						},
					}
					ok := true
					for n, step := range steps {
						rp, err := step()
						if err != nil || rp.code != 250 {
							fail("%s step %d: %v %v", id, n, rp, err)
							ok = false
							break
						}
					}
					if !ok {
						c.close()
						return
					}
					r.lat = append(r.lat, time.Since(began))
					r.sent = append(r.sent, id)
				}
				c.close()
			}
		}()
	}
	wg.Wait()
	elapsed := loadDuration()

	var sent []string
	var lat []time.Duration
	var errs []string
	conns := 0
	for _, r := range results {
		sent = append(sent, r.sent...)
		lat = append(lat, r.lat...)
		errs = append(errs, r.errs...)
		conns += r.sessions
	}
	for i, e := range errs {
		if i == 10 {
			t.Errorf("... and %d more errors", len(errs)-10)
			break
		}
		t.Error(e)
	}
	milterLat := proxy.latencies()

	// Every accepted post stored once and delivered once.
	db := openDB(t, s.pl.DB)
	drain := 5 * time.Minute
	if longRun() {
		drain = 20 * time.Minute
	}
	member := l.memberAddrs()[0]
	testenv.WaitForWhy(t, drain, "every accepted post delivered", func() (bool, string) {
		got := copies(s.sink.Envelopes(), "<load-")
		if len(got) < len(sent) {
			return false, fmt.Sprintf("%d of %d posts at the member; %s", len(got), len(sent), unsettled(t, db))
		}
		return unsettled(t, db) == "", unsettled(t, db)
	})
	s.pf.WaitQueueEmpty(t, time.Minute)
	got := copies(s.sink.Envelopes(), "<load-")
	for _, id := range sent {
		if n := got[copyKey{id, member}]; n != 1 {
			t.Errorf("%s reached the member %d times, want once", id, n)
		}
	}
	if len(got) != len(sent) {
		t.Errorf("%d posts at the member, %d accepted by Postfix", len(got), len(sent))
	}
	stored := queryInt(t, db, "SELECT COUNT(*) FROM intake i JOIN messages m ON m.id = i.message_id WHERE i.kind = 'post' AND m.message_id LIKE '<load-%'")
	if stored != int64(len(sent)) {
		t.Errorf("%d posts stored, %d accepted by Postfix", stored, len(sent))
	}

	// Neither side complained.
	for _, line := range strings.Split(s.pl.Log()[logStart:], "\n") {
		var rec struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &rec) == nil && (rec.Level == "error" || rec.Level == "warn" || rec.Level == "panic") {
			t.Errorf("daemon logged during the load: %s", line)
		}
	}
	milterTrouble := regexp.MustCompile(`(?i)warning: .*milter|milter-reject: .*4\.7\.1`)
	for _, line := range strings.Split(s.pf.Log()[pfLogStart:], "\n") {
		if milterTrouble.MatchString(line) {
			t.Errorf("Postfix: %s", line)
		}
	}
	s.checkHealthy(t, l.addr())

	slices.Sort(lat)
	report := func(name string, d []time.Duration) string {
		slices.Sort(d)
		if len(d) == 0 {
			return name + ": none"
		}
		return fmt.Sprintf("%s n=%d p50 %v p90 %v p99 %v max %v", name, len(d),
			percentile(d, 50).Round(time.Microsecond), percentile(d, 90).Round(time.Microsecond),
			percentile(d, 99).Round(time.Microsecond), d[len(d)-1].Round(time.Microsecond))
	}
	t.Logf("load: %d sessions for %v over %d connections: %d posts accepted (%.0f/s), %d errors; all stored once and delivered once",
		sessions, elapsed, conns, len(sent), float64(len(sent))/elapsed.Seconds(), len(errs))
	t.Logf("load: SMTP transaction (MAIL to final 250, client side): %s", report("all", lat))
	t.Logf("load: milter reply latency at the proxy: %s; %s; %s",
		report("RCPT", milterLat['R']), report("DATA", milterLat['T']), report("end of message", milterLat['E']))
}

// milterProxy sits between Postfix and the milter, forwards every packet
// unchanged and times each command that waits for a reply (RCPT 'R', DATA
// 'T', end of message 'E'): from the command reaching the proxy to the
// reply reaching it. That is the milter's latency as Postfix sees it,
// plus one loopback hop each way.
type milterProxy struct {
	addr   string
	target string
	ln     net.Listener

	mu  sync.Mutex
	lat map[byte][]time.Duration
}

func startMilterProxy(t *testing.T, target string) *milterProxy {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &milterProxy{addr: ln.Addr().String(), target: target, ln: ln, lat: map[byte][]time.Duration{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return p
}

func (p *milterProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lat = map[byte][]time.Duration{}
}

func (p *milterProxy) latencies() map[byte][]time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[byte][]time.Duration{}
	for k, v := range p.lat {
		out[k] = append([]time.Duration(nil), v...)
	}
	return out
}

// serve relays one Postfix connection. Milter packets are a 4-byte
// big-endian length and that many bytes, the first being the command.
func (p *milterProxy) serve(down net.Conn) {
	defer down.Close()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return // Postfix sees the milter as unavailable, as it would
	}
	defer up.Close()
	type pending struct {
		cmd byte
		at  time.Time
	}
	var (
		mu    sync.Mutex
		queue []pending
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer up.Close()
		relay(down, up, func(cmd byte) {
			switch cmd {
			case 'R', 'T', 'E':
				mu.Lock()
				queue = append(queue, pending{cmd, time.Now()})
				mu.Unlock()
			}
		})
	}()
	relay(up, down, func(resp byte) {
		switch resp {
		case 'c', 'a', 'r', 't', 'y', 'd':
			// A final reply answers the oldest waiting command.
		default:
			return // option negotiation, progress, modifications
		}
		mu.Lock()
		defer mu.Unlock()
		if len(queue) == 0 {
			return
		}
		q := queue[0]
		queue = queue[1:]
		p.mu.Lock()
		p.lat[q.cmd] = append(p.lat[q.cmd], time.Since(q.at))
		p.mu.Unlock()
	})
	down.Close()
	<-done
}

// relay copies packets from src to dst, calling seen with each packet's
// command byte before forwarding it.
func relay(src, dst net.Conn, seen func(byte)) {
	var hdr [4]byte
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > 64<<20 {
			return
		}
		if int(n) > len(buf) {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(src, buf[:n]); err != nil {
			return
		}
		seen(buf[0])
		// One write per packet, as the sender wrote it.
		if _, err := dst.Write(append(hdr[:], buf[:n]...)); err != nil {
			return
		}
	}
}
