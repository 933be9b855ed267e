package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file holds what the posting pipeline writes and reads: decisions
// on posts (accept, hold, reject, discard) with their fan-out and notices,
// held messages and the moderators' decisions on them, and one-click
// unsubscription.
//
// Every decision is one transaction: the intake row is marked done in the
// same commit that stores the held row, or the post record and one
// delivery row per member, or the notices. A crash therefore leaves a post
// either untouched (it is processed again) or completely decided; never
// half fanned out, never decided twice.

// Posting actions, Mailman's words.
const (
	ActionAccept  = "accept"
	ActionHold    = "hold"
	ActionReject  = "reject"
	ActionDiscard = "discard"
)

// Held message states (held.state).
const (
	HeldHeld      = "held"
	HeldApproved  = "approved"
	HeldRejected  = "rejected"
	HeldDiscarded = "discarded"
)

// Event kinds written for posts (events.kind).
const (
	EventPostAccepted  = "post_accepted"
	EventPostHeld      = "post_held"
	EventPostRejected  = "post_rejected"
	EventPostDiscarded = "post_discarded"
	EventHeldApproved  = "held_approved"
	EventHeldRejected  = "held_rejected"
	EventHeldDiscarded = "held_discarded"

	EventHeaderMatchAdded   = "header_match_added"
	EventHeaderMatchRemoved = "header_match_removed"
	EventMemberRemoved      = "member_removed"
)

// PostingMember is a members row that matters to a post's moderation.
type PostingMember struct {
	Address string
	// Role is member, owner, moderator or nonmember.
	Role string
	// ModerationAction is the row's own action, "" when the list default
	// applies.
	ModerationAction   string
	ReceiveOwnPostings bool
}

