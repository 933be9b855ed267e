package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds bounce processing's reads and writes: recording bounces
// (from -bounces mail, and applying those the deliverer recorded for 5xx
// replies in its own sessions), the members' bounce records, and the
// warning and removal of members whose delivery bounces disabled.
//
// The scoring rules themselves (Mailman 3's: one increment a day, reset
// when stale, disable at the threshold) live in package bounce; the store
// hands them the member's record inside the transaction that writes the
// result, so two bounces for one member can never both read the old
// score.

// Event kinds written by bounce processing (events.kind). A member removed
// for bouncing gets EventMemberRemoved ("role=member by bounces").
const (
	EventBounceScored       = "bounce_scored"
	EventBounceRecorded     = "bounce_recorded" // recorded, not scored; the detail says why
	EventDeliveryDisabled   = "delivery_disabled_by_bounces"
	EventBounceWarning      = "bounce_warning_sent"
	EventBounceUnrecognized = "bounce_unrecognized"
	EventBounceRefused      = "bounce_refused" // a -bounces+ address whose signature is wrong
)

// BounceState is a member's bounce record as the scoring rules see it.
type BounceState struct {
	// Found is false when the address is not a member (role member) of
	// the list: nothing is scored then.
	Found          bool
	Address        string
	DisplayName    string
	DeliveryStatus string
	Score          float64
	LastBounceAt   time.Time // zero: never bounced
	WarningsSent   int
	LastWarningAt  time.Time // zero: never warned
}

// BounceVerdict is what one bounce does to a member.
type BounceVerdict struct {
	// Apply writes Score and LastBounceAt to the member.
	Apply        bool
	Score        float64
	LastBounceAt time.Time
	// Scored marks the bounces row as having counted toward the score.
	Scored bool
	// Disable sets delivery_status by_bounces and starts the warnings.
	Disable bool
	// Event and Detail are recorded for the member's address.
	Event, Detail string
	Notices       []Notice
}

// Bounce is one failure to record.
type Bounce struct {
	ListID     int64
	Address    string
	Kind       string // BouncePermanent, BounceTemporary, BouncePolicy, BounceUnknown
	Status     string // "5.1.1", "" if unknown
	Diagnostic string
	// MessageID is the stored bounce message (0: none).
	MessageID int64
	At        time.Time
	// Decide, when set, is given the member's record inside the
	// transaction and says what the bounce does to it; it must not block.
	// When nil the bounce is recorded only, with Event and Detail.
	Decide        func(BounceState) BounceVerdict
	Event, Detail string
}

// BounceBatch is everything one -bounces message causes.
type BounceBatch struct {
	// IntakeID is the intake row to mark done with Result; it must still
	// be new.
	IntakeID int64
	Result   string
	ListID   int64
	At       time.Time
	Bounces  []Bounce
	// Notices are stored and queued (an unrecognised bounce forwarded to
	// the owners, say); Event, Address and Detail, when Event is set, are
	// recorded too.
	Notices                []Notice
	Event, Address, Detail string
}

func validBounceKind(k string) bool {
	switch k {
	case BouncePermanent, BounceTemporary, BouncePolicy, BounceUnknown:
		return true
	}
	return false
}

