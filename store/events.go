package store

import (
	"context"
	"fmt"
	"strings"
)

// EventQuery selects events for RecentEvents; zero fields select all.
type EventQuery struct {
	List    string   // a list's posting address
	Address string   // the address an event is about (case-insensitive)
	Kinds   []string // any of these kinds
	Limit   int      // at most this many; 0 for no limit
}

// RecentEvents returns the events q selects, newest first. The events
// table is never purged, so unlike EventLog it stops at q.Limit in SQL
// rather than read a site's whole history to show its last screenful.
func (s *Store) RecentEvents(ctx context.Context, q EventQuery) ([]Event, error) {
	var where []string
	var args []any
	if q.List != "" {
		where = append(where, `e.list_id = (SELECT id FROM lists WHERE address = ?)`)
		args = append(args, q.List)
	}
	if q.Address != "" {
		where = append(where, `e.address = ?`)
		args = append(args, q.Address)
	}
	if len(q.Kinds) > 0 {
		where = append(where, `e.kind IN (?`+strings.Repeat(", ?", len(q.Kinds)-1)+`)`)
		for _, k := range q.Kinds {
			args = append(args, k)
		}
	}
	sqlText := `SELECT e.id, e.at, coalesce(l.address, ''), e.address, e.kind, e.detail
		FROM events e LEFT JOIN lists l ON l.id = e.list_id`
	if len(where) > 0 {
		sqlText += ` WHERE ` + strings.Join(where, ` AND `)
	}
	sqlText += ` ORDER BY e.id DESC`
	if q.Limit > 0 {
		sqlText += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := s.r.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.At, &e.List, &e.Address, &e.Kind, &e.Detail); err != nil {
			return nil, fmt.Errorf("recent events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	return out, nil
}
