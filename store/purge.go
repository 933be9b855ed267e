package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// DefaultPurgeBatch is how many deliveries rows Purge deletes per
// transaction: enough that a 100,000-member post goes in a few dozen
// commits, few enough that an LMTP commit waiting behind one is not
// noticeably delayed.
const DefaultPurgeBatch = 2000

// purgePage is how many old messages Purge looks at per read; a variable
// so that tests can walk several pages with few rows.
var purgePage = 200

// PurgeStats counts the rows one Purge removed.
type PurgeStats struct {
	Messages   int64 `json:"messages"`
	Deliveries int64 `json:"deliveries"`
	Intake     int64 `json:"intake"`
	Held       int64 `json:"held"`
	Posts      int64 `json:"posts"`
	Tokens     int64 `json:"tokens"`
	// Autoresponses counts the daily automatic-mail counts of past days.
	Autoresponses int64 `json:"autoresponses"`
}

// Any reports whether anything was removed.
func (p PurgeStats) Any() bool { return p != PurgeStats{} }

func (p *PurgeStats) add(q PurgeStats) {
	p.Messages += q.Messages
	p.Deliveries += q.Deliveries
	p.Intake += q.Intake
	p.Held += q.Held
	p.Posts += q.Posts
	p.Tokens += q.Tokens
	p.Autoresponses += q.Autoresponses
}

// pendingSQL finds the messages with work left: deliveries to make, intake
// rows to process, posts waiting for a moderator. Each branch spells the
// WHERE of a partial or state index so that it reads only what waits, not
// the delivery history. UNION ALL, deduplicated by the caller: a UNION
// wants its branches sorted by message_id, and SQLite then prefers
// reading every deliveries row in (message_id, recipient) order.
const pendingSQL = `SELECT message_id FROM deliveries WHERE state IN ('queued','deferred')
	UNION ALL SELECT message_id FROM deliveries WHERE state = 'sending'
	UNION ALL SELECT message_id FROM intake WHERE state = 'new'
	UNION ALL SELECT message_id FROM held WHERE state = 'held'`

// oldMessagesSQL pages through the messages received before a cutoff,
// in index order (messages_received), after the last one seen: messages
// that are kept because work is pending must not be read again.
const oldMessagesSQL = `SELECT id, received_at FROM messages
	WHERE received_at < ? AND (received_at, id) > (?, ?)
	ORDER BY received_at, id LIMIT ?`

// purgeDeliveriesSQL deletes one batch of a message's finished deliveries
// through the UNIQUE (message_id, recipient) index. Only finished rows:
// `postlist queue retry` may have queued some again since the message was
// found idle, and those must go out.
const purgeDeliveriesSQL = `DELETE FROM deliveries WHERE id IN
	(SELECT id FROM deliveries WHERE message_id = ? AND state IN ('sent','failed') LIMIT ?)`

// stillPendingSQL is pendingSQL for one message, asked again in the
// transaction that deletes it.
const stillPendingSQL = `SELECT EXISTS (SELECT 1 FROM deliveries WHERE message_id = ?1 AND state IN ('queued','sending','deferred'))
	OR EXISTS (SELECT 1 FROM intake WHERE message_id = ?1 AND state = 'new')
	OR EXISTS (SELECT 1 FROM held WHERE message_id = ?1 AND state = 'held')`

// Purge deletes the work that finished: each message received before
// olderThan on which nothing is pending (no delivery queued, sending or
// deferred, no intake row new, no post held), with its deliveries, intake,
// held and posts rows, the requests (tokens) that have expired, and the
// automatic-mail counts (autoresponses) of past UTC days. Events
// and bounces are history and stay; a bounce naming a deleted message
// keeps its row with message_id NULL.
//
// The store has one writer and every LMTP commit waits behind it, so
// nothing here is one big transaction: a message's deliveries go batch
// rows at a time (DefaultPurgeBatch when batch <= 0), each batch its own
// transaction, and the message row last, in a transaction that checks
// again that nothing became pending meanwhile. The foreign keys remove
// what is left.
//
// The returned counts are what was removed, also when an error (or ctx
// ending) stopped the purge part way; a message is removed whole or not at
// all, though its finished deliveries may already be gone.
func (s *Store) Purge(ctx context.Context, olderThan time.Time, batch int) (PurgeStats, error) {
	if batch <= 0 {
		batch = DefaultPurgeBatch
	}
	var total PurgeStats
	pending, err := s.pendingMessages(ctx)
	if err != nil {
		return total, err
	}
	cutoff := FormatTime(olderThan)
	lastAt, lastID := "", int64(0)
	for {
		ids, at, err := s.oldMessages(ctx, cutoff, lastAt, lastID)
		if err != nil {
			return total, err
		}
		for _, id := range ids {
			if pending[id] {
				continue
			}
			st, err := s.purgeMessage(ctx, id, batch)
			total.add(st)
			if err != nil {
				return total, err
			}
		}
		if len(ids) < purgePage {
			break
		}
		lastAt, lastID = at, ids[len(ids)-1]
	}
	n, err := s.purgeTokens(ctx)
	total.Tokens += n
	if err != nil {
		return total, err
	}
	// Only today's counts matter for the daily cap; older days go
	// whatever the retention.
	n, err = s.PurgeAutoresponses(ctx, s.Now())
	total.Autoresponses += n
	return total, err
}

