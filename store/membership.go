package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"postlist/address"
)

// This file holds what the email interface writes and reads: pending
// subscription and unsubscription requests (tokens rows), their
// completion, and the finishing of -request, -join, -leave, -confirm and
// -owner intake rows together with the replies they cause.
//
// A request is a tokens row, never a members row, until it is confirmed.
// Completing one deletes its token in the same transaction that adds or
// removes the member, so a token works exactly once even when two
// confirmations race.

// Token kinds (tokens.kind).
const (
	TokenSubscribe   = "subscribe"
	TokenUnsubscribe = "unsubscribe"
	TokenHeld        = "held"
	// TokenModerate waits for a moderator; its Data is the request it
	// approves (TokenSubscribe or TokenUnsubscribe).
	TokenModerate = "moderate"
)

// Event kinds written by the email interface (events.kind). Removals use
// EventMemberRemoved, which the address index reads to keep accepting a
// removed member's bounces for a while.
const (
	EventSubscribeRequested   = "subscribe_requested"
	EventUnsubscribeRequested = "unsubscribe_requested"
	EventModerationRequested  = "membership_moderation_requested"
	EventMemberAdded          = "member_added"
	EventTokenExpired         = "token_expired"
	EventOwnerMailForwarded   = "owner_mail_forwarded"
)

// ErrPending means a request of the same kind for the same address is
// already waiting: Mailman refuses a second one rather than mail the
// person again, which also stops strangers from mail-bombing an address
// with confirmation requests.
var ErrPending = errors.New("a request is already pending")

// Token is a pending request.
type Token struct {
	Token       string    `json:"token"`
	ListID      int64     `json:"-"`
	List        string    `json:"list"`
	Kind        string    `json:"kind"`
	Address     string    `json:"address"`
	DisplayName string    `json:"display_name,omitempty"`
	Data        string    `json:"data,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func validTokenKind(k string) bool {
	switch k {
	case TokenSubscribe, TokenUnsubscribe, TokenHeld, TokenModerate:
		return true
	}
	return false
}

// tokenEvent is the event recorded when a token of kind is created.
func tokenEvent(t Token) (kind, detail string) {
	prefix := t.Token
	if len(prefix) > 8 {
		prefix = prefix[:8]
	}
	switch t.Kind {
	case TokenSubscribe:
		kind = EventSubscribeRequested
	case TokenUnsubscribe:
		kind = EventUnsubscribeRequested
	default:
		kind = EventModerationRequested
	}
	detail = "token " + prefix + "..., expires " + FormatTime(t.ExpiresAt)
	if t.Data != "" {
		detail = t.Data + ", " + detail
	}
	return kind, detail
}

// AddToken stores a pending request and the notices that carry its token
// (the confirmation request) in one transaction, with an event. A live
// request of the same kind (and, for TokenModerate, the same Data) for the
// same address on the same list gives ErrPending and stores nothing.
func (s *Store) AddToken(ctx context.Context, t Token, notices []Notice) error {
	if !validTokenKind(t.Kind) || t.Token == "" || t.Address == "" || t.ListID == 0 {
		return fmt.Errorf("add token: %w: kind %q, address %q", ErrInvalid, t.Kind, t.Address)
	}
	if t.Kind == TokenSubscribe {
		// The confirmation request would fail, and the member it makes
		// would fail every post: refused with the same rule as members add.
		if err := address.Deliverable(t.Address); err != nil {
			return fmt.Errorf("add token: %w: %w", ErrInvalid, err)
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		return addToken(ctx, tx, s.now(), t, notices)
	})
	if err != nil {
		return fmt.Errorf("add %s request for %s: %w", t.Kind, t.Address, err)
	}
	return nil
}

func addToken(ctx context.Context, tx *sql.Tx, now string, t Token, notices []Notice) error {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM tokens
		WHERE list_id = ? AND address = ? AND kind = ? AND data = ? AND expires_at > ?`,
		t.ListID, t.Address, t.Kind, t.Data, now).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return ErrPending
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO tokens (token, list_id, kind, address, display_name, data, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		t.Token, t.ListID, t.Kind, t.Address, t.DisplayName, t.Data, now, FormatTime(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("insert token: %w", err)
	}
	if _, err := storeNotices(ctx, tx, now, t.ListID, notices); err != nil {
		return err
	}
	kind, detail := tokenEvent(t)
	return addEvent(ctx, tx, now, t.ListID, t.Address, kind, detail)
}

