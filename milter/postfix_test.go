package milter_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"postlist/index"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/milter"
	"postlist/store"
)

// stack is postlist's milter (on a real store, refreshed by Run) in front
// of a private Postfix. List mail is relayed to the sink too, so a test
// can see that what the milter accepted was queued and delivered.
type stack struct {
	st   *store.Store
	srv  *milter.Server
	pf   *testenv.Postfix
	logs *observer.ObservedLogs
}

func startStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t, "test@lists.example.org", "open@lists.example.org")
	if err := st.SetListSetting(ctx, "test@lists.example.org", "default_nonmember_action", "reject"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMembers(ctx, "test@lists.example.org", "member", []store.NewMember{{Address: "alice@example.com"}}, nil); err != nil {
		t.Fatal(err)
	}

	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	ix, err := index.Load(ctx, st, "+", log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { ix.Run(runCtx); close(ran) }()
	t.Cleanup(func() { stop(); <-ran })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := milter.New(milter.Options{Index: ix, Log: log, MaxMessageSize: 10 << 20})
	served := make(chan struct{})
	go func() { srv.Serve(ln); close(served) }()
	t.Cleanup(func() { srv.Close(); <-served })

	sink := testenv.StartSink(t)
	host, port, err := net.SplitHostPort(sink.Addr)
	if err != nil {
		t.Fatal(err)
	}
	// texthash needs no postmap run.
	transport := filepath.Join(t.TempDir(), "transport")
	if err := os.WriteFile(transport, []byte("lists.example.org relay:["+host+"]:"+port+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		Sink:          sink,
		Milter:        "inet:" + ln.Addr().String(),
		ListDomains:   []string{"lists.example.org"},
		TransportMaps: "texthash:" + transport,
	})
	return &stack{st: st, srv: srv, pf: pf, logs: logs}
}

func mailFrom(from, to, subject string, extra ...string) []byte {
	h := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%d@example.com>\r\n", from, to, subject, time.Now().UnixNano())
	for _, e := range extra {
		h += e + "\r\n"
	}
	return []byte(h + "\r\nHello.\r\n")
}

func codes(rs []testenv.Reply) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprint(r.Code)
	}
	return out
}

