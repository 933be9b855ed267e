package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// lmtpRecorder is a minimal LMTP server standing in for postlist's, to
// check that list domains are routed to opts.LMTP.
type lmtpRecorder struct {
	mu   sync.Mutex
	envs []Envelope
	got  chan struct{}
}

type lmtpSession struct {
	rec  *lmtpRecorder
	from string
	to   []string
}

func (s *lmtpSession) Reset()        { s.from, s.to = "", nil }
func (s *lmtpSession) Logout() error { return nil }
func (s *lmtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *lmtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *lmtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.rec.mu.Lock()
	s.rec.envs = append(s.rec.envs, Envelope{From: s.from, To: slices.Clone(s.to), Data: data})
	s.rec.mu.Unlock()
	s.rec.got <- struct{}{}
	return nil
}

func (r *lmtpRecorder) wait(t *testing.T, timeout time.Duration) Envelope {
	t.Helper()
	select {
	case <-r.got:
	case <-time.After(timeout):
		t.Fatalf("no LMTP delivery within %v", timeout)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.envs[len(r.envs)-1]
}

// startLMTP serves LMTP on ln; for a Unix socket the socket is opened up
// for Postfix's unprivileged lmtp client.
func startLMTP(t *testing.T, ln net.Listener) *lmtpRecorder {
	t.Helper()
	rec := &lmtpRecorder{got: make(chan struct{}, 10)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &lmtpSession{rec: rec}, nil
	}))
	srv.LMTP = true
	srv.Domain = "lmtp.test"
	logger := &tbLogger{t: t}
	srv.ErrorLog = logger
	if ua, ok := ln.Addr().(*net.UnixAddr); ok {
		if err := os.Chmod(ua.Name, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		logger.stop()
	})
	return rec
}

func subjectOf(data []byte) string {
	for line := range strings.SplitSeq(string(data), "\r\n") {
		if line == "" {
			break
		}
		if s, ok := strings.CutPrefix(line, "Subject: "); ok {
			return s
		}
	}
	return ""
}

func message(subject string) []byte {
	return []byte("From: alice@example.org\nTo: bob@example.com\nSubject: " + subject + "\n\nhello\n")
}

// TestPostfix runs two private instances at the same time, one reaching
// its LMTP server over TCP and one over a Unix socket and with an
// unreachable milter, and checks that each routes mail where it should
// and that nothing leaks from one to the other.
func TestPostfix(t *testing.T) {
	t.Parallel()
	const listDomain = "lists.example.org"

	lnA, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lmtpA := startLMTP(t, lnA)
	pfA := StartPostfix(t, PostfixOptions{
		ListDomains: []string{listDomain},
		LMTP:        "inet:" + lnA.Addr().String(),
	})

	sockB := SocketPath(t, "lmtp.sock")
	lnB, err := net.Listen("unix", sockB)
	if err != nil {
		t.Fatal(err)
	}
	lmtpB := startLMTP(t, lnB)
	sinkB := StartSink(t)
	deadMilter := FreeAddr(t) // nothing listens there
	pfB := StartPostfix(t, PostfixOptions{
		Sink:        sinkB,
		Milter:      "inet:" + deadMilter,
		ListDomains: []string{listDomain},
		LMTP:        "unix:" + sockB,
		ExtraMain:   map[string]string{"smtpd_banner": "$myhostname ESMTP instance-b"},
	})
	if pfB.Sink != sinkB {
		t.Fatal("StartPostfix did not use the Sink passed in the options")
	}
	addrs := map[string]bool{}
	for _, a := range []string{pfA.SMTPAddr, pfA.SubmitAddr, pfB.SMTPAddr, pfB.SubmitAddr, pfA.Sink.Addr, sinkB.Addr} {
		addrs[a] = true
	}
	if len(addrs) != 6 || pfA.ConfigDir() == pfB.ConfigDir() {
		t.Fatalf("instances share addresses or directories: %v %s %s", addrs, pfA.ConfigDir(), pfB.ConfigDir())
	}

	t.Run("A", func(t *testing.T) {
		t.Parallel()
		checkRelayToSink(t, pfA, pfA.SMTPAddr, "instance A")
		checkListRouting(t, pfA, lmtpA, "instance A")
		checkDeferAndFlush(t, pfA)
		checkOnlyOwnMail(t, pfA.Sink, "instance A")
	})
	t.Run("B", func(t *testing.T) {
		t.Parallel()
		// The inbound listener has the unreachable milter, so with the
		// default milter_default_action=tempfail it accepts nothing ...
		res := SendMail(t, pfB.SMTPAddr, "alice@example.org", []string{"bob@example.com"}, message("instance B"))
		if res.Mail.Code != 451 || res.Mail.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
			t.Errorf("MAIL on the milter listener with the milter down: got %v, want 451 4.7.1\n%v", res.Mail, res)
		}
		if !strings.Contains(res.Greeting.Text, "instance-b") {
			t.Errorf("ExtraMain smtpd_banner not applied: greeting %v", res.Greeting)
		}
		// ... while the re-injection listener has no milter at all.
		checkRelayToSink(t, pfB, pfB.SubmitAddr, "instance B")
		checkListRouting(t, pfB, lmtpB, "instance B")
		checkReload(t, pfB)
		checkOnlyOwnMail(t, pfB.Sink, "instance B")
	})
}

