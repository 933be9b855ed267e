package daemon_test

// The Postfix hookup as contrib/postfix documents it: main.cf and
// master.cf are read from the repository and applied to a private Postfix
// with only ports and paths changed. Only list mail may depend on
// postlist: with postlist stopped or hung, a list recipient gets a 4xx
// and mail for any other domain is accepted as if postlist did not exist.

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postlist/internal/testenv"
)

const closedList = "closed@" + listDomain

type hookupStack struct {
	pl *testenv.Postlist
	pf *testenv.Postfix
}

// startHookup configures postlist (not started), generates its maps and
// starts Postfix with the contrib snippets.
func startHookup(t *testing.T) hookupStack {
	return startHookupWith(t, nil)
}

func startHookupWith(t *testing.T, extraMain map[string]string) hookupStack {
	t.Helper()
	pl := testenv.NewPostlist(t)
	base := t.TempDir()
	// Postfix's daemons read the maps: the directory must be reachable
	// by its user (t.TempDir makes the parent private).
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	mapDir := filepath.Join(base, "data")
	reinject := testenv.FreeAddr(t)
	cfg := "[postfix]\nmap_dir = \"" + mapDir + "\"\npostmap_command = \"" + testenv.PostmapCommand(t) + "\"\n"
	pl.Configure(reinject, cfg, list, closedList)
	pl.CLI("members", "add", list, "alice@example.com", "bob@example.com")
	pl.CLI("members", "add", closedList, "alice@example.com")
	pl.CLI("lists", "set", closedList, "default_nonmember_action", "reject")
	pl.CLI("genaliases")

	files, err := testenv.Hookup(mapDir, pl.Policy, reinject)
	if err != nil {
		t.Fatal(err)
	}
	// postmaster@ of the list domain, as docs/postfix.md shows it.
	aliases := filepath.Join(base, "virtual")
	if err := os.WriteFile(aliases, []byte("postmaster@"+listDomain+" postmaster@example.net\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{"virtual_alias_maps": "texthash:" + aliases}
	for k, v := range extraMain {
		extra[k] = v
	}
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{MainCF: files.MainCF, MasterCF: files.MasterCF, ExtraMain: extra})
	return hookupStack{pl: pl, pf: pf}
}

func sendSlow(t *testing.T, pf *testenv.Postfix, from string, to []string, msg []byte) (testenv.SendResult, time.Duration) {
	t.Helper()
	begin := time.Now()
	res := testenv.SendMailWith(t, pf.SMTPAddr, testenv.SendOptions{Timeout: 90 * time.Second}, from, to, msg)
	return res, time.Since(begin)
}

// assertOnlyListMailWaits: a non-list recipient is accepted and relayed,
// a list post gets a 4xx, an unknown list address is still refused by
// Postfix's own relay_recipient_maps.
func assertOnlyListMailWaits(t *testing.T, s hookupStack, subject string) {
	t.Helper()
	msg := []byte("From: alice@example.com\r\nTo: someone@example.net\r\nSubject: " + subject + "\r\n\r\nnot for a list\r\n")
	res, took := sendSlow(t, s.pf, "alice@example.com", []string{"someone@example.net"}, msg)
	if res.Rcpt[0].Code != 250 || res.Data.Code != 250 {
		t.Errorf("non-list mail: rcpt %v, data %v; want 250 as without postlist", res.Rcpt[0], res.Data)
	}
	t.Logf("non-list mail: %v in %v", res.Data, took.Round(time.Millisecond))
	waitCopies(t, s.pf.Sink, subject, 1, 60*time.Second)

	res, took = sendSlow(t, s.pf, "alice@example.com", []string{list}, post("alice@example.com", subject+" list"))
	r := res.Rcpt[0]
	if r.Code < 400 || r.Code >= 500 {
		t.Errorf("list post: %v, want a 4xx", r)
	}
	t.Logf("list post: %v in %v", r, took.Round(time.Millisecond))

	// postmaster@ of a list domain never depends on postlist.
	pm := []byte("From: alice@example.com\r\nTo: postmaster@" + listDomain + "\r\nSubject: " + subject + " postmaster\r\n\r\nhello\r\n")
	res, _ = sendSlow(t, s.pf, "alice@example.com", []string{"postmaster@" + listDomain}, pm)
	if res.Rcpt[0].Code != 250 || res.Data.Code != 250 {
		t.Errorf("postmaster@%s: rcpt %v, data %v; want 250", listDomain, res.Rcpt[0], res.Data)
	}
	if got := waitCopies(t, s.pf.Sink, subject+" postmaster", 1, 60*time.Second); got["postmaster@example.net"].Data == nil {
		t.Errorf("postmaster@%s not delivered through the alias: %v", listDomain, got)
	}

	res, _ = sendSlow(t, s.pf, "alice@example.com", []string{"nope@" + listDomain}, post("alice@example.com", subject+" nope"))
	if r := res.Rcpt[0]; r.Code != 550 || r.EnhancedCode != [3]int{5, 1, 1} || !strings.Contains(r.Text, "relay recipient table") {
		t.Errorf("unknown list address: %v, want Postfix's own 550 5.1.1 from relay_recipient_maps", r)
	}
}

func TestPolicyHookupPostlistStopped(t *testing.T) {
	s := startHookup(t)
	assertOnlyListMailWaits(t, s, "while stopped")
}

func TestPolicyHookupPostlistHung(t *testing.T) {
	s := startHookup(t)
	// Something holds postlist's port, accepts and never answers.
	ln, err := net.Listen("tcp", s.pl.Policy)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	assertOnlyListMailWaits(t, s, "while hung")
}

// TestMilterAddonAbsentIsHarmless: the optional milter as docs/milter.md
// adds it, with a per-milter default_action=accept; with postlist stopped
// the policy hookup alone decides, as if the milter were not configured.
func TestMilterAddonAbsentIsHarmless(t *testing.T) {
	s := startHookupWith(t, map[string]string{
		"smtpd_milters": "{ inet:" + testenv.FreeAddr(t) + ", default_action=accept }",
	})
	assertOnlyListMailWaits(t, s, "milter add-on absent")
	if !strings.Contains(s.pf.Log(), "connect to Milter service") {
		t.Errorf("Postfix never tried the milter; is smtpd_milters in effect?")
	}
}

func TestPolicyHookupPostlistRunning(t *testing.T) {
	s := startHookup(t)
	s.pl.Start()
	st := &stack{pl: s.pl, pf: s.pf}
	send(t, st, "alice@example.com", "policy hookup post")
	got := waitCopies(t, s.pf.Sink, "policy hookup post", 2, 60*time.Second)
	for _, m := range []string{"alice@example.com", "bob@example.com"} {
		if _, ok := got[m]; !ok {
			t.Errorf("no copy for member %s: %v", m, got)
		}
	}

	for _, tc := range []struct {
		name, from, rcpt string
		code             int
		enhanced         [3]int
		text             string
	}{
		{"unknown list address", "alice@example.com", "nope@" + listDomain, 550, [3]int{5, 1, 1}, "relay recipient table"},
		{"forged VERP address", "", "test-bounces+mallory=example.com@" + listDomain, 550, [3]int{5, 1, 1}, "unknown or forged bounce address"},
		{"non-member on a reject list", "mallory@example.net", closedList, 550, [3]int{5, 7, 1}, "only members may post"},
		{"member on a reject list", "alice@example.com", closedList, 250, [3]int{2, 1, 5}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := testenv.SendMail(t, s.pf.SMTPAddr, tc.from, []string{tc.rcpt}, post(tc.from, "policy "+tc.name))
			r := res.Rcpt[0]
			if r.Code != tc.code || r.EnhancedCode != tc.enhanced || !strings.Contains(r.Text, tc.text) {
				t.Errorf("%v, want %d %v ...%s...", r, tc.code, tc.enhanced, tc.text)
			}
			t.Logf("%s: %v", tc.rcpt, r)
		})
	}
	// relay_recipient_maps refused it before the policy class ran.
	if strings.Contains(s.pl.Log(), "nope@"+listDomain) {
		t.Errorf("the policy service was asked about an address Postfix should have refused first")
	}
	if !strings.Contains(s.pl.Log(), `"logger":"policy"`) || !strings.Contains(s.pl.Log(), `"reason":"nonmember"`) {
		t.Errorf("no policy decision in postlist's log:\n%s", s.pl.LogTail())
	}
}

