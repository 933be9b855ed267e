package deliver

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postlist/internal/testenv/storetest"
	"postlist/store"
)

// scripted is an SMTP server whose replies a test chooses, recording the
// commands it got. It speaks just enough SMTP for the client: EHLO, and
// DATA followed by a message when it answers 354.
type scripted struct {
	addr string
	ext  []string // EHLO keywords after the greeting line
	// respond returns the reply to a command line ("" = a default reply:
	// 250, or 354 for DATA; "CLOSE" = hang up without a reply). It may be
	// called for "." (end of data).
	respond func(cmd string) string

	mu   sync.Mutex
	cmds []string
}

func startScripted(t *testing.T, ext []string, respond func(string) string) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{addr: ln.Addr().String(), ext: ext, respond: respond}
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
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(rp string) {
		w.WriteString(strings.ReplaceAll(rp, "\n", "\r\n") + "\r\n")
		w.Flush()
	}
	say("220 scripted.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.cmds = append(s.cmds, cmd)
		s.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(cmd + " x")[0])
		rp := ""
		if s.respond != nil {
			rp = s.respond(cmd)
		}
		if rp == "CLOSE" {
			return
		}
		switch {
		case verb == "EHLO" && rp == "":
			lines := append([]string{"scripted.test"}, s.ext...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				w.WriteString("250" + sep + l + "\r\n")
			}
			w.Flush()
		case verb == "QUIT":
			say("221 bye")
			return
		case verb == "DATA":
			if rp == "" {
				rp = "354 go ahead"
			}
			say(rp)
			if !strings.HasPrefix(rp, "354") {
				continue
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			end := ""
			if s.respond != nil {
				end = s.respond(".")
			}
			if end == "" {
				end = "250 2.0.0 queued"
			}
			s.mu.Lock()
			s.cmds = append(s.cmds, ".")
			s.mu.Unlock()
			say(end)
		default:
			if rp == "" {
				rp = "250 2.0.0 ok"
			}
			say(rp)
		}
	}
}

// verbs returns the command verbs received, in order, without the
// greeting ones.
func (s *scripted) verbs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.cmds {
		v := strings.ToUpper(strings.Fields(c + " x")[0])
		if v != "EHLO" && v != "HELO" && v != "QUIT" {
			out = append(out, v)
		}
	}
	return out
}

// countingConn counts the writes that reach the socket: each is at least
// one TCP segment, and the fewer per transaction the better.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// dialSession opens a session to addr over a countingConn.
func dialSession(t *testing.T, addr string) (*session, *countingConn) {
	t.Helper()
	conn, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: conn}
	c := newClient(cc, 5*time.Second, 5*time.Second)
	if err := c.hello("postlist.test", true); err != nil {
		t.Fatal(err)
	}
	s := &session{c: c, unhook: func() bool { return true }}
	t.Cleanup(s.quit)
	return s, cc
}

func testJob(rcpts ...string) *job {
	j := &job{Job: Job{MessageID: 1, EnvelopeFrom: "test-bounces@lists.example.org", Recipients: rcpts}}
	for i, r := range rcpts {
		j.rows = append(j.rows, store.Delivery{ID: int64(i + 1), Recipient: r})
	}
	return j
}

func states(vs []verdict) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.state)
	}
	return out
}

