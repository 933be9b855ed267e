package deliver

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/store"
)

const testList = "test@lists.example.org"

// testMessage is what the tests send; dot-stuffing and CRLF are exercised.
var testMessage = []byte("Message-ID: <post1@example.com>\r\nFrom: alice@example.com\r\nSubject: hello\r\n\r\nline one\r\n.starts with a dot\r\nlast line\r\n")

// members returns n member addresses spread over a few domains.
func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("member%d@example%d.com", i, i%3)
	}
	return out
}

// queue stores testMessage and queues it for rcpts: with VERP envelopes
// (personalized) or the list's plain bounce address (bulk).
func queue(t *testing.T, st *store.Store, l *store.List, rcpts []string, verp bool) int64 {
	t.Helper()
	ctx := context.Background()
	id, err := st.StoreMessage(ctx, "alice@example.com", testMessage)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]store.NewDelivery, len(rcpts))
	for i, r := range rcpts {
		from := "test-bounces@lists.example.org"
		if verp {
			from = address.VERP(testList, r, "+")
		}
		rows[i] = store.NewDelivery{Recipient: r, EnvelopeFrom: from}
	}
	if err := st.QueueDeliveries(ctx, id, l.ID, rows); err != nil {
		t.Fatal(err)
	}
	return id
}

// testOptions are fast settings for a deliverer talking to addr.
func testOptions(t *testing.T, st *store.Store, addr string) Options {
	return Options{
		Store:           st,
		Log:             zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
		Addr:            addr,
		HeloName:        "postlist.test",
		Workers:         4,
		RetryInterval:   time.Hour, // tests that want automatic retries shorten it
		RetryPeriod:     24 * time.Hour,
		DialTimeout:     5 * time.Second,
		CommandTimeout:  5 * time.Second,
		DataTimeout:     5 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		PollInterval:    20 * time.Millisecond,
		FlushInterval:   5 * time.Millisecond,
	}
}

// running is a Deliverer whose Run is going on in the background.
type running struct {
	*Deliverer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs a Deliverer for o until stop (or the end of the test).
func start(t *testing.T, o Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Deliverer: New(o), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(20 * time.Second):
			r.err = fmt.Errorf("Run did not return within 20s of cancel")
		}
	})
	if r.err != nil {
		t.Errorf("Run: %v", r.err)
	}
	return r.err
}

// rowsOf returns a message's deliveries by recipient.
func rowsOf(t *testing.T, st *store.Store, msg int64) map[string]store.DeliveryInfo {
	t.Helper()
	ds, err := st.MessageDeliveries(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]store.DeliveryInfo, len(ds))
	for _, d := range ds {
		out[d.Recipient] = d
	}
	return out
}

// settled waits until no row of msg is queued or sending (every row had
// its attempt), and returns the rows.
func settled(t *testing.T, st *store.Store, msg int64, timeout time.Duration) map[string]store.DeliveryInfo {
	t.Helper()
	var rows map[string]store.DeliveryInfo
	testenv.WaitForWhy(t, timeout, "every row had its attempt", func() (bool, string) {
		rows = rowsOf(t, st, msg)
		var pending []string
		for _, d := range rows {
			if d.State == store.DeliveryQueued || d.State == store.DeliverySending {
				pending = append(pending, d.Recipient+"="+d.State)
			}
		}
		return len(pending) == 0, fmt.Sprintf("rows still pending: %v", pending)
	})
	return rows
}

// allSent waits until every row of msg is sent.
func allSent(t *testing.T, st *store.Store, msg int64, timeout time.Duration) map[string]store.DeliveryInfo {
	t.Helper()
	var rows map[string]store.DeliveryInfo
	testenv.WaitForWhy(t, timeout, "every row is sent", func() (bool, string) {
		rows = rowsOf(t, st, msg)
		var other []string
		for _, d := range rows {
			if d.State != store.DeliverySent {
				other = append(other, fmt.Sprintf("%s=%s(%s)", d.Recipient, d.State, d.LastReply))
			}
		}
		return len(other) == 0, fmt.Sprintf("rows not sent: %v", other)
	})
	return rows
}

// received counts, per recipient, how often the sink accepted mail for it.
func received(envs []testenv.Envelope) map[string]int {
	out := map[string]int{}
	for _, e := range envs {
		for _, to := range e.To {
			out[to]++
		}
	}
	return out
}

// proxy sits between the deliverer and the sink: it counts connections
// (what the sink sees) and can cut a connection in the middle of the
// message data, the way a crashing or rebooting server would.
type proxy struct {
	Addr   string
	target string
	ln     net.Listener
	conns  atomic.Int64
	// cutData is how many transactions still get their connection cut
	// after the first bytes of the message.
	cutData atomic.Int64
	wg      sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{Addr: ln.Addr().String(), target: target, ln: ln}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		s, err := net.Dial("tcp4", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(c, s)
			c.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.clientToServer(c, s)
			s.Close()
			c.Close()
		}()
	}
}

// clientToServer copies the client's bytes. The SMTP client writes each
// command in one write, so "DATA\r\n" arrives as a chunk of its own and
// the next chunk is message data.
func (p *proxy) clientToServer(c, s net.Conn) {
	buf := make([]byte, 64<<10)
	inData := false
	for {
		n, err := c.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if inData && p.cutData.Add(-1) >= 0 {
				s.Write(chunk[:min(len(chunk), 20)])
				return
			}
			inData = strings.HasSuffix(string(chunk), "DATA\r\n")
			if _, err := s.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
