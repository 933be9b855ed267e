package bounce_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"postlist/address"
	"postlist/bounce"
	"postlist/internal/testenv/stack"
	"postlist/notice"
	"postlist/store"
)

// env is a fixture with a bounce Processor on the fixture's clock.
type env struct {
	*stack.Fixture
	p      *bounce.Processor
	signer address.VERPSigner
}

func newEnv(t *testing.T) *env {
	f := stack.NewFixture(t)
	signer, err := f.Store.VERPSigner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The day starts at noon, so that moving by whole days never crosses
	// midnight by accident.
	y, m, d := f.Clock.Now().Date()
	f.Clock.Set(time.Date(y, m, d, 12, 0, 0, 0, time.UTC))
	p := bounce.New(bounce.Options{Store: f.Store, Log: zaptest.NewLogger(t), Delimiter: "+", Signer: signer,
		SiteOwner: "postmaster@example.com", Now: f.Clock.Now})
	return &env{Fixture: f, p: p, signer: signer}
}

func sample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bounceTo delivers report to rcpt as LMTP would and processes it.
func (e *env) bounceTo(t *testing.T, rcpt string, report []byte) store.IntakeItem {
	t.Helper()
	it := e.Inject(t, "", rcpt, report)
	if _, err := e.p.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	row := e.Row(t, it)
	if row.State != store.IntakeDone {
		t.Fatalf("bounce row %s: %s", row.State, row.Result)
	}
	return row
}

// verp is the member's signed return path.
func (e *env) verp(member string) string {
	return e.signer.VERP(stack.List, member, "+", e.Clock.Now())
}

