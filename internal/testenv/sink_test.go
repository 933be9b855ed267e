package testenv

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestSinkHooks(t *testing.T) {
	sink := StartSink(t)
	sink.SetRcptHook(func(from, to string) *smtp.SMTPError {
		if to == "nobody@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user " + from}
		}
		return nil
	})
	var dataCalls atomic.Int32
	sink.SetDataHook(func(env Envelope) *smtp.SMTPError {
		if !slices.Equal(env.To, []string{"bob@example.com", "carol@example.com"}) {
			t.Errorf("data hook saw recipients %v, want only the accepted ones", env.To)
		}
		if dataCalls.Add(1) == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again"}
		}
		return nil
	})

	to := []string{"bob@example.com", "nobody@example.com", "carol@example.com"}
	// The second line starts with a dot, which SMTP dot-stuffs on the wire
	// and the sink must un-stuff.
	msg := []byte("Subject: hooks\n\n.leading dot\nbody\n")

	res := SendMail(t, sink.Addr, "alice@example.org", to, msg)
	wantRcpt := []int{250, 550, 250}
	for i, r := range res.Rcpt {
		if r.Code != wantRcpt[i] {
			t.Errorf("RCPT %s: got %v, want %d", to[i], r, wantRcpt[i])
		}
	}
	if r := res.Rcpt[1]; r.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || r.Text != "no such user alice@example.org" {
		t.Errorf("rejected RCPT reply: %v", r)
	}
	if res.Data.Code != 451 || res.Data.Text != "try again" {
		t.Errorf("first DATA: got %v, want 451 4.3.0 try again", res.Data)
	}
	if n := len(sink.Envelopes()); n != 0 {
		t.Errorf("a transaction rejected at DATA was recorded (%d envelopes)", n)
	}

	res = SendMail(t, sink.Addr, "alice@example.org", to, msg)
	if !res.Data.OK() {
		t.Fatalf("second transaction:\n%v", res)
	}
	envs := sink.WaitFor(t, 1, 5*time.Second)
	if len(envs) != 1 {
		t.Fatalf("got %d envelopes, want 1", len(envs))
	}
	env := envs[0]
	if env.From != "alice@example.org" || !slices.Equal(env.To, []string{"bob@example.com", "carol@example.com"}) {
		t.Errorf("recorded from=<%s> to=%v", env.From, env.To)
	}
	if want := "Subject: hooks\r\n\r\n.leading dot\r\nbody\r\n"; string(env.Data) != want {
		t.Errorf("recorded data %q, want %q", env.Data, want)
	}
	if env.Received.IsZero() || time.Since(env.Received) > time.Minute {
		t.Errorf("implausible Received time %v", env.Received)
	}
	if n := dataCalls.Load(); n != 2 {
		t.Errorf("data hook called %d times, want 2", n)
	}

	// Envelopes hands out copies.
	envs[0].To[0] = "changed"
	envs[0].Data[0] = 'X'
	if again := sink.Envelopes()[0]; again.To[0] != "bob@example.com" || again.Data[0] != 'S' {
		t.Error("Envelopes returned the sink's own slices")
	}

	// Removing the hooks restores plain acceptance; the null sender is "".
	sink.SetRcptHook(nil)
	sink.SetDataHook(nil)
	res = SendMail(t, sink.Addr, "", []string{"nobody@example.com"}, msg)
	if !res.Rcpt[0].OK() || !res.Data.OK() {
		t.Fatalf("without hooks:\n%v", res)
	}
	if envs := sink.WaitFor(t, 2, 5*time.Second); envs[1].From != "" {
		t.Errorf("null sender recorded as %q", envs[1].From)
	}

	sink.Reset()
	if n := len(sink.Envelopes()); n != 0 {
		t.Errorf("Reset left %d envelopes", n)
	}
}

// fatalRecorder is a testing.TB whose Fatalf only records, to test the
// failure path of WaitFor.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestSinkWaitForTimeout(t *testing.T) {
	sink := StartSink(t)
	SendMail(t, sink.Addr, "alice@example.org", []string{"bob@example.com"}, []byte("Subject: the one\n\nx\n"))

	rec := &fatalRecorder{TB: t}
	start := time.Now()
	if got := sink.WaitFor(rec, 2, 200*time.Millisecond); got != nil {
		t.Errorf("WaitFor returned %v after failing", got)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("WaitFor gave up after %v, before its timeout", waited)
	}
	for _, want := range []string{"for 2 message(s), got 1", "from=<alice@example.org>", "to=[bob@example.com]", "Subject: the one"} {
		if !strings.Contains(rec.msg, want) {
			t.Errorf("failure message lacks %q:\n%s", want, rec.msg)
		}
	}
}

func TestSinkWaitForWakesUp(t *testing.T) {
	sink := StartSink(t)
	go func() {
		time.Sleep(50 * time.Millisecond)
		// Errors surface as WaitFor's timeout below.
		_, _ = Transact(sink.Addr, SendOptions{}, "a@example.org", []string{"b@example.com"}, []byte("x\n"))
	}()
	start := time.Now()
	sink.WaitFor(t, 1, 10*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitFor took %v to notice the message", d)
	}
}

func TestParseReply(t *testing.T) {
	r := parseReply(550, "5.1.1 <x@example.org>: no such list\n5.1.1 second line")
	if r.Code != 550 || r.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || r.Text != "<x@example.org>: no such list\nsecond line" {
		t.Errorf("parseReply: %+v", r)
	}
	if s := r.String(); !strings.HasPrefix(s, "550 5.1.1 <x@example.org>") {
		t.Errorf("String() = %q", s)
	}
	r = parseReply(220, "pfharness.test ESMTP")
	if r.EnhancedCode != (smtp.EnhancedCode{}) || r.Text != "pfharness.test ESMTP" || r.String() != "220 pfharness.test ESMTP" {
		t.Errorf("reply without enhanced code: %+v", r)
	}
	res := SendResult{Data: Reply{Code: 250, Text: "Ok: queued as 4F1B2C3D"}}
	if id := res.QueueID(); id != "4F1B2C3D" {
		t.Errorf("QueueID = %q", id)
	}
	if (Reply{}).String() != "(not sent)" {
		t.Error("zero Reply should read as not sent")
	}
}

func TestXClientCommand(t *testing.T) {
	line, err := (&XClient{Addr: "192.0.2.7", Name: "a b+c=d"}).command()
	if err != nil {
		t.Fatal(err)
	}
	if want := "XCLIENT ADDR=192.0.2.7 NAME=a+20b+2Bc+3Dd"; line != want {
		t.Errorf("got %q, want %q", line, want)
	}
	if _, err := (&XClient{}).command(); err == nil {
		t.Error("empty XCLIENT accepted")
	}
}

func TestTransactConnectionRefused(t *testing.T) {
	addr := FreeAddr(t) // nothing listens
	if _, err := Transact(addr, SendOptions{Timeout: 2 * time.Second}, "a@example.org", []string{"b@example.com"}, nil); err == nil {
		t.Error("Transact to a closed port reported no error")
	}
}
