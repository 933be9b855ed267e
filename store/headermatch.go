package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// HeaderMatch is one of a list's header checks (Mailman's header_matches):
// a post whose Header field matches Pattern, regardless of case, gets
// Action.
type HeaderMatch struct {
	ID      int64  `json:"id"`
	List    string `json:"list"`
	Header  string `json:"header"`
	Pattern string `json:"pattern"`
	Action  string `json:"action"`
}

// headerMatchActions are what a header check may decide.
var headerMatchActions = []string{ActionAccept, ActionHold, ActionReject, ActionDiscard}

// CompileHeaderPattern compiles a header check's pattern as the posting
// rule uses it: regardless of case.
func CompileHeaderPattern(pattern string) (*regexp.Regexp, error) {
	return regexp.Compile("(?i)" + pattern)
}

// AddHeaderMatch appends a header check to a list; action "" means hold.
// The header name and the pattern are checked here, so that a mistake is
// told to the admin, not found while mail waits.
func (s *Store) AddHeaderMatch(ctx context.Context, list, header, pattern, action string) (HeaderMatch, error) {
	header = strings.ToLower(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(header), ":")))
	if header == "" || strings.ContainsAny(header, " \t:\r\n") {
		return HeaderMatch{}, fmt.Errorf("%w: header %q: want a field name such as subject or x-spam-flag", ErrInvalid, header)
	}
	if _, err := CompileHeaderPattern(pattern); err != nil || pattern == "" {
		return HeaderMatch{}, fmt.Errorf("%w: pattern %q: want a regular expression: %v", ErrInvalid, pattern, err)
	}
	if action == "" {
		action = ActionHold
	}
	if !slices.Contains(headerMatchActions, action) {
		return HeaderMatch{}, fmt.Errorf("%w: action %q: want %s", ErrInvalid, action, strings.Join(headerMatchActions, ", "))
	}
	l, err := s.GetList(ctx, list)
	if err != nil {
		return HeaderMatch{}, err
	}
	hm := HeaderMatch{List: l.Address, Header: header, Pattern: pattern, Action: action}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		r, err := tx.ExecContext(ctx, `INSERT INTO header_matches (list_id, header, pattern, action, created_at) VALUES (?, ?, ?, ?, ?)`,
			l.ID, header, pattern, action, now)
		if err != nil {
			return err
		}
		if hm.ID, err = r.LastInsertId(); err != nil {
			return err
		}
		return addEvent(ctx, tx, now, l.ID, "", EventHeaderMatchAdded, fmt.Sprintf("#%d %s: %s -> %s", hm.ID, header, pattern, action))
	})
	if err != nil {
		return HeaderMatch{}, fmt.Errorf("add header check to %s: %w", list, err)
	}
	return hm, nil
}

// HeaderMatches returns a list's header checks in the order they apply
// (the order they were added).
func (s *Store) HeaderMatches(ctx context.Context, list string) ([]HeaderMatch, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT h.id, l.address, h.header, h.pattern, h.action
		FROM header_matches h JOIN lists l ON l.id = h.list_id WHERE l.address = ? ORDER BY h.id`, list)
	if err != nil {
		return nil, fmt.Errorf("header checks of %s: %w", list, err)
	}
	defer rows.Close()
	var out []HeaderMatch
	for rows.Next() {
		var h HeaderMatch
		if err := rows.Scan(&h.ID, &h.List, &h.Header, &h.Pattern, &h.Action); err != nil {
			return nil, fmt.Errorf("header checks of %s: %w", list, err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// RemoveHeaderMatch deletes header check id of a list.
func (s *Store) RemoveHeaderMatch(ctx context.Context, list string, id int64) error {
	l, err := s.GetList(ctx, list)
	if err != nil {
		return err
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM header_matches WHERE id = ? AND list_id = ?`, id, l.ID)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: header check %d of %s", ErrNotFound, id, l.Address)
		}
		return addEvent(ctx, tx, s.now(), l.ID, "", EventHeaderMatchRemoved, fmt.Sprintf("#%d", id))
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("remove header check %d of %s: %w", id, list, err)
	}
	return err
}