// PostingMembers returns the rows of list listID for any of addrs
// (compared without regard to case), in the order of addrs.
func (s *Store) PostingMembers(ctx context.Context, listID int64, addrs []string) ([]PostingMember, error) {
	if len(addrs) == 0 {
		return nil, nil
	}
	args := []any{listID}
	for _, a := range addrs {
		args = append(args, a)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT address, role, coalesce(moderation_action, ''), receive_own_postings
		FROM members WHERE list_id = ? AND address IN (?`+strings.Repeat(", ?", len(addrs)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("members of list #%d: %w", listID, err)
	}
	defer rows.Close()
	var found []PostingMember
	for rows.Next() {
		var m PostingMember
		if err := rows.Scan(&m.Address, &m.Role, &m.ModerationAction, &m.ReceiveOwnPostings); err != nil {
			return nil, fmt.Errorf("members of list #%d: %w", listID, err)
		}
		found = append(found, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("members of list #%d: %w", listID, err)
	}
	pos := func(a string) int {
		return slices.IndexFunc(addrs, func(x string) bool { return strings.EqualFold(x, a) })
	}
	slices.SortStableFunc(found, func(a, b PostingMember) int { return cmp.Compare(pos(a.Address), pos(b.Address)) })
	return found, nil
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// fanOutQuery selects who receives a post: every member (role member)
// whose delivery is enabled - not disabled by bounces, by themselves or by
// a moderator - except the poster when they asked not to get their own
// posts. The members table keeps one row per address and role, compared
// without case, so no one is listed twice. Digest modes are delivered like
// regular mail until digests exist, so that nobody silently gets nothing.
const fanOutQuery = `SELECT address FROM members
	WHERE list_id = ? AND role = 'member' AND delivery_status = 'enabled'
	  AND NOT (receive_own_postings = 0 AND address = ?)
	ORDER BY lower(address)`

func fanOut(ctx context.Context, q querier, listID int64, poster string) ([]string, error) {
	rows, err := q.QueryContext(ctx, fanOutQuery, listID, poster)
	if err != nil {
		return nil, fmt.Errorf("recipients of list #%d: %w", listID, err)
	}
	out, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("recipients of list #%d: %w", listID, err)
	}
	return out, nil
}

// FanOutRecipients returns who would receive a post to listID by poster.
func (s *Store) FanOutRecipients(ctx context.Context, listID int64, poster string) ([]string, error) {
	return fanOut(ctx, s.r, listID, poster)
}

// IsPost reports whether list listID distributes message messageID,
// i.e. whether delivery must decorate it.
func (s *Store) IsPost(ctx context.Context, messageID, listID int64) (bool, error) {
	_, ok, err := s.PostNumber(ctx, messageID, listID)
	return ok, err
}

// PostNumber returns the list's number for a post it distributes
// (Mailman's post_id: 1 for the list's first post, 0 for posts accepted
// before posts were numbered), and false when the message is no post of
// the list.
func (s *Store) PostNumber(ctx context.Context, messageID, listID int64) (int64, bool, error) {
	var seq int64
	err := s.r.QueryRowContext(ctx, "SELECT seq FROM posts WHERE message_id = ? AND list_id = ?", messageID, listID).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("post record of message %d: %w", messageID, err)
	}
	return seq, true, nil
}

// Notice is a message postlist wrote itself (a hold notice to moderators,
// a rejection notice to a poster), stored and queued together with the
// decision that caused it.
type Notice struct {
	// Sender is the envelope sender: the list's -bounces address, so that
	// a bounced notice comes back to the list and never to a person.
	Sender     string
	Body       []byte
	Recipients []NewDelivery
	// DailyCap, when above zero, makes the notice an automatic reply to
	// a person, counted per recipient and UTC day in the autoresponses
	// table: a recipient for whom it is the DailyCap-th of the day gets
	// LastBody instead of Body, and beyond that none (see capNotice).
	DailyCap int
	LastBody []byte
	// Limited, when set, hears of each recipient left out by DailyCap
	// (with the day's count so far), for the caller's log. It runs
	// inside the transaction and must not block.
	Limited func(addr string, count int)
}

// PostDecision is what the posting rules decided about one post.
type PostDecision struct {
	// IntakeID is the intake row to mark done; it must still be new.
	IntakeID  int64
	ListID    int64
	MessageID int64 // messages.id of the post as received
	// Cleaned, when not nil, is the post with the moderator password
	// removed: it is stored as a new message, which is the one held or
	// delivered from then on.
	Cleaned []byte
	// Action is ActionAccept, ActionHold, ActionReject or ActionDiscard.
	Action  string
	Rule    string
	Reason  string
	Sender  string // the poster
	Subject string
	// Envelope gives each member's envelope sender (accept only).
	Envelope func(member string) string
	// HeldToken, for ActionHold, is a confirmation token (Token and
	// ExpiresAt) stored with the held row, so that a moderator can decide
	// by mail (NAME-confirm+TOKEN); its kind, list and data (the held id)
	// are filled in here.
	HeldToken *Token
	// Notices, when set, returns the notices to store with the decision.
	// It runs inside the transaction, once the held row exists, so that a
	// hold notice can name the held message's id; it must not block.
	Notices func(PostResult) []Notice
}

// PostResult says what RecordPost wrote.
type PostResult struct {
	MessageID  int64 // the message held or delivered (Cleaned's row if stored)
	HeldID     int64 // for ActionHold
	Deliveries int   // delivery rows queued for members
	Notices    int   // notices stored
}

// ErrAlreadyDone means an intake row or held message was decided already
// (by another process, or before a restart).
var ErrAlreadyDone = errors.New("already decided")

// RecordPost stores a decision in one transaction: the cleaned copy if
// any, then the held row, or the post record with one delivery row per
// recipient, or nothing more for reject and discard; the notices; an
// event; and the intake row marked done with the reason.
func (s *Store) RecordPost(ctx context.Context, d PostDecision) (PostResult, error) {
	res := PostResult{MessageID: d.MessageID}
	switch d.Action {
	case ActionAccept, ActionHold, ActionReject, ActionDiscard:
	default:
		return res, fmt.Errorf("record post: %w: action %q", ErrInvalid, d.Action)
	}
	if d.Action == ActionAccept && d.Envelope == nil {
		return res, fmt.Errorf("record post: %w: accept without envelope senders", ErrInvalid)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res = PostResult{MessageID: d.MessageID}
		now := s.now()
		if d.IntakeID != 0 {
			r, err := tx.ExecContext(ctx, `UPDATE intake SET state = 'done', result = ?, processed_at = ? WHERE id = ? AND state = 'new'`,
				intakeResult(d), now, d.IntakeID)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n == 0 {
				return fmt.Errorf("intake row %d: %w", d.IntakeID, ErrAlreadyDone)
			}
		}
		if d.Cleaned != nil {
			r, err := tx.ExecContext(ctx, `INSERT INTO messages (id, message_id, sender, queue_id, size, body, received_at)
				SELECT `+nextIDMessages+`, message_id, sender, queue_id, ?, ?, received_at FROM messages WHERE id = ?`,
				len(d.Cleaned), d.Cleaned, d.MessageID)
			if err != nil {
				return fmt.Errorf("store cleaned post: %w", err)
			}
			if res.MessageID, err = r.LastInsertId(); err != nil {
				return err
			}
		}
		var event string
		switch d.Action {
		case ActionAccept:
			event = EventPostAccepted
			n, err := acceptPost(ctx, tx, now, postRow{
				listID: d.ListID, messageID: res.MessageID, originalID: d.MessageID,
				sender: d.Sender, subject: d.Subject, rule: d.Rule, reason: d.Reason,
			}, d.Envelope)
			if err != nil {
				return err
			}
			res.Deliveries = n
		case ActionHold:
			event = EventPostHeld
			r, err := tx.ExecContext(ctx, `INSERT INTO held (id, message_id, list_id, sender, subject, reason, held_at)
				VALUES (`+nextIDHeld+`, ?, ?, ?, ?, ?, ?)`, res.MessageID, d.ListID, d.Sender, d.Subject, d.Rule+": "+d.Reason, now)
			if err != nil {
				return fmt.Errorf("hold post: %w", err)
			}
			if res.HeldID, err = r.LastInsertId(); err != nil {
				return err
			}
			if t := d.HeldToken; t != nil {
				if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (token, list_id, kind, address, data, created_at, expires_at)
					VALUES (?, ?, ?, ?, ?, ?, ?)`, t.Token, d.ListID, TokenHeld, d.Sender, strconv.FormatInt(res.HeldID, 10),
					now, FormatTime(t.ExpiresAt)); err != nil {
					return fmt.Errorf("store held-message token: %w", err)
				}
			}
		case ActionReject:
			event = EventPostRejected
		case ActionDiscard:
			event = EventPostDiscarded
		}
		if d.Notices != nil {
			n, err := storeNotices(ctx, tx, now, d.ListID, d.Notices(res))
			if err != nil {
				return err
			}
			res.Notices = n
		}
		detail := fmt.Sprintf("message %d: %s: %s", res.MessageID, d.Rule, d.Reason)
		if res.HeldID != 0 {
			detail = fmt.Sprintf("held #%d, %s", res.HeldID, detail)
		}
		return addEvent(ctx, tx, now, d.ListID, d.Sender, event, detail)
	})
	if err != nil {
		return PostResult{}, fmt.Errorf("record %s of message %d: %w", d.Action, d.MessageID, err)
	}
	return res, nil
}

