package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Delivery row states (deliveries.state).
const (
	DeliveryQueued   = "queued"
	DeliverySending  = "sending"
	DeliverySent     = "sent"
	DeliveryDeferred = "deferred"
	DeliveryFailed   = "failed"
)

// Bounce kinds (bounces.kind).
const (
	BouncePermanent = "permanent"
	BounceTemporary = "temporary"
	BouncePolicy    = "policy"
	BounceUnknown   = "unknown"
)

// Event kinds written by delivery (events.kind).
const (
	EventDeliveryFailed  = "delivery_failed"  // a 5xx reply for one recipient
	EventDeliveryExpired = "delivery_expired" // still 4xx at the end of the retry period
)

// NewDelivery is one recipient of a queued message.
type NewDelivery struct {
	Recipient string
	// EnvelopeFrom is the MAIL FROM to use: the member's VERP address for a
	// personalized list, the list's plain -bounces address for a bulk
	// list. Rows of one message with the same EnvelopeFrom may share a
	// transaction, which is how bulk delivery groups recipients.
	EnvelopeFrom string
}

// QueueDeliveries queues messageID for every row, in one fsynced
// transaction. listID 0 means no list (a site notice). It is idempotent:
// a recipient already queued for that message is skipped, so a fan-out
// that is repeated after a crash cannot send anyone the message twice.
//
// Rows are inserted grouped by envelope sender and recipient domain. Claims
// follow insertion order among rows due at the same time, so a bulk
// message's recipients at one domain are claimed together and can share
// transactions. (insertDeliveries does the writing; the pipeline calls it
// inside its own transactions.)
func (s *Store) QueueDeliveries(ctx context.Context, messageID, listID int64, rows []NewDelivery) error {
	if len(rows) == 0 {
		return nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := insertDeliveries(ctx, tx, s.now(), messageID, listID, rows)
		return err
	})
	if err != nil {
		return fmt.Errorf("queue %d deliveries of message %d: %w", len(rows), messageID, err)
	}
	return nil
}

// domainOf returns the lower-cased domain of an address, "" if it has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// StoreMessage stores a message postlist generated itself (a notice, a
// reply to a command) so that it can be queued for delivery like a post.
// sender is the envelope sender to record ("" for <>).
func (s *Store) StoreMessage(ctx context.Context, sender string, body []byte) (int64, error) {
	if len(body) == 0 {
		return 0, fmt.Errorf("store message: %w: empty body", ErrInvalid)
	}
	msgID := headerMessageID(body)
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `INSERT INTO messages (id, message_id, sender, size, body, received_at)
			VALUES (`+nextIDMessages+`, ?, ?, ?, ?, ?)`, msgID, sender, len(body), body, s.now())
		if err != nil {
			return err
		}
		id, err = r.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store message: %w", err)
	}
	return id, nil
}

// Delivery is a claimed deliveries row: one recipient of one message,
// now in state sending.
type Delivery struct {
	ID           int64
	MessageID    int64  // messages.id
	ListID       int64  // 0 if the row has no list
	List         string // the list's posting address, "" if none
	Recipient    string
	EnvelopeFrom string
	Attempts     int // attempts made before this claim
	CreatedAt    time.Time
}