// RecordBounces stores a bounce message's failures, their effect on the
// members, the notices and events they cause, and marks its intake row
// done, all in one transaction: a crash leaves the message either
// unprocessed or completely processed, never scored twice. A row no longer
// new gives ErrAlreadyDone.
func (s *Store) RecordBounces(ctx context.Context, b BounceBatch) error {
	for _, x := range b.Bounces {
		if !validBounceKind(x.Kind) || x.Address == "" {
			return fmt.Errorf("record bounces: %w: kind %q, address %q", ErrInvalid, x.Kind, x.Address)
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		at := FormatTime(b.At)
		if b.IntakeID != 0 {
			r, err := tx.ExecContext(ctx, `UPDATE intake SET state = 'done', result = ?, processed_at = ? WHERE id = ? AND state = 'new'`,
				b.Result, at, b.IntakeID)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n == 0 {
				return fmt.Errorf("intake row %d: %w", b.IntakeID, ErrAlreadyDone)
			}
		}
		for _, x := range b.Bounces {
			v := BounceVerdict{Event: x.Event, Detail: x.Detail}
			if x.Decide != nil {
				var err error
				if v, err = decideBounce(ctx, tx, x.ListID, x.Address, x.At, x.Decide); err != nil {
					return err
				}
			}
			var msg any
			if x.MessageID != 0 {
				msg = x.MessageID
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO bounces (list_id, address, kind, scored, diagnostic, message_id, received_at, processed_at, status)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				x.ListID, x.Address, x.Kind, v.Scored, clipText(x.Diagnostic), msg, FormatTime(x.At), FormatTime(x.At), x.Status)
			if err != nil {
				return fmt.Errorf("record bounce for %s: %w", x.Address, err)
			}
			if err := finishVerdict(ctx, tx, x.ListID, x.Address, x.At, v); err != nil {
				return err
			}
		}
		if _, err := storeNotices(ctx, tx, at, b.ListID, b.Notices); err != nil {
			return err
		}
		if b.Event != "" {
			return addEvent(ctx, tx, at, b.ListID, b.Address, b.Event, b.Detail)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record bounces: %w", err)
	}
	return nil
}

// clipText bounds diagnostics copied from remote reports.
func clipText(s string) string {
	const max = 1000
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// decideBounce reads the member's record and asks decide what the bounce
// does; the member row is written by finishVerdict.
func decideBounce(ctx context.Context, tx *sql.Tx, listID int64, addr string, at time.Time, decide func(BounceState) BounceVerdict) (BounceVerdict, error) {
	var st BounceState
	var last, warned sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT address, display_name, delivery_status, bounce_score, last_bounce_at, warnings_sent, last_warning_at
		FROM members WHERE list_id = ? AND address = ? AND role = 'member'`, listID, addr).
		Scan(&st.Address, &st.DisplayName, &st.DeliveryStatus, &st.Score, &last, &st.WarningsSent, &warned)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		st = BounceState{Address: addr}
	case err != nil:
		return BounceVerdict{}, fmt.Errorf("bounce record of %s: %w", addr, err)
	default:
		st.Found = true
		if last.Valid {
			if st.LastBounceAt, err = ParseTime(last.String); err != nil {
				return BounceVerdict{}, fmt.Errorf("last_bounce_at of %s: %w", addr, err)
			}
		}
		if warned.Valid {
			if st.LastWarningAt, err = ParseTime(warned.String); err != nil {
				return BounceVerdict{}, fmt.Errorf("last_warning_at of %s: %w", addr, err)
			}
		}
	}
	v := decide(st)
	if (v.Apply || v.Disable) && !st.Found {
		return BounceVerdict{}, fmt.Errorf("%w: bounce verdict changes %s, who is not a member", ErrInvalid, addr)
	}
	return v, nil
}

// finishVerdict writes a verdict: the member's record, the event and the
// notices.
func finishVerdict(ctx context.Context, tx *sql.Tx, listID int64, addr string, at time.Time, v BounceVerdict) error {
	now := FormatTime(at)
	if v.Apply {
		_, err := tx.ExecContext(ctx, `UPDATE members SET bounce_score = ?, last_bounce_at = ? WHERE list_id = ? AND address = ? AND role = 'member'`,
			v.Score, FormatTime(v.LastBounceAt), listID, addr)
		if err != nil {
			return fmt.Errorf("update bounce score of %s: %w", addr, err)
		}
	}
	if v.Disable {
		// Mailman starts the warnings from scratch at each disable: the
		// first goes out at the next pass.
		_, err := tx.ExecContext(ctx, `UPDATE members SET delivery_status = 'by_bounces', warnings_sent = 0, last_warning_at = NULL
			WHERE list_id = ? AND address = ? AND role = 'member'`, listID, addr)
		if err != nil {
			return fmt.Errorf("disable delivery to %s: %w", addr, err)
		}
		detail := fmt.Sprintf("score %g", v.Score)
		if err := addEvent(ctx, tx, now, listID, addr, EventDeliveryDisabled, detail); err != nil {
			return err
		}
	}
	if v.Event != "" {
		if err := addEvent(ctx, tx, now, listID, addr, v.Event, v.Detail); err != nil {
			return err
		}
	}
	_, err := storeNotices(ctx, tx, now, listID, v.Notices)
	return err
}

// RecordedBounce is a bounces row that bounce processing has not applied
// yet: one the deliverer wrote for a 5xx reply in its own session.
type RecordedBounce struct {
	ID         int64
	ListID     int64 // 0 if the list is gone
	Address    string
	Kind       string
	Status     string
	Diagnostic string
	// Scored is what the deliverer decided: whether the failure may count
	// toward the score.
	Scored     bool
	MessageID  int64 // the message that was refused, 0 if gone
	ReceivedAt time.Time
}

// UnprocessedBounces returns up to limit bounces rows not yet applied to
// the members' records, oldest first.
func (s *Store) UnprocessedBounces(ctx context.Context, limit int) ([]RecordedBounce, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, coalesce(list_id, 0), address, kind, status, diagnostic, scored,
		coalesce(message_id, 0), received_at FROM bounces WHERE processed_at IS NULL ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("unprocessed bounces: %w", err)
	}
	defer rows.Close()
	var out []RecordedBounce
	for rows.Next() {
		var b RecordedBounce
		var at string
		if err := rows.Scan(&b.ID, &b.ListID, &b.Address, &b.Kind, &b.Status, &b.Diagnostic, &b.Scored, &b.MessageID, &at); err != nil {
			return nil, fmt.Errorf("unprocessed bounces: %w", err)
		}
		if b.ReceivedAt, err = ParseTime(at); err != nil {
			return nil, fmt.Errorf("bounce %d received_at %q: %w", b.ID, at, err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unprocessed bounces: %w", err)
	}
	return out, nil
}

// ApplyBounce applies a recorded bounce to the member's record at time at,
// in one transaction. decide nil marks the row processed without scoring
// it. A row already processed gives ErrAlreadyDone.
func (s *Store) ApplyBounce(ctx context.Context, b RecordedBounce, at time.Time, decide func(BounceState) BounceVerdict) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		v := BounceVerdict{}
		if decide != nil && b.ListID != 0 {
			var err error
			if v, err = decideBounce(ctx, tx, b.ListID, b.Address, at, decide); err != nil {
				return err
			}
		}
		r, err := tx.ExecContext(ctx, `UPDATE bounces SET processed_at = ?, scored = ? WHERE id = ? AND processed_at IS NULL`,
			FormatTime(at), v.Scored, b.ID)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return fmt.Errorf("bounce %d: %w", b.ID, ErrAlreadyDone)
		}
		if b.ListID == 0 {
			return nil
		}
		return finishVerdict(ctx, tx, b.ListID, b.Address, at, v)
	})
	if err != nil {
		return fmt.Errorf("apply bounce %d: %w", b.ID, err)
	}
	return nil
}

// DisabledMember is a member whose delivery bounces disabled, with its
// list's warning settings, for the warning and removal pass.
type DisabledMember struct {
	ListID        int64
	List          string
	Address       string
	DisplayName   string
	Score         float64
	WarningsSent  int
	LastWarningAt time.Time // zero: never warned
	// Warnings and Interval are the list's
	// bounce_you_are_disabled_warnings(_interval), as stored.
	Warnings int
	Interval string
}

// DisabledByBounces returns the members disabled by bounces on lists
// that process bounces, by list and address.
func (s *Store) DisabledByBounces(ctx context.Context) ([]DisabledMember, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT m.list_id, l.address, m.address, m.display_name, m.bounce_score,
		m.warnings_sent, coalesce(m.last_warning_at, ''), l.bounce_you_are_disabled_warnings,
		l.bounce_you_are_disabled_warnings_interval
		FROM members m JOIN lists l ON l.id = m.list_id
		WHERE m.role = 'member' AND m.delivery_status = 'by_bounces' AND l.process_bounces = 1
		ORDER BY l.address, lower(m.address)`)
	if err != nil {
		return nil, fmt.Errorf("members disabled by bounces: %w", err)
	}
	defer rows.Close()
	var out []DisabledMember
	for rows.Next() {
		var m DisabledMember
		var warned string
		if err := rows.Scan(&m.ListID, &m.List, &m.Address, &m.DisplayName, &m.Score, &m.WarningsSent, &warned, &m.Warnings, &m.Interval); err != nil {
			return nil, fmt.Errorf("members disabled by bounces: %w", err)
		}
		if warned != "" {
			if m.LastWarningAt, err = ParseTime(warned); err != nil {
				return nil, fmt.Errorf("last_warning_at of %s: %w", m.Address, err)
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("members disabled by bounces: %w", err)
	}
	return out, nil
}

// RecordBounceWarning counts a warning sent to m at time at and queues it,
// in one transaction. It does nothing and reports false when m changed
// meanwhile (re-enabled, removed, or warned by another pass): the
// warnings counter must match m.WarningsSent.
func (s *Store) RecordBounceWarning(ctx context.Context, m DisabledMember, at time.Time, warning Notice) (bool, error) {
	done := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := FormatTime(at)
		r, err := tx.ExecContext(ctx, `UPDATE members SET warnings_sent = warnings_sent + 1, last_warning_at = ?
			WHERE list_id = ? AND address = ? AND role = 'member' AND delivery_status = 'by_bounces' AND warnings_sent = ?`,
			now, m.ListID, m.Address, m.WarningsSent)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return nil
		}
		done = true
		if _, err := storeNotices(ctx, tx, now, m.ListID, []Notice{warning}); err != nil {
			return err
		}
		return addEvent(ctx, tx, now, m.ListID, m.Address, EventBounceWarning,
			fmt.Sprintf("warning %d of %d", m.WarningsSent+1, m.Warnings))
	})
	if err != nil {
		return false, fmt.Errorf("warn %s on list #%d: %w", m.Address, m.ListID, err)
	}
	return done, nil
}

// RemoveBouncingMember removes m, whose delivery bounces disabled, with
// the notices (goodbye, owners' notice), in one transaction. It reports
// false when m is no longer a disabled member.
func (s *Store) RemoveBouncingMember(ctx context.Context, m DisabledMember, at time.Time, notices []Notice) (bool, error) {
	removed := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := FormatTime(at)
		r, err := tx.ExecContext(ctx, `DELETE FROM members WHERE list_id = ? AND address = ? AND role = 'member' AND delivery_status = 'by_bounces'`,
			m.ListID, m.Address)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return nil
		}
		removed = true
		if _, err := storeNotices(ctx, tx, now, m.ListID, notices); err != nil {
			return err
		}
		return addEvent(ctx, tx, now, m.ListID, m.Address, EventMemberRemoved,
			fmt.Sprintf("role=member by bounces (score %g, %d warning(s))", m.Score, m.WarningsSent))
	})
	if err != nil {
		return false, fmt.Errorf("remove bouncing member %s from list #%d: %w", m.Address, m.ListID, err)
	}
	return removed, nil
}