func intakeResult(d PostDecision) string {
	return d.Action + " (" + d.Rule + "): " + d.Reason
}

// postRow is a posts row to write.
type postRow struct {
	listID, messageID, originalID int64
	sender, subject, rule, reason string
	acceptedBy                    string
}

// acceptPost records a post and queues it for every recipient, in tx.
func acceptPost(ctx context.Context, tx *sql.Tx, now string, p postRow, envelope func(string) string) (int, error) {
	rcpts, err := fanOut(ctx, tx, p.listID, p.sender)
	if err != nil {
		return 0, err
	}
	rows := make([]NewDelivery, 0, len(rcpts))
	for _, r := range rcpts {
		rows = append(rows, NewDelivery{Recipient: r, EnvelopeFrom: envelope(r)})
	}
	n, err := insertDeliveries(ctx, tx, now, p.messageID, p.listID, rows)
	if err != nil {
		return 0, err
	}
	var orig any
	if p.originalID != 0 && p.originalID != p.messageID {
		orig = p.originalID
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO post_sequence (list_id, last) VALUES (?, 1)
		ON CONFLICT (list_id) DO UPDATE SET last = last + 1 RETURNING last`, p.listID).Scan(&seq); err != nil {
		return 0, fmt.Errorf("number post: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO posts (list_id, message_id, original_id, sender, subject, rule, reason, accepted_by, recipients, accepted_at, seq)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.listID, p.messageID, orig, p.sender, p.subject, p.rule, p.reason, p.acceptedBy, n, now, seq)
	if err != nil {
		return 0, fmt.Errorf("record post: %w", err)
	}
	return n, nil
}

// insertDeliveries is QueueDeliveries inside a caller's transaction, with
// the same order (by envelope sender, then recipient domain, which bulk
// delivery relies on to group recipients) and the same idempotence. It
// returns how many rows were new.
//
// Recipients are not judged here: one undeliverable member (stored before
// members add checked addresses, or by hand) must not make the whole
// fan-out fail, and with it the post. The deliverer checks every row
// before it speaks SMTP and fails a bad one alone, with its event and
// bounce row. An envelope sender with a line break can only come from a
// broken caller (VERP falls back to the plain -bounces address for a
// member it cannot parse), so that is still refused.
func insertDeliveries(ctx context.Context, tx *sql.Tx, now string, messageID, listID int64, rows []NewDelivery) (int, error) {
	for _, r := range rows {
		if strings.ContainsAny(r.EnvelopeFrom, "\r\n") {
			return 0, fmt.Errorf("queue deliveries of message %d: %w: envelope sender %q", messageID, ErrInvalid, r.EnvelopeFrom)
		}
	}
	sorted := slices.Clone(rows)
	slices.SortStableFunc(sorted, func(a, b NewDelivery) int {
		return cmp.Or(strings.Compare(a.EnvelopeFrom, b.EnvelopeFrom), strings.Compare(domainOf(a.Recipient), domainOf(b.Recipient)))
	})
	var list any
	if listID != 0 {
		list = listID
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO deliveries
		(message_id, list_id, recipient, envelope_from, state, next_attempt_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)
		ON CONFLICT (message_id, recipient) DO NOTHING`)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	n := 0
	for _, r := range sorted {
		res, err := st.ExecContext(ctx, messageID, list, r.Recipient, r.EnvelopeFrom, now, now, now)
		if err != nil {
			return 0, fmt.Errorf("queue delivery to %s: %w", r.Recipient, err)
		}
		if k, _ := res.RowsAffected(); k > 0 {
			n++
		}
	}
	return n, nil
}

