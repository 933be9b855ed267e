package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// The address index (package index) keeps in memory everything the milter
// needs to answer a RCPT without touching the disk. It is rebuilt from the
// rows below whenever Generation changes. Rows are streamed to callbacks
// rather than returned as slices so that a million members are never held
// twice (once here, once in the index).

// IndexDomain is a list domain, or an alias of one (AliasOf set).
type IndexDomain struct {
	Name    string
	AliasOf string
}

// IndexList is a list with the settings decided at SMTP time.
type IndexList struct {
	ID                     int64
	Address                string // posting address, lower-case
	ListID                 string // RFC 2919 list-id, e.g. test.lists.example.org
	DefaultNonmemberAction string
	MaxMessageSize         int64 // KiB as stored (Mailman's unit); 0 means no limit
	HoldOversize           bool  // oversize_action hold: a big post is held, not refused
	AcceptUnsignedVERP     bool  // accept_unsigned_verp: Mailman's unsigned -bounces+ form is welcome
}

// IndexMember is one members row as the index sees it: every role but
// nonmember may post and receives list mail, so only a nonmember row's
// role matters, together with its explicit moderation action.
type IndexMember struct {
	ListID           int64
	Address          string
	Nonmember        bool
	ModerationAction string // nonmember rows only; "" when the list default applies
}

// IndexRemoved is a member removal recorded in events: bounces for mail
// sent before the removal still name that address.
type IndexRemoved struct {
	ListID  int64
	Address string
}

// IndexToken is a pending confirmation.
type IndexToken struct {
	ListID    int64
	Token     string
	ExpiresAt time.Time
}

// IndexBan is a ban pattern; ListID 0 bans site-wide.
type IndexBan struct {
	ListID  int64
	Pattern string
}

// IndexVisitor receives the rows of one consistent snapshot. Nil callbacks
// skip their table. A callback's error stops the scan and is returned.
type IndexVisitor struct {
	Domain  func(IndexDomain) error
	List    func(IndexList) error
	Member  func(IndexMember) error
	Removed func(IndexRemoved) error
	Token   func(IndexToken) error
	Ban     func(IndexBan) error
}