// TestPolicyHookupRestart: a restart closes the connections Postfix's
// smtpd processes keep to the policy service; the next list recipient
// must still be decided by the new postlist (Postfix reconnects), not
// deferred, and never accepted unchecked.
func TestPolicyHookupRestart(t *testing.T) {
	s := startHookup(t)
	s.pl.Start()
	probe := func(rcpt string) testenv.Reply {
		res := testenv.SendMail(t, s.pf.SMTPAddr, "mallory@example.net", []string{rcpt}, post("mallory@example.net", "restart probe"))
		return res.Rcpt[0]
	}
	// Several sessions, so that smtpd processes hold policy connections.
	for range 3 {
		if r := probe(closedList); r.Code != 550 {
			t.Fatalf("before the restart: %v, want 550", r)
		}
	}
	s.pl.Signal(syscall.SIGTERM)
	if r := probe(closedList); r.Code < 400 || r.Code >= 500 {
		t.Errorf("while postlist is stopped: %v, want a 4xx", r)
	} else {
		t.Logf("while stopped: %v", r)
	}
	s.pl.Start()
	for range 3 {
		if r := probe(closedList); r.Code != 550 || r.EnhancedCode != [3]int{5, 7, 1} {
			t.Errorf("after the restart: %v, want the policy service's 550 5.7.1", r)
		}
	}
}