func checkRelayToSink(t *testing.T, pf *Postfix, addr, subject string) {
	t.Helper()
	res := SendMail(t, addr, "alice@example.org", []string{"bob@example.com"}, message(subject))
	if res.Mail.Code != 250 || len(res.Rcpt) != 1 || res.Rcpt[0].Code != 250 ||
		res.Rcpt[0].EnhancedCode != (smtp.EnhancedCode{2, 1, 5}) || res.Data.Code != 250 {
		t.Fatalf("sending to bob@example.com:\n%v", res)
	}
	id := res.QueueID()
	if id == "" {
		t.Fatalf("no queue id in %v", res.Data)
	}
	envs := pf.Sink.WaitFor(t, 1, 20*time.Second)
	env := envs[0]
	if env.From != "alice@example.org" || !slices.Equal(env.To, []string{"bob@example.com"}) {
		t.Errorf("sink got from=<%s> to=%v, want alice@example.org -> [bob@example.com]", env.From, env.To)
	}
	if got := subjectOf(env.Data); got != subject {
		t.Errorf("sink got Subject %q, want %q", got, subject)
	}
	// Postfix's Received header ties the delivery to this transaction.
	if !bytes.Contains(env.Data, []byte("by "+Hostname)) || !bytes.Contains(env.Data, []byte(id)) {
		t.Errorf("delivered message lacks Postfix's Received header with queue id %s:\n%s", id, env.Data)
	}
	pf.WaitLog(t, regexp.MustCompile(regexp.QuoteMeta(id)+`: to=<bob@example.com>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:`+sinkPort(t, pf.Sink)+`,.*status=sent`), 10*time.Second)
}

