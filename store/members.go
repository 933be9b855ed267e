package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"postlist/address"
)

// Roles a subscriber row can have.
var Roles = []string{"member", "owner", "moderator", "nonmember"}

// ValidRole reports whether r is one of Roles.
func ValidRole(r string) bool {
	for _, x := range Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Member is one row of the members table.
type Member struct {
	List               string  `json:"list"`
	Address            string  `json:"address"`
	DisplayName        string  `json:"display_name,omitempty"`
	Role               string  `json:"role"`
	DeliveryStatus     string  `json:"delivery_status"`
	DeliveryMode       string  `json:"delivery_mode"`
	ModerationAction   string  `json:"moderation_action,omitempty"`
	ReceiveOwnPostings bool    `json:"receive_own_postings"`
	BounceScore        float64 `json:"bounce_score"`
	LastBounceAt       string  `json:"last_bounce_at,omitempty"`
	CreatedAt          string  `json:"created_at"`
}

// NewMember is one address to add.
type NewMember struct {
	Address     string
	DisplayName string
}

// AddResult reports what a bulk add did.
type AddResult struct {
	Added    int      `json:"added"`
	Existing []string `json:"existing,omitempty"`
}

// AddMembers adds addresses (already normalised) with one role, in one
// transaction: either all rows land or none do. An address postlist could
// not deliver to (address.Deliverable) is refused with ErrInvalid and the
// reason, before anything is written: a member that every post would fail
// for is better refused at the door than found in the delivery log.
// progress, if not nil, is called as rows are written so the CLI can draw
// a bar for large imports.
func (s *Store) AddMembers(ctx context.Context, list string, role string, ms []NewMember, progress func(done int)) (AddResult, error) {
	var res AddResult
	if !ValidRole(role) {
		return res, fmt.Errorf("%w: role %q: want one of %s", ErrInvalid, role, strings.Join(Roles, ", "))
	}
	for _, m := range ms {
		if err := address.Deliverable(m.Address); err != nil {
			return res, fmt.Errorf("add members to %s: %w: %w", list, ErrInvalid, err)
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		lid, err := listID(ctx, tx, list)
		if err != nil {
			return err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO members (id, list_id, address, display_name, role) VALUES (`+nextIDMembers+`, ?, ?, ?, ?)
			ON CONFLICT (list_id, address, role) DO NOTHING`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i, m := range ms {
			r, err := ins.ExecContext(ctx, lid, m.Address, m.DisplayName, role)
			if err != nil {
				return fmt.Errorf("add %s: %w", m.Address, err)
			}
			if n, _ := r.RowsAffected(); n == 0 {
				res.Existing = append(res.Existing, m.Address)
			} else {
				res.Added++
			}
			if progress != nil && (i+1)%1000 == 0 {
				progress(i + 1)
			}
		}
		if progress != nil {
			progress(len(ms))
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO events (list_id, kind, detail) VALUES (?, 'members_added', ?)",
			lid, fmt.Sprintf("%d %s(s) added", res.Added, role))
		return err
	})
	if err != nil {
		return AddResult{}, fmt.Errorf("add members to %s: %w", list, err)
	}
	return res, nil
}

func listID(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, list string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, "SELECT id FROM lists WHERE address = ?", list).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: list %s", ErrNotFound, list)
	}
	return id, err
}

// RemoveMembers removes addresses with the given role and returns those
// that were not there. Each removal is an event, which is also how the
// milter knows a recently removed member may still bounce.
func (s *Store) RemoveMembers(ctx context.Context, list, role string, addrs []string) (missing []string, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		lid, err := listID(ctx, tx, list)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			r, err := tx.ExecContext(ctx, "DELETE FROM members WHERE list_id = ? AND address = ? AND role = ?", lid, a, role)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n == 0 {
				missing = append(missing, a)
				continue
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO events (list_id, address, kind, detail) VALUES (?, ?, 'member_removed', ?)", lid, a, "role="+role+" by admin"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("remove members from %s: %w", list, err)
	}
	return missing, nil
}

// Members lists a list's rows with a role ("" for every role).
func (s *Store) Members(ctx context.Context, list, role string) ([]Member, error) {
	if role != "" && !ValidRole(role) {
		return nil, fmt.Errorf("%w: role %q: want one of %s", ErrInvalid, role, strings.Join(Roles, ", "))
	}
	rows, err := s.r.QueryContext(ctx, `
		SELECT l.address, m.address, m.display_name, m.role, m.delivery_status, m.delivery_mode,
		       coalesce(m.moderation_action, ''), m.receive_own_postings, m.bounce_score,
		       coalesce(m.last_bounce_at, ''), m.created_at
		FROM members m JOIN lists l ON l.id = m.list_id
		WHERE l.address = ? AND (? = '' OR m.role = ?)
		ORDER BY m.role, m.address`, list, role, role)
	if err != nil {
		return nil, fmt.Errorf("list members of %s: %w", list, err)
	}
	defer rows.Close()
	var out []Member
	for rows.Next() {
		var m Member
		if err := rows.Scan(&m.List, &m.Address, &m.DisplayName, &m.Role, &m.DeliveryStatus, &m.DeliveryMode,
			&m.ModerationAction, &m.ReceiveOwnPostings, &m.BounceScore, &m.LastBounceAt, &m.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if out == nil {
		if _, err := listID(ctx, s.r, list); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// memberSettings maps `members set` keys to their allowed values.
var memberSettings = map[string][]string{
	"moderation_action":    {"accept", "hold", "reject", "discard", "defer", "default"},
	"delivery_status":      {"enabled", "by_user", "by_moderator"},
	"delivery_mode":        {"regular", "plaintext_digests", "mime_digests", "summary_digests"},
	"receive_own_postings": {"yes", "no"},
	"display_name":         nil,
}

// MemberSettingNames lists the keys `members set` accepts.
func MemberSettingNames() []string {
	return []string{"moderation_action", "delivery_status", "delivery_mode", "receive_own_postings", "display_name"}
}

// SetMember changes one member setting. The row is the address's member
// row, or for moderation_action a nonmember row created on demand, as
// Mailman does to moderate a specific outsider.
func (s *Store) SetMember(ctx context.Context, list, addr, key, value string) error {
	allowed, ok := memberSettings[key]
	if !ok {
		return fmt.Errorf("%w: unknown member setting %q: want one of %s", ErrInvalid, key, strings.Join(MemberSettingNames(), ", "))
	}
	if allowed != nil && !contains(allowed, value) {
		return fmt.Errorf("%w: %s: %q: want one of %s", ErrInvalid, key, value, strings.Join(allowed, ", "))
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Errorf("%w: %s: control characters are not allowed", ErrInvalid, key)
	}
	var v any = value
	switch {
	case key == "receive_own_postings":
		v = 0
		if value == "yes" {
			v = 1
		}
	case key == "moderation_action" && value == "default":
		v = nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		lid, err := listID(ctx, tx, list)
		if err != nil {
			return err
		}
		roles := "('member')"
		if key == "moderation_action" {
			roles = "('member','nonmember')"
		}
		// key and roles come from the fixed tables above, never from input.
		res, err := tx.ExecContext(ctx, "UPDATE members SET "+key+" = ? WHERE list_id = ? AND address = ? AND role IN "+roles, v, lid, addr)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if key != "moderation_action" {
				return fmt.Errorf("%w: %s is not a member of %s", ErrNotFound, addr, list)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO members (id, list_id, address, role, moderation_action) VALUES ("+nextIDMembers+", ?, ?, 'nonmember', ?)", lid, addr, v); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO events (list_id, address, kind, detail) VALUES (?, ?, 'member_changed', ?)", lid, addr, key+"="+value)
		return err
	})
	if err != nil {
		return fmt.Errorf("set %s for %s on %s: %w", key, addr, list, err)
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// Ban bans an address or, when it starts with ^, a regular expression of
// addresses, from a list. A bad regular expression is refused here rather
// than failing silently at match time.
func (s *Store) Ban(ctx context.Context, list, pattern string) error {
	if strings.HasPrefix(pattern, "^") {
		if _, err := regexp.Compile("(?i)" + pattern); err != nil {
			return fmt.Errorf("%w: ban pattern %q: %v", ErrInvalid, pattern, err)
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		lid, err := listID(ctx, tx, list)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO bans (list_id, pattern) VALUES (?, ?) ON CONFLICT DO NOTHING", lid, pattern); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO events (list_id, address, kind) VALUES (?, ?, 'banned')", lid, pattern)
		return err
	})
	if err != nil {
		return fmt.Errorf("ban %s on %s: %w", pattern, list, err)
	}
	return nil
}

// Bans returns a list's ban patterns.
func (s *Store) Bans(ctx context.Context, list string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT b.pattern FROM bans b JOIN lists l ON l.id = b.list_id WHERE l.address = ? ORDER BY b.pattern`, list)
	if err != nil {
		return nil, fmt.Errorf("list bans of %s: %w", list, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Banned reports whether addr matches one of the list's bans.
func (s *Store) Banned(ctx context.Context, list, addr string) (bool, error) {
	pats, err := s.Bans(ctx, list)
	if err != nil {
		return false, err
	}
	for _, p := range pats {
		if strings.HasPrefix(p, "^") {
			re, err := regexp.Compile("(?i)" + p)
			if err == nil && re.MatchString(addr) {
				return true, nil
			}
		} else if strings.EqualFold(p, addr) {
			return true, nil
		}
	}
	return false, nil
}