// ClaimDeliveries moves up to limit due rows (queued or deferred, next
// attempt not in the future) to sending and returns them, earliest due
// first. Claiming is one statement, so two claimers can never take the
// same row.
func (s *Store) ClaimDeliveries(ctx context.Context, limit int) ([]Delivery, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("claim deliveries: %w: limit %d", ErrInvalid, limit)
	}
	now := s.now()
	var out []Delivery
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		// The subquery reads deliveries_due in order; its WHERE must
		// spell the index's condition exactly for SQLite to use it.
		rows, err := tx.QueryContext(ctx, `UPDATE deliveries SET state = 'sending', updated_at = ?
			WHERE id IN (SELECT id FROM deliveries
			             WHERE state IN ('queued','deferred') AND next_attempt_at <= ?
			             ORDER BY next_attempt_at LIMIT ?)
			RETURNING id, message_id, coalesce(list_id, 0),
			          coalesce((SELECT address FROM lists WHERE lists.id = deliveries.list_id), ''),
			          recipient, envelope_from, attempts, created_at, next_attempt_at`, now, now, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		type claimed struct {
			d   Delivery
			due string
		}
		var cs []claimed
		for rows.Next() {
			var c claimed
			var created string
			if err := rows.Scan(&c.d.ID, &c.d.MessageID, &c.d.ListID, &c.d.List, &c.d.Recipient,
				&c.d.EnvelopeFrom, &c.d.Attempts, &created, &c.due); err != nil {
				return err
			}
			if c.d.CreatedAt, err = ParseTime(created); err != nil {
				return fmt.Errorf("delivery %d: created_at %q: %w", c.d.ID, created, err)
			}
			cs = append(cs, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// RETURNING gives no order guarantee; restore the due order the
		// subquery chose, with insertion order among equals.
		slices.SortFunc(cs, func(a, b claimed) int {
			return cmp.Or(strings.Compare(a.due, b.due), cmp.Compare(a.d.ID, b.d.ID))
		})
		for _, c := range cs {
			out = append(out, c.d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return out, nil
}

// DeliveryOutcome is what happened to one claimed row.
type DeliveryOutcome struct {
	ID int64
	// State is the row's new state: sent, deferred or failed after an
	// attempt, or queued to hand back a row that was claimed but never
	// attempted (its attempt count is then left alone).
	State string
	// Reply is the server's reply (or the local error) to record as
	// last_reply; ignored for queued.
	Reply string
	// NextAttempt is when a deferred row falls due again.
	NextAttempt time.Time
	// Bounce, for a failed row, is the bounces.kind to record against the
	// recipient ("" records none); Scored says whether it counts toward
	// the member's bounce score, which it does only if the list also
	// processes bounces.
	Bounce string
	Scored bool
	// Event, for a failed row, is the events.kind to record ("" none).
	Event string
}

// RecordDeliveries writes a batch of outcomes in one fsynced transaction.
// Only rows still in state sending are changed: a row that was removed
// (its list deleted) or handed out again meanwhile is left alone.
//
// Batching is safe because the only cost of losing an uncommitted batch in
// a crash is that those rows are still sending at the next start, are
// reset to queued, and their recipients get the message again: the
// duplicate the durability rule allows for a crash between the remote 250
// and our commit.
func (s *Store) RecordDeliveries(ctx context.Context, outs []DeliveryOutcome) error {
	if len(outs) == 0 {
		return nil
	}
	for _, o := range outs {
		switch o.State {
		case DeliveryQueued, DeliverySent, DeliveryDeferred, DeliveryFailed:
		default:
			return fmt.Errorf("record deliveries: %w: state %q for delivery %d", ErrInvalid, o.State, o.ID)
		}
		switch o.Bounce {
		case "", BouncePermanent, BounceTemporary, BouncePolicy, BounceUnknown:
		default:
			return fmt.Errorf("record deliveries: %w: bounce kind %q for delivery %d", ErrInvalid, o.Bounce, o.ID)
		}
	}
	now := s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		upd, err := tx.PrepareContext(ctx, `UPDATE deliveries SET state = ?, attempts = attempts + ?,
			next_attempt_at = coalesce(?, next_attempt_at), last_reply = coalesce(?, last_reply), updated_at = ?
			WHERE id = ? AND state = 'sending'`)
		if err != nil {
			return err
		}
		defer upd.Close()
		var bounce, event *sql.Stmt
		for _, o := range outs {
			var inc int
			var next, reply any
			if o.State != DeliveryQueued {
				inc, reply = 1, o.Reply
			}
			if o.State == DeliveryDeferred {
				next = FormatTime(o.NextAttempt)
			}
			r, err := upd.ExecContext(ctx, o.State, inc, next, reply, now, o.ID)
			if err != nil {
				return fmt.Errorf("update delivery %d: %w", o.ID, err)
			}
			n, err := r.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 || o.State != DeliveryFailed {
				continue
			}
			if o.Bounce != "" {
				if bounce == nil {
					// bounces.message_id names the message that was
					// refused: there is no bounce message for a failure
					// seen in our own SMTP session.
					if bounce, err = tx.PrepareContext(ctx, `INSERT INTO bounces
						(list_id, address, kind, scored, diagnostic, message_id, received_at)
						SELECT d.list_id, d.recipient, ?, CASE WHEN ? AND coalesce(l.process_bounces, 0) = 1 THEN 1 ELSE 0 END,
						       ?, d.message_id, ?
						FROM deliveries d LEFT JOIN lists l ON l.id = d.list_id WHERE d.id = ?`); err != nil {
						return err
					}
					defer bounce.Close()
				}
				if _, err := bounce.ExecContext(ctx, o.Bounce, o.Scored, o.Reply, now, o.ID); err != nil {
					return fmt.Errorf("record bounce for delivery %d: %w", o.ID, err)
				}
			}
			if o.Event != "" {
				if event == nil {
					if event, err = tx.PrepareContext(ctx, `INSERT INTO events (at, list_id, address, kind, detail)
						SELECT ?, list_id, recipient, ?, 'message ' || message_id || ': ' || ? FROM deliveries WHERE id = ?`); err != nil {
						return err
					}
					defer event.Close()
				}
				if _, err := event.ExecContext(ctx, now, o.Event, o.Reply, o.ID); err != nil {
					return fmt.Errorf("record event for delivery %d: %w", o.ID, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d delivery outcome(s): %w", len(outs), err)
	}
	return nil
}

// ResetSendingDeliveries hands every row left in state sending back to
// queued. A deliverer calls it once at start-up: rows still sending then
// were claimed by a process that died, and may or may not have reached the
// server, so they are sent (again).
func (s *Store) ResetSendingDeliveries(ctx context.Context) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, "UPDATE deliveries SET state = 'queued', updated_at = ? WHERE state = 'sending'", s.now())
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reset sending deliveries: %w", err)
	}
	return n, nil
}

// NextDeliveryDue returns when the earliest queued or deferred row falls
// due; ok is false when there is none.
func (s *Store) NextDeliveryDue(ctx context.Context) (due time.Time, ok bool, err error) {
	var v sql.NullString
	err = s.r.QueryRowContext(ctx, "SELECT min(next_attempt_at) FROM deliveries WHERE state IN ('queued','deferred')").Scan(&v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next delivery due: %w", err)
	}
	if !v.Valid {
		return time.Time{}, false, nil
	}
	due, err = ParseTime(v.String)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next delivery due: %q: %w", v.String, err)
	}
	return due, true, nil
}

// RetryDeliveries makes rows due now: with messageID, that message's
// deferred and failed rows; with messageID 0, every deferred row (failed
// rows are retried only on purpose, message by message). It returns how
// many rows it changed; asking for a message without deliveries is
// ErrNotFound.
func (s *Store) RetryDeliveries(ctx context.Context, messageID int64) (int64, error) {
	var n int64
	now := s.now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var r sql.Result
		var err error
		if messageID == 0 {
			r, err = tx.ExecContext(ctx, `UPDATE deliveries SET state = 'queued', next_attempt_at = ?, updated_at = ?
				WHERE state = 'deferred'`, now, now)
		} else {
			var exists bool
			if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM deliveries WHERE message_id = ?)", messageID).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return fmt.Errorf("message %d has no deliveries: %w", messageID, ErrNotFound)
			}
			r, err = tx.ExecContext(ctx, `UPDATE deliveries SET state = 'queued', next_attempt_at = ?, updated_at = ?
				WHERE message_id = ? AND state IN ('deferred','failed')`, now, now, messageID)
		}
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retry deliveries: %w", err)
	}
	return n, nil
}

