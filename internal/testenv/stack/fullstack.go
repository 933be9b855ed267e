package stack

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"postlist/address"
	"postlist/bounce"
	"postlist/commands"
	"postlist/config"
	"postlist/deliver"
	"postlist/index"
	"postlist/internal/testenv"
	"postlist/lmtp"
	"postlist/milter"
	"postlist/store"
	"postlist/wire"
)

// SiteOwner is the stack's [site] owner.
const SiteOwner = "postmaster@example.com"

// Stack is postlist's whole mail path, wired as `postlist serve` wires it,
// in front of a private real Postfix: the milter decides RCPTs from the
// address index, LMTP stores what Postfix queued, the posting pipeline,
// the email interface and the bounce processor work on it (all built by
// wire.Build, as the daemon builds them), and the deliverer sends their mail
// back through Postfix, which relays it to the sink. Everything runs in
// this process so that a test can move the clock bounces are scored by.
type Stack struct {
	*Fixture
	*Watch
	Index   *index.Index
	Postfix *testenv.Postfix
	// System is what `postlist serve` builds (wire.Build); the fields
	// below are its parts, named for the tests that use them.
	System   *wire.System
	Signer   address.VERPSigner
	Commands *commands.Processor
	Bounces  *bounce.Processor
	Deliver  *deliver.Deliverer
}

// StackOptions adjust a Stack.
type StackOptions struct {
	// MaxAutoresponsesPerDay is the email interface's daily cap; 0 means
	// the configuration default (10), below 0 no limit.
	MaxAutoresponsesPerDay int
	// Lists are further lists created next to List (posting addresses).
	Lists []string
	// ExtraMain holds further main.cf settings of the Postfix instance.
	ExtraMain map[string]string
}

// StartStack starts the stack; it is stopped when the test ends.
func StartStack(t *testing.T) *Stack {
	t.Helper()
	return StartStackWith(t, StackOptions{})
}

