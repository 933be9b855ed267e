package reliability

// Shared machinery of the campaigns: a Postfix + postlist stack with lists
// whose members live at the sink, a small SMTP client that keeps its
// session, readers for the sink and the database, and a health probe.

import (
	"bufio"
	"database/sql"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // read the daemon's database as an admin would

	"postlist/internal/testenv"
)

var tortureFlag = flag.Bool("torture", false,
	"run the long variants: 50 kill cycles in the crash campaign, 60 s of load, more smart-host faults")

// tortureCyclesEnv overrides the number of kill cycles (and implies the
// long variants), for `make torture` and for a developer chasing a bug.
const tortureCyclesEnv = "POSTLIST_TORTURE_CYCLES"

func longRun() bool { return *tortureFlag || os.Getenv(tortureCyclesEnv) != "" }

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if err := testenv.RemoveBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	if fuzzMilterDir != "" {
		_ = os.RemoveAll(fuzzMilterDir)
	}
	os.Exit(code)
}

const (
	listDomain = "lists.example.org"
	// memberDomain is relayed by Postfix to the sink, like the internet.
	memberDomain = "example.net"
	poster       = "poster@example.com"
)

// listSpec is a list to create before the daemon starts.
type listSpec struct {
	name     string   // local part; the list is name@listDomain
	members  int      // members name-mNN@memberDomain
	addrs    []string // members by address, instead of generated ones
	settings [][2]string
}

func (l listSpec) addr() string { return l.name + "@" + listDomain }

func (l listSpec) memberAddrs() []string {
	if l.addrs != nil {
		return l.addrs
	}
	out := make([]string, l.members)
	for i := range out {
		out[i] = fmt.Sprintf("%s-m%02d@%s", l.name, i, memberDomain)
	}
	return out
}

type stackOptions struct {
	// SmartHost replaces Postfix's milter-free listener as the daemon's
	// smtp_host (a fault-injecting sink).
	SmartHost string
	// Extra is TOML appended to the daemon's [mta] table.
	Extra string
	// MilterVia, given the daemon's milter address, returns the address
	// Postfix should use instead (a measuring proxy).
	MilterVia func(milter string) string
	// ExtraMain holds further main.cf settings for Postfix.
	ExtraMain map[string]string
	// BeforeConfigure runs before the configuration and the database are
	// written (to mount a file system for the database, say).
	BeforeConfigure func(pl *testenv.Postlist)
	// NoStart leaves the daemon stopped.
	NoStart bool
}

// stack is a private Postfix wired to a postlist daemon: mail to
// listDomain goes through the milter and LMTP, everything else (the list
// members) to the sink.
type stack struct {
	pl    *testenv.Postlist
	pf    *testenv.Postfix
	sink  *testenv.Sink
	lists []listSpec
}

func startStack(t *testing.T, o stackOptions, lists ...listSpec) *stack {
	t.Helper()
	pl := testenv.NewPostlist(t)
	milter := pl.Milter
	if o.MilterVia != nil {
		milter = o.MilterVia(pl.Milter)
	}
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		Milter:      "inet:" + milter,
		ListDomains: []string{listDomain},
		LMTP:        "inet:" + pl.LMTP,
		ExtraMain:   o.ExtraMain,
	})
	if o.BeforeConfigure != nil {
		o.BeforeConfigure(pl)
	}
	smart := o.SmartHost
	if smart == "" {
		smart = pf.SubmitAddr
	}
	pl.Configure(smart, o.Extra)
	for _, l := range lists {
		pl.CLI("lists", "create", l.addr())
		// Posts come from a non-member; accepting them keeps moderation
		// (and its notices) out of campaigns about delivery.
		pl.CLI("lists", "set", l.addr(), "default_nonmember_action", "accept")
		for _, kv := range l.settings {
			pl.CLI("lists", "set", l.addr(), kv[0], kv[1])
		}
		if len(l.memberAddrs()) > 0 {
			pl.CLI(append([]string{"members", "add", l.addr()}, l.memberAddrs()...)...)
		}
	}
	if !o.NoStart {
		pl.Start()
	}
	return &stack{pl: pl, pf: pf, sink: pf.Sink, lists: lists}
}

// message builds a post. The Message-ID identifies it at the sink; the
// pipeline keeps it on every copy.
func message(list, msgID, subject, body string) []byte {
	return []byte("From: Poster <" + poster + ">\r\nTo: " + list + "\r\nSubject: " + subject +
		"\r\nMessage-ID: " + msgID + "\r\n\r\n" + body)
}