// QueueState is one line of the queue_summary view.
type QueueState struct {
	State       string `json:"state"`
	Deliveries  int64  `json:"deliveries"`
	Messages    int64  `json:"messages"`
	Oldest      string `json:"oldest"`
	NextAttempt string `json:"next_attempt"`
}

// QueueSummary counts deliveries by state (the queue_summary view).
func (s *Store) QueueSummary(ctx context.Context) ([]QueueState, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT state, deliveries, messages, oldest, next_attempt FROM queue_summary
		ORDER BY CASE state WHEN 'queued' THEN 1 WHEN 'sending' THEN 2 WHEN 'deferred' THEN 3 WHEN 'sent' THEN 4 ELSE 5 END`)
	if err != nil {
		return nil, fmt.Errorf("queue summary: %w", err)
	}
	defer rows.Close()
	var out []QueueState
	for rows.Next() {
		var q QueueState
		if err := rows.Scan(&q.State, &q.Deliveries, &q.Messages, &q.Oldest, &q.NextAttempt); err != nil {
			return nil, fmt.Errorf("queue summary: %w", err)
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue summary: %w", err)
	}
	return out, nil
}

// QueueMessage is one line of the queue view: a message's deliveries by
// state.
type QueueMessage struct {
	MessageID       int64  `json:"message_id"` // messages.id, the ID `queue retry` takes
	List            string `json:"list"`
	HeaderMessageID string `json:"message_header_id"`
	Sender          string `json:"sender"`
	Queued          int64  `json:"queued"`
	Sending         int64  `json:"sending"`
	Deferred        int64  `json:"deferred"`
	Sent            int64  `json:"sent"`
	Failed          int64  `json:"failed"`
	NextAttempt     string `json:"next_attempt"` // of its queued and deferred rows; "" if none

	// LastReply is the latest reply among the message's deferred rows, or
	// else among its failed rows: why it is stuck.
	LastReply string `json:"last_reply"`
}

// QueueMessages returns the queue view for messages with deliveries still
// to make (queued, sending or deferred), oldest first; with all, for every
// message that has deliveries.
func (s *Store) QueueMessages(ctx context.Context, all bool) ([]QueueMessage, error) {
	// The queue view's columns, computed here so that the pending case
	// reads only the pending messages' rows: SQLite does not push a
	// filter into the view's GROUP BY.
	where := ""
	if !all {
		// Both branches match a partial index, so the pending set is found
		// without reading the sent history.
		where = `WHERE d.message_id IN (SELECT message_id FROM deliveries WHERE state IN ('queued','deferred')
		                                UNION SELECT message_id FROM deliveries WHERE state = 'sending')`
	}
	q := `SELECT d.message_id, coalesce(l.address, ''), m.message_id, m.sender,
	             sum(d.state = 'queued'), sum(d.state = 'sending'), sum(d.state = 'deferred'),
	             sum(d.state = 'sent'), sum(d.state = 'failed'),
	             coalesce(min(CASE WHEN d.state IN ('queued','deferred') THEN d.next_attempt_at END), ''),
	             coalesce((SELECT last_reply FROM deliveries r WHERE r.message_id = d.message_id AND r.state IN ('deferred','failed')
	                       ORDER BY r.state = 'deferred' DESC, r.updated_at DESC LIMIT 1), '')
	      FROM deliveries d JOIN messages m ON m.id = d.message_id LEFT JOIN lists l ON l.id = d.list_id
	      ` + where + `
	      GROUP BY d.message_id ORDER BY d.message_id`
	rows, err := s.r.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("queue messages: %w", err)
	}
	defer rows.Close()
	var out []QueueMessage
	for rows.Next() {
		var m QueueMessage
		if err := rows.Scan(&m.MessageID, &m.List, &m.HeaderMessageID, &m.Sender, &m.Queued, &m.Sending,
			&m.Deferred, &m.Sent, &m.Failed, &m.NextAttempt, &m.LastReply); err != nil {
			return nil, fmt.Errorf("queue messages: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue messages: %w", err)
	}
	return out, nil
}

// DeliveryInfo is a deliveries row as an admin sees it.
type DeliveryInfo struct {
	ID           int64  `json:"id"`
	MessageID    int64  `json:"message_id"`
	Recipient    string `json:"recipient"`
	EnvelopeFrom string `json:"envelope_from"`
	State        string `json:"state"`
	Attempts     int    `json:"attempts"`
	NextAttempt  string `json:"next_attempt"`
	LastReply    string `json:"last_reply"`
	CreatedAt    string `json:"created_at"`
	UpdatedAt    string `json:"updated_at"`
}

// MessageDeliveries returns every deliveries row of a message, in id order.
func (s *Store) MessageDeliveries(ctx context.Context, messageID int64) ([]DeliveryInfo, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, message_id, recipient, envelope_from, state, attempts,
		next_attempt_at, last_reply, created_at, updated_at FROM deliveries WHERE message_id = ? ORDER BY id`, messageID)
	if err != nil {
		return nil, fmt.Errorf("deliveries of message %d: %w", messageID, err)
	}
	defer rows.Close()
	var out []DeliveryInfo
	for rows.Next() {
		var d DeliveryInfo
		if err := rows.Scan(&d.ID, &d.MessageID, &d.Recipient, &d.EnvelopeFrom, &d.State, &d.Attempts,
			&d.NextAttempt, &d.LastReply, &d.CreatedAt, &d.UpdatedAt); err != nil {
			return nil, fmt.Errorf("deliveries of message %d: %w", messageID, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("deliveries of message %d: %w", messageID, err)
	}
	return out, nil
}

// DeliveryBounce is a bounces row that delivery recorded for a recipient
// of a message.
type DeliveryBounce struct {
	Address    string `json:"address"`
	Kind       string `json:"kind"`
	Scored     bool   `json:"scored"`
	Diagnostic string `json:"diagnostic"`
	ReceivedAt string `json:"received_at"`
}

// DeliveryBounces returns the bounces recorded while delivering a message
// (bounces.message_id = messageID), in the order they were recorded.
func (s *Store) DeliveryBounces(ctx context.Context, messageID int64) ([]DeliveryBounce, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT address, kind, scored, diagnostic, received_at
		FROM bounces WHERE message_id = ? ORDER BY id`, messageID)
	if err != nil {
		return nil, fmt.Errorf("bounces of message %d: %w", messageID, err)
	}
	defer rows.Close()
	var out []DeliveryBounce
	for rows.Next() {
		var b DeliveryBounce
		if err := rows.Scan(&b.Address, &b.Kind, &b.Scored, &b.Diagnostic, &b.ReceivedAt); err != nil {
			return nil, fmt.Errorf("bounces of message %d: %w", messageID, err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bounces of message %d: %w", messageID, err)
	}
	return out, nil
}