// pendingMessages reads the ids of the messages with work left.
func (s *Store) pendingMessages(ctx context.Context) (map[int64]bool, error) {
	rows, err := s.r.QueryContext(ctx, pendingSQL)
	if err != nil {
		return nil, fmt.Errorf("purge: pending messages: %w", err)
	}
	defer rows.Close()
	pending := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("purge: pending messages: %w", err)
		}
		pending[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("purge: pending messages: %w", err)
	}
	return pending, nil
}

// oldMessages returns the next page of messages received before cutoff,
// after (lastAt, lastID), and the received_at of the page's last one. The
// page is read whole before anything is deleted.
func (s *Store) oldMessages(ctx context.Context, cutoff, lastAt string, lastID int64) ([]int64, string, error) {
	rows, err := s.r.QueryContext(ctx, oldMessagesSQL, cutoff, lastAt, lastID, purgePage)
	if err != nil {
		return nil, "", fmt.Errorf("purge: messages before %s: %w", cutoff, err)
	}
	defer rows.Close()
	var ids []int64
	var at string
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id, &at); err != nil {
			return nil, "", fmt.Errorf("purge: messages before %s: %w", cutoff, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("purge: messages before %s: %w", cutoff, err)
	}
	return ids, at, nil
}

// purgeMessage deletes one message found idle: its finished deliveries in
// batches, then, if still nothing is pending, the message row and with it
// (by the foreign keys) the rest of its rows.
func (s *Store) purgeMessage(ctx context.Context, id int64, batch int) (PurgeStats, error) {
	var st PurgeStats
	for {
		var n int64
		err := s.tx(ctx, func(tx *sql.Tx) error {
			r, err := tx.ExecContext(ctx, purgeDeliveriesSQL, id, batch)
			if err != nil {
				return err
			}
			n, err = r.RowsAffected()
			return err
		})
		if err != nil {
			return st, fmt.Errorf("purge message %d: deliveries: %w", id, err)
		}
		st.Deliveries += n
		if n < int64(batch) {
			break
		}
	}
	var gone PurgeStats
	err := s.tx(ctx, func(tx *sql.Tx) error {
		gone = PurgeStats{}
		var busy bool
		if err := tx.QueryRowContext(ctx, stillPendingSQL, id).Scan(&busy); err != nil {
			return err
		}
		if busy {
			return nil
		}
		// The cascade does the deleting; the counts are read first
		// because SQLite's change count leaves cascaded rows out.
		if err := tx.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM deliveries WHERE message_id = ?1),
			(SELECT count(*) FROM intake WHERE message_id = ?1),
			(SELECT count(*) FROM held WHERE message_id = ?1),
			(SELECT count(*) FROM posts WHERE message_id = ?1)`, id).
			Scan(&gone.Deliveries, &gone.Intake, &gone.Held, &gone.Posts); err != nil {
			return err
		}
		r, err := tx.ExecContext(ctx, "DELETE FROM messages WHERE id = ?", id)
		if err != nil {
			return err
		}
		gone.Messages, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return st, fmt.Errorf("purge message %d: %w", id, err)
	}
	st.add(gone)
	return st, nil
}

// purgeTokens deletes the expired tokens, as the command processor also
// does hourly (whichever comes first writes the expiry events).
func (s *Store) purgeTokens(ctx context.Context) (int64, error) {
	n, err := s.PurgeExpiredTokens(ctx)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return int64(n), nil
}