func sinkPort(t *testing.T, s *Sink) string {
	t.Helper()
	_, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func checkListRouting(t *testing.T, pf *Postfix, lmtp *lmtpRecorder, subject string) {
	t.Helper()
	// A stranger (XCLIENT makes Postfix believe the client is 192.0.2.7)
	// may not relay to bob, but may write to the list; the client must
	// report both replies of the one transaction.
	opts := SendOptions{XClient: &XClient{Addr: "192.0.2.7", Name: "client.example.net"}}
	res := SendMailWith(t, pf.SubmitAddr, opts, "carol@example.net",
		[]string{"bob@example.com", "list+tag@lists.example.org"}, message(subject+" list"))
	if res.XClient.Code != 220 {
		t.Fatalf("XCLIENT refused:\n%v", res)
	}
	if r := res.Rcpt[0]; r.Code != 554 || r.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(r.Text, "Relay access denied") {
		t.Errorf("relay by a remote client: got %v, want 554 5.7.1 Relay access denied", r)
	}
	if res.Rcpt[1].Code != 250 || res.Data.Code != 250 {
		t.Fatalf("list recipient from a remote client:\n%v", res)
	}
	env := lmtp.wait(t, 20*time.Second)
	if env.From != "carol@example.net" || !slices.Equal(env.To, []string{"list+tag@lists.example.org"}) {
		t.Errorf("LMTP got from=<%s> to=%v, want carol@example.net -> [list+tag@lists.example.org]", env.From, env.To)
	}
	if !bytes.Contains(env.Data, []byte("client.example.net [192.0.2.7]")) {
		t.Errorf("Received header does not show the XCLIENT identity:\n%s", env.Data)
	}
}

func checkDeferAndFlush(t *testing.T, pf *Postfix) {
	t.Helper()
	pf.Sink.SetRcptHook(func(_, to string) *smtp.SMTPError {
		if to == "later@example.com" {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "not now"}
		}
		return nil
	})
	res := SendMail(t, pf.SMTPAddr, "alice@example.org", []string{"later@example.com"}, message("instance A deferred"))
	id := res.QueueID()
	if id == "" {
		t.Fatalf("not queued:\n%v", res)
	}
	pf.WaitLog(t, regexp.MustCompile(id+`: to=<later@example.com>.*status=deferred`), 10*time.Second)

	// Postfix logs the deferral before the queue manager moves the file
	// from the active to the deferred queue.
	var q []QueuedMessage
	Eventually(10*time.Second, func() bool {
		q = pf.Queue(t)
		return len(q) == 1 && q[0].QueueName == "deferred"
	})
	if len(q) != 1 || q[0].QueueID != id || q[0].QueueName != "deferred" || q[0].Sender != "alice@example.org" ||
		len(q[0].Recipients) != 1 || q[0].Recipients[0].Address != "later@example.com" ||
		!strings.Contains(q[0].Recipients[0].DelayReason, "451 4.3.0 not now") {
		t.Fatalf("queue after deferral: %+v", q)
	}

	pf.Sink.SetRcptHook(nil)
	pf.Flush(t)
	envs := pf.Sink.WaitFor(t, 2, 20*time.Second)
	if last := envs[len(envs)-1]; !slices.Equal(last.To, []string{"later@example.com"}) {
		t.Errorf("after flush the sink got %v, want later@example.com", last.To)
	}
	pf.WaitQueueEmpty(t, 10*time.Second)
}

func checkReload(t *testing.T, pf *Postfix) {
	t.Helper()
	pf.Postconf(t, "smtpd_banner=$myhostname ESMTP reloaded", "milter_default_action=accept")
	pf.Reload(t)
	res := SendMail(t, pf.SMTPAddr, "alice@example.org", []string{"bob@example.com"}, message("instance B reloaded"))
	if !strings.Contains(res.Greeting.Text, "reloaded") {
		t.Errorf("greeting after reload: %v", res.Greeting)
	}
	// milter_default_action=accept lets mail through the dead milter now.
	if res.Mail.Code != 250 || res.Data.Code != 250 {
		t.Fatalf("after reload with milter_default_action=accept:\n%v", res)
	}
	pf.Sink.WaitFor(t, 2, 20*time.Second)
	pf.WaitQueueEmpty(t, 10*time.Second)
}

func checkOnlyOwnMail(t *testing.T, sink *Sink, prefix string) {
	t.Helper()
	for _, env := range sink.Envelopes() {
		if s := subjectOf(env.Data); !strings.HasPrefix(s, prefix) {
			t.Errorf("sink of %s received %q from another instance", prefix, s)
		}
	}
}

func TestPostfixOptionsValidate(t *testing.T) {
	bad := []PostfixOptions{
		{ListDomains: []string{"lists.example.org"}},                               // no LMTP
		{ListDomains: []string{"a.example bad.example"}, LMTP: "inet:127.0.0.1:1"}, // space
		{Milter: "inet:127.0.0.1:1\nrelayhost = elsewhere"},
		{ExtraMain: map[string]string{"a": "b\nc = d"}},
		{MilterDefaultAction: "ignore"},
	}
	for i, o := range bad {
		if err := o.validate(); err == nil {
			t.Errorf("case %d: %+v accepted", i, o)
		}
	}
	good := PostfixOptions{ListDomains: []string{"lists.example.org"}, TransportMaps: "socketmap:unix:/x:name"}
	if err := good.validate(); err != nil {
		t.Errorf("TransportMaps instead of LMTP rejected: %v", err)
	}
}

