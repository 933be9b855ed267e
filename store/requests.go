package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// This file holds what an admin does to pending requests from the command
// line, beside the email interface of membership.go: finding a request by
// the token prefix a table shows, and dropping one a moderator refuses.

// EventRequestDiscarded is recorded when a moderator drops a request
// waiting for them. By mail a moderator refuses by letting the request
// expire (EventTokenExpired); this event tells the two apart.
const EventRequestDiscarded = "membership_request_discarded"

// LiveTokensByPrefix returns the live requests, of every kind, whose token
// starts with prefix, oldest first. Admins copy tokens from tables that
// show only their first characters, so the caller decides how long a
// prefix must be and what two matches mean.
func (s *Store) LiveTokensByPrefix(ctx context.Context, prefix string) ([]Token, error) {
	if prefix == "" {
		return nil, fmt.Errorf("requests by token prefix: %w: empty prefix", ErrInvalid)
	}
	rows, err := s.r.QueryContext(ctx, tokenQuery+`WHERE substr(t.token, 1, ?) = ? AND t.expires_at > ? ORDER BY t.created_at, t.token`,
		len(prefix), prefix, s.now())
	if err != nil {
		return nil, fmt.Errorf("requests with token %s...: %w", prefix, err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("requests with token %s...: %w", prefix, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("requests with token %s...: %w", prefix, err)
	}
	return out, nil
}

// DiscardRequest deletes a live request waiting for a moderator (a
// TokenModerate token) and records who dropped it. Nobody is told, as when
// the request expires: the person may ask again. An unknown, used or
// expired token gives ErrNotFound; a token of another kind gives
// ErrInvalid and is left alone, since it is the person's own to confirm
// (or a held post's, decided through the held queue).
func (s *Store) DiscardRequest(ctx context.Context, token, by string) (Token, error) {
	var t Token
	err := s.tx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		var err error
		t, err = scanToken(tx.QueryRowContext(ctx, tokenQuery+`WHERE t.token = ? AND t.expires_at > ?`, token, now))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: token", ErrNotFound)
		}
		if err != nil {
			return err
		}
		if t.Kind != TokenModerate {
			return fmt.Errorf("%w: a %s token does not wait for a moderator", ErrInvalid, t.Kind)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE token = ?`, t.Token); err != nil {
			return fmt.Errorf("delete token: %w", err)
		}
		prefix := t.Token
		if len(prefix) > 8 {
			prefix = prefix[:8]
		}
		detail := fmt.Sprintf("%s request discarded by %s, token %s...", t.Data, by, prefix)
		return addEvent(ctx, tx, now, t.ListID, t.Address, EventRequestDiscarded, detail)
	})
	if err != nil {
		return Token{}, fmt.Errorf("discard request: %w", err)
	}
	return t, nil
}
