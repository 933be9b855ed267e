package daemon_test

// Postfix hookup end to end, without the milter: the two ways Postfix can
// learn postlist's addresses (live socketmap lookups, or the maps
// `postlist genaliases` writes) must each route list mail to the LMTP
// server and make Postfix itself refuse unknown list addresses. And the
// metrics endpoint must count what a test just did.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// assertUnknownRefused checks that Postfix itself, with no milter, refuses
// an unknown list address at RCPT with 550 5.1.1 while a known one in the
// same transaction is accepted.
func assertUnknownRefused(t *testing.T, pf *testenv.Postfix) {
	t.Helper()
	res := testenv.SendMail(t, pf.SMTPAddr, "alice@example.com",
		[]string{"nope@" + listDomain, "test-bounces+alice=example.com@" + listDomain}, post("alice@example.com", "probe"))
	r := res.Rcpt[0]
	if r.Code != 550 || r.EnhancedCode[0] != 5 || r.EnhancedCode[1] != 1 || r.EnhancedCode[2] != 1 ||
		!strings.Contains(r.Text, "Recipient address rejected") {
		t.Errorf("unknown list address: %v, want 550 5.1.1 Recipient address rejected", r)
	}
	if !res.Rcpt[1].OK() {
		t.Errorf("VERP address of a member refused: %v", res.Rcpt[1])
	}
}

// rcptAccepted asks Postfix whether it takes rcpt, without sending a
// message.
func rcptAccepted(t *testing.T, pf *testenv.Postfix, rcpt string) (bool, testenv.Reply) {
	t.Helper()
	// No DATA is sent when no recipient is accepted; with one accepted the
	// transaction is completed, so the probe message is a real post.
	res := testenv.SendMail(t, pf.SMTPAddr, "alice@example.com", []string{rcpt}, post("alice@example.com", "reachability probe"))
	return res.Rcpt[0].OK(), res.Rcpt[0]
}

