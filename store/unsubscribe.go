package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// What a one-click unsubscribe link (pipeline.UnsubscribeURL) is checked
// against: the list by its RFC 2919 List-Id (ListByListID, in lists.go
// with the other list lookups), which names the list and not a row, and
// the address's subscription by its creation time. The link carries the
// second it was made and is honoured only for a subscription created no
// later, so that removing the list or the subscription, and creating it
// again, invalidates every link made before. The subscription is then
// removed by its member row id, which is never reused (migration 0120).

// Subscription returns the id and creation time of addr's member row
// (role member) on listID; id 0 if addr is not subscribed. A new
// subscription of the same address gets a new id and a new creation time.
func (s *Store) Subscription(ctx context.Context, listID int64, addr string) (id int64, created time.Time, err error) {
	stmt, err := s.subscriptionStmt(ctx)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("subscription of %s: %w", addr, err)
	}
	var at string
	err = stmt.QueryRowContext(ctx, listID, addr).Scan(&id, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("subscription of %s: %w", addr, err)
	}
	if created, err = ParseTime(at); err != nil {
		return 0, time.Time{}, fmt.Errorf("subscription of %s: created_at %q: %w", addr, at, err)
	}
	return id, created, nil
}

// UnsubscribeSubscription removes the member row memberID (addr's
// subscription to listID) and records why. It reports false, without
// error, when that subscription is gone already: a second one-click
// request is not a failure, and one racing a re-subscription must not
// remove the new one.
func (s *Store) UnsubscribeSubscription(ctx context.Context, listID, memberID int64, addr, how string) (bool, error) {
	removed := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM members WHERE id = ? AND list_id = ? AND address = ? AND role = 'member'`, memberID, listID, addr)
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

// subscriptionStmt is Subscription's query, prepared once for the life
// of the store (Close closes it).
func (s *Store) subscriptionStmt(ctx context.Context) (*sql.Stmt, error) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.subStmt != nil {
		return s.subStmt, nil
	}
	stmt, err := s.r.PrepareContext(ctx, `SELECT id, created_at FROM members WHERE list_id = ? AND address = ? AND role = 'member'`)
	if err != nil {
		return nil, err
	}
	s.subStmt = stmt
	return stmt, nil
}
