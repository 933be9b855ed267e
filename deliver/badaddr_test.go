package deliver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/store"
)

// failedAlone checks that every address in bad failed after one attempt
// with a reply containing why, with a delivery_failed event and a bounce
// row of kind (scored as given), and that every other row was sent.
func failedAlone(t *testing.T, st *store.Store, msg int64, rcpts []string, bad map[string]string, kind string, scored bool) {
	t.Helper()
	ctx := context.Background()
	rows := settled(t, st, msg, 15*time.Second)
	for _, r := range rcpts {
		row := rows[r]
		why, isBad := bad[r]
		switch {
		case isBad && (row.State != store.DeliveryFailed || row.Attempts != 1 || !strings.Contains(row.LastReply, why)):
			t.Errorf("%q: %s after %d attempt(s), reply %q; want failed after 1 with %q", r, row.State, row.Attempts, row.LastReply, why)
		case !isBad && (row.State != store.DeliverySent || row.Attempts != 1):
			t.Errorf("%q: %s after %d attempt(s) (%s), want sent after 1", r, row.State, row.Attempts, row.LastReply)
		}
	}
	bs, err := st.DeliveryBounces(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.DeliveryBounce{}
	for _, b := range bs {
		got[b.Address] = b
	}
	if len(bs) != len(bad) {
		t.Errorf("%d bounce rows %+v, want %d", len(bs), bs, len(bad))
	}
	for a, why := range bad {
		b, ok := got[a]
		if !ok || b.Kind != kind || b.Scored != scored {
			t.Errorf("%q: bounce %+v (found %v), want kind %s scored %v", a, b, ok, kind, scored)
		}
		// Selected here, since an empty Address selects every event.
		evs, err := st.RecentEvents(ctx, store.EventQuery{Kinds: []string{store.EventDeliveryFailed}})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range evs {
			if e.Address == a && strings.Contains(e.Detail, fmt.Sprintf("message %d: ", msg)) && strings.Contains(e.Detail, why) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%q: %d delivery_failed events with %q, want 1 (%+v)", a, n, why, evs)
		}
	}
}

// TestUndeliverableRowsFailAlone: rows whose address no server could be
// asked to take (members stored before members add checked addresses)
// fail before any SMTP, each alone; their neighbours in the same fan-out,
// at the same domain and so in the same bulk transaction, are delivered.
func TestUndeliverableRowsFailAlone(t *testing.T) {
	bad := map[string]string{
		`"a>b"@example0.com`:                     "needs quotes",
		`"john smith"@example1.com`:              "needs quotes",
		"evil@example2.com\r\nRCPT TO:<x@y.com>": "control character",
		"jörg@example0.com":                      "non-ASCII",
		"user@[192.0.2.1]":                       "literal",
		"":                                       "empty",
	}
	for _, verp := range []bool{true, false} {
		t.Run(fmt.Sprintf("verp=%v", verp), func(t *testing.T) {
			st, l := storetest.OpenList(t, testList)
			sink := testenv.StartSink(t)
			good := members(6)
			rcpts := append([]string(nil), good...)
			for a := range bad {
				rcpts = append(rcpts, a)
			}
			msg := queue(t, st, l, rcpts, verp)
			o := testOptions(t, st, sink.Addr)
			o.Workers = 1
			d := start(t, o)
			failedAlone(t, st, msg, rcpts, bad, store.BouncePermanent, true)
			got := received(sink.Envelopes())
			for _, g := range good {
				if got[g] != 1 {
					t.Errorf("%s received %d copies, want 1", g, got[g])
				}
			}
			if len(got) != len(good) {
				t.Errorf("the sink received %v; only the good members should be there", got)
			}
			d.stop(t)
			if s := d.Stats(); s.Connections != 1 || s.Failed != uint64(len(bad)) || s.Sent != uint64(len(good)) {
				t.Errorf("stats %+v: want 1 connection, %d failed, %d sent", s, len(bad), len(good))
			}
		})
	}
}

// TestSmartHostRefusalFailsAlone: the smart host refuses one member's RCPT
// TO with 501 and another member's VERP MAIL FROM with 553; both fail
// alone and the connection stays in step for the others, so one session
// carries the whole fan-out. When the server also hangs up after a
// refusal, the next member goes over a new connection without an attempt
// being charged.
func TestSmartHostRefusalFailsAlone(t *testing.T) {
	// Rows are claimed in the order they were queued, by envelope sender:
	// these names put the refused members between good ones.
	const rcptBad, fromBad = "member1-rcptbad@example.com", "member2-frombad@example.com"
	for _, tc := range []struct {
		name       string
		pipelining bool
		hangUp     bool
		wantConns  uint64
	}{
		{"pipelined", true, false, 1},
		{"one command at a time", false, false, 1},
		{"pipelined, server hangs up after each refusal", true, true, 3},
		{"one command at a time, server hangs up after each refusal", false, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			hangNext := false
			respond := func(cmd string) string {
				mu.Lock()
				defer mu.Unlock()
				verb := strings.ToUpper(strings.Fields(cmd + " x")[0])
				if hangNext && (verb == "MAIL" || verb == "RSET") {
					hangNext = false
					return "CLOSE"
				}
				refuse := func(rp string) string {
					hangNext = tc.hangUp
					return rp
				}
				switch {
				case verb == "MAIL" && strings.Contains(cmd, "-frombad="):
					return refuse("553 5.1.7 sender address rejected: improper use of SMTP command pipelining")
				case verb == "RCPT" && strings.Contains(cmd, "<"+rcptBad+">"):
					return refuse("501 5.1.3 bad recipient address syntax")
				}
				return ""
			}
			ext := []string{"SIZE 1000000"}
			if tc.pipelining {
				ext = append(ext, "PIPELINING")
			}
			srv := startScripted(t, ext, respond)
			st, l := storetest.OpenList(t, testList)
			good := members(4)
			rcpts := []string{good[0], rcptBad, good[1], fromBad, good[2], good[3]}
			msg := queue(t, st, l, rcpts, true)
			o := testOptions(t, st, srv.addr)
			o.Workers = 1
			o.ClaimBatch = 1 // one member at a time, in order
			d := start(t, o)
			rows := settled(t, st, msg, 15*time.Second)
			for _, g := range good {
				if r := rows[g]; r.State != store.DeliverySent || r.Attempts != 1 {
					t.Errorf("%s: %s after %d attempts (%s), want sent after 1", g, r.State, r.Attempts, r.LastReply)
				}
			}
			if r := rows[rcptBad]; r.State != store.DeliveryFailed || !strings.HasPrefix(r.LastReply, "501 5.1.3") {
				t.Errorf("%s: %s %q, want failed with the 501", rcptBad, r.State, r.LastReply)
			}
			if r := rows[fromBad]; r.State != store.DeliveryFailed || !strings.HasPrefix(r.LastReply, "553 5.1.7") {
				t.Errorf("%s: %s %q, want failed with the 553", fromBad, r.State, r.LastReply)
			}
			bs, err := st.DeliveryBounces(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]string{}
			for _, b := range bs {
				kinds[b.Address] = fmt.Sprintf("%s/%v", b.Kind, b.Scored)
			}
			// A refused RCPT is about the mailbox; a refused MAIL FROM
			// never counts against the member.
			want := map[string]string{rcptBad: "permanent/true", fromBad: "unknown/false"}
			if fmt.Sprint(kinds) != fmt.Sprint(want) {
				t.Errorf("bounces %v, want %v", kinds, want)
			}
			for _, a := range []string{rcptBad, fromBad} {
				evs, err := st.RecentEvents(context.Background(), store.EventQuery{Address: a, Kinds: []string{store.EventDeliveryFailed}})
				if err != nil || len(evs) != 1 {
					t.Errorf("%s: events %+v (%v), want one delivery_failed", a, evs, err)
				}
			}
			d.stop(t)
			if c := d.Stats().Connections; c != tc.wantConns {
				t.Errorf("%d connections, want %d", c, tc.wantConns)
			}
		})
	}
}