// TestWritesPerTransaction pins the property that protects against the
// delayed-ACK stall and keeps system calls down: with PIPELINING a
// transaction is two writes (commands, message), without it one per
// command.
func TestWritesPerTransaction(t *testing.T) {
	tests := []struct {
		name       string
		ext        []string
		rcpts      int
		wantWrites int64
		wantVerbs  []string
	}{
		{"pipelined, one recipient", []string{"PIPELINING", "SIZE 1000000"}, 1, 2, []string{"MAIL", "RCPT", "DATA", "."}},
		{"pipelined, three recipients", []string{"PIPELINING"}, 3, 2, []string{"MAIL", "RCPT", "RCPT", "RCPT", "DATA", "."}},
		{"one command per round trip", []string{"SIZE 1000000"}, 1, 4, []string{"MAIL", "RCPT", "DATA", "."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startScripted(t, tc.ext, nil)
			s, cc := dialSession(t, srv.addr)
			var rcpts []string
			for i := range tc.rcpts {
				rcpts = append(rcpts, "m"+string(rune('a'+i))+"@example.com")
			}
			before := cc.writes.Load()
			vs, _ := s.transact(New(Options{}), testJob(rcpts...), newPayload(testMessage))
			if got := cc.writes.Load() - before; got != tc.wantWrites {
				t.Errorf("%d writes, want %d", got, tc.wantWrites)
			}
			for _, v := range vs {
				if v.state != store.DeliverySent || v.reply != "250 2.0.0 queued" {
					t.Errorf("verdict %+v", v)
				}
			}
			if got := srv.verbs(); !slices.Equal(got, tc.wantVerbs) {
				t.Errorf("server got %v, want %v", got, tc.wantVerbs)
			}
			if tc.ext[len(tc.ext)-1] == "SIZE 1000000" && !strings.Contains(srv.cmds[1], " SIZE=") {
				t.Errorf("MAIL without SIZE: %q", srv.cmds[1])
			}
		})
	}
}

// TestRefusalsKeepTheSessionInStep runs a refused transaction and then a
// normal one on the same connection: whatever the refusal, the client must
// read every reply it is owed (or reset), so the next transaction's
// replies are its own.
func TestRefusalsKeepTheSessionInStep(t *testing.T) {
	tests := []struct {
		name       string
		pipelining bool
		respond    func(cmd string) string
		rcpts      []string
		want       []string // states of the first transaction
		wantBounce string   // bounce kind of the first failed row
		wantVerbs  []string // everything the server got, both transactions
	}{
		{
			name: "MAIL refused, pipelined", pipelining: true,
			respond: onFirst("MAIL", "553 5.1.8 sender domain unknown", "RCPT", "503 5.5.1 need MAIL", "DATA", "503 5.5.1 need RCPT"),
			rcpts:   []string{"a@example.com", "b@example.com"},
			want:    []string{store.DeliveryFailed, store.DeliveryFailed}, wantBounce: store.BounceUnknown,
			wantVerbs: []string{"MAIL", "RCPT", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "."},
		},
		{
			name:    "MAIL refused, one command at a time",
			respond: onFirst("MAIL", "451 4.3.0 try later"),
			rcpts:   []string{"a@example.com"},
			want:    []string{store.DeliveryDeferred},
			// No RCPT after a refused MAIL.
			wantVerbs: []string{"MAIL", "RSET", "MAIL", "RCPT", "DATA", "."},
		},
		{
			name: "every RCPT refused but DATA accepted, pipelined", pipelining: true,
			respond: onFirst("RCPT", "550 5.1.1 no such user"),
			rcpts:   []string{"a@example.com"},
			want:    []string{store.DeliveryFailed}, wantBounce: store.BouncePermanent,
			// RFC 2920: a lone dot ends the unwanted DATA.
			wantVerbs: []string{"MAIL", "RCPT", "DATA", ".", "RSET", "MAIL", "RCPT", "DATA", "."},
		},
		{
			name:    "every RCPT refused, one command at a time",
			respond: onFirst("RCPT", "550 5.1.1 no such user"),
			rcpts:   []string{"a@example.com"},
			want:    []string{store.DeliveryFailed}, wantBounce: store.BouncePermanent,
			wantVerbs: []string{"MAIL", "RCPT", "RSET", "MAIL", "RCPT", "DATA", "."},
		},
		{
			name: "one of two RCPTs refused", pipelining: true,
			respond: onFirst("RCPT", "550 5.1.1 no such user"),
			rcpts:   []string{"a@example.com", "b@example.com"},
			want:    []string{store.DeliveryFailed, store.DeliverySent}, wantBounce: store.BouncePermanent,
			wantVerbs: []string{"MAIL", "RCPT", "RCPT", "DATA", ".", "MAIL", "RCPT", "DATA", "."},
		},
		{
			name: "DATA refused", pipelining: true,
			respond: onFirst("DATA", "554 5.5.0 no"),
			rcpts:   []string{"a@example.com"},
			want:    []string{store.DeliveryFailed}, wantBounce: store.BounceUnknown,
			wantVerbs: []string{"MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "."},
		},
		{
			name: "message refused after the data", pipelining: true,
			respond: onFirst(".", "550 5.7.1 content rejected"),
			rcpts:   []string{"a@example.com"},
			want:    []string{store.DeliveryFailed}, wantBounce: store.BouncePolicy,
			// The final reply ends the transaction: no RSET needed.
			wantVerbs: []string{"MAIL", "RCPT", "DATA", ".", "MAIL", "RCPT", "DATA", "."},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ext := []string{"SIZE 1000000"}
			if tc.pipelining {
				ext = append(ext, "PIPELINING")
			}
			srv := startScripted(t, ext, tc.respond)
			s, _ := dialSession(t, srv.addr)
			d := New(Options{})
			vs, _ := s.transact(d, testJob(tc.rcpts...), newPayload(testMessage))
			if got := states(vs); !slices.Equal(got, tc.want) {
				t.Errorf("first transaction: %v, want %v (%+v)", got, tc.want, vs)
			}
			for _, v := range vs {
				if v.state == store.DeliveryFailed {
					if v.bounce != tc.wantBounce {
						t.Errorf("bounce %q, want %q", v.bounce, tc.wantBounce)
					}
					break
				}
			}
			if s.broken {
				t.Fatal("the session was given up; it should still be usable")
			}
			vs, _ = s.transact(d, testJob("next@example.com"), newPayload(testMessage))
			if vs[0].state != store.DeliverySent || vs[0].reply != "250 2.0.0 queued" {
				t.Errorf("next transaction: %+v", vs[0])
			}
			if got := srv.verbs(); !slices.Equal(got, tc.wantVerbs) {
				t.Errorf("server got %v, want %v", got, tc.wantVerbs)
			}
		})
	}
}