const tokenQuery = `SELECT t.token, t.list_id, l.address, t.kind, t.address, t.display_name, t.data, t.created_at, t.expires_at
	FROM tokens t JOIN lists l ON l.id = t.list_id `

func scanToken(sc interface{ Scan(...any) error }) (Token, error) {
	var t Token
	var created, expires string
	if err := sc.Scan(&t.Token, &t.ListID, &t.List, &t.Kind, &t.Address, &t.DisplayName, &t.Data, &created, &expires); err != nil {
		return Token{}, err
	}
	var err error
	if t.CreatedAt, err = ParseTime(created); err != nil {
		return Token{}, fmt.Errorf("token created_at %q: %w", created, err)
	}
	if t.ExpiresAt, err = ParseTime(expires); err != nil {
		return Token{}, fmt.Errorf("token expires_at %q: %w", expires, err)
	}
	return t, nil
}

// LiveToken returns a request that has not expired. An unknown, used or
// expired token is ErrNotFound: to the person holding it they are all the
// same "did not match".
func (s *Store) LiveToken(ctx context.Context, token string) (*Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, tokenQuery+`WHERE t.token = ? AND t.expires_at > ?`, token, s.now()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: token", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read token: %w", err)
	}
	return &t, nil
}

// PendingTokens returns the live requests of a list ("" for every list),
// oldest first.
func (s *Store) PendingTokens(ctx context.Context, list string) ([]Token, error) {
	rows, err := s.r.QueryContext(ctx, tokenQuery+`WHERE t.expires_at > ? AND (? = '' OR l.address = ?) ORDER BY t.created_at, t.token`,
		s.now(), list, list)
	if err != nil {
		return nil, fmt.Errorf("pending requests: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("pending requests: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pending requests: %w", err)
	}
	return out, nil
}

// TokenCompletion says what completing a request does.
type TokenCompletion struct {
	// Token is the request; it must still be live, and is deleted.
	Token string
	// Action is TokenSubscribe (add the address as a member),
	// TokenUnsubscribe (remove it) or TokenModerate (hand the request to
	// the moderators as Next). It must be what the token asks for: its
	// kind, or for a TokenModerate token its Data; any request may move on
	// to TokenModerate.
	Action string
	// Next is the moderation request that replaces the token
	// (Action TokenModerate).
	Next *Token
	// By says who completed it, for the event ("email confirmation",
	// "moderator").
	By string
	// Notices returns what to send, given whether the membership changed
	// (false: the address was already a member, or already gone). It runs
	// inside the transaction and must not block.
	Notices func(changed bool) []Notice
}

// TokenResult says what CompleteToken did.
type TokenResult struct {
	Token Token // the request as it was
	// Changed is false when the address already was a member (subscribe)
	// or no longer was one (unsubscribe).
	Changed bool
}

// CompleteToken carries out a request in one transaction: the token is
// deleted, the member added or removed (or the request handed on to the
// moderators), an event recorded and the notices queued. A token that is
// unknown, used or expired gives ErrNotFound.
func (s *Store) CompleteToken(ctx context.Context, c TokenCompletion) (TokenResult, error) {
	var res TokenResult
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res = TokenResult{}
		now := s.now()
		t, err := scanToken(tx.QueryRowContext(ctx, tokenQuery+`WHERE t.token = ? AND t.expires_at > ?`, c.Token, now))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: token", ErrNotFound)
		}
		if err != nil {
			return err
		}
		res.Token = t
		want := t.Kind
		if t.Kind == TokenModerate {
			want = t.Data
		}
		if c.Action != want && c.Action != TokenModerate {
			return fmt.Errorf("%w: a %s request cannot be completed by %s", ErrInvalid, want, c.Action)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE token = ?`, t.Token); err != nil {
			return err
		}
		switch c.Action {
		case TokenSubscribe:
			// A request stored before the rule existed still may not
			// make an undeliverable member.
			if err := address.Deliverable(t.Address); err != nil {
				return fmt.Errorf("add member: %w: %w", ErrInvalid, err)
			}
			r, err := tx.ExecContext(ctx, `INSERT INTO members (id, list_id, address, display_name, role, created_at)
				VALUES (`+nextIDMembers+`, ?, ?, ?, 'member', ?) ON CONFLICT (list_id, address, role) DO NOTHING`,
				t.ListID, t.Address, t.DisplayName, now)
			if err != nil {
				return fmt.Errorf("add member: %w", err)
			}
			if n, _ := r.RowsAffected(); n > 0 {
				res.Changed = true
				if err := addEvent(ctx, tx, now, t.ListID, t.Address, EventMemberAdded, "role=member by "+c.By); err != nil {
					return err
				}
			}
		case TokenUnsubscribe:
			changed, err := removeMember(ctx, tx, now, t.ListID, t.Address, c.By)
			if err != nil {
				return err
			}
			res.Changed = changed
		case TokenModerate:
			if c.Next == nil {
				return fmt.Errorf("%w: moderation step without a new token", ErrInvalid)
			}
			next := *c.Next
			next.ListID, next.Kind = t.ListID, TokenModerate
			if next.Data == "" {
				next.Data = want
			}
			// The moderators' notices are stored with the new token below.
			if err := addToken(ctx, tx, now, next, nil); err != nil {
				return err
			}
			res.Changed = true
		default:
			return fmt.Errorf("%w: action %q", ErrInvalid, c.Action)
		}
		if c.Notices != nil {
			if _, err := storeNotices(ctx, tx, now, t.ListID, c.Notices(res.Changed)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return TokenResult{}, fmt.Errorf("complete request: %w", err)
	}
	return res, nil
}

// removeMember deletes addr's member row and records the removal.
func removeMember(ctx context.Context, tx *sql.Tx, now string, listID int64, addr, by string) (bool, error) {
	r, err := tx.ExecContext(ctx, `DELETE FROM members WHERE list_id = ? AND address = ? AND role = 'member'`, listID, addr)
	if err != nil {
		return false, fmt.Errorf("remove member: %w", err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return false, nil
	}
	return true, addEvent(ctx, tx, now, listID, addr, EventMemberRemoved, "role=member by "+by)
}

// LeaveList removes addr's member row at once (a list whose
// unsubscription policy is open) and queues notices(true) with it. It
// reports false, without error, when addr was not a member.
func (s *Store) LeaveList(ctx context.Context, listID int64, addr, by string, notices func() []Notice) (bool, error) {
	removed := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		var err error
		if removed, err = removeMember(ctx, tx, now, listID, addr, by); err != nil || !removed {
			return err
		}
		if notices != nil {
			_, err = storeNotices(ctx, tx, now, listID, notices())
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("remove %s from list #%d: %w", addr, listID, err)
	}
	return removed, nil
}

// PurgeExpiredTokens deletes the requests that expired, each with an
// event, and the expired tokens of held posts (no event: the held post
// itself stays, for the command line), and returns how many tokens went.
// Expired tokens are already refused everywhere; deleting them keeps the
// table, and the address index built from it, small.
func (s *Store) PurgeExpiredTokens(ctx context.Context) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		rows, err := tx.QueryContext(ctx, `DELETE FROM tokens WHERE expires_at <= ? AND kind <> 'held'
			RETURNING list_id, address, kind, data`, now)
		if err != nil {
			return err
		}
		type gone struct {
			list             int64
			addr, kind, data string
		}
		var all []gone
		for rows.Next() {
			var g gone
			if err := rows.Scan(&g.list, &g.addr, &g.kind, &g.data); err != nil {
				rows.Close()
				return err
			}
			all = append(all, g)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, g := range all {
			what := g.kind
			if g.data != "" {
				what += " (" + g.data + ")"
			}
			if err := addEvent(ctx, tx, now, g.list, g.addr, EventTokenExpired, what+" request expired unconfirmed"); err != nil {
				return err
			}
		}
		r, err := tx.ExecContext(ctx, "DELETE FROM tokens WHERE kind = 'held' AND expires_at <= ?", now)
		if err != nil {
			return err
		}
		held, err := r.RowsAffected()
		n = len(all) + int(held)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge expired requests: %w", err)
	}
	return n, nil
}

// OwnerMailRecipients returns who receives mail sent to a list's -owner
// address: its owners, and its moderators unless owner_mail_to_moderators
// is off; only those whose delivery is enabled, each address once.
func (s *Store) OwnerMailRecipients(ctx context.Context, listID int64) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT min(m.address) FROM members m JOIN lists l ON l.id = m.list_id
		WHERE m.list_id = ? AND m.delivery_status = 'enabled'
		  AND (m.role = 'owner' OR (m.role = 'moderator' AND l.owner_mail_to_moderators = 1))
		GROUP BY lower(m.address) ORDER BY lower(m.address)`, listID)
	if err != nil {
		return nil, fmt.Errorf("owner mail recipients of list #%d: %w", listID, err)
	}
	out, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("owner mail recipients of list #%d: %w", listID, err)
	}
	return out, nil
}