// MemberBounce is a member's bounce record, for admins and tests.
type MemberBounce struct {
	Address        string  `json:"address"`
	DeliveryStatus string  `json:"delivery_status"`
	Score          float64 `json:"bounce_score"`
	LastBounceAt   string  `json:"last_bounce_at,omitempty"`
	WarningsSent   int     `json:"warnings_sent"`
	LastWarningAt  string  `json:"last_warning_at,omitempty"`
}

// MemberBounceRecord returns addr's bounce record on list listID, or
// ErrNotFound when addr is not a member.
func (s *Store) MemberBounceRecord(ctx context.Context, listID int64, addr string) (MemberBounce, error) {
	var m MemberBounce
	err := s.r.QueryRowContext(ctx, `SELECT address, delivery_status, bounce_score, coalesce(last_bounce_at, ''),
		warnings_sent, coalesce(last_warning_at, '') FROM members WHERE list_id = ? AND address = ? AND role = 'member'`,
		listID, addr).Scan(&m.Address, &m.DeliveryStatus, &m.Score, &m.LastBounceAt, &m.WarningsSent, &m.LastWarningAt)
	if errors.Is(err, sql.ErrNoRows) {
		return MemberBounce{}, fmt.Errorf("%w: %s is not a member of list #%d", ErrNotFound, addr, listID)
	}
	if err != nil {
		return MemberBounce{}, fmt.Errorf("bounce record of %s: %w", addr, err)
	}
	return m, nil
}

