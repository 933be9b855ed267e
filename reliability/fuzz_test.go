package reliability

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"postlist/index"
	"postlist/index/indextest"
	"postlist/milter"
	"postlist/store"
)

var (
	fuzzMilterOnce sync.Once
	fuzzMilterAddr string
	fuzzMilterDir  string // removed by TestMain
	fuzzMilterErr  error
)

// fuzzMilter starts, once per process, postlist's milter on an index with
// one list that refuses non-members, one member and a small size limit.
// It runs until the process ends: fuzzing calls its target millions of
// times and a server per call would measure only the set-up. It listens
// on a Unix socket: a TCP connection per call would leave tens of
// thousands of ports in TIME_WAIT on a machine other tests share.
func fuzzMilter() (string, error) {
	fuzzMilterOnce.Do(func() {
		src := &indextest.Source{}
		id := src.AddList("test", listDomain, "reject", 1)
		src.Members = []store.IndexMember{{ListID: id, Address: "alice@example.com"}}
		ix := index.New(src, index.Options{})
		if fuzzMilterErr = ix.Reload(context.Background()); fuzzMilterErr != nil {
			return
		}
		srv := milter.New(milter.Options{Index: ix, Log: zap.NewNop(), MaxMessageSize: 4096})
		if fuzzMilterDir, fuzzMilterErr = os.MkdirTemp("", "plfuzz"); fuzzMilterErr != nil {
			return
		}
		fuzzMilterAddr = filepath.Join(fuzzMilterDir, "milter.sock")
		ln, err := net.Listen("unix", fuzzMilterAddr)
		if err != nil {
			fuzzMilterErr = err
			return
		}
		go func() { _ = srv.Serve(ln) }()
	})
	return fuzzMilterAddr, fuzzMilterErr
}

// FuzzMilterSession drives postlist's milter over the real milter protocol
// (go-milter's client, as Postfix would speak it) with arbitrary senders,
// recipients, a header and a body, optionally aborting the transaction
// after the recipients (ops bit 0) or in the middle of the message (bit 1). The milter must never break the conversation, must answer
// every question with continue, accept or a one-line 4xx/5xx reply it
// knows, and must still accept a list address in the next transaction of
// the same session. Inputs Postfix cannot produce (a NUL inside a protocol string,
// a header name that is not a header name) are skipped.
//
// The unit-level targets cover the parts: index.FuzzDecide (RCPT
// decisions) and milter.FuzzContent (end-of-message policy).
func FuzzMilterSession(f *testing.F) {
	list := "test@" + listDomain
	for _, seed := range []struct {
		sender, rcpts, name, value, body string
		ops                              uint8
	}{
		{"alice@example.com", list, "From", "Alice <alice@example.com>", "Hello.\r\n", 0},
		{"mallory@example.com", list + "\nnope@" + listDomain, "From", "mallory@example.com", "x", 0},
		{"", "test-bounces+alice=example.com@" + listDomain + "\ntest-confirm+0123456789abcdef0123456789abcdef@" + listDomain, "X-BeenThere", list, "", 1},
		{"<>", "TEST+x@LISTS.EXAMPLE.ORG\nbob@example.net", "List-Id", "<test.lists.example.org>", strings.Repeat("y", 5000), 2},
		{"a@b", "\"quoted local\"@" + listDomain + "\n@" + listDomain + "\n<>\ntest@", "Subject", "=?utf-8?q?=0D=0A?=", "\r\n.\r\n", 3},
		{"ü@example.com", "tëst@" + listDomain + "\n" + list, "From", "=?x?q?M=F6?= <ü@x>", "8bit \xff\r\n", 0},
	} {
		f.Add(seed.sender, seed.rcpts, seed.name, seed.value, seed.body, seed.ops)
	}
	f.Fuzz(func(t *testing.T, sender, rcpts, name, value, body string, ops uint8) {
		if strings.ContainsRune(sender+rcpts+name+value, 0) || !validFieldName(name) {
			return // Postfix never sends these
		}
		addr, err := fuzzMilter()
		if err != nil {
			t.Fatal(err)
		}
		macros := gomilter.NewMacroBag()
		macros.Set(gomilter.MacroClientAddr, "192.0.2.7")
		s, err := gomilter.NewClient("unix", addr).Session(macros)
		if err != nil {
			t.Fatalf("session: %v", err)
		}
		defer s.Close()
		must := func(a *gomilter.Action, err error) *gomilter.Action {
			t.Helper()
			if err != nil {
				t.Fatalf("the milter broke the conversation: %v", err)
			}
			checkAction(t, a)
			return a
		}
		must(s.Conn("client.example.net", gomilter.FamilyInet, 4711, "192.0.2.7"))
		must(s.Helo("client.example.net"))

		macros.Set(gomilter.MacroMailAddr, sender)
		must(s.Mail(sender, ""))
		accepted := 0
		for i, r := range strings.Split(rcpts, "\n") {
			if i == 50 {
				break
			}
			if a := must(s.Rcpt(r, "")); a.Type == gomilter.ActionContinue || a.Type == gomilter.ActionAccept {
				accepted++
			}
		}
		abort := func() {
			t.Helper()
			if err := s.Abort(nil); err != nil {
				t.Fatalf("abort: %v", err)
			}
		}
		if ops&1 != 0 || accepted == 0 {
			abort()
		} else if a := must(s.DataStart()); a.Type != gomilter.ActionContinue {
			// Decided at DATA: Postfix sends no content and ends the
			// transaction.
			abort()
		} else {
			must(s.HeaderField(name, value, nil))
			must(s.HeaderEnd())
			// Postfix sends at least one body event, empty for an
			// empty body, in chunks of at most 64 KiB.
			b := []byte(body)
			for first := true; first || len(b) > 0; first = false {
				n := min(len(b), 65535)
				must(s.BodyChunk(b[:n]))
				b = b[n:]
			}
			if ops&2 != 0 {
				// The client sent RSET (or hung up) in the middle of
				// the message.
				abort()
			} else {
				_, a, err := s.End()
				must(a, err)
			}
		}
		// Whatever came before, the next transaction of the same SMTP
		// session (Postfix reuses the milter connection) still decides.
		macros.Set(gomilter.MacroMailAddr, "alice@example.com")
		must(s.Mail("alice@example.com", ""))
		if a := must(s.Rcpt(list, "")); a.Type != gomilter.ActionContinue {
			t.Fatalf("after the fuzzed transaction the list address got %v", a)
		}
		abort()
	})
}

// checkAction fails unless a is an answer postlist may give: continue,
// accept, or a single-line 4xx/5xx reply with an enhanced status code.
func checkAction(t *testing.T, a *gomilter.Action) {
	t.Helper()
	switch a.Type {
	case gomilter.ActionContinue, gomilter.ActionAccept:
		return
	case gomilter.ActionRejectWithCode:
		r := a.SMTPReply
		if strings.ContainsAny(strings.TrimRight(r, "\r\n"), "\r\n") {
			t.Fatalf("multi-line reply %q", r)
		}
		switch a.SMTPCode {
		case 451, 550, 552, 553, 554:
		default:
			t.Fatalf("unexpected reply %q", r)
		}
		if len(r) < 10 || r[4] != r[0] || r[5] != '.' {
			t.Fatalf("reply %q lacks a matching enhanced status code", r)
		}
	default:
		t.Fatalf("unexpected action %c", rune(a.Type))
	}
}

// validFieldName reports whether s can be a header field name (RFC 5322:
// printable ASCII but colon), which is all Postfix passes on as one.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}