// storeNotices stores each notice as a message and queues it.
func storeNotices(ctx context.Context, tx *sql.Tx, now string, listID int64, ns []Notice) (int, error) {
	var capped []Notice
	for _, n := range ns {
		if n.DailyCap <= 0 {
			capped = append(capped, n)
			continue
		}
		parts, err := capNotice(ctx, tx, now, listID, n)
		if err != nil {
			return 0, err
		}
		capped = append(capped, parts...)
	}
	for _, n := range capped {
		if len(n.Body) == 0 || len(n.Recipients) == 0 {
			return 0, fmt.Errorf("store notice: %w: empty body or no recipients", ErrInvalid)
		}
		r, err := tx.ExecContext(ctx, `INSERT INTO messages (id, message_id, sender, size, body, received_at)
			VALUES (`+nextIDMessages+`, ?, ?, ?, ?, ?)`,
			headerMessageID(n.Body), n.Sender, len(n.Body), n.Body, now)
		if err != nil {
			return 0, fmt.Errorf("store notice: %w", err)
		}
		id, err := r.LastInsertId()
		if err != nil {
			return 0, err
		}
		if _, err := insertDeliveries(ctx, tx, now, id, listID, n.Recipients); err != nil {
			return 0, err
		}
	}
	return len(capped), nil
}