// ScanIndex streams domains, lists, members, member removals since
// removedSince, unexpired tokens and bans to v, all read in one read
// transaction so they describe one state of the database, and returns the
// generation of that state. A change committed while the scan runs is not
// seen, and shows up as a newer Generation on the next poll.
func (s *Store) ScanIndex(ctx context.Context, removedSince time.Time, v IndexVisitor) (int64, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("scan index: begin: %w", classify(err))
	}
	// Read-only: nothing to commit, and Rollback ends the WAL snapshot.
	defer tx.Rollback()

	// Reading the generation first pins the WAL snapshot the rest of the
	// scan reads from, so the number describes exactly these rows.
	var gen int64
	if err := tx.QueryRowContext(ctx, "SELECT value FROM generation WHERE id = 1").Scan(&gen); err != nil {
		return 0, fmt.Errorf("scan index: generation: %w", classify(err))
	}

	steps := []struct {
		name  string
		query string
		args  []any
		do    func(*sql.Rows) error
		skip  bool
	}{
		{
			name:  "domains",
			query: `SELECT d.name, coalesce(a.name, '') FROM domains d LEFT JOIN domains a ON a.id = d.alias_of`,
			skip:  v.Domain == nil,
			do: func(r *sql.Rows) error {
				var d IndexDomain
				if err := r.Scan(&d.Name, &d.AliasOf); err != nil {
					return err
				}
				return v.Domain(d)
			},
		},
		{
			name: "lists",
			query: `SELECT id, lower(address), list_id, default_nonmember_action, max_message_size, accept_unsigned_verp,
				oversize_action = 'hold' FROM lists`,
			skip: v.List == nil,
			do: func(r *sql.Rows) error {
				var l IndexList
				if err := r.Scan(&l.ID, &l.Address, &l.ListID, &l.DefaultNonmemberAction, &l.MaxMessageSize, &l.AcceptUnsignedVERP, &l.HoldOversize); err != nil {
					return err
				}
				return v.List(l)
			},
		},
		{
			// The bulk of a big site. Reading it row by row costs a cgo
			// call and a string per member (0.65 s for a million), so
			// SQLite joins each list's addresses into one string, read
			// straight from the unique (list_id, address, role) index.
			// NUL cannot occur in an address and separates them.
			name:  "members",
			query: `SELECT list_id, group_concat(address, char(0)) FROM members WHERE role <> 'nonmember' GROUP BY list_id`,
			skip:  v.Member == nil,
			do: func(r *sql.Rows) error {
				var id int64
				var all string
				if err := r.Scan(&id, &all); err != nil {
					return err
				}
				for a := range strings.SplitSeq(all, "\x00") {
					if err := v.Member(IndexMember{ListID: id, Address: a}); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			name:  "nonmembers",
			query: `SELECT list_id, address, coalesce(moderation_action, '') FROM members WHERE role = 'nonmember'`,
			skip:  v.Member == nil,
			do: func(r *sql.Rows) error {
				m := IndexMember{Nonmember: true}
				if err := r.Scan(&m.ListID, &m.Address, &m.ModerationAction); err != nil {
					return err
				}
				return v.Member(m)
			},
		},
		{
			name: "removals",
			// A removed list's events keep list_id NULL (ON DELETE SET
			// NULL); they can name no current list, so they are skipped.
			query: `SELECT list_id, address FROM events
				WHERE kind = 'member_removed' AND at >= ? AND list_id IS NOT NULL AND address != ''`,
			args: []any{FormatTime(removedSince)},
			skip: v.Removed == nil,
			do: func(r *sql.Rows) error {
				var m IndexRemoved
				if err := r.Scan(&m.ListID, &m.Address); err != nil {
					return err
				}
				return v.Removed(m)
			},
		},
		{
			name:  "tokens",
			query: liveTokensSQL,
			args:  []any{s.now()},
			skip:  v.Token == nil,
			do:    func(r *sql.Rows) error { return scanIndexToken(r, v.Token) },
		},
		{
			name:  "bans",
			query: `SELECT coalesce(list_id, 0), pattern FROM bans`,
			skip:  v.Ban == nil,
			do: func(r *sql.Rows) error {
				var b IndexBan
				if err := r.Scan(&b.ListID, &b.Pattern); err != nil {
					return err
				}
				return v.Ban(b)
			},
		},
	}
	for _, st := range steps {
		if st.skip {
			continue
		}
		if err := scanRows(ctx, tx, st.query, st.args, st.do); err != nil {
			return 0, fmt.Errorf("scan index: %s: %w", st.name, err)
		}
	}
	return gen, nil
}

func scanRows(ctx context.Context, tx *sql.Tx, query string, args []any, do func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := do(rows); err != nil {
			return err
		}
	}
	return classify(rows.Err())
}

// liveTokensSQL reads the tokens the milter must know: those not expired.
const liveTokensSQL = `SELECT list_id, token, expires_at FROM tokens WHERE expires_at > ?`

func scanIndexToken(r *sql.Rows, fn func(IndexToken) error) error {
	var t IndexToken
	var exp string
	if err := r.Scan(&t.ListID, &t.Token, &exp); err != nil {
		return err
	}
	at, err := ParseTime(exp)
	if err != nil {
		return fmt.Errorf("token expiry %q: %w", exp, err)
	}
	t.ExpiresAt = at
	return fn(t)
}

// TokenGeneration is the counter of token changes, apart from Generation:
// tokens change with every join and held post, and the index reloads only
// its token map for them (see ScanTokens).
func (s *Store) TokenGeneration(ctx context.Context) (int64, error) {
	var g int64
	if err := s.r.QueryRowContext(ctx, "SELECT tokens FROM generation WHERE id = 1").Scan(&g); err != nil {
		return 0, fmt.Errorf("read token generation: %w", classify(err))
	}
	return g, nil
}

// ScanTokens passes fn every live token and returns the token generation
// they were read at (the same read transaction).
func (s *Store) ScanTokens(ctx context.Context, fn func(IndexToken) error) (int64, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("scan tokens: begin: %w", classify(err))
	}
	defer tx.Rollback()
	var gen int64
	if err := tx.QueryRowContext(ctx, "SELECT tokens FROM generation WHERE id = 1").Scan(&gen); err != nil {
		return 0, fmt.Errorf("scan tokens: generation: %w", classify(err))
	}
	rows, err := tx.QueryContext(ctx, liveTokensSQL, s.now())
	if err != nil {
		return 0, fmt.Errorf("scan tokens: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		if err := scanIndexToken(rows, fn); err != nil {
			return 0, fmt.Errorf("scan tokens: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("scan tokens: %w", classify(err))
	}
	return gen, nil
}