// TestPostfix drives a real Postfix as a remote server would. The
// subtests share one instance (starting Postfix is the slow part) and run
// in order; the last one stops the milter.
func TestPostfix(t *testing.T) {
	s := startStack(t)
	smtp := s.pf.SMTPAddr

	t.Run("unknown list refused at RCPT", func(t *testing.T) {
		res := testenv.SendMail(t, smtp, "alice@example.com", []string{"nope@lists.example.org"}, nil)
		r := res.Rcpt[0]
		if r.Code != 550 || r.EnhancedCode != [3]int{5, 1, 1} || !strings.Contains(r.Text, "<nope@lists.example.org>: no such list address here") {
			t.Fatalf("RCPT reply %v, want 550 5.1.1 naming the address\n%v", r, res)
		}
		s.pf.WaitLog(t, regexp.MustCompile(`milter-reject: RCPT from .*550 5\.1\.1 <nope@lists\.example\.org>`), 5*time.Second)
	})

	t.Run("list and every subaddress accepted and delivered", func(t *testing.T) {
		rcpts := []string{"test@lists.example.org", "test-bounces@lists.example.org", "test-confirm@lists.example.org",
			"test-join@lists.example.org", "test-leave@lists.example.org", "test-owner@lists.example.org",
			"test-request@lists.example.org", "test-subscribe@lists.example.org", "test-unsubscribe@lists.example.org",
			"test+tag@lists.example.org"}
		res := testenv.SendMail(t, smtp, "alice@example.com", rcpts, mailFrom("alice@example.com", "test@lists.example.org", "all"))
		for i, r := range res.Rcpt {
			if r.Code != 250 {
				t.Errorf("RCPT %s: %v", rcpts[i], r)
			}
		}
		if !res.Data.OK() {
			t.Fatalf("message refused: %v", res.Data)
		}
		qid := res.QueueID()
		waitEnvelope(t, s.pf.Sink, func(e testenv.Envelope) bool {
			return len(e.To) == len(rcpts) && slices.Contains(e.To, "test-owner@lists.example.org")
		})
		// Postfix sent the queue id at end of message: our line carries it.
		waitLogged(t, s.logs, func(f map[string]any) bool {
			return f["queue_id"] == qid && f["verdict"] == "accept" && f["reason"] == "accepted"
		})
	})

	t.Run("VERP for a member accepted, for a stranger refused", func(t *testing.T) {
		signer, err := s.st.VERPSigner(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		res := testenv.SendMail(t, smtp, "", []string{
			signer.VERP("test@lists.example.org", "alice@example.com", "+", time.Now()), "test-bounces+mallory=example.com@lists.example.org",
		}, mailFrom("MAILER-DAEMON@example.com", "test-bounces@lists.example.org", "bounce"))
		if got := codes(res.Rcpt); !slices.Equal(got, []string{"250", "550"}) {
			t.Fatalf("RCPT codes %v, want [250 550]\n%v", got, res)
		}
		if !strings.Contains(res.Rcpt[1].Text, "unknown or forged bounce address") {
			t.Errorf("stranger's VERP reply: %v", res.Rcpt[1])
		}
	})

	t.Run("good and bad recipient in one transaction", func(t *testing.T) {
		res := testenv.SendMail(t, smtp, "alice@example.com",
			[]string{"test@lists.example.org", "nope@lists.example.org", "bob@example.com"},
			mailFrom("alice@example.com", "test@lists.example.org", "mixed"))
		if got := codes(res.Rcpt); !slices.Equal(got, []string{"250", "550", "250"}) {
			t.Fatalf("RCPT codes %v, want [250 550 250]\n%v", got, res)
		}
		if !res.Data.OK() {
			t.Fatalf("message refused: %v", res.Data)
		}
		// The second RCPT came after Postfix opened the queue file.
		waitLogged(t, s.logs, func(f map[string]any) bool {
			return f["rcpt"] == "nope@lists.example.org" && f["queue_id"] == res.QueueID() && f["client"] == "127.0.0.1" &&
				f["sender"] == "alice@example.com" && f["verdict"] == "reject" && f["reason"] == "no_such_list"
		})
	})

	t.Run("non-member refused at RCPT, member accepted", func(t *testing.T) {
		res := testenv.SendMail(t, smtp, "mallory@example.com", []string{"test@lists.example.org", "open@lists.example.org"},
			mailFrom("mallory@example.com", "test@lists.example.org", "spam"))
		r := res.Rcpt[0]
		if r.Code != 550 || r.EnhancedCode != [3]int{5, 7, 1} || !strings.Contains(r.Text, "<mallory@example.com>") {
			t.Errorf("non-member RCPT: %v, want 550 5.7.1 naming the sender", r)
		}
		if res.Rcpt[1].Code != 250 || !res.Data.OK() {
			t.Errorf("the hold list must still take it: %v", res)
		}
		res = testenv.SendMail(t, smtp, "alice@example.com", []string{"test@lists.example.org"},
			mailFrom("Alice <alice@example.com>", "test@lists.example.org", "hi"))
		if res.Rcpt[0].Code != 250 || !res.Data.OK() {
			t.Errorf("member's post: %v", res)
		}
	})

	t.Run("loop refused at end of message", func(t *testing.T) {
		res := testenv.SendMail(t, smtp, "alice@example.com", []string{"test@lists.example.org"},
			mailFrom("alice@example.com", "test@lists.example.org", "again", "List-Id: Test <test.lists.example.org>"))
		if res.Rcpt[0].Code != 250 || res.Data.Code != 554 || res.Data.EnhancedCode != [3]int{5, 4, 6} {
			t.Errorf("looping post: %v", res)
		}
	})

	t.Run("list created mid-run is live within 1s", func(t *testing.T) {
		// Another connection to the database, as the CLI is.
		cli := storetest.OpenPath(t, s.st.Path())
		if r := testenv.SendMail(t, smtp, "alice@example.com", []string{"fresh@lists.example.org"}, nil); r.Rcpt[0].Code != 550 {
			t.Fatalf("fresh@ before it exists: %v", r.Rcpt[0])
		}
		created := time.Now()
		if _, err := cli.CreateList(context.Background(), "fresh@lists.example.org"); err != nil {
			t.Fatal(err)
		}
		for {
			res := testenv.SendMail(t, smtp, "alice@example.com", []string{"fresh@lists.example.org"},
				mailFrom("alice@example.com", "fresh@lists.example.org", "first"))
			if res.Rcpt[0].Code == 250 {
				t.Logf("accepted %v after creation", time.Since(created).Round(time.Millisecond))
				break
			}
			if time.Since(created) > time.Second {
				t.Fatalf("fresh@ still refused %v after creation: %v", time.Since(created), res.Rcpt[0])
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("Postfix found nothing to complain about", func(t *testing.T) {
		for line := range strings.SplitSeq(s.pf.Log(), "\n") {
			if strings.Contains(line, "warning:") || strings.Contains(line, "fatal:") || strings.Contains(line, "error:") {
				t.Errorf("Postfix log: %s", line)
			}
		}
	})

	t.Run("milter stopped: tempfail", func(t *testing.T) {
		if err := s.srv.Close(); err != nil {
			t.Fatal(err)
		}
		res := testenv.SendMail(t, smtp, "alice@example.com", []string{"test@lists.example.org"},
			mailFrom("alice@example.com", "test@lists.example.org", "down"))
		first := res.Mail
		if first.OK() && len(res.Rcpt) > 0 {
			first = res.Rcpt[0]
		}
		if first.Code < 400 || first.Code > 499 {
			t.Fatalf("with the milter down the client must get a 4xx, got\n%v", res)
		}
		if res.Data.Code != 0 {
			t.Errorf("a message got through while the milter was down: %v", res.Data)
		}
	})
}

func waitEnvelope(t *testing.T, sink *testenv.Sink, match func(testenv.Envelope) bool) {
	t.Helper()
	testenv.WaitForWhy(t, 15*time.Second, "a matching envelope is at the sink", func() (bool, string) {
		envs := sink.Envelopes()
		return slices.ContainsFunc(envs, match), fmt.Sprintf("got %d envelopes", len(envs))
	})
}

func waitLogged(t *testing.T, logs *observer.ObservedLogs, match func(map[string]any) bool) {
	t.Helper()
	if !testenv.Eventually(5*time.Second, func() bool {
		return slices.ContainsFunc(logs.AllUntimed(), func(e observer.LoggedEntry) bool { return match(e.ContextMap()) })
	}) {
		var lines []string
		for _, e := range logs.AllUntimed() {
			lines = append(lines, fmt.Sprint(e.Message, " ", e.ContextMap()))
		}
		t.Fatalf("no matching log line; have:\n%s", strings.Join(lines, "\n"))
	}
}