// TestSocketmapRoutesLive: Postfix asks postlist for relay_domains,
// transport_maps and relay_recipient_maps over the socketmap; a list
// created with the CLI is reachable within a second, with no postmap and
// no Postfix reload.
func TestSocketmapRoutesLive(t *testing.T) {
	pl := testenv.NewPostlist(t)
	pl.Socketmap = testenv.FreeAddr(t)
	sm := "socketmap:inet:" + pl.Socketmap + ":"
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		TransportMaps: sm + "transport",
		RelayDomains:  sm + "domains",
		ExtraMain:     map[string]string{"relay_recipient_maps": sm + "recipients"},
	})
	pl.Configure(pf.SubmitAddr, "", list)
	pl.CLI("members", "add", list, "alice@example.com", "bob@example.com")
	pl.Start()

	// What docs/operations.md tells an admin to run.
	postmap := testenv.PostmapPath(t)
	out, err := exec.Command(postmap, "-c", pf.ConfigDir(), "-q", "test-bounces+alice=example.com@"+listDomain, sm+"transport").CombinedOutput()
	if want := "lmtp:[127.0.0.1]:" + pl.LMTP[strings.LastIndexByte(pl.LMTP, ':')+1:]; err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("postmap -q: %q (%v), want %q", out, err, want)
	}
	if out, err := exec.Command(postmap, "-c", pf.ConfigDir(), "-q", "nope@"+listDomain, sm+"transport").CombinedOutput(); err == nil {
		t.Errorf("postmap -q of an unknown address found %q", out)
	}

	send(t, &stack{pl: pl, pf: pf}, "alice@example.com", "socketmap post")
	waitCopies(t, pf.Sink, "socketmap post", 2, 60*time.Second)
	assertUnknownRefused(t, pf)

	// A new list: refused before, accepted within a second after.
	const fresh = "fresh@" + listDomain
	if ok, r := rcptAccepted(t, pf, fresh); ok {
		t.Fatalf("%s accepted before the list exists: %v", fresh, r)
	}
	pl.CLI("lists", "create", fresh)
	created := time.Now()
	for {
		ok, r := rcptAccepted(t, pf, "fresh-request@"+listDomain)
		if ok {
			t.Logf("reachable %v after the CLI returned", time.Since(created).Round(time.Millisecond))
			break
		}
		if time.Since(created) > time.Second {
			t.Fatalf("new list not reachable within 1 s of its creation: %v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pl.CLI("members", "add", fresh, "carol@example.net")
	testenv.WaitForWhy(t, 5*time.Second, "a post to the new list is accepted", func() (bool, string) {
		res := testenv.SendMail(t, pf.SMTPAddr, "carol@example.net", []string{fresh},
			[]byte("From: carol@example.net\r\nTo: "+fresh+"\r\nSubject: fresh post\r\nMessage-ID: <fresh@example.net>\r\n\r\nhi\r\n"))
		return res.Data.OK(), fmt.Sprint(res)
	})
	waitCopies(t, pf.Sink, "fresh post", 1, 60*time.Second)
}

// TestGeneratedMapsRoute: the hash maps of `postlist genaliases`, used as
// transport_maps and relay_recipient_maps, route list mail to LMTP and
// make Postfix refuse unknown list addresses, with no milter.
func TestGeneratedMapsRoute(t *testing.T) {
	pl, pf := startOnHashMaps(t, "alice@example.com", "bob@example.com")

	send(t, &stack{pl: pl, pf: pf}, "alice@example.com", "hash map post")
	waitCopies(t, pf.Sink, "hash map post", 2, 60*time.Second)
	if !strings.Contains(pf.Log(), "relay=127.0.0.1["+strings.ReplaceAll(pl.LMTP, ":", "]:")) {
		t.Errorf("Postfix log shows no delivery to the LMTP server at %s", pl.LMTP)
	}
	assertUnknownRefused(t, pf)
}

// scrape fetches /metrics and returns each sample by its series as
// printed (labels sorted by name, as client_golang writes them).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s\n%s", resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetricsCountWhatHappened sends two posts and one unknown recipient
// through the full stack and reads the counts back from /metrics.
func TestMetricsCountWhatHappened(t *testing.T) {
	s := startStack(t, "", "")
	send(t, s, "alice@example.com", "metrics one")
	send(t, s, "bob@example.com", "metrics two")
	res := testenv.SendMail(t, s.pf.SMTPAddr, "alice@example.com", []string{"nope@" + listDomain}, post("alice@example.com", "to nobody"))
	if res.Rcpt[0].Code != 550 {
		t.Fatalf("unknown recipient: %v", res.Rcpt[0])
	}
	waitCopies(t, s.pf.Sink, "metrics one", 3, 60*time.Second)
	waitCopies(t, s.pf.Sink, "metrics two", 3, 60*time.Second)
	s.pf.WaitQueueEmpty(t, 30*time.Second)

	// Outcomes are counted once committed, shortly after the smart
	// host's 250: wait until nothing is pending.
	var m map[string]float64
	testenv.WaitForWhy(t, 20*time.Second, "no work is pending in /metrics", func() (bool, string) {
		m = scrape(t, s.pl.HTTP)
		pending := m[`postlist_queue_deliveries{state="queued"}`] + m[`postlist_queue_deliveries{state="sending"}`] +
			m[`postlist_queue_deliveries{state="deferred"}`] + m[`postlist_intake_pending`]
		return pending == 0 && m[`postlist_deliveries_total{outcome="sent"}`] >= 6,
			fmt.Sprintf("pending %v, sent %v", pending, m[`postlist_deliveries_total{outcome="sent"}`])
	})

	// Every message at the sink came from postlist's deliverer (the
	// test sends to list addresses only): six copies of the posts and
	// whatever else the lists sent.
	atSink := float64(len(s.pf.Sink.Envelopes()))
	for series, want := range map[string]float64{
		`postlist_milter_decisions_total{reason="list",stage="rcpt",verdict="accept"}`:         2,
		`postlist_milter_decisions_total{reason="no_such_list",stage="rcpt",verdict="reject"}`: 1,
		`postlist_milter_decisions_total{reason="accepted",stage="message",verdict="accept"}`:  2,
		`postlist_lmtp_replies_total{code="250",stage="rcpt"}`:                                 2,
		`postlist_lmtp_replies_total{code="250",stage="data"}`:                                 2,
		`postlist_intake_messages_total`:                                                       2,
		`postlist_intake_recipients_total{kind="post"}`:                                        2,
		`postlist_deliveries_total{outcome="sent"}`:                                            atSink,
		`postlist_deliveries_total{outcome="deferred"}`:                                        0,
		`postlist_deliveries_total{outcome="failed"}`:                                          0,
		`postlist_delivery_latency_seconds_count`:                                              atSink,
		`postlist_index_ready`:                                                                 1,
		`postlist_index_lists`:                                                                 1,
		`postlist_held_messages`:                                                               0,
	} {
		got, ok := m[series]
		if !ok {
			t.Errorf("%s missing from /metrics", series)
			continue
		}
		if got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if atSink < 6 {
		t.Errorf("%v messages at the sink, want at least the 6 copies", atSink)
	}
	for series := range m {
		if strings.Contains(series, "@") {
			t.Errorf("an address in a metric label: %s", series)
		}
	}
}

// startOnHashMaps runs postlist and a Postfix routing list mail by the
// hash maps `postlist genaliases` writes (transport_maps, relay_domains,
// relay_recipient_maps), with no milter or policy service, and list's
// members.
func startOnHashMaps(t *testing.T, members ...string) (*testenv.Postlist, *testenv.Postfix) {
	t.Helper()
	pl := testenv.NewPostlist(t)
	// Postfix's unprivileged daemons read the maps: the directory must be
	// reachable by its user (t.TempDir makes it private).
	mapDir := filepath.Join(t.TempDir(), "data")
	extra := fmt.Sprintf("[postfix]\nmap_dir = %q\npostmap_command = %q\n", mapDir, testenv.PostmapCommand(t))
	// Postfix opens its maps at start, so they are generated first; the
	// daemon's outgoing address is only known once Postfix runs, and the
	// second Configure sets it (the database and the maps stay).
	pl.Configure("127.0.0.1:25", extra, list)
	pl.CLI(append([]string{"members", "add", list}, members...)...)
	pl.CLI("genaliases")
	if err := os.Chmod(filepath.Dir(mapDir), 0o755); err != nil {
		t.Fatal(err)
	}
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		TransportMaps: "hash:" + filepath.Join(mapDir, "postfix_lmtp"),
		RelayDomains:  "hash:" + filepath.Join(mapDir, "postfix_domains"),
		ExtraMain:     map[string]string{"relay_recipient_maps": "hash:" + filepath.Join(mapDir, "postfix_lmtp")},
	})
	pl.Configure(pf.SubmitAddr, extra)
	pl.Start()
	return pl, pf
}