// headerMessageID finds the Message-ID field of a message we generated
// (for the messages.message_id column, which admins search by).
func headerMessageID(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Message-ID") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func addEvent(ctx context.Context, tx *sql.Tx, now string, listID int64, addr, kind, detail string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO events (at, list_id, address, kind, detail) VALUES (?, ?, ?, ?, ?)`,
		now, listID, addr, kind, detail)
	if err != nil {
		return fmt.Errorf("record event %s: %w", kind, err)
	}
	return nil
}

// Held is a held message with its list and state.
type Held struct {
	ID        int64  `json:"id"`
	MessageID int64  `json:"message_id"` // messages.id
	ListID    int64  `json:"-"`
	List      string `json:"list"`
	Sender    string `json:"sender"`
	Subject   string `json:"subject"`
	Reason    string `json:"reason"`
	State     string `json:"state"`
	HeldAt    string `json:"held_at"`
	DecidedAt string `json:"decided_at,omitempty"`
	DecidedBy string `json:"decided_by,omitempty"`
	Size      int64  `json:"size"`
}

const heldQuery = `SELECT h.id, h.message_id, h.list_id, l.address, h.sender, h.subject, h.reason, h.state,
	h.held_at, coalesce(h.decided_at, ''), h.decided_by, m.size
	FROM held h JOIN lists l ON l.id = h.list_id JOIN messages m ON m.id = h.message_id `

func scanHeld(sc interface{ Scan(...any) error }) (Held, error) {
	var h Held
	err := sc.Scan(&h.ID, &h.MessageID, &h.ListID, &h.List, &h.Sender, &h.Subject, &h.Reason, &h.State,
		&h.HeldAt, &h.DecidedAt, &h.DecidedBy, &h.Size)
	return h, err
}