// onFirst answers the first occurrence of each verb with the given reply.
func onFirst(pairs ...string) func(string) string {
	var mu sync.Mutex
	used := map[string]bool{}
	return func(cmd string) string {
		verb := strings.ToUpper(strings.Fields(cmd + " x")[0])
		mu.Lock()
		defer mu.Unlock()
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i] == verb && !used[verb] {
				used[verb] = true
				return pairs[i+1]
			}
		}
		return ""
	}
}

func TestServiceClosingMarksTheSessionBroken(t *testing.T) {
	srv := startScripted(t, []string{"PIPELINING"}, onFirst("RCPT", "421 4.3.2 shutting down"))
	s, _ := dialSession(t, srv.addr)
	vs, _ := s.transact(New(Options{}), testJob("a@example.com", "b@example.com"), newPayload(testMessage))
	if got := states(vs); !slices.Equal(got, []string{store.DeliveryDeferred, store.DeliveryDeferred}) || !s.broken {
		t.Errorf("states %v broken %v; want both deferred and the session given up", got, s.broken)
	}
}

func TestAuthLoginAsksForTheUserName(t *testing.T) {
	// A LOGIN server that ignores the initial response and prompts for
	// the user name, then the password.
	b64 := base64.StdEncoding.EncodeToString
	var got []string
	var mu sync.Mutex
	step := 0
	srv := startScripted(t, []string{"AUTH LOGIN"}, func(cmd string) string {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasPrefix(cmd, "AUTH") {
			step = 1
			return "334 " + b64([]byte("Username:"))
		}
		switch step {
		case 1:
			got = append(got, cmd)
			step = 2
			return "334 " + b64([]byte("Password:"))
		case 2:
			got = append(got, cmd)
			step = 0
			return "235 2.7.0 ok"
		}
		return ""
	})
	conn, err := net.Dial("tcp4", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(conn, 5*time.Second, 5*time.Second)
	defer c.quit(time.Second)
	if err := c.hello("postlist.test", true); err != nil {
		t.Fatal(err)
	}
	if err := c.auth("user", "pass"); err != nil {
		t.Fatalf("auth: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{b64([]byte("user")), b64([]byte("pass"))}; !slices.Equal(got, want) {
		t.Errorf("server got %v, want %v", got, want)
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		in      string
		code    int
		text    string
		enh     smtp.EnhancedCode
		msg     string
		wantErr bool
	}{
		{in: "250 2.0.0 Ok: queued as 4F2A\r\n", code: 250, text: "2.0.0 Ok: queued as 4F2A", enh: smtp.EnhancedCode{2, 0, 0}, msg: "Ok: queued as 4F2A"},
		{in: "550-5.1.1 no such\r\n550 5.1.1 user here\r\n", code: 550, text: "5.1.1 no such\n5.1.1 user here", enh: smtp.EnhancedCode{5, 1, 1}, msg: "no such\nuser here"},
		{in: "451 try later\r\n", code: 451, text: "try later", msg: "try later"},
		{in: "550 4.1.1 class mismatch\r\n", code: 550, text: "4.1.1 class mismatch", msg: "4.1.1 class mismatch"},
		{in: "250\r\n", code: 250, text: ""},
		{in: "250-a\r\n251 b\r\n", wantErr: true},
		{in: "25\r\n", wantErr: true},
		{in: "abc ok\r\n", wantErr: true},
		{in: "250x\r\n", wantErr: true},
		{in: "250 " + strings.Repeat("x", 5000) + "\r\n", wantErr: true},
		{in: "250-unterminated", wantErr: true},
	}
	for _, tc := range tests {
		c := &client{r: bufio.NewReaderSize(strings.NewReader(tc.in), 4096)}
		rp, err := c.readReply()
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: no error, got %+v", tc.in, rp)
			}
			continue
		}
		if err != nil || rp.code != tc.code || rp.text != tc.text {
			t.Errorf("%q: %+v %v; want %d %q", tc.in, rp, err, tc.code, tc.text)
			continue
		}
		if se := rp.smtpError(); se.EnhancedCode != tc.enh || se.Message != tc.msg {
			t.Errorf("%q: as error %+v, want %v %q", tc.in, se, tc.enh, tc.msg)
		}
	}
}

