package reliability

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// hostileCase is one row of the hostile-input table: what is sent, the
// answer it must get, and what must (not) happen afterwards. After every
// row the daemon must still be healthy.
type hostileCase struct {
	name   string
	input  string // for the log and the docs
	expect string
	run    func(t *testing.T, h *hostile)
}

// hostile is the stack the table runs against.
type hostile struct {
	*stack
	// lists by name
	plain, dmarc, loopA, loopB listSpec
}

// TestHostileInput runs the hostile-input table against one Postfix +
// daemon stack, each row through the path it would take in service
// (Postfix with the milter, or straight to the LMTP port where Postfix
// would normalise the input first), and checks the daemon after each.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	h := &hostile{
		// No list size limit on plain: rows send big messages on purpose,
		// and only the site limit (10 MB) is under test.
		plain: listSpec{name: "plain", members: 2, settings: [][2]string{{"max_message_size", "0"}, {"footer", "Plain list footer."}, {"subject_prefix", "[plain] "}}},
		dmarc: listSpec{name: "dmarc", members: 2, settings: [][2]string{{"dmarc_mitigate_action", "munge_from"}, {"subject_prefix", "[dmarc] "}}},
		loopA: listSpec{name: "loopa", addrs: []string{"loopb@" + listDomain, "loopa-m00@" + memberDomain}},
		loopB: listSpec{name: "loopb", addrs: []string{"loopa@" + listDomain, "loopb-m00@" + memberDomain}},
	}
	h.stack = startStack(t, stackOptions{
		ExtraMain: map[string]string{
			// Above the daemon's 10 MB, so that the 50 MB message reaches
			// the milter and the daemon's limit is what refuses it.
			"message_size_limit": "80000000",
			// Postfix's error limits are what rate-limits guessing; the
			// defaults (10, 20, 1 s) are lowered to keep the row short.
			"smtpd_soft_error_limit": "3",
			"smtpd_hard_error_limit": "6",
			"smtpd_error_sleep_time": "1s",
		},
	}, h.plain, h.dmarc, h.loopA, h.loopB)
	h.checkHealthy(t, h.plain.addr())

	for _, c := range hostileCases {
		ok := t.Run(c.name, func(t *testing.T) {
			t.Logf("input: %s; expected: %s", c.input, c.expect)
			c.run(t, h)
			h.checkHealthy(t, h.plain.addr())
		})
		if !ok && !h.alive() {
			t.Fatalf("the daemon is down after %q; the remaining rows would prove nothing", c.name)
		}
	}
}

func (h *hostile) alive() bool { return healthz(h.pl.HTTP) == nil }

