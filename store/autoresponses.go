package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// EventAutoresponseLimit records that an address reached its daily
// allowance of automatic mail: written once per address and day, for the
// first mail left out.
const EventAutoresponseLimit = "autoresponse_limit"

// commandKinds are the intake kinds whose mail is answered by the email
// interface (owner mail is forwarded, never answered).
const commandKindsSQL = `('request', 'join', 'leave', 'confirm')`

// capNotice counts n against each recipient's allowance for the day of
// now and returns what is left to send: the recipients under the cap get
// n as it is, the one for whom it is the last of the day gets LastBody
// (Mailman's "Last autoresponse notification for today"), and the rest
// nothing. The counts are written in the caller's transaction, so a
// crash before the commit neither sends nor counts.
func capNotice(ctx context.Context, tx *sql.Tx, now string, listID int64, n Notice) ([]Notice, error) {
	day := dayOf(now)
	var plain, last []NewDelivery
	for _, r := range n.Recipients {
		var count int
		err := tx.QueryRowContext(ctx, `INSERT INTO autoresponses (address, day, count) VALUES (?, ?, 1)
			ON CONFLICT (address, day) DO UPDATE SET count = count + 1 RETURNING count`, r.Recipient, day).Scan(&count)
		if err != nil {
			return nil, fmt.Errorf("count automatic mail to %s: %w", r.Recipient, err)
		}
		switch {
		case count < n.DailyCap:
			plain = append(plain, r)
		case count == n.DailyCap:
			last = append(last, r)
		default:
			if count == n.DailyCap+1 {
				// One event per address and day: a flood must not grow
				// the events table, which is never purged.
				detail := fmt.Sprintf("daily limit of %d automatic mails reached on %s; further ones are not sent", n.DailyCap, day)
				if err := addEvent(ctx, tx, now, listID, r.Recipient, EventAutoresponseLimit, detail); err != nil {
					return nil, err
				}
			}
			if n.Limited != nil {
				n.Limited(r.Recipient, count)
			}
		}
	}
	var out []Notice
	if len(plain) > 0 {
		p := n
		p.Recipients = plain
		out = append(out, p)
	}
	if len(last) > 0 {
		l := n
		if len(n.LastBody) > 0 {
			l.Body = n.LastBody
		}
		l.Recipients = last
		out = append(out, l)
	}
	return out, nil
}

// dayOf is the UTC date of a stored timestamp.
func dayOf(ts string) string {
	if len(ts) >= 10 {
		return ts[:10]
	}
	return ts
}

// AutoresponseCount returns how many automatic mails were composed for
// addr on the UTC day of t (sent or left out).
func (s *Store) AutoresponseCount(ctx context.Context, addr string, t time.Time) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count FROM autoresponses WHERE address = ? AND day = ?`,
		addr, dayOf(FormatTime(t))).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("automatic mail count of %s: %w", addr, err)
	}
	return n, nil
}

// PurgeAutoresponses deletes the counts of the UTC days before t's.
func (s *Store) PurgeAutoresponses(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM autoresponses WHERE day < ?`, dayOf(FormatTime(t)))
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge automatic mail counts: %w", err)
	}
	return n, nil
}

// AnsweringIntake returns the intake row that answers for the command
// mail of message messageID: the first row of kind request, join, leave
// or confirm of that message or of another copy of the same queued
// message (same MTA queue id and Message-ID: Postfix hands one message
// with many recipients over in several LMTP transactions, 50 recipients
// each by default, and again when it missed our reply). Only that row
// is processed; the others of the message are answered by it, so one
// message to a thousand command addresses costs one reply. 0 means the
// message has no such row.
//
// The choice depends on stored rows only, so a crash or restart between
// rows changes nothing.
func (s *Store) AnsweringIntake(ctx context.Context, messageID int64) (int64, error) {
	var id sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT min(i.id) FROM intake i
		WHERE i.kind IN `+commandKindsSQL+` AND i.message_id IN (
			SELECT ?1
			UNION ALL
			SELECT e.id FROM messages m
			JOIN messages e ON e.queue_id = m.queue_id AND e.message_id = m.message_id AND e.queue_id <> ''
			WHERE m.id = ?1 AND m.queue_id <> '')`, messageID).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("answering intake row of message %d: %w", messageID, classify(err))
	}
	return id.Int64, nil
}
