// Package stack is the whole-stack test harness that the tests of the email
// interface (package commands), bounce processing (package bounce) and
// the processing stages share: a store with
// a list on a clock the test moves, mail injected as LMTP stores it, the
// outbox read back through the store, and Stack, the whole mail path of
// `postlist serve` (milter, LMTP, deliverer and the processing stages)
// in front of a private real Postfix.
//
// It is for tests only; no production code imports it.
package stack

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/message"
	"postlist/store"
)

// List is the list every fixture creates.
const List = "test@lists.example.org"

// Clock is the hand-moved clock the fixture's store runs on.
type Clock = testenv.Clock

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock { return testenv.NewClock(t) }

// Fixture is a store with List, its member alice@example.com, owner
// owner@example.com and moderator mod@example.com, on Clock (which starts
// at the real time, so that the address index, which reads the real
// clock, agrees about token expiry).
type Fixture struct {
	Store *store.Store
	List  *store.List
	Clock *Clock
}

// NewFixture opens the fixture's store in a temporary directory.
func NewFixture(t testing.TB) *Fixture {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	clock := NewClock(time.Now().UTC().Truncate(time.Millisecond))
	st.Now = clock.Now
	if _, err := st.CreateList(ctx, List); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ role, addr string }{
		{"member", "alice@example.com"}, {"owner", "owner@example.com"}, {"moderator", "mod@example.com"},
	} {
		if _, err := st.AddMembers(ctx, List, m.role, []store.NewMember{{Address: m.addr}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	l, err := st.GetList(ctx, List)
	if err != nil {
		t.Fatal(err)
	}
	return &Fixture{Store: st, List: l, Clock: clock}
}

// Set changes a list setting and refreshes f.List.
func (f *Fixture) Set(t testing.TB, key, value string) {
	t.Helper()
	ctx := context.Background()
	if err := f.Store.SetListSetting(ctx, List, key, value); err != nil {
		t.Fatal(err)
	}
	l, err := f.Store.GetList(ctx, List)
	if err != nil {
		t.Fatal(err)
	}
	f.List = l
}

// Message builds a plain text message; extra are further header lines.
func Message(from, to, subject, body string, extra ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 2 Mar 2026 09:00:00 +0000\r\n", from, to, subject)
	fmt.Fprintf(&b, "Message-ID: <%d.%d@emailtest.example>\r\n", time.Now().UnixNano(), msgSeq.Add(1))
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("\r\n" + strings.ReplaceAll(body, "\n", "\r\n"))
	return []byte(b.String())
}

var msgSeq atomic.Int64

// Inject stores msg as the LMTP server would for one recipient (a list
// address, resolved with the default delimiter) and returns the intake
// row.
func (f *Fixture) Inject(t testing.TB, envSender, rcpt string, msg []byte) store.IntakeItem {
	t.Helper()
	local, domain, _ := strings.Cut(rcpt, "@")
	base, ext, _ := strings.Cut(local, "+")
	name, word, _ := strings.Cut(base, "-")
	kind := "post"
	if word != "" {
		kind = word
	}
	switch kind {
	case "subscribe":
		kind = "join"
	case "unsubscribe":
		kind = "leave"
	}
	ctx := context.Background()
	res, err := f.Store.Intake(ctx, &store.IntakeMessage{
		MessageID: message.Parse(msg).Get("Message-ID"), Sender: envSender, Body: msg,
		Recipients: []store.IntakeRecipient{{Recipient: rcpt, List: name + "@" + domain, Kind: kind, Extension: ext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	items, err := f.Store.PendingIntake(ctx, 1000, kind)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.ID == res.IntakeIDs[0] {
			return it
		}
	}
	t.Fatalf("intake row %d not pending", res.IntakeIDs[0])
	return store.IntakeItem{}
}

// Row reads intake row it again, whatever its state now.
func (f *Fixture) Row(t testing.TB, it store.IntakeItem) store.IntakeItem {
	t.Helper()
	items, err := f.Store.IntakeByMessageID(context.Background(), it.HeaderMessageID)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range items {
		if x.ID == it.ID {
			return x
		}
	}
	t.Fatalf("intake row %d not found by its Message-ID %q", it.ID, it.HeaderMessageID)
	return store.IntakeItem{}
}

// Mail is one message postlist queued, read back through the store.
type Mail struct {
	ID           int64 // messages.id
	EnvelopeFrom string
	To           []string
	Body         []byte
	Msg          *message.Message
}

// Get returns a header field's value, decoded.
func (m Mail) Get(name string) string { return message.DecodeHeader(m.Msg.Get(name)) }

// Text is the body with soft line breaks of quoted-printable undone and
// CRLFs turned into LFs, good enough to search for phrases.
func (m Mail) Text() string {
	b := bytes.ReplaceAll(m.Msg.Body, []byte("=\r\n"), nil)
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// Outbox returns every message with deliveries queued (or sent), oldest
// first.
func (f *Fixture) Outbox(t testing.TB) []Mail {
	t.Helper()
	ctx := context.Background()
	qs, err := f.Store.QueueMessages(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var out []Mail
	for _, q := range qs {
		ds, err := f.Store.MessageDeliveries(ctx, q.MessageID)
		if err != nil {
			t.Fatal(err)
		}
		_, body, err := f.Store.MessageSender(ctx, q.MessageID)
		if err != nil {
			t.Fatal(err)
		}
		m := Mail{ID: q.MessageID, Body: body, Msg: message.Parse(body)}
		for _, d := range ds {
			m.To = append(m.To, d.Recipient)
			m.EnvelopeFrom = d.EnvelopeFrom
		}
		out = append(out, m)
	}
	return out
}

// MailTo returns the queued messages to rcpt.
func (f *Fixture) MailTo(t testing.TB, rcpt string) []Mail {
	t.Helper()
	var out []Mail
	for _, m := range f.Outbox(t) {
		for _, r := range m.To {
			if strings.EqualFold(r, rcpt) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Events returns the list's events of the given kinds.
func (f *Fixture) Events(t testing.TB, kinds ...string) []store.Event {
	t.Helper()
	evs, err := f.Store.EventLog(context.Background(), List, "", kinds...)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// IsMember reports whether addr is a member of List.
func (f *Fixture) IsMember(t testing.TB, addr string) bool {
	t.Helper()
	ok, err := f.Store.IsMember(context.Background(), f.List.ID, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// ConfirmToken returns the token of a confirmation request, read from its
// From address (NAME-confirm+TOKEN@DOMAIN).
func ConfirmToken(t testing.TB, m Mail) string {
	t.Helper()
	from := m.Msg.Get("From")
	as, err := message.ParseAddressList(from)
	if err != nil || len(as) != 1 {
		t.Fatalf("confirmation From %q: %v", from, err)
	}
	local, _, _ := strings.Cut(as[0].Address, "@")
	_, tok, ok := strings.Cut(local, "+")
	if !ok || !address.ValidToken(tok) {
		t.Fatalf("confirmation From %q carries no token", from)
	}
	return tok
}