var hostileCases = []hostileCase{
	{
		name:   "crlf-in-display-name",
		input:  "From: =?utf-8?q?Evil=0D=0ABcc:_victim@example.net?= <evil@example.com> and a Subject hiding CRLF + header, to a munge_from list",
		expect: "250; copies reach the members only, with no header line injected",
		run: func(t *testing.T, h *hostile) {
			id := "<crlf-name@example.com>"
			msg := []byte("From: =?utf-8?q?Evil=0D=0ABcc:_victim@example.net?= <evil@example.com>\r\n" +
				"To: " + h.dmarc.addr() + "\r\nSubject: =?utf-8?q?hi=0D=0AX-Injected:_yes?=\r\nMessage-ID: " + id + "\r\n\r\nbody\r\n")
			h.mustPost(t, "evil@example.com", h.dmarc.addr(), msg)
			envs := h.waitCopies(t, id, h.dmarc.memberAddrs())
			for _, e := range envs {
				header, _, _ := strings.Cut(string(e.Data), "\r\n\r\n")
				if regexp.MustCompile(`(?mi)^(bcc|x-injected):`).MatchString(header) {
					t.Errorf("copy to %v has an injected header line:\n%s", e.To, header)
				}
				if strings.ContainsAny(strings.ReplaceAll(strings.ReplaceAll(header, "\r\n ", ""), "\r\n\t", ""), "\x00") {
					t.Errorf("copy to %v has a NUL in its header", e.To)
				}
			}
			h.noMailFor(t, "victim@example.net")
		},
	},
	{
		name:   "crlf-in-command-arguments",
		input:  "mail to plain-request with an encoded Subject `join address=victim@example.net<CR><LF>Bcc: x@example.net`; CLI `members add` with CR/LF in the address and in the display name",
		expect: "250 for the mail, nothing sent to the injected address; the CLI exits non-zero and adds no one",
		run: func(t *testing.T, h *hostile) {
			req := "plain-request@" + listDomain
			msg := []byte("From: evil@example.com\r\nTo: " + req +
				"\r\nSubject: =?utf-8?q?join_address=3Dvictim@example.net=0D=0ABcc:_x@example.net?=\r\n" +
				"Message-ID: <crlf-cmd@example.com>\r\n\r\njoin address=victim@example.net\r\n")
			h.mustPost(t, "evil@example.com", req, msg)
			before := h.memberCount(t, h.plain)
			for _, arg := range []string{"evil@example.net\r\nBcc: x@example.net", "Evil\r\nBcc: x@example.net <evil@example.net>", "evil@example.net\x00x@example.net"} {
				out, err := exec.Command(h.pl.Bin, "-c", h.pl.Config, "members", "add", h.plain.addr(), arg).CombinedOutput()
				if err == nil {
					t.Errorf("members add %q succeeded: %s", arg, out)
				}
			}
			if after := h.memberCount(t, h.plain); after != before {
				t.Errorf("members: %d before, %d after refused additions", before, after)
			}
			// The command processor has answered once the request is no
			// longer new; then whatever it sent has left Postfix.
			db := openDB(t, h.pl.DB)
			testenv.WaitForWhy(t, time.Minute, "the request processed", func() (bool, string) {
				n := queryInt(t, db, `SELECT COUNT(*) FROM intake i JOIN messages m ON m.id = i.message_id
					WHERE m.message_id = '<crlf-cmd@example.com>' AND i.state = 'new'`)
				return n == 0, fmt.Sprintf("%d intake rows new", n)
			})
			h.noMailFor(t, "x@example.net")
			for _, e := range h.sink.Envelopes() {
				header, _, _ := strings.Cut(string(e.Data), "\r\n\r\n")
				if regexp.MustCompile(`(?mi)^bcc:`).MatchString(header) {
					t.Errorf("mail to %v carries a Bcc header:\n%s", e.To, header)
				}
			}
		},
	},
	{
		name:   "nul-and-invalid-utf8-in-headers",
		input:  "a post whose Subject has bytes 0xff 0xfe and an X-Bad header with a NUL, through Postfix; the same straight to LMTP",
		expect: "250 (Postfix strips nothing; the daemon takes 8-bit headers as opaque bytes); copies reach the members",
		run: func(t *testing.T, h *hostile) {
			id := "<bad-bytes@example.com>"
			msg := []byte("From: poster@example.com\r\nTo: " + h.plain.addr() + "\r\nSubject: caf\xff\xfe bad\r\nX-Bad: a\x00b\r\nMessage-ID: " + id + "\r\n\r\nbody \xc3\x28\r\n")
			h.mustPost(t, poster, h.plain.addr(), msg)
			h.waitCopies(t, id, h.plain.memberAddrs())
			rr, dr := h.lmtp(t, poster, []string{h.plain.addr()}, bytes.ReplaceAll(msg, []byte(id), []byte("<bad-bytes-lmtp@example.com>")))
			expectCodes(t, "LMTP RCPT", rr, 250)
			expectCodes(t, "LMTP DATA", dr, 250)
			h.waitCopies(t, "<bad-bytes-lmtp@example.com>", h.plain.memberAddrs())
		},
	},
	{
		name:   "smtputf8-addresses",
		input:  "MAIL FROM:<pöster@example.com> SMTPUTF8 to the list; RCPT TO:<plaîn@lists.example.org>",
		expect: "the UTF-8 list address: 553 5.1.3 (list addresses are ASCII); the UTF-8 sender's post: 250 from Postfix, then Postfix bounces it (the daemon's LMTP does not offer SMTPUTF8) and nothing reaches the members",
		run: func(t *testing.T, h *hostile) {
			c, _, err := dial(h.pf.SMTPAddr, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			steps := []struct {
				cmd  string
				code int
			}{
				{"EHLO utf8.example.net", 250},
				{"MAIL FROM:<pöster@example.com> SMTPUTF8", 250},
				{"RCPT TO:<plaîn@" + listDomain + ">", 553},
				{"RCPT TO:<" + h.plain.addr() + ">", 250},
			}
			for _, s := range steps {
				r, err := c.cmd("%s", s.cmd)
				if err != nil || r.code != s.code {
					t.Fatalf("%s: got %v %v, want %d", s.cmd, r, err, s.code)
				}
			}
			id := "<utf8@example.com>"
			r, err := c.data(message(h.plain.addr(), id, "utf8 sender", "Grüße\r\n"))
			if err != nil || r.code != 250 {
				t.Fatalf("DATA: %v %v", r, err)
			}
			h.pf.WaitLog(t, regexp.MustCompile(`to=<`+regexp.QuoteMeta(h.plain.addr())+`>.*status=bounced \(.*SMTPUTF8`), time.Minute)
			h.noCopies(t, id)
		},
	},
	{
		name:   "1000-recipients",
		input:  "one LMTP transaction with 1,000 RCPTs (plain+1 … plain+1000) and a 1,001st; one SMTP transaction through Postfix with 1,000 RCPTs of plain+N",
		expect: "LMTP: 250 ×1000, 452 4.5.3 for the 1,001st, one message stored; Postfix: 250 ×1000; each member gets each post once",
		run: func(t *testing.T, h *hostile) {
			var rcpts []string
			for i := 1; i <= 1001; i++ {
				rcpts = append(rcpts, fmt.Sprintf("plain+%d@%s", i, listDomain))
			}
			id := "<thousand-lmtp@example.com>"
			rr, dr := h.lmtp(t, poster, rcpts, message(h.plain.addr(), id, "thousand", "x\r\n"))
			expectCodes(t, "LMTP RCPT 1-1000", rr[:1000], 250)
			expectCodes(t, "LMTP RCPT 1001", rr[1000:], 452)
			expectCodes(t, "LMTP DATA", dr, 250)
			h.waitCopies(t, id, h.plain.memberAddrs())

			id = "<thousand-smtp@example.com>"
			res, err := testenv.Transact(h.pf.SMTPAddr, testenv.SendOptions{Timeout: 2 * time.Minute}, poster, rcpts[:1000], message(h.plain.addr(), id, "thousand", "x\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res.Rcpt {
				if r.Code != 250 {
					t.Fatalf("RCPT %d: %v", i, r)
				}
			}
			if !res.Data.OK() {
				t.Fatalf("DATA: %v", res.Data)
			}
			h.waitCopies(t, id, h.plain.memberAddrs())
			h.settle(t)
			for _, id := range []string{"<thousand-lmtp@example.com>", "<thousand-smtp@example.com>"} {
				got := copies(h.sink.Envelopes(), id)
				for _, m := range h.plain.memberAddrs() {
					if got[copyKey{id, m}] != 1 {
						t.Errorf("%s reached %s %d times, want once", id, m, got[copyKey{id, m}])
					}
				}
			}
		},
	},
	{
		name:   "50MB-message",
		input:  "a 50 MB post through Postfix (its own limit raised to 80 MB) and straight to LMTP; the site limit is 10 MB",
		expect: "through Postfix: 552 5.3.4 from the milter at end of data; LMTP: 552 5.3.4 per recipient; nothing stored; the daemon's memory stays bounded",
		run: func(t *testing.T, h *hostile) {
			body := bytes.Repeat([]byte(strings.Repeat("x", 76)+"\r\n"), 50<<20/78)
			msg := append(message(h.plain.addr(), "<huge@example.com>", "huge", ""), body...)
			res, err := testenv.Transact(h.pf.SMTPAddr, testenv.SendOptions{Timeout: 3 * time.Minute}, poster, []string{h.plain.addr()}, msg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Data.Code != 552 || res.Data.EnhancedCode != [3]int{5, 3, 4} {
				t.Errorf("through Postfix: %v, want 552 5.3.4", res.Data)
			}
			rr, dr := h.lmtp(t, poster, []string{h.plain.addr()}, msg)
			expectCodes(t, "LMTP RCPT", rr, 250)
			expectCodes(t, "LMTP DATA", dr, 552)
			h.noStored(t, "<huge@example.com>")
			// A daemon that buffered the refused 50 MB (or several copies
			// of the 10 MB it may read) would exceed this; the race
			// detector's shadow memory multiplies everything by about 5.
			limit := int64(150 << 20)
			if raceBuild {
				limit *= 5
			}
			if hwm := h.peakRSS(t); hwm > limit {
				t.Errorf("daemon peak RSS %d MB after a 50 MB message against a 10 MB limit, want at most %d MB", hwm>>20, limit>>20)
			} else {
				t.Logf("daemon peak RSS %d MB", hwm>>20)
			}
		},
	},
	{
		name:   "10000-header-lines",
		input:  "a post with 10,000 X-Filler header lines, through Postfix",
		expect: "250; the post reaches the members",
		run: func(t *testing.T, h *hostile) {
			var b strings.Builder
			for i := range 10000 {
				fmt.Fprintf(&b, "X-Filler-%d: %d\r\n", i, i)
			}
			id := "<many-headers@example.com>"
			msg := []byte(b.String() + string(message(h.plain.addr(), id, "many headers", "x\r\n")))
			h.mustPost(t, poster, h.plain.addr(), msg)
			h.waitCopies(t, id, h.plain.memberAddrs())
		},
	},
	{
		name:   "1MB-header-line",
		input:  "a post with one 1 MB header line, through Postfix; the same straight to LMTP",
		expect: "through Postfix: 250 (Postfix cuts the header to header_size_limit) and the post reaches the members; LMTP: 554 5.6.0 line too long",
		run: func(t *testing.T, h *hostile) {
			id := "<long-header@example.com>"
			msg := []byte("X-Long: " + strings.Repeat("y", 1<<20) + "\r\n" + string(message(h.plain.addr(), id, "long header", "x\r\n")))
			h.mustPost(t, poster, h.plain.addr(), msg)
			for _, e := range h.waitCopies(t, id, h.plain.memberAddrs()) {
				if len(e.Data) > 200<<10 {
					t.Errorf("copy to %v is %d bytes: the long header was not cut", e.To, len(e.Data))
				}
			}
			rr, dr := h.lmtp(t, poster, []string{h.plain.addr()}, bytes.ReplaceAll(msg, []byte(id), []byte("<long-header-lmtp@example.com>")))
			expectCodes(t, "LMTP RCPT", rr, 250)
			expectCodes(t, "LMTP DATA", dr, 554)
			h.noStored(t, "<long-header-lmtp@example.com>")
		},
	},
	{
		name:   "deeply-nested-MIME",
		input:  "a post of 1,000 nested multipart/mixed parts to a list with a footer",
		expect: "250; the post reaches the members (with or without the footer)",
		run: func(t *testing.T, h *hostile) {
			const depth = 1000
			var b strings.Builder
			for i := range depth {
				fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
			}
			b.WriteString("Content-Type: text/plain\r\n\r\ninnermost\r\n")
			for i := depth - 1; i >= 0; i-- {
				fmt.Fprintf(&b, "--b%d--\r\n", i)
			}
			id := "<nested@example.com>"
			msg := []byte("From: poster@example.com\r\nTo: " + h.plain.addr() + "\r\nSubject: nested\r\nMessage-ID: " + id + "\r\nMIME-Version: 1.0\r\n" + b.String())
			h.mustPost(t, poster, h.plain.addr(), msg)
			h.waitCopies(t, id, h.plain.memberAddrs())
		},
	},
	{
		name:   "verp-and-token-forgery",
		input:  "RCPT TO a -bounces+ address naming a stranger, a member's real return path with its signature altered, and 20 random -confirm+ tokens in one session",
		expect: "550 5.1.1 for the stranger and the altered signature, 250 for the real return path; token guesses 550 5.1.1 until Postfix's error limit cuts the session with 421 4.7.0, guesses past the soft limit slowed to one per smtpd_error_sleep_time",
		run: func(t *testing.T, h *hostile) {
			// A real return path, as the sink received it.
			id := "<verp-source@example.com>"
			h.mustPost(t, poster, h.plain.addr(), message(h.plain.addr(), id, "verp source", "x\r\n"))
			envs := h.waitCopies(t, id, h.plain.memberAddrs())
			real := envs[0].From
			forgedStranger := "plain-bounces+stranger=example.org@" + listDomain
			want := map[string]int{real: 250, forgedStranger: 550}
			if local, _, _ := strings.Cut(real, "@"); strings.Count(local, "=") >= 2 {
				// Signed: LOCAL=DOMAIN=SIG. Alter the signature.
				sig := real[strings.LastIndex(local, "=")+1 : len(local)]
				// Changed so that no case-insensitive comparison could
				// still match it.
				flipped := []byte(sig)
				flipped[0] = map[bool]byte{true: 'b', false: 'a'}[flipped[0]|0x20 == 'a']
				want[strings.Replace(real, "="+sig+"@", "="+string(flipped)+"@", 1)] = 550
			} else {
				t.Logf("return path %s carries no signature; the altered-signature case is skipped", real)
			}
			for addr, code := range want {
				rs, err := rcptProbe(h.pf.SMTPAddr, "mailer-daemon@example.org", addr)
				if err != nil {
					t.Fatal(err)
				}
				if rs[0].code != code || (code == 550 && !strings.HasPrefix(rs[0].text, "5.1.1")) {
					t.Errorf("RCPT %s: %v, want %d", addr, rs[0], code)
				}
			}
			guessTokens(t, h)
		},
	},
	{
		name:   "lists-subscribed-to-each-other",
		input:  "loopa has member loopb@, loopb has member loopa@; one post to loopa",
		expect: "each list's outside member gets one copy; the copy coming back to loopa is discarded by the loop rule; the traffic stops",
		run: func(t *testing.T, h *hostile) {
			id := "<loop@example.com>"
			h.mustPost(t, poster, h.loopA.addr(), message(h.loopA.addr(), id, "loop", "x\r\n"))
			h.waitCopies(t, id, []string{"loopa-m00@" + memberDomain, "loopb-m00@" + memberDomain})
			h.settle(t)
			got := copies(h.sink.Envelopes(), id)
			for _, m := range []string{"loopa-m00@" + memberDomain, "loopb-m00@" + memberDomain} {
				if got[copyKey{id, m}] != 1 {
					t.Errorf("%s got %d copies, want 1", m, got[copyKey{id, m}])
				}
			}
			db := openDB(t, h.pl.DB)
			posts := queryInt(t, db, `SELECT COUNT(*) FROM intake i JOIN messages m ON m.id = i.message_id
				WHERE m.message_id = ? AND i.kind = 'post'`, id)
			discarded := queryInt(t, db, `SELECT COUNT(*) FROM events WHERE kind = 'post_discarded' AND detail LIKE '%loop%'`)
			if posts > 4 || discarded < 1 {
				t.Errorf("the post came in %d times and %d loop discards were recorded; want it stopped after one round", posts, discarded)
			}
		},
	},
	{
		name:   "sql-looking-addresses",
		input:  "RCPT TO:<x'--@lists.example.org>, RCPT TO:<\"'; DROP TABLE lists;--\"@lists.example.org>, MAIL FROM:<'OR'1'='1@example.com> posting, CLI members add o'hara@example.net and robert');DROP TABLE members;--@example.net",
		expect: "550 5.1.1 for the unknown addresses; the post is delivered; o'hara is added and receives it, the other address is refused by the CLI; every table intact",
		run: func(t *testing.T, h *hostile) {
			rs, err := rcptProbe(h.pf.SMTPAddr, "'OR'1'='1@example.com", "x'--@"+listDomain, `"'; DROP TABLE lists;--"@`+listDomain)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range rs {
				if r.code != 550 && r.code != 553 {
					t.Errorf("RCPT %d: %v, want 550 or 553", i, r)
				}
			}
			out, err := exec.Command(h.pl.Bin, "-c", h.pl.Config, "members", "add", h.plain.addr(), "robert');DROP TABLE members;--@example.net").CombinedOutput()
			if err == nil {
				t.Errorf("members add of a malformed address succeeded: %s", out)
			}
			h.pl.CLI("members", "add", h.plain.addr(), "o'hara@"+memberDomain)
			members := append(h.plain.memberAddrs(), "o'hara@"+memberDomain)
			// The index picks up the new member within a second; the post
			// goes through the pipeline, which reads the database anyway.
			id := "<sql@example.com>"
			h.mustPost(t, "'OR'1'='1@example.com", h.plain.addr(), message(h.plain.addr(), id, "sql", "x\r\n"))
			h.waitCopies(t, id, members)
			h.pl.CLI("members", "remove", h.plain.addr(), "o'hara@"+memberDomain)
			db := openDB(t, h.pl.DB)
			if n := queryInt(t, db, "SELECT COUNT(*) FROM lists"); n != 4 {
				t.Errorf("%d lists, want 4", n)
			}
			var ok string
			if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
				t.Errorf("integrity_check: %q %v", ok, err)
			}
		},
	},
}

// guessTokens guesses -confirm+ tokens in one SMTP session until Postfix
// cuts it off, and checks that every guess was refused and that guessing
// is slowed down and bounded per connection.
func guessTokens(t *testing.T, h *hostile) {
	t.Helper()
	c, _, err := dial(h.pf.SMTPAddr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if r, err := c.cmd("EHLO guesser.example.net"); err != nil || r.code != 250 {
		t.Fatalf("EHLO: %v %v", r, err)
	}
	if r, err := c.cmd("MAIL FROM:<guesser@example.com>"); err != nil || r.code != 250 {
		t.Fatalf("MAIL: %v %v", r, err)
	}
	refused, cut := 0, false
	var slow []time.Duration
	for i := range 20 {
		var b [16]byte
		_, _ = rand.Read(b[:])
		began := time.Now()
		r, err := c.cmd("RCPT TO:<plain-confirm+%s@%s>", hex.EncodeToString(b[:]), listDomain)
		took := time.Since(began)
		if err != nil {
			t.Fatalf("guess %d: %v", i+1, err)
		}
		if r.code == 421 {
			cut = true
			break
		}
		if r.code != 550 || !strings.HasPrefix(r.text, "5.1.1") {
			t.Fatalf("guess %d: %v, want 550 5.1.1", i+1, r)
		}
		refused++
		if i >= 3 { // past smtpd_soft_error_limit
			slow = append(slow, took)
		}
	}
	if !cut || refused > 6 {
		t.Errorf("%d guesses refused, session cut: %v; want the session cut at smtpd_hard_error_limit (6)", refused, cut)
	}
	for i, d := range slow {
		if d < 900*time.Millisecond {
			t.Errorf("guess %d past the soft error limit answered in %v, want smtpd_error_sleep_time (1 s)", i+4, d)
		}
	}
	t.Logf("token guessing: %d guesses refused, then the session was cut; answers past the soft limit took %v", refused, slow)
}

// ---- helpers ----

func expectCodes(t *testing.T, what string, rs []reply, code int) {
	t.Helper()
	if len(rs) == 0 {
		t.Errorf("%s: no replies, want %d", what, code)
	}
	for i, r := range rs {
		if r.code != code {
			t.Errorf("%s #%d: %v, want %d", what, i+1, r, code)
			return
		}
	}
}

// mustPost sends msg through Postfix and fails unless it is accepted.
func (h *hostile) mustPost(t *testing.T, from, rcpt string, msg []byte) {
	t.Helper()
	res, err := testenv.Transact(h.pf.SMTPAddr, testenv.SendOptions{Timeout: 2 * time.Minute}, from, []string{rcpt}, msg)
	if err != nil {
		t.Fatalf("send: %v\n%v", err, res)
	}
	if !res.Data.OK() {
		t.Fatalf("not accepted: %v", res)
	}
}

// waitCopies waits until each member has a copy of post id and returns
// the copies.
func (h *hostile) waitCopies(t *testing.T, id string, members []string) []testenv.Envelope {
	t.Helper()
	testenv.WaitForWhy(t, time.Minute, "copies of "+id, func() (bool, string) {
		got := copies(h.sink.Envelopes(), id)
		for _, m := range members {
			if got[copyKey{id, strings.ToLower(m)}] == 0 {
				return false, m + " has none"
			}
		}
		return true, ""
	})
	var out []testenv.Envelope
	for _, e := range h.sink.Envelopes() {
		if headerValue(e.Data, "Message-ID") == id {
			out = append(out, e)
		}
	}
	return out
}

func (h *hostile) noCopies(t *testing.T, id string) {
	t.Helper()
	h.settle(t)
	if got := copies(h.sink.Envelopes(), id); len(got) != 0 {
		t.Errorf("%s reached %v", id, got)
	}
}

// noMailFor checks that nothing reached rcpt.
func (h *hostile) noMailFor(t *testing.T, rcpt string) {
	t.Helper()
	h.settle(t)
	for _, e := range h.sink.Envelopes() {
		for _, r := range e.To {
			if strings.EqualFold(r, rcpt) {
				t.Errorf("mail reached %s:\n%s", rcpt, e.Data)
			}
		}
	}
}

func (h *hostile) noStored(t *testing.T, id string) {
	t.Helper()
	db := openDB(t, h.pl.DB)
	if n := queryInt(t, db, "SELECT COUNT(*) FROM messages WHERE message_id = ?", id); n != 0 {
		t.Errorf("%s stored %d times, want never", id, n)
	}
}

// settle waits until neither Postfix nor the daemon has work left, so
// that "nothing more arrives" can be checked.
func (h *hostile) settle(t *testing.T) {
	t.Helper()
	db := openDB(t, h.pl.DB)
	testenv.WaitForWhy(t, time.Minute, "quiet", func() (bool, string) {
		if u := unsettled(t, db); u != "" {
			return false, u
		}
		if q := h.pf.Queue(t); len(q) > 0 {
			return false, fmt.Sprintf("%d messages in Postfix's queue", len(q))
		}
		return true, ""
	})
}

func (h *hostile) memberCount(t *testing.T, l listSpec) int64 {
	t.Helper()
	db := openDB(t, h.pl.DB)
	return queryInt(t, db, "SELECT COUNT(*) FROM members m JOIN lists l ON l.id = m.list_id WHERE l.address = ?", l.addr())
}

// lmtp runs one LMTP transaction straight against the daemon and returns
// the RCPT replies and the per-recipient replies after the data (none if
// no recipient was accepted, one DATA reply if DATA itself was refused).
func (h *hostile) lmtp(t *testing.T, from string, rcpts []string, msg []byte) (rr, dr []reply) {
	t.Helper()
	c, g, err := dial(h.pl.LMTP, time.Minute)
	if err != nil {
		t.Fatalf("LMTP greeting %v: %v", g, err)
	}
	defer c.close()
	if r, err := c.cmd("LHLO hostile.example.net"); err != nil || r.code != 250 {
		t.Fatalf("LHLO: %v %v", r, err)
	}
	if r, err := c.cmd("MAIL FROM:<%s>", from); err != nil || r.code != 250 {
		t.Fatalf("MAIL: %v %v", r, err)
	}
	accepted := 0
	for _, rc := range rcpts {
		r, err := c.cmd("RCPT TO:<%s>", rc)
		if err != nil {
			t.Fatalf("RCPT %s: %v", rc, err)
		}
		rr = append(rr, r)
		if r.code == 250 {
			accepted++
		}
	}
	if accepted == 0 {
		return rr, nil
	}
	r, err := c.cmd("DATA")
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if r.code != 354 {
		return rr, []reply{r}
	}
	// The message is written while the replies are read: a server that
	// refuses it early (a line too long) answers and hangs up while the
	// client is still writing, and the answer is what counts.
	written := make(chan struct{})
	go func() {
		defer close(written)
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Minute))
		w := c.tp.DotWriter()
		if _, err := w.Write(msg); err == nil {
			_ = w.Close()
		}
	}()
	c.timeout = 2 * time.Minute
	for range accepted {
		r, err := c.read()
		if err != nil {
			break // hung up; the replies it did send are what counts
		}
		dr = append(dr, r)
	}
	// The writer must be done before the session is used again (QUIT):
	// a server that stopped reading is hung up on to unblock it.
	select {
	case <-written:
	case <-time.After(5 * time.Second):
		c.conn.Close()
		<-written
	}
	return rr, dr
}

// peakRSS returns the daemon's peak resident set size (VmHWM).
func (h *hostile) peakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", daemonPID(t, h.pl)))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
