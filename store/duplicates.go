package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// EarlierPost returns the messages.id of an earlier post to listID of the
// same queued message as messageID, or 0 if there is none. "The same
// queued message" means the same Postfix queue id (taken from Postfix's
// Received field at intake) and the same Message-ID.
//
// Postfix hands a queued message over in several LMTP transactions when it
// has more recipients than lmtp_destination_recipient_limit (50 by
// default: a message naming the list, or list+tag variants, 1,000 times
// arrives 20 times), and again when it never read our 250 (a crash
// between commit and reply). Each arrives as a post of its own, and all
// but the first must not be distributed again.
//
// A message without a Message-ID from a client Postfix adds none for gets
// a generated one per LMTP transaction, so its copies are not matched;
// that, and mail without a Postfix Received field, is the limit of this
// check.
func (s *Store) EarlierPost(ctx context.Context, listID, messageID int64) (int64, error) {
	var id int64
	// The literal queue_id <> '' terms let SQLite use the partial index
	// messages_queue.
	err := s.r.QueryRowContext(ctx, `SELECT e.id FROM messages m
		JOIN messages e ON e.queue_id = m.queue_id AND e.message_id = m.message_id AND e.id < m.id AND e.queue_id <> ''
		WHERE m.id = ? AND m.queue_id <> ''
		  AND EXISTS (SELECT 1 FROM intake i WHERE i.message_id = e.id AND i.list_id = ? AND i.kind = 'post')
		ORDER BY e.id LIMIT 1`, messageID, listID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("earlier post of message %d: %w", messageID, classify(err))
	}
	return id, nil
}
