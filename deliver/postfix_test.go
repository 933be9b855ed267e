package deliver

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"postlist/address"
	"postlist/internal/testenv"
	"postlist/internal/testenv/storetest"
	"postlist/store"
)

// TestThroughPostfix delivers through a real Postfix, as in production:
// postlist hands each member's copy to Postfix's re-injection listener with
// the member's VERP address as envelope sender, and Postfix relays it to
// the members' domain (here the sink). Every member must arrive once, with
// the envelope sender that makes its bounces name it.
func TestThroughPostfix(t *testing.T) {
	st, l := storetest.OpenList(t, testList)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{})
	rcpts := make([]string, 40)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("member%d@example%d.net", i, i%4)
	}
	msg := queue(t, st, l, rcpts, true)

	o := testOptions(t, st, pf.SubmitAddr)
	o.Workers = 4
	began := time.Now()
	d := start(t, o)
	rows := allSent(t, st, msg, 30*time.Second)
	handedOver := time.Since(began)
	envs := pf.Sink.WaitFor(t, len(rcpts), 60*time.Second)
	d.stop(t)
	t.Logf("Postfix accepted %d VERP transactions in %v over %d connections", len(rcpts), handedOver, d.Stats().Connections)

	got := map[string]string{}
	for _, e := range envs {
		if len(e.To) != 1 {
			t.Errorf("Postfix relayed one transaction to %d recipients %v; VERP needs one each", len(e.To), e.To)
			continue
		}
		if _, dup := got[e.To[0]]; dup {
			t.Errorf("%s received the message twice", e.To[0])
		}
		got[e.To[0]] = e.From
		if !bytes.Contains(e.Data, []byte("Subject: hello")) {
			t.Errorf("message to %s lost its header", e.To[0])
		}
	}
	for _, r := range rcpts {
		if want := address.VERP(testList, r, "+"); got[r] != want {
			t.Errorf("%s: envelope sender <%s>, want <%s>", r, got[r], want)
		}
		if row := rows[r]; row.State != store.DeliverySent || row.Attempts != 1 {
			t.Errorf("%s: row %s after %d attempts (%s)", r, row.State, row.Attempts, row.LastReply)
		}
	}
}