// StartStackWith starts the stack as o says; it is stopped when the test
// ends.
func StartStackWith(t *testing.T, o StackOptions) *Stack {
	t.Helper()
	f := NewFixture(t)
	st := f.Store
	for _, l := range o.Lists {
		if _, err := st.CreateList(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	switch {
	case o.MaxAutoresponsesPerDay == 0:
		o.MaxAutoresponsesPerDay = 10
	case o.MaxAutoresponsesPerDay < 0:
		o.MaxAutoresponsesPerDay = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	goRun := func(run func()) {
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))

	ix, err := index.Load(ctx, st, "+", log.Named("index"))
	if err != nil {
		t.Fatal(err)
	}
	goRun(func() { ix.Run(ctx) })

	milterLn := testenv.Listen(t)
	ms := milter.New(milter.Options{Index: ix, Log: log.Named("milter")})
	goRun(func() { ms.Serve(milterLn) })
	t.Cleanup(func() { ms.Close() })

	// Postfix needs the LMTP address before the System, which sends
	// through Postfix, can be built; the LMTP server, which wakes the
	// System's stages, serves once it exists.
	lmtpLn := testenv.Listen(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		Milter:      "inet:" + milterLn.Addr().String(),
		ListDomains: []string{"lists.example.org"},
		LMTP:        "inet:" + lmtpLn.Addr().String(),
		ExtraMain:   o.ExtraMain,
	})

	cfg := stackConfig(t, pf.SubmitAddr)
	cfg.MTA.MaxAutoresponsesPerDay = o.MaxAutoresponsesPerDay
	sys, err := wire.Build(ctx, cfg, log, wire.WithStore(st), wire.WithHostname("postlist.test"),
		wire.WithClock(f.Clock.Now), wire.WithTuning(wire.Tuning{
			PollInterval: 50 * time.Millisecond, SweepInterval: time.Hour,
			FlushInterval: 5 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range sys.Workers() {
		goRun(func() { _ = w.Run(ctx) })
	}

	ls := lmtp.New(lmtp.Options{Store: st, Log: log.Named("lmtp"), Resolve: ix.Resolve, Hostname: "postlist.test",
		Committed: sys.Committed})
	goRun(func() { ls.Serve(lmtpLn) })
	t.Cleanup(func() {
		c, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		ls.Shutdown(c)
	})

	return &Stack{Fixture: f, Watch: NewWatch(pf.Sink), Index: ix, Postfix: pf, System: sys, Signer: sys.Signer,
		Commands: sys.Commands, Bounces: sys.Bounces, Deliver: sys.Deliver}
}

// stackConfig is the configuration the stack runs on: the defaults,
// sending through Postfix at smtpAddr, with timeouts and retries short
// enough for a test.
func stackConfig(t *testing.T, smtpAddr string) *config.Config {
	t.Helper()
	host, port, err := net.SplitHostPort(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.MTA.SMTPHost, cfg.MTA.SMTPPort = host, config.Port(p)
	cfg.MTA.MaxDeliveryThreads = 2
	cfg.MTA.DeliveryRetryInterval = config.Duration(time.Hour)
	cfg.MTA.DeliveryRetryPeriod = config.Duration(24 * time.Hour)
	cfg.MTA.SMTPConnectTimeout = config.Duration(5 * time.Second)
	cfg.MTA.SMTPCommandTimeout = config.Duration(10 * time.Second)
	cfg.MTA.SMTPDataTimeout = config.Duration(10 * time.Second)
	cfg.Site.Owner = SiteOwner
	return cfg
}

// Send speaks SMTP to Postfix's public listener as a remote server would
// and fails the test unless every recipient and the message are accepted.
func (s *Stack) Send(t *testing.T, from string, to []string, msg []byte) {
	t.Helper()
	res := testenv.SendMail(t, s.Postfix.SMTPAddr, from, to, msg)
	for i, r := range res.Rcpt {
		if !r.OK() {
			t.Fatalf("RCPT %s refused: %v", to[i], r)
		}
	}
	if !res.Data.OK() {
		t.Fatalf("DATA refused: %v", res.Data)
	}
}

// Watch reads what a sink received, message by message.
type Watch struct {
	Sink *testenv.Sink

	mu   sync.Mutex
	seen map[string]bool // "envelope index/recipient" pairs WaitMail returned
}

// NewWatch watches sink.
func NewWatch(sink *testenv.Sink) *Watch { return &Watch{Sink: sink, seen: map[string]bool{}} }

// WaitMail waits until the sink has received a message to rcpt whose
// header or body contains want (any message if want is ""), and returns
// it. Envelopes already returned for rcpt by an earlier WaitMail are
// skipped, so a test can wait for a second message of the same kind.
func (s *Watch) WaitMail(t *testing.T, rcpt, want string, timeout time.Duration) testenv.Envelope {
	t.Helper()
	var got testenv.Envelope
	if !testenv.Eventually(timeout, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, e := range s.Sink.Envelopes() {
			key := fmt.Sprintf("%d/%s", i, strings.ToLower(rcpt))
			if s.seen[key] || !hasRcpt(e, rcpt) || !strings.Contains(string(e.Data), want) {
				continue
			}
			s.seen[key] = true
			got = e
			return true
		}
		return false
	}) {
		t.Fatalf("no mail to %s containing %q within %v; the sink has %d message(s)", rcpt, want, timeout, len(s.Sink.Envelopes()))
	}
	return got
}

func hasRcpt(e testenv.Envelope, rcpt string) bool {
	for _, r := range e.To {
		if strings.EqualFold(r, rcpt) {
			return true
		}
	}
	return false
}

// WaitUntil is testenv.WaitFor with its arguments in the order this
// package's callers have always used.
func WaitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, timeout, what, cond)
}

// WaitProcessed waits until the intake rows of the message with Message-ID
// msgID are all finished, and returns them.
func (s *Stack) WaitProcessed(t *testing.T, msgID string, timeout time.Duration) []store.IntakeItem {
	t.Helper()
	var items []store.IntakeItem
	WaitUntil(t, "message "+msgID+" is processed", timeout, func() bool {
		var err error
		items, err = s.Store.IntakeByMessageID(context.Background(), msgID)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if it.State == store.IntakeNew {
				return false
			}
		}
		return len(items) > 0
	})
	return items
}