// TestRenderRecipientErrorFailsAlone: a message that cannot be built for
// one member (Render says ErrRecipient) fails that member at once, with an
// event and an unscored bounce, and the others get theirs.
func TestRenderRecipientErrorFailsAlone(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	sink := testenv.StartSink(t)
	const bad = "cannot.render@example.com"
	rcpts := append(members(3), bad)
	msg := queue(t, st, l, rcpts, true)
	o := testOptions(t, st, sink.Addr)
	o.Workers = 1
	body := NewShared([]byte("Subject: x\r\n\r\nx\r\n"))
	o.Render = func(_ context.Context, j Job) (Message, error) {
		if j.Recipients[0] == bad {
			return Message{}, fmt.Errorf("footer for %s: %w", bad, ErrRecipient)
		}
		return Message{Shared: body}, nil
	}
	d := start(t, o)
	failedAlone(t, st, msg, rcpts, map[string]string{bad: "cannot be built"}, store.BounceUnknown, false)
	if got := received(sink.Envelopes()); got[bad] != 0 || len(got) != 3 {
		t.Errorf("sink received %v", got)
	}
	d.stop(t)
	if c := d.Stats().Connections; c != 1 {
		t.Errorf("%d connections, want 1", c)
	}
}

func TestCheckEnvelopeFrom(t *testing.T) {
	for _, tc := range []struct {
		from string
		ok   bool
	}{
		{"", true},
		{"test-bounces@lists.example.org", true},
		{address.VERP(testList, "alice@example.com", "+"), true},
		{"test-bounces+" + strings.Repeat("a", 64) + "=example.com=abcdefgh@lists.example.org", true},
		{"test-bounces@lists.example.org>", false},
		{"<test-bounces@lists.example.org", false},
		{"x@y\r\nRCPT TO:<z@w>", false},
		{"x\x00@y", false},
		{"test-bounces", false},
	} {
		if err := checkEnvelopeFrom(tc.from); (err == nil) != tc.ok {
			t.Errorf("checkEnvelopeFrom(%q) = %v, want ok %v", tc.from, err, tc.ok)
		}
	}
}