// headerValue returns the first value of a header field in a message,
// unfolded, "" when absent.
func headerValue(data []byte, name string) string {
	header, _, _ := strings.Cut(string(data), "\r\n\r\n")
	header = strings.NewReplacer("\r\n ", " ", "\r\n\t", " ").Replace(header)
	for line := range strings.SplitSeq(header, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// copyKey is one post (by Message-ID) at one member.
type copyKey struct{ msgID, rcpt string }

// copies counts, per post and member, the copies at the sink of posts
// whose Message-ID starts with prefix ("<crash-", say).
func copies(envs []testenv.Envelope, prefix string) map[copyKey]int {
	out := map[copyKey]int{}
	for _, e := range envs {
		id := headerValue(e.Data, "Message-ID")
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		for _, r := range e.To {
			out[copyKey{id, strings.ToLower(r)}]++
		}
	}
	return out
}

// openDB opens the daemon's database read-only, as an admin's sqlite3
// would while the daemon runs (WAL: readers never block it).
func openDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func queryInt(t testing.TB, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// unsettled describes the work the daemon still has: intake rows not yet
// processed and deliveries not in a final state; "" when there is none.
func unsettled(t testing.TB, db *sql.DB) string {
	t.Helper()
	intake := queryInt(t, db, "SELECT COUNT(*) FROM intake WHERE state = 'new' AND kind = 'post'")
	open := queryInt(t, db, "SELECT COUNT(*) FROM deliveries WHERE state IN ('queued','sending','deferred')")
	if intake == 0 && open == 0 {
		return ""
	}
	return fmt.Sprintf("%d posts unprocessed, %d deliveries not final", intake, open)
}

// listMailQueued reports how many recipients in Postfix's queue are list
// addresses: mail Postfix accepted and has not handed to postlist yet.
func listMailQueued(t testing.TB, pf *testenv.Postfix) int {
	t.Helper()
	n := 0
	for _, q := range pf.Queue(t) {
		for _, r := range q.Recipients {
			if strings.HasSuffix(strings.ToLower(r.Address), "@"+listDomain) {
				n++
			}
		}
	}
	return n
}

// ---- a small SMTP client that keeps its session ----

// reply is one SMTP reply; text keeps the enhanced status code.
type reply struct {
	code int
	text string
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.code, r.text) }

// smtpClient speaks SMTP (or LMTP) without pipelining, one reply per
// command, so that every reply belongs to its command.
type smtpClient struct {
	conn net.Conn
	tp   *textproto.Conn
	// timeout bounds each command's reply.
	timeout time.Duration
}

// dial connects and reads the greeting; a greeting other than 220 is
// returned as the reply with the session closed.
func dial(addr string, timeout time.Duration) (*smtpClient, reply, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, reply{}, err
	}
	c := &smtpClient{conn: conn, tp: textproto.NewConn(conn), timeout: timeout}
	r, err := c.read()
	if err != nil || r.code != 220 {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("greeting %v", r)
		}
		return nil, r, err
	}
	return c, r, nil
}

func (c *smtpClient) read() (reply, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	code, text, err := c.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return reply{}, err
	}
	return reply{code, text}, nil
}

func (c *smtpClient) cmd(format string, args ...any) (reply, error) {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if err := c.tp.PrintfLine(format, args...); err != nil {
		return reply{}, err
	}
	return c.read()
}

// data sends DATA, the message (dot-stuffed) and reads the final reply,
// or returns the reply to DATA itself if it was not 354. For LMTP, more
// replies follow: read them with read.
func (c *smtpClient) data(msg []byte) (reply, error) {
	r, err := c.cmd("DATA")
	if err != nil || r.code != 354 {
		return r, err
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * c.timeout))
	w := c.tp.DotWriter()
	if _, err := w.Write(msg); err != nil {
		return reply{}, err
	}
	if err := w.Close(); err != nil {
		return reply{}, err
	}
	return c.read()
}

func (c *smtpClient) close() {
	_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if c.tp.PrintfLine("QUIT") == nil {
		_, _, _ = c.tp.ReadResponse(0)
	}
	c.conn.Close()
}

// rcptProbe opens a session, names each recipient after MAIL FROM and
// returns their replies, without sending a message.
func rcptProbe(addr, from string, rcpts ...string) ([]reply, error) {
	c, g, err := dial(addr, 15*time.Second)
	if err != nil {
		return nil, fmt.Errorf("greeting %v: %w", g, err)
	}
	defer c.close()
	if r, err := c.cmd("EHLO probe.example.net"); err != nil || r.code != 250 {
		return nil, fmt.Errorf("EHLO: %v %v", r, err)
	}
	if r, err := c.cmd("MAIL FROM:<%s>", from); err != nil || r.code != 250 {
		return nil, fmt.Errorf("MAIL: %v %v", r, err)
	}
	var out []reply
	for _, rc := range rcpts {
		r, err := c.cmd("RCPT TO:<%s>", rc)
		if err != nil {
			return out, fmt.Errorf("RCPT %s: %w", rc, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// checkHealthy fails the test unless the daemon answers /healthz with 200
// and its milter, asked through Postfix, accepts a list address and
// refuses an unknown one in that list domain: the answers that prove the
// milter works and has its index.
func (s *stack) checkHealthy(t testing.TB, list string) {
	t.Helper()
	if err := healthz(s.pl.HTTP); err != nil {
		t.Fatalf("daemon not healthy: %v\n%s", err, s.pl.LogTail())
	}
	rs, err := rcptProbe(s.pf.SMTPAddr, "health@example.com", list, "no-such-list@"+listDomain)
	if err != nil {
		t.Fatalf("health probe through Postfix: %v", err)
	}
	if rs[0].code != 250 || rs[1].code != 550 || !strings.HasPrefix(rs[1].text, "5.1.1") {
		t.Fatalf("milter not deciding: RCPT %s got %v, unknown address got %v", list, rs[0], rs[1])
	}
}

// httpClient opens a connection per request, so that a probe leaves no
// idle keep-alive connection (and its goroutine) in the daemon to be
// mistaken for a leak.
var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func healthz(addr string) error {
	cl := httpClient
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	return nil
}

// metric reads one unlabelled sample from the daemon's /metrics.
func metric(addr, name string) (float64, error) {
	cl := httpClient
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == name {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted
// durations by the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