func TestDotStuff(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{"a\nb", "a\r\nb\r\n.\r\n"},
		{".hidden\r\n..two\r\nend.\r\n", "..hidden\r\n...two\r\nend.\r\n.\r\n"},
		{"x\r\n.\r\ny\r\n", "x\r\n..\r\ny\r\n.\r\n"},
		{"bare\rcr", "bare\r\ncr\r\n.\r\n"},
		{"bare\r.dot\r", "bare\r\n..dot\r\n.\r\n"},
		{"two\r\r\nends", "two\r\n\r\nends\r\n.\r\n"},
		{"\n\n", "\r\n\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{"", ".\r\n"},
	}
	for _, tc := range tests {
		if got := string(dotStuff([]byte(tc.in))); got != tc.want {
			t.Errorf("dotStuff(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got, want := string(dotStuff([]byte(tc.in))), string(dotStuffBytewise([]byte(tc.in))); got != want {
			t.Errorf("dotStuff(%q) = %q, byte-wise %q", tc.in, got, want)
		}
	}
	if p := newPayload([]byte("Subject: caf\xc3\xa9\r\n\r\nx\r\n")); !p.eightBit || p.size != 21 {
		t.Errorf("payload %+v, want 8-bit and size 21", p)
	}
}

// dotStuffBytewise is the plain byte-at-a-time statement of dotStuff,
// kept as the reference the line-at-a-time version must match.
func dotStuffBytewise(b []byte) []byte {
	var out []byte
	bol := true
	for i := 0; i < len(b); i++ {
		ch := b[i]
		if bol && ch == '.' {
			out = append(out, '.')
		}
		switch ch {
		case '\n':
			out = append(out, '\r', '\n')
			bol = true
			continue
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				continue
			}
			out = append(out, '\r', '\n')
			bol = true
			continue
		}
		out = append(out, ch)
		bol = false
	}
	if !bol {
		out = append(out, '\r', '\n')
	}
	return append(out, '.', '\r', '\n')
}

// wire is what a payload puts on the connection.
func (p *payload) wire() string { return string(p.own) + string(p.shared) }