func (e *env) record(t *testing.T, addr string) store.MemberBounce {
	t.Helper()
	r, err := e.Store.MemberBounceRecord(context.Background(), e.List.ID, addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// postfixDSN is a Postfix report of 5.1.1 for alice.
func postfixDSN(t *testing.T) []byte { return sample(t, "postfix-5.1.1.eml") }

func TestFiveDaysDisableDelivery(t *testing.T) {
	e := newEnv(t)
	for day := 1; day <= 5; day++ {
		e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
		r := e.record(t, "alice@example.com")
		if r.Score != float64(day) {
			t.Fatalf("day %d: score %g", day, r.Score)
		}
		wantStatus := "enabled"
		if day == 5 {
			wantStatus = "by_bounces"
		}
		if r.DeliveryStatus != wantStatus {
			t.Fatalf("day %d: delivery %s, want %s", day, r.DeliveryStatus, wantStatus)
		}
		e.Clock.Add(24 * time.Hour)
	}
	mail := e.MailTo(t, "owner@example.com")
	if len(mail) != 1 || mail[0].Get("Subject") != "alice@example.com's subscription disabled on Test" ||
		mail[0].Get(notice.Header) != "bounce-disabled" || !strings.Contains(mail[0].Text(), "5.1.1") {
		t.Fatalf("owners' notice: %d message(s)", len(mail))
	}
	if !strings.Contains(mail[0].Text(), "Content-Type: message/rfc822") {
		t.Error("the report is not attached to the owners' notice")
	}
	scored := e.Events(t, store.EventBounceScored)
	if len(scored) != 5 || !strings.Contains(scored[4].Detail, "score 5 (was 4)") || !strings.Contains(scored[4].Detail, "signed VERP") {
		t.Errorf("scored events %+v", scored)
	}
	if evs := e.Events(t, store.EventDeliveryDisabled); len(evs) != 1 {
		t.Errorf("disable events %+v", evs)
	}
	// Residual bounces of mail sent before the disable change nothing.
	e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
	if r := e.record(t, "alice@example.com"); r.Score != 5 {
		t.Errorf("residual bounce changed the score to %g", r.Score)
	}
}

func TestScoreRisesOnceADayAndGoesStale(t *testing.T) {
	e := newEnv(t)
	e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
	e.Clock.Add(3 * time.Hour)
	e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
	if r := e.record(t, "alice@example.com"); r.Score != 1 || r.LastBounceAt != store.FormatTime(e.Clock.Now()) {
		t.Errorf("two bounces the same day: %+v", r)
	}
	rows, err := e.Store.BounceRows(context.Background(), stack.List, "alice@example.com")
	if err != nil || len(rows) != 2 || !rows[0].Scored || rows[1].Scored {
		t.Errorf("bounce rows: %+v, %v", rows, err)
	}
	e.Clock.Add(24 * time.Hour)
	e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
	if r := e.record(t, "alice@example.com"); r.Score != 2 {
		t.Errorf("next day: %+v", r)
	}
	// More than bounce_info_stale_after (7d) later, the count restarts.
	e.Clock.Add(8 * 24 * time.Hour)
	e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
	if r := e.record(t, "alice@example.com"); r.Score != 1 {
		t.Errorf("after a stale gap: %+v", r)
	}
}

func TestUnscoredBounces(t *testing.T) {
	cases := []struct {
		name, sample, wantKind, why string
		setup                       func(t *testing.T, e *env)
		rcpt                        func(e *env) string
	}{
		{name: "DMARC policy rejection", sample: "gmail-dmarc-5.7.26.eml", wantKind: store.BouncePolicy, why: "policy"},
		{name: "delay", sample: "postfix-delayed-4.4.1.eml", wantKind: store.BounceTemporary, why: "temporary"},
		{name: "exim delay", sample: "exim-delayed.eml", wantKind: store.BounceTemporary, why: "temporary"},
		{name: "process_bounces off", sample: "postfix-5.1.1.eml", wantKind: store.BouncePermanent, why: "process_bounces is off",
			setup: func(t *testing.T, e *env) { e.Set(t, "process_bounces", "no") }},
		{name: "unverified report to the plain address", sample: "postfix-5.1.1.eml", wantKind: store.BouncePermanent, why: "unverified report",
			rcpt: func(*env) string { return "test-bounces@lists.example.org" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			if c.setup != nil {
				c.setup(t, e)
			}
			rcpt := e.verp("alice@example.com")
			if c.rcpt != nil {
				rcpt = c.rcpt(e)
			}
			for range 6 {
				e.bounceTo(t, rcpt, sample(t, c.sample))
				e.Clock.Add(24 * time.Hour)
			}
			if r := e.record(t, "alice@example.com"); r.Score != 0 || r.DeliveryStatus != "enabled" {
				t.Errorf("member record %+v", r)
			}
			rows, err := e.Store.BounceRows(context.Background(), stack.List, "alice@example.com")
			if err != nil || len(rows) != 6 || rows[0].Kind != c.wantKind || rows[0].Scored {
				t.Fatalf("bounce rows %+v, %v", rows, err)
			}
			evs := e.Events(t, store.EventBounceRecorded)
			if len(evs) != 6 || !strings.Contains(evs[0].Detail, c.why) {
				t.Errorf("events %+v", evs)
			}
			if n := len(e.Outbox(t)); n != 0 {
				t.Errorf("%d notice(s) for unscored bounces", n)
			}
		})
	}
}

func TestPlainReportScoresWithoutVERP(t *testing.T) {
	// A bulk list (verp no) sends with the plain -bounces address: its
	// bounces can only be read from the report, as in Mailman.
	e := newEnv(t)
	e.Set(t, "verp", "no")
	row := e.bounceTo(t, "test-bounces@lists.example.org", sample(t, "exim-failed.eml"))
	if !strings.Contains(row.Result, "dave@example.org") {
		t.Errorf("result %q", row.Result)
	}
	e.bounceTo(t, "test-bounces@lists.example.org", postfixDSN(t))
	if r := e.record(t, "alice@example.com"); r.Score != 1 {
		t.Errorf("alice: %+v", r)
	}
	// dave is no member: recorded, not scored, nobody told.
	rows, _ := e.Store.BounceRows(context.Background(), stack.List, "dave@example.org")
	if len(rows) != 1 || rows[0].Scored {
		t.Errorf("dave's rows %+v", rows)
	}
}

func TestForgedVERPIsRefused(t *testing.T) {
	e := newEnv(t)
	good := e.verp("alice@example.com")
	local, domain, _ := strings.Cut(good, "@")
	forged := local[:len(local)-8] + "aaaaaaaa@" + domain
	unsigned := "test-bounces+alice=example.com@lists.example.org"
	for _, rcpt := range []string{forged, unsigned} {
		row := e.bounceTo(t, rcpt, postfixDSN(t))
		if !strings.HasPrefix(row.Result, "refused") {
			t.Errorf("%s: result %q", rcpt, row.Result)
		}
	}
	if r := e.record(t, "alice@example.com"); r.Score != 0 {
		t.Errorf("forged bounces scored: %+v", r)
	}
	if rows, _ := e.Store.BounceRows(context.Background(), stack.List, ""); len(rows) != 0 {
		t.Errorf("forged bounces recorded against members: %+v", rows)
	}
	if evs := e.Events(t, store.EventBounceRefused); len(evs) != 2 {
		t.Errorf("refusal events %+v", evs)
	}
	// A list migrating from Mailman accepts the unsigned form.
	e.Set(t, "accept_unsigned_verp", "yes")
	e.bounceTo(t, unsigned, postfixDSN(t))
	if r := e.record(t, "alice@example.com"); r.Score != 1 {
		t.Errorf("unsigned VERP with accept_unsigned_verp: %+v", r)
	}
	if evs := e.Events(t, store.EventBounceScored); len(evs) != 1 || !strings.Contains(evs[0].Detail, "unsigned VERP") {
		t.Errorf("scored events %+v", evs)
	}
}

func TestVERPMember(t *testing.T) {
	now := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	s := address.VERPSigner{Key: []byte("secret")}
	other := address.VERPSigner{Key: []byte("other")}
	ext := func(at time.Time) string {
		return strings.TrimPrefix(strings.Split(s.VERP(stack.List, "Alice@Example.com", "+", at), "@")[0], "test-bounces+")
	}
	signed := ext(now)
	cases := []struct {
		name, ext      string
		signer         address.VERPSigner
		acceptUnsigned bool
		member         string
		want           address.VERPStatus
	}{
		{"signed", signed, s, false, "Alice@example.com", address.VERPCurrent},
		{"signed, case changed by an MTA", strings.ToUpper(signed), s, false, "ALICE@example.com", address.VERPCurrent},
		{"signed before the window", ext(now.Add(-31 * 24 * time.Hour)), s, true, "Alice@example.com", address.VERPExpired},
		{"signed under another key", signed, other, false, "", address.VERPBad},
		{"unsigned refused", "alice=example.com", s, false, "", address.VERPBad},
		{"unsigned accepted", "alice=example.com", s, true, "alice@example.com", address.VERPUnsigned},
		{"no key", signed, address.VERPSigner{}, false, "", address.VERPBad},
		{"garbage", "=@=", s, true, "", address.VERPBad},
	}
	for _, c := range cases {
		m, st := c.signer.Member(stack.List, c.ext, c.acceptUnsigned, now)
		if m != c.member || st != c.want {
			t.Errorf("%s: %q %v, want %q %v", c.name, m, st, c.member, c.want)
		}
	}
}

// TestExpiredVERPIsIgnored: a genuine return path older than the bounce
// window (a replay of a Return-Path someone saw, or a very late bounce)
// is recorded as ignored and never scores; the same bounce to a fresh
// one does.
func TestExpiredVERPIsIgnored(t *testing.T) {
	e := newEnv(t)
	old := e.verp("alice@example.com")
	e.Clock.Set(e.Clock.Now().Add(address.DefaultVERPWindow + 2*24*time.Hour))
	for range 3 {
		row := e.bounceTo(t, old, postfixDSN(t))
		if !strings.HasPrefix(row.Result, "ignored") || !strings.Contains(row.Result, "verp_bounce_window") {
			t.Errorf("result %q", row.Result)
		}
	}
	if r := e.record(t, "alice@example.com"); r.Score != 0 {
		t.Errorf("expired return path scored: %+v", r)
	}
	if evs := e.Events(t, store.EventBounceScored); len(evs) != 0 {
		t.Errorf("scored events %+v", evs)
	}
	if evs := e.Events(t, store.EventBounceRecorded); len(evs) != 3 || evs[0].Address != "alice@example.com" || !strings.Contains(evs[0].Detail, "older than verp_bounce_window") {
		t.Errorf("recorded events %+v", evs)
	}
	e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
	if r := e.record(t, "alice@example.com"); r.Score != 1 {
		t.Errorf("fresh return path after the old ones: %+v", r)
	}
}

func TestUnrecognizedBounces(t *testing.T) {
	junk := stack.Message("someone@example.net", "test-bounces@lists.example.org", "hello?", "Is this the right address?\n")
	t.Run("to the administrators", func(t *testing.T) {
		e := newEnv(t)
		row := e.bounceTo(t, "test-bounces@lists.example.org", junk)
		if !strings.Contains(row.Result, "forwarded") {
			t.Errorf("result %q", row.Result)
		}
		fwd := e.MailTo(t, "owner@example.com")
		if len(fwd) != 1 || fwd[0].Get("Subject") != "Uncaught bounce notification" || len(fwd[0].To) != 2 ||
			!strings.Contains(fwd[0].Text(), "Is this the right address?") {
			t.Fatalf("forward: %d message(s)", len(fwd))
		}
		// A bounce of that forward (an owner's address is broken) quotes
		// our notice and is not forwarded again: no loop.
		e.bounceTo(t, "test-bounces@lists.example.org", fwd[0].Body)
		if n := len(e.Outbox(t)); n != 1 {
			t.Errorf("%d messages after a returned notice, want still 1", n)
		}
	})
	t.Run("to the site owner", func(t *testing.T) {
		e := newEnv(t)
		e.Set(t, "forward_unrecognized_bounces_to", "site_owner")
		e.bounceTo(t, "test-bounces@lists.example.org", junk)
		if n := len(e.MailTo(t, "postmaster@example.com")); n != 1 || len(e.Outbox(t)) != 1 {
			t.Errorf("site owner got %d, outbox %d", n, len(e.Outbox(t)))
		}
	})
	t.Run("discarded", func(t *testing.T) {
		e := newEnv(t)
		e.Set(t, "forward_unrecognized_bounces_to", "discard")
		e.bounceTo(t, "test-bounces@lists.example.org", junk)
		if n := len(e.Outbox(t)); n != 0 {
			t.Errorf("%d message(s)", n)
		}
		if evs := e.Events(t, store.EventBounceUnrecognized); len(evs) != 1 || !strings.Contains(evs[0].Detail, "discarded") {
			t.Errorf("events %+v", evs)
		}
	})
	t.Run("vacation reply to a VERP address", func(t *testing.T) {
		e := newEnv(t)
		row := e.bounceTo(t, e.verp("alice@example.com"), sample(t, "vacation.eml"))
		if !strings.Contains(row.Result, "automatic reply") || len(e.Outbox(t)) != 0 {
			t.Errorf("result %q, outbox %d", row.Result, len(e.Outbox(t)))
		}
	})
	t.Run("human reply to a VERP address", func(t *testing.T) {
		e := newEnv(t)
		e.bounceTo(t, e.verp("alice@example.com"), stack.Message("alice@example.com", "test-bounces@lists.example.org", "Re: hello", "Why do I get this?\n"))
		if n := len(e.MailTo(t, "owner@example.com")); n != 1 {
			t.Errorf("owners got %d", n)
		}
		if r := e.record(t, "alice@example.com"); r.Score != 0 {
			t.Errorf("a reply scored: %+v", r)
		}
	})
}

func TestWarningsThenRemoval(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for range 5 {
		e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
		e.Clock.Add(24 * time.Hour)
	}
	sweep := func() {
		t.Helper()
		if err := e.p.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	warnings := func() int { return len(e.MailTo(t, "alice@example.com")) }
	sweep()
	if n := warnings(); n != 1 {
		t.Fatalf("first pass after the disable sent %d warning(s), want 1", n)
	}
	w := e.MailTo(t, "alice@example.com")[0]
	if w.Get("Subject") != "Your subscription for the Test mailing list has been disabled" || !strings.Contains(w.Text(), "warning 1 of 3") {
		t.Errorf("warning %q:\n%s", w.Get("Subject"), w.Text())
	}
	sweep()
	e.Clock.Add(6 * 24 * time.Hour)
	sweep()
	if n := warnings(); n != 1 {
		t.Fatalf("warned again within the interval: %d", n)
	}
	for want := 2; want <= 3; want++ {
		e.Clock.Add(7 * 24 * time.Hour)
		sweep()
		if n := warnings(); n != want {
			t.Fatalf("%d warning(s), want %d", n, want)
		}
	}
	if !e.IsMember(t, "alice@example.com") {
		t.Fatal("removed before the interval after the last warning")
	}
	e.Clock.Add(7 * 24 * time.Hour)
	sweep()
	if e.IsMember(t, "alice@example.com") {
		t.Fatal("still a member after the last warning's interval")
	}
	mail := e.MailTo(t, "alice@example.com")
	if bye := mail[len(mail)-1]; bye.Get(notice.Header) != "goodbye" || !strings.Contains(bye.Text(), "bounced too often") {
		t.Errorf("last mail to the member: %q\n%s", bye.Get(notice.Header), bye.Text())
	}
	owners := e.MailTo(t, "owner@example.com")
	if last := owners[len(owners)-1]; last.Get("Subject") != "alice@example.com unsubscribed from Test mailing list due to bounces" {
		t.Errorf("owners' removal notice %q", last.Get("Subject"))
	}
	evs := e.Events(t, store.EventBounceWarning, store.EventMemberRemoved)
	if len(evs) != 4 || evs[3].Kind != store.EventMemberRemoved || !strings.Contains(evs[3].Detail, "by bounces") {
		t.Errorf("events %+v", evs)
	}
}

func TestNoWarningsRemovesAtOnce(t *testing.T) {
	e := newEnv(t)
	e.Set(t, "bounce_you_are_disabled_warnings", "0")
	e.Set(t, "bounce_score_threshold", "2")
	for range 2 {
		e.bounceTo(t, e.verp("alice@example.com"), postfixDSN(t))
		e.Clock.Add(24 * time.Hour)
	}
	if err := e.p.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.IsMember(t, "alice@example.com") {
		t.Fatal("not removed")
	}
}

func TestDeliveryFailureIsScored(t *testing.T) {
	// The deliverer records a 5xx from its own SMTP session as a bounces
	// row; the processor applies it like a report.
	e := newEnv(t)
	ctx := context.Background()
	st := e.Store
	msg, err := st.StoreMessage(ctx, "test-bounces@lists.example.org", []byte("Message-ID: <p1@lists.example.org>\r\nSubject: hi\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.QueueDeliveries(ctx, msg, e.List.ID, []store.NewDelivery{{Recipient: "alice@example.com", EnvelopeFrom: e.verp("alice@example.com")}}); err != nil {
		t.Fatal(err)
	}
	ds, err := st.ClaimDeliveries(ctx, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("claim: %v, %v", ds, err)
	}
	if err := st.RecordDeliveries(ctx, []store.DeliveryOutcome{{ID: ds[0].ID, State: store.DeliveryFailed, Reply: "550 5.1.1 no such user",
		Bounce: store.BouncePermanent, Scored: true, Event: store.EventDeliveryFailed}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if r := e.record(t, "alice@example.com"); r.Score != 1 {
		t.Errorf("after a 5xx in our session: %+v", r)
	}
	if evs := e.Events(t, store.EventBounceScored); len(evs) != 1 || !strings.Contains(evs[0].Detail, "our SMTP session") {
		t.Errorf("events %+v", evs)
	}
	if _, err := e.p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if r := e.record(t, "alice@example.com"); r.Score != 1 {
		t.Errorf("applied twice: %+v", r)
	}
}