func TestMainCFOverrides(t *testing.T) {
	cfg := &instanceConfig{Base: "/base", RelayHost: "[127.0.0.1]:2525", opts: PostfixOptions{
		ListDomains:   []string{"a.example", "b.example"},
		LMTP:          "inet:127.0.0.1:24",
		ExtraMain:     map[string]string{"relayhost": "[127.0.0.1]:2626", "delay_warning_time": "1h"},
		TransportMaps: "",
	}}
	b, err := cfg.mainCF()
	if err != nil {
		t.Fatal(err)
	}
	main := string(b)
	for _, want := range []string{
		"\nrelayhost = [127.0.0.1]:2626\n",
		"\ndelay_warning_time = 1h\n",
		"\nrelay_domains = a.example, b.example\n",
		"\ntransport_maps = hash:/base/etc/transport\n",
		"\nmilter_default_action = tempfail\n",
	} {
		if !strings.Contains(main, want) {
			t.Errorf("main.cf lacks %q:\n%s", want, main)
		}
	}
	if strings.Count(main, "\nrelayhost =") != 1 {
		t.Errorf("ExtraMain duplicated relayhost instead of replacing it:\n%s", main)
	}
	if got, want := string(cfg.transportMap()), "a.example\tlmtp:inet:127.0.0.1:24\nb.example\tlmtp:inet:127.0.0.1:24\n"; got != want {
		t.Errorf("transport map %q, want %q", got, want)
	}
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("FreePort gave %d, which cannot be listened on: %v", p, err)
		}
		ln.Close()
	}
	if a := FreeAddr(t); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("FreeAddr = %q", a)
	}
}

func TestSocketPath(t *testing.T) {
	p := SocketPath(t, "x.sock")
	if !filepath.IsAbs(p) || len(p) > 100 {
		t.Errorf("SocketPath = %q, want a short absolute path", p)
	}
	fi, err := os.Stat(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o005 != 0o005 {
		t.Errorf("socket directory mode %v is not searchable by others", fi.Mode())
	}
}

func TestBinary(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("ModuleRoot %s has no go.mod: %v", root, err)
	}
	if files, _ := filepath.Glob(filepath.Join(root, "cmd", "postlist", "*.go")); len(files) == 0 {
		t.Skip("cmd/postlist has no Go files yet")
	}
	path := Binary(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("%s is not an executable file: %v", path, fi.Mode())
	}
	if again := Binary(t); again != path {
		t.Errorf("second Binary call built again: %s vs %s", again, path)
	}
}

// busyFirst maps a test name to an address that the first listener of
// that test's StartPostfix call will be given although it is in use.
var (
	busyMu    sync.Mutex
	busyFirst = map[string]string{}
)

// Installed before any test runs, so that no test races with the swap.
func init() {
	listenerAddr = func(t testing.TB) string {
		busyMu.Lock()
		addr, ok := busyFirst[t.Name()]
		delete(busyFirst, t.Name())
		busyMu.Unlock()
		if ok {
			return addr
		}
		return FreeAddr(t)
	}
}

// TestPostfixPortConflict hands StartPostfix a busy port, as happens when
// another process grabs a probed port before master binds it, and expects
// a retry with fresh ports.
func TestPostfixPortConflict(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyMu.Lock()
	busyFirst[t.Name()] = busy.Addr().String()
	busyMu.Unlock()

	pf := StartPostfix(t, PostfixOptions{})
	if pf.SMTPAddr == busy.Addr().String() {
		t.Fatalf("StartPostfix kept the busy address %s", pf.SMTPAddr)
	}
	pf.WaitLog(t, regexp.MustCompile(`fatal: bind 127\.0\.0\.1 port \d+: Address already in use`), time.Second)
	if res := SendMail(t, pf.SMTPAddr, "a@example.org", []string{"b@example.com"}, message("after retry")); !res.Data.OK() {
		t.Errorf("instance unusable after the retry:\n%v", res)
	}
}