// BounceRow is one bounces row.
type BounceRow struct {
	ID         int64  `json:"id"`
	List       string `json:"list"`
	Address    string `json:"address"`
	Kind       string `json:"kind"`
	Status     string `json:"status,omitempty"`
	Scored     bool   `json:"scored"`
	Diagnostic string `json:"diagnostic,omitempty"`
	MessageID  int64  `json:"message_id,omitempty"`
	ReceivedAt string `json:"received_at"`
}

// BounceRows returns the bounces recorded for a list ("" for all) and
// address ("" for all), oldest first.
func (s *Store) BounceRows(ctx context.Context, list, addr string) ([]BounceRow, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT b.id, coalesce(l.address, ''), b.address, b.kind, b.status, b.scored,
		b.diagnostic, coalesce(b.message_id, 0), b.received_at
		FROM bounces b LEFT JOIN lists l ON l.id = b.list_id
		WHERE (? = '' OR l.address = ?) AND (? = '' OR b.address = ?) ORDER BY b.id`, list, list, addr, addr)
	if err != nil {
		return nil, fmt.Errorf("bounces: %w", err)
	}
	defer rows.Close()
	var out []BounceRow
	for rows.Next() {
		var b BounceRow
		if err := rows.Scan(&b.ID, &b.List, &b.Address, &b.Kind, &b.Status, &b.Scored, &b.Diagnostic, &b.MessageID, &b.ReceivedAt); err != nil {
			return nil, fmt.Errorf("bounces: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bounces: %w", err)
	}
	return out, nil
}

// Event is one events row.
type Event struct {
	ID      int64  `json:"id"`
	At      string `json:"at"`
	List    string `json:"list,omitempty"`
	Address string `json:"address,omitempty"`
	Kind    string `json:"kind"`
	Detail  string `json:"detail,omitempty"`
}

// EventLog returns the events of a list ("" for all), optionally only
// those about addr and of the given kinds, oldest first: what an admin
// reads to learn why a member was disabled or removed.
func (s *Store) EventLog(ctx context.Context, list, addr string, kinds ...string) ([]Event, error) {
	q := `SELECT e.id, e.at, coalesce(l.address, ''), e.address, e.kind, e.detail
		FROM events e LEFT JOIN lists l ON l.id = e.list_id
		WHERE (? = '' OR l.address = ?) AND (? = '' OR e.address = ?)`
	args := []any{list, list, addr, addr}
	if len(kinds) > 0 {
		q += ` AND e.kind IN (?` + strings.Repeat(", ?", len(kinds)-1) + `)`
		for _, k := range kinds {
			args = append(args, k)
		}
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY e.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.At, &e.List, &e.Address, &e.Kind, &e.Detail); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}