// FuzzMessagePayload checks that a message split into its own and shared
// parts goes on the wire exactly as the whole would, and that the
// line-at-a-time stuffing matches the byte-wise one.
func FuzzMessagePayload(f *testing.F) {
	f.Add([]byte("X-Member: a@example.com\r\n"), []byte("Subject: s\r\n\r\n.dot\r\n"))
	f.Add([]byte("no line end"), []byte(".shared"))
	f.Add([]byte("bare\rcr\n"), []byte("\r\n.\r\n"))
	f.Add([]byte{}, []byte("caf\xc3\xa9"))
	f.Add([]byte("\xff\n"), []byte{})
	f.Fuzz(func(t *testing.T, own, shared []byte) {
		whole := append(append([]byte(nil), own...), shared...)
		want := newPayload(whole)
		if got := string(want.shared); got != string(dotStuffBytewise(whole)) {
			t.Fatalf("dotStuff(%q) = %q, byte-wise %q", whole, got, dotStuffBytewise(whole))
		}
		for _, m := range []Message{{Own: own, Shared: NewShared(shared)}, {Own: whole}, {Shared: NewShared(whole)}} {
			p := m.payload()
			if p.wire() != want.wire() || p.size != want.size || p.eightBit != want.eightBit {
				t.Fatalf("own %q shared %q: wire %q size %d 8bit %v; want %q %d %v",
					own, shared, p.wire(), p.size, p.eightBit, want.wire(), want.size, want.eightBit)
			}
			if string(m.Bytes()) != string(whole) {
				t.Fatalf("Bytes() = %q, want %q", m.Bytes(), whole)
			}
		}
	})
}

func TestHas8Bit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{"plain ascii text, longer than eight bytes", false},
		{"\x80", true},
		{"12345678\xff", true},
		{"\xc3\xa9 then ascii for more than eight", true},
		{"1234567\x7f", false},
	} {
		if got := has8Bit([]byte(tc.in)); got != tc.want {
			t.Errorf("has8Bit(%q) = %v", tc.in, got)
		}
	}
}

// TestStaleConnectionIsRetriedOnce has the server hang up on a kept-open
// connection, as a server does to an idle client: the next job must go
// out on a fresh connection without spending an attempt.
func TestStaleConnectionIsRetriedOnce(t *testing.T) {
	var mails atomic.Int64
	srv := startScripted(t, []string{"PIPELINING"}, func(cmd string) string {
		if strings.HasPrefix(cmd, "MAIL") && mails.Add(1) == 2 {
			return "CLOSE"
		}
		return ""
	})
	st, l := storetest.OpenList(t, testList)
	queue(t, st, l, []string{"a@example.com", "b@example.com"}, true)
	d := New(testOptions(t, st, srv.addr))
	rows, err := st.ClaimDeliveries(context.Background(), 10)
	if err != nil || len(rows) != 2 {
		t.Fatalf("claim: %v %v", rows, err)
	}
	jobs := group(rows, 0)
	outs := make(chan store.DeliveryOutcome, 10)
	s := d.deliver(context.Background(), nil, jobs[0], outs)
	if s == nil {
		t.Fatal("no session after the first job")
	}
	s = d.deliver(context.Background(), s, jobs[1], outs)
	if s == nil {
		t.Fatal("no session after the second job")
	}
	defer s.quit()
	for range 2 {
		if o := <-outs; o.State != store.DeliverySent {
			t.Errorf("row %d: %+v, want sent", o.ID, o)
		}
	}
	if n, m := d.Stats().Connections, mails.Load(); n != 2 || m != 3 {
		t.Errorf("%d connections and %d MAIL commands, want 2 and 3 (the dropped one retried once)", n, m)
	}
}

