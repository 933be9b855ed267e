package pipeline

import (
	"context"
	"testing"

	"postlist/store"
)

// TestDuplicateOfQueuedMessageDiscarded: Postfix delivers one queued
// message in several LMTP transactions (more recipients than
// lmtp_destination_recipient_limit), each stored as a post. Only the
// first is distributed; a post with another queue id, or another
// Message-ID, is not a duplicate.
func TestDuplicateOfQueuedMessageDiscarded(t *testing.T) {
	e := newEnv(t)
	intake := func(queueID, msgID string) {
		t.Helper()
		_, err := e.st.Intake(context.Background(), &store.IntakeMessage{
			MessageID: msgID, QueueID: queueID, Sender: "alice@example.com", Body: []byte(crlf(memberPost)),
			Recipients: []store.IntakeRecipient{{Recipient: testList, List: testList, Kind: "post"}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	intake("4F1B2C3D4E", "<hello@example.com>")
	intake("4F1B2C3D4E", "<hello@example.com>") // the second LMTP transaction
	intake("5A6B7C8D9E", "<hello@example.com>") // sent again by the poster: a new queue id
	intake("4F1B2C3D4E", "<other@example.com>") // a reused queue id, another message
	e.run()
	byMsg := map[int64]int{}
	for _, d := range e.deliveries() {
		byMsg[d.MessageID]++
	}
	if len(byMsg) != 3 {
		t.Errorf("deliveries by message = %v, want three posts distributed and the duplicate not", byMsg)
	}
	if n := e.pending(); n != 0 {
		t.Errorf("%d intake rows still pending", n)
	}
}
