package reliability

// A smart host that misbehaves on purpose. It is written on raw TCP rather
// than go-smtp's server because the faults are exactly what a well-behaved
// server library will not do: drop the connection halfway through DATA,
// answer 421 and hang up, or never answer at all.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fault is what the sink does to one transaction.
type fault int

const (
	faultNone      fault = iota
	fault421Rcpt         // 421 4.4.2 to RCPT, then hang up
	fault451Rcpt         // 451 4.3.0 to RCPT
	fault452Rcpt         // 452 4.2.2 (mailbox full) to RCPT
	fault550Rcpt         // 550 5.1.1 (no such user) to RCPT
	fault554Rcpt         // 554 5.7.1 (policy) to RCPT
	fault451Data         // 451 4.3.0 after the message
	fault421Data         // 421 4.3.2 after the message, then hang up
	fault550Data         // 550 5.1.1 after the message
	fault554Data         // 554 5.6.0 after the message
	faultDropData        // hang up after the first lines of the message
	faultStallRcpt       // never answer RCPT
	faultStallData       // never answer after the message
)

var faultNames = map[fault]string{
	faultNone: "none", fault421Rcpt: "421@RCPT", fault451Rcpt: "451@RCPT", fault452Rcpt: "452@RCPT",
	fault550Rcpt: "550@RCPT", fault554Rcpt: "554@RCPT", fault451Data: "451@DATA", fault421Data: "421@DATA",
	fault550Data: "550@DATA", fault554Data: "554@DATA", faultDropData: "drop-mid-DATA",
	faultStallRcpt: "stall@RCPT", faultStallData: "stall@DATA",
}

func (f fault) String() string { return faultNames[f] }

// attempt is one transaction the sink saw for a recipient.
type attempt struct {
	at    time.Time // when RCPT arrived
	fault fault
	// held is how long a stalled transaction was kept waiting before the
	// client gave up and closed the connection.
	held time.Duration
}

// faultSink is the smart host. decide picks the fault for each
// transaction from the recipient and the number of transactions it has
// already seen for that recipient.
type faultSink struct {
	Addr   string
	ln     net.Listener
	decide func(rcpt string, prior int) fault

	mu        sync.Mutex
	open      int // connections open now
	peak      int // most connections open at once
	conns     int // connections accepted in all
	attempts  map[string][]attempt
	delivered map[string]int // 250 after the message, per recipient
	stalls    []net.Conn
	wg        sync.WaitGroup
	closed    bool
}

func startFaultSink(t testing.TB, decide func(rcpt string, prior int) fault) *faultSink {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &faultSink{Addr: ln.Addr().String(), ln: ln, decide: decide,
		attempts: map[string][]attempt{}, delivered: map[string]int{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.open++
			s.conns++
			s.peak = max(s.peak, s.open)
			s.wg.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.wg.Done()
				s.serve(c)
				c.Close()
				s.mu.Lock()
				s.open--
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

// close stops the sink and hangs up on every client, stalled ones too.
func (s *faultSink) close() {
	s.mu.Lock()
	s.closed = true
	for _, c := range s.stalls {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// stats returns the connection counters.
func (s *faultSink) stats() (open, peak, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.peak, s.conns
}

func (s *faultSink) history(rcpt string) ([]attempt, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]attempt(nil), s.attempts[rcpt]...), s.delivered[rcpt]
}

// serve runs one connection. It returns to hang up.
func (s *faultSink) serve(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return w.Flush() == nil
	}
	readLine := func() (string, bool) {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		l, err := r.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err == nil
	}
	// stall keeps the connection open without answering until the client
	// closes it (its timeout) and records how long that took.
	stall := func(rcpt string) {
		s.mu.Lock()
		s.stalls = append(s.stalls, c)
		s.mu.Unlock()
		began := time.Now()
		_ = c.SetReadDeadline(time.Time{})
		// Whatever the client pipelined after the stalled command is
		// read and ignored; the copy ends when it hangs up.
		_, _ = io.Copy(io.Discard, r)
		s.mu.Lock()
		if as := s.attempts[rcpt]; len(as) > 0 {
			as[len(as)-1].held = time.Since(began)
		}
		s.mu.Unlock()
	}
	if !say("220 fault.sink.test ESMTP") {
		return
	}
	var (
		f        fault
		rcpt     string
		accepted int
	)
	for {
		line, ok := readLine()
		if !ok {
			return
		}
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			if !say("250-fault.sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 52428800", "250 ENHANCEDSTATUSCODES") {
				return
			}
		case strings.HasPrefix(verb, "MAIL FROM:"):
			f, rcpt, accepted = faultNone, "", 0
			say("250 2.1.0 Ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			addr := strings.ToLower(strings.Trim(strings.TrimSpace(line[len("RCPT TO:"):]), "<>"))
			s.mu.Lock()
			prior := len(s.attempts[addr])
			s.mu.Unlock()
			rf := s.decide(addr, prior)
			s.mu.Lock()
			s.attempts[addr] = append(s.attempts[addr], attempt{at: time.Now(), fault: rf})
			s.mu.Unlock()
			if rcpt == "" {
				f, rcpt = rf, addr
			}
			switch rf {
			case fault421Rcpt:
				say("421 4.4.2 fault.sink.test closing: too busy")
				return
			case fault451Rcpt:
				say("451 4.3.0 <" + addr + ">: temporary local problem")
			case fault452Rcpt:
				say("452 4.2.2 <" + addr + ">: mailbox full")
			case fault550Rcpt:
				say("550 5.1.1 <" + addr + ">: no such user")
			case fault554Rcpt:
				say("554 5.7.1 <" + addr + ">: rejected by local policy")
			case faultStallRcpt:
				w.Flush()
				stall(addr)
				return
			default:
				accepted++
				say("250 2.1.5 Ok")
			}
		case verb == "DATA":
			if accepted == 0 {
				say("554 5.5.1 no valid recipients")
				continue
			}
			if !say("354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			lines := 0
			for {
				l, ok := readLine()
				if !ok {
					return
				}
				if l == "." {
					break
				}
				lines++
				if f == faultDropData && lines == 3 {
					return // mid-DATA: the client is still writing
				}
			}
			switch f {
			case fault451Data:
				say("451 4.3.0 temporary failure after data")
			case fault421Data:
				say("421 4.3.2 fault.sink.test shutting down")
				return
			case fault550Data:
				say("550 5.1.1 <" + rcpt + ">: mailbox unavailable")
			case fault554Data:
				say("554 5.6.0 message content refused")
			case faultStallData:
				w.Flush()
				stall(rcpt)
				return
			default:
				s.mu.Lock()
				s.delivered[rcpt]++
				s.mu.Unlock()
				say("250 2.0.0 Ok: queued")
			}
		case verb == "RSET" || verb == "NOOP":
			f, rcpt, accepted = faultNone, "", 0
			say("250 2.0.0 Ok")
		case verb == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say(fmt.Sprintf("502 5.5.2 command not recognized: %.20q", line))
		}
	}
}