// TestTransactionReturnsEveryReply runs one transaction per case on the
// client alone and checks the replies it hands back, step by step, then
// that a second transaction starts with RSET exactly when the first did
// not complete.
func TestTransactionReturnsEveryReply(t *testing.T) {
	type codes struct {
		rset, mail int
		rcpts      []int
		data, dot  int
		end        int
	}
	tests := []struct {
		name       string
		pipelining bool
		respond    func(string) string
		from       string
		rcpts      []string
		want       codes
		wantErr    string // "" for none; "local" for a *localError
		wantRSET   bool   // the next transaction starts with RSET
		done       bool   // the connection is of no further use
	}{
		{
			name: "pipelined, one of two RCPTs refused", pipelining: true,
			respond: onFirst("RCPT", "550 5.1.1 no such user"),
			rcpts:   []string{"a@example.com", "b@example.com"},
			want:    codes{mail: 250, rcpts: []int{550, 250}, data: 354, end: 250},
		},
		{
			name: "pipelined, MAIL refused: the owed replies are read", pipelining: true,
			respond: onFirst("MAIL", "553 5.1.8 sender domain unknown", "RCPT", "503 5.5.1 need MAIL", "DATA", "503 5.5.1 need RCPT"),
			rcpts:   []string{"a@example.com", "b@example.com"},
			want:    codes{mail: 553, rcpts: []int{503, 250}, data: 503}, wantRSET: true,
		},
		{
			name:    "one at a time, MAIL refused",
			respond: onFirst("MAIL", "451 4.3.0 try later"),
			rcpts:   []string{"a@example.com"},
			want:    codes{mail: 451}, wantRSET: true,
		},
		{
			name: "pipelined, every RCPT refused: a lone dot ends DATA", pipelining: true,
			respond: onFirst("RCPT", "550 5.1.1 no such user"),
			rcpts:   []string{"a@example.com"},
			want:    codes{mail: 250, rcpts: []int{550}, data: 354, dot: 250}, wantRSET: true,
		},
		{
			name:    "one at a time, every RCPT refused: no DATA",
			respond: onFirst("RCPT", "550 5.1.1 no such user"),
			rcpts:   []string{"a@example.com"},
			want:    codes{mail: 250, rcpts: []int{550}}, wantRSET: true,
		},
		{
			name: "pipelined, 421 to a RCPT stops the reading", pipelining: true,
			respond: onFirst("RCPT", "421 4.3.2 shutting down"),
			rcpts:   []string{"a@example.com", "b@example.com"},
			want:    codes{mail: 250, rcpts: []int{421}}, done: true,
		},
		{
			name:    "one at a time, the server hangs up at RCPT",
			respond: onFirst("RCPT", "CLOSE"),
			rcpts:   []string{"a@example.com"},
			want:    codes{mail: 250}, wantErr: "after RCPT TO: ", done: true,
		},
		{
			name: "pipelined, message refused after the data", pipelining: true,
			respond: onFirst(".", "550 5.7.1 content rejected"),
			rcpts:   []string{"a@example.com"},
			want:    codes{mail: 250, rcpts: []int{250}, data: 354, end: 550},
		},
		{
			name: "a line break in a recipient: nothing sent", pipelining: true,
			rcpts: []string{"a@example.com\r\nRCPT TO:<x@example.com>"},
			want:  codes{}, wantErr: "local",
		},
		{
			name: "a non-ASCII address without SMTPUTF8: nothing sent", pipelining: true,
			from: "jörg-bounces@example.org", rcpts: []string{"a@example.com"},
			want: codes{}, wantErr: "local",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startScripted(t, extensions(tc.pipelining), tc.respond)
			s, _ := dialSession(t, srv.addr)
			from := tc.from
			if from == "" {
				from = "test-bounces@lists.example.org"
			}
			x, err := s.c.transaction(from, tc.rcpts, newPayload(testMessage))
			var le *localError
			switch {
			case tc.wantErr == "" && err != nil,
				tc.wantErr == "local" && !errors.As(err, &le),
				tc.wantErr != "" && tc.wantErr != "local" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			var rcpts []int
			for _, rp := range x.rcpts {
				rcpts = append(rcpts, rp.code)
			}
			got := codes{rset: x.rset.code, mail: x.mail.code, rcpts: rcpts, data: x.data.code, dot: x.dot.code, end: x.end.code}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("replies %+v, want %+v", got, tc.want)
			}
			if tc.wantErr == "local" {
				if v := srv.verbs(); len(v) != 0 {
					t.Errorf("server got %v, want nothing", v)
				}
			}
			if tc.done {
				return
			}
			x, err = s.c.transaction("test-bounces@lists.example.org", []string{"next@example.com"}, newPayload(testMessage))
			if err != nil || x.end.code != 250 {
				t.Fatalf("next transaction: %+v %v", x, err)
			}
			if sent := x.rset.code != 0; sent != tc.wantRSET {
				t.Errorf("next transaction sent RSET: %v, want %v", sent, tc.wantRSET)
			}
		})
	}
}

// extensions is what a scripted server offers: SIZE, and PIPELINING if
// pipelining.
func extensions(pipelining bool) []string {
	if pipelining {
		return []string{"SIZE 1000000", "PIPELINING"}
	}
	return []string{"SIZE 1000000"}
}