// FinishedIntake finishes one intake row of the email interface.
type FinishedIntake struct {
	// IntakeID is the row; it must still be new.
	IntakeID int64
	// ListID is the list the row was for (0 if it is gone).
	ListID int64
	// Result says what was done and why, for intake.result.
	Result string
	// Notices are stored and queued (replies, forwarded bounces).
	Notices []Notice
	// Forward queues the intake's own stored message (MessageID) to
	// these recipients unchanged, as owner mail is passed on.
	MessageID int64
	Forward   []NewDelivery
	// Event, when set, is recorded for Address with Detail.
	Event, Address, Detail string
}

// FinishIntake marks an intake row done together with the mail it causes,
// in one transaction: a crash leaves the row either untouched (processed
// again) or finished with its replies queued, never answered twice. A row
// no longer new gives ErrAlreadyDone.
func (s *Store) FinishIntake(ctx context.Context, d FinishedIntake) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		r, err := tx.ExecContext(ctx, `UPDATE intake SET state = 'done', result = ?, processed_at = ? WHERE id = ? AND state = 'new'`,
			d.Result, now, d.IntakeID)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return fmt.Errorf("intake row %d: %w", d.IntakeID, ErrAlreadyDone)
		}
		if _, err := storeNotices(ctx, tx, now, d.ListID, d.Notices); err != nil {
			return err
		}
		if len(d.Forward) > 0 {
			if _, err := insertDeliveries(ctx, tx, now, d.MessageID, d.ListID, d.Forward); err != nil {
				return err
			}
		}
		if d.Event == "" {
			return nil
		}
		var list any
		if d.ListID != 0 {
			list = d.ListID
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO events (at, list_id, address, kind, detail) VALUES (?, ?, ?, ?, ?)`,
			now, list, d.Address, d.Event, d.Detail)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish intake row %d: %w", d.IntakeID, err)
	}
	return nil
}

// IntakeByMessageID returns the intake rows of the messages whose
// Message-ID header is msgID (with or without angle brackets), oldest
// first: "what became of the mail with this Message-ID".
func (s *Store) IntakeByMessageID(ctx context.Context, msgID string) ([]IntakeItem, error) {
	id := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(msgID), "<"), ">")
	rows, err := s.r.QueryContext(ctx, `SELECT i.id, i.message_id, coalesce(l.address, ''), i.recipient, i.kind, i.extension,
	             i.state, i.result, i.received_at, m.sender, m.message_id, m.queue_id, m.size
	      FROM messages m JOIN intake i ON i.message_id = m.id LEFT JOIN lists l ON l.id = i.list_id
	      WHERE m.message_id IN (?, ?) ORDER BY i.id`, id, "<"+id+">")
	if err != nil {
		return nil, fmt.Errorf("intake of message %s: %w", msgID, err)
	}
	defer rows.Close()
	var out []IntakeItem
	for rows.Next() {
		var it IntakeItem
		if err := rows.Scan(&it.ID, &it.MessageID, &it.List, &it.Recipient, &it.Kind, &it.Extension,
			&it.State, &it.Result, &it.ReceivedAt, &it.Sender, &it.HeaderMessageID, &it.QueueID, &it.Size); err != nil {
			return nil, fmt.Errorf("intake of message %s: %w", msgID, err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("intake of message %s: %w", msgID, err)
	}
	return out, nil
}