// HeldMessages returns the messages waiting for a moderator, oldest first;
// list "" means every list.
func (s *Store) HeldMessages(ctx context.Context, list string) ([]Held, error) {
	if list != "" {
		if _, err := listID(ctx, s.r, list); err != nil {
			return nil, err
		}
	}
	rows, err := s.r.QueryContext(ctx, heldQuery+`WHERE h.state = 'held' AND (? = '' OR l.address = ?) ORDER BY h.held_at, h.id`, list, list)
	if err != nil {
		return nil, fmt.Errorf("held messages: %w", err)
	}
	defer rows.Close()
	var out []Held
	for rows.Next() {
		h, err := scanHeld(rows)
		if err != nil {
			return nil, fmt.Errorf("held messages: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("held messages: %w", err)
	}
	return out, nil
}

// GetHeld returns one held message, whatever its state.
func (s *Store) GetHeld(ctx context.Context, id int64) (*Held, error) {
	h, err := scanHeld(s.r.QueryRowContext(ctx, heldQuery+`WHERE h.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: held message %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("held message %d: %w", id, err)
	}
	return &h, nil
}

// HeldDecision is a moderator's decision on a held message.
type HeldDecision struct {
	HeldID int64
	// State is HeldApproved, HeldRejected or HeldDiscarded.
	State string
	// By names the moderator ("cli:alice").
	By     string
	Reason string
	// Envelope gives each member's envelope sender (approve only).
	Envelope func(member string) string
	Notices  []Notice
}

// HeldResult says what DecideHeld did.
type HeldResult struct {
	Held       Held // the row as it was before the decision
	Deliveries int
	Notices    int
}

// DecideHeld applies a moderator's decision in one transaction. An
// approved message is then treated as if the rules had accepted it: a
// post record and one delivery row per member. A message already decided
// gives ErrAlreadyDone, so two moderators cannot both act on it.
func (s *Store) DecideHeld(ctx context.Context, d HeldDecision) (HeldResult, error) {
	var event, verb string
	switch d.State {
	case HeldApproved:
		event, verb = EventHeldApproved, "approve"
		if d.Envelope == nil {
			return HeldResult{}, fmt.Errorf("approve held message %d: %w: no envelope senders", d.HeldID, ErrInvalid)
		}
	case HeldRejected:
		event, verb = EventHeldRejected, "reject"
	case HeldDiscarded:
		event, verb = EventHeldDiscarded, "discard"
	default:
		return HeldResult{}, fmt.Errorf("decide held message %d: %w: state %q", d.HeldID, ErrInvalid, d.State)
	}
	var res HeldResult
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res = HeldResult{}
		h, err := scanHeld(tx.QueryRowContext(ctx, heldQuery+`WHERE h.id = ?`, d.HeldID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: held message %d", ErrNotFound, d.HeldID)
		}
		if err != nil {
			return err
		}
		res.Held = h
		if h.State != HeldHeld {
			return fmt.Errorf("held message %d was %s by %s at %s: %w", h.ID, h.State, h.DecidedBy, h.DecidedAt, ErrAlreadyDone)
		}
		now := s.now()
		if _, err := tx.ExecContext(ctx, `UPDATE held SET state = ?, decided_at = ?, decided_by = ? WHERE id = ? AND state = 'held'`,
			d.State, now, d.By, h.ID); err != nil {
			return err
		}
		// Whoever decided, the mail route to this decision is spent.
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE kind = ? AND list_id = ? AND data = ?`,
			TokenHeld, h.ListID, strconv.FormatInt(h.ID, 10)); err != nil {
			return err
		}
		if d.State == HeldApproved {
			n, err := acceptPost(ctx, tx, now, postRow{
				listID: h.ListID, messageID: h.MessageID, sender: h.Sender, subject: h.Subject,
				rule: "moderator", reason: "approved after hold (" + h.Reason + ")", acceptedBy: d.By,
			}, d.Envelope)
			if err != nil {
				return err
			}
			res.Deliveries = n
		}
		if res.Notices, err = storeNotices(ctx, tx, now, h.ListID, d.Notices); err != nil {
			return err
		}
		detail := fmt.Sprintf("held #%d, message %d, by %s", h.ID, h.MessageID, d.By)
		if d.Reason != "" {
			detail += ": " + d.Reason
		}
		return addEvent(ctx, tx, now, h.ListID, h.Sender, event, detail)
	})
	if err != nil {
		return HeldResult{}, fmt.Errorf("%s held message %d: %w", verb, d.HeldID, err)
	}
	return res, nil
}

// MessageSender returns the envelope sender a stored message arrived with
// ("" for the null sender <>) and its bytes.
func (s *Store) MessageSender(ctx context.Context, id int64) (sender string, body []byte, err error) {
	err = s.r.QueryRowContext(ctx, "SELECT sender, body FROM messages WHERE id = ?", id).Scan(&sender, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, fmt.Errorf("message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", nil, fmt.Errorf("message %d: %w", id, err)
	}
	return sender, body, nil
}

// IsMember reports whether addr is a member (role member) of listID.
func (s *Store) IsMember(ctx context.Context, listID int64, addr string) (bool, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM members WHERE list_id = ? AND address = ? AND role = 'member'`,
		listID, addr).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("membership of %s: %w", addr, err)
	}
	return n > 0, nil
}

// Unsubscribe removes addr's member row from listID and records why. It
// reports false, without error, when addr was not a member: a second
// one-click request for the same address is not a failure.
func (s *Store) Unsubscribe(ctx context.Context, listID int64, addr, how string) (bool, error) {
	removed := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM members WHERE list_id = ? AND address = ? AND role = 'member'`, listID, addr)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return nil
		}
		removed = true
		return addEvent(ctx, tx, s.now(), listID, addr, EventMemberRemoved, "role=member by "+how)
	})
	if err != nil {
		return false, fmt.Errorf("unsubscribe %s from list #%d: %w", addr, listID, err)
	}
	return removed, nil
}
