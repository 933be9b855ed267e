package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Domain is a mail domain hosting lists, or an alias of one.
type Domain struct {
	Name      string `json:"name"`
	AliasOf   string `json:"alias_of,omitempty"`
	Lists     int    `json:"lists"`
	CreatedAt string `json:"created_at"`
}

// AddDomain registers a list domain. Adding an existing domain is not an
// error, so scripts can run it unconditionally.
func (s *Store) AddDomain(ctx context.Context, name string) error {
	name = strings.ToLower(name)
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO domains (name) VALUES (?) ON CONFLICT(name) DO NOTHING", name)
		return err
	})
}

// AddAlias makes alias resolve to domain (which must exist and not itself
// be an alias: chains would make "which list is this" ambiguous).
func (s *Store) AddAlias(ctx context.Context, alias, domain string) error {
	alias, domain = strings.ToLower(alias), strings.ToLower(domain)
	if alias == domain {
		return fmt.Errorf("%w: %s cannot be an alias of itself", ErrInvalid, alias)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		var of sql.NullInt64
		err := tx.QueryRowContext(ctx, "SELECT id, alias_of FROM domains WHERE name = ?", domain).Scan(&id, &of)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: domain %s", ErrNotFound, domain)
		}
		if err != nil {
			return err
		}
		if of.Valid {
			return fmt.Errorf("%w: %s is itself an alias domain", ErrInvalid, domain)
		}
		var existing sql.NullInt64
		err = tx.QueryRowContext(ctx, "SELECT alias_of FROM domains WHERE name = ?", alias).Scan(&existing)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, "INSERT INTO domains (name, alias_of) VALUES (?, ?)", alias, id)
			return err
		case err != nil:
			return err
		case existing.Valid && existing.Int64 == id:
			return nil
		default:
			return fmt.Errorf("%w: domain %s is already registered", ErrExists, alias)
		}
	})
}

// Domains lists every domain with its list count.
func (s *Store) Domains(ctx context.Context) ([]Domain, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT d.name, coalesce(a.name, ''), d.created_at,
		       (SELECT count(*) FROM lists l WHERE l.domain_id = d.id)
		FROM domains d LEFT JOIN domains a ON a.id = d.alias_of ORDER BY d.name`)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer rows.Close()
	var out []Domain
	for rows.Next() {
		var d Domain
		if err := rows.Scan(&d.Name, &d.AliasOf, &d.CreatedAt, &d.Lists); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// SettingKind says how a list setting's value is written and checked.
type SettingKind int

// Setting kinds.
const (
	KindString SettingKind = iota
	KindBool
	KindInt
	KindFloat
	KindEnum
	KindDuration
)

// Setting describes one list setting. Names and values are Mailman 3's, so
// a Mailman admin's knowledge carries over.
type Setting struct {
	Name   string
	Kind   SettingKind
	Values []string // for KindEnum
	Secret bool     // never printed
	Help   string
}

// ListSettings is the registry of settings `lists set` accepts; each name is
// a column of the lists table.
var ListSettings = []Setting{
	{Name: "display_name", Kind: KindString, Help: "human name used in headers and notices"},
	{Name: "description", Kind: KindString, Help: "one-line description"},
	{Name: "default_member_action", Kind: KindEnum, Values: []string{"accept", "hold", "reject", "discard", "defer"}, Help: "what happens to a member's post (defer: go on to the next rule)"},
	{Name: "default_nonmember_action", Kind: KindEnum, Values: []string{"accept", "hold", "reject", "discard", "defer"}, Help: "what happens to a non-member's post"},
	{Name: "emergency", Kind: KindBool, Help: "hold every post"},
	{Name: "moderator_password", Kind: KindString, Secret: true, Help: "password for Approved: headers"},
	{Name: "max_message_size", Kind: KindInt, Help: "KiB; larger posts are refused or held, see oversize_action (0: no limit)"},
	{Name: "oversize_action", Kind: KindEnum, Values: []string{"refuse", "hold"}, Help: "posts over max_message_size: refused at SMTP time (552 5.3.4) or held for a moderator as in Mailman"},
	{Name: "administrivia", Kind: KindBool, Help: "hold posts that read like commands for the robot (unsubscribe, help, ...)"},
	{Name: "require_explicit_destination", Kind: KindBool, Help: "hold posts that do not name the list in To or Cc"},
	{Name: "max_num_recipients", Kind: KindInt, Help: "hold posts with this many recipients or more (0: no limit)"},
	{Name: "subject_prefix", Kind: KindString, Help: "prefix added to subjects, e.g. [test]; %d is the post's number"},
	{Name: "footer", Kind: KindString, Help: "text appended to every post"},
	{Name: "archive_url", Kind: KindString, Help: "List-Archive URL"},
	{Name: "reply_goes_to_list", Kind: KindEnum, Values: []string{"no_munging", "point_to_list", "explicit_header"}, Help: "Reply-To policy"},
	{Name: "reply_to_address", Kind: KindString, Help: "Reply-To for explicit_header"},
	{Name: "dmarc_mitigate_action", Kind: KindEnum, Values: []string{"no_mitigation", "munge_from", "wrap_message"}, Help: "DMARC mitigation"},
	{Name: "personalize", Kind: KindEnum, Values: []string{"none", "individual", "full"}, Help: "full: each member's copy is To: them, the list in Cc (verp lists); none and individual change no header"},
	{Name: "verp", Kind: KindBool, Help: "one SMTP transaction per member with a VERP return path (no: bulk by domain)"},
	{Name: "subscription_policy", Kind: KindEnum, Values: []string{"open", "confirm", "moderate", "confirm_then_moderate", "closed"}, Help: "how people join"},
	{Name: "unsubscription_policy", Kind: KindEnum, Values: []string{"open", "confirm", "moderate", "confirm_then_moderate"}, Help: "how people leave"},
	{Name: "send_welcome_message", Kind: KindBool, Help: "welcome new members"},
	{Name: "send_goodbye_message", Kind: KindBool, Help: "say goodbye to leaving members"},
	{Name: "admin_immed_notify", Kind: KindBool, Help: "tell moderators at once about held posts"},
	{Name: "process_bounces", Kind: KindBool, Help: "score bounces and disable bouncing members"},
	{Name: "bounce_score_threshold", Kind: KindFloat, Help: "score at which delivery is disabled"},
	{Name: "bounce_info_stale_after", Kind: KindDuration, Help: "reset the score when the last bounce is older"},
	{Name: "bounce_you_are_disabled_warnings", Kind: KindInt, Help: "warnings before removal"},
	{Name: "bounce_you_are_disabled_warnings_interval", Kind: KindDuration, Help: "time between warnings"},
	{Name: "forward_unrecognized_bounces_to", Kind: KindEnum, Values: []string{"administrators", "site_owner", "discard"}, Help: "where unparseable bounces go"},
	{Name: "accept_unsigned_verp", Kind: KindBool, Help: "accept Mailman-style unsigned VERP bounces (migration)"},
	{Name: "owner_mail_to_moderators", Kind: KindBool, Help: "mail to NAME-owner reaches the moderators too"},
}

func findSetting(name string) (Setting, bool) {
	for _, st := range ListSettings {
		if st.Name == name {
			return st, true
		}
	}
	return Setting{}, false
}

var durationRE = regexp.MustCompile(`^(\d+[wdhms])+$`)

// normalizeSetting checks a value written by an admin and returns the
// stored form (booleans are stored 0/1 but accepted as Mailman's
// yes/no/true/false).
func normalizeSetting(st Setting, v string) (any, error) {
	switch st.Kind {
	case KindBool:
		switch strings.ToLower(v) {
		case "yes", "true", "on", "1":
			return 1, nil
		case "no", "false", "off", "0":
			return 0, nil
		}
		return nil, fmt.Errorf("%w: %s: %q: want yes or no", ErrInvalid, st.Name, v)
	case KindInt:
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: %s: %q: want a whole number ≥ 0", ErrInvalid, st.Name, v)
		}
		return n, nil
	case KindFloat:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return nil, fmt.Errorf("%w: %s: %q: want a positive number", ErrInvalid, st.Name, v)
		}
		return f, nil
	case KindEnum:
		for _, ok := range st.Values {
			if v == ok {
				return v, nil
			}
		}
		return nil, fmt.Errorf("%w: %s: %q: want one of %s", ErrInvalid, st.Name, v, strings.Join(st.Values, ", "))
	case KindDuration:
		if !durationRE.MatchString(v) {
			return nil, fmt.Errorf("%w: %s: %q: want a duration such as 7d or 12h", ErrInvalid, st.Name, v)
		}
		return v, nil
	}
	if strings.ContainsAny(v, "\x00") {
		return nil, fmt.Errorf("%w: %s: NUL in value", ErrInvalid, st.Name)
	}
	if st.Name != "footer" && strings.ContainsAny(v, "\r\n") {
		// Header-bound values must stay on one line: a newline here would
		// be a header injection in every post.
		return nil, fmt.Errorf("%w: %s: line breaks are not allowed", ErrInvalid, st.Name)
	}
	return v, nil
}

// List is a mailing list with its settings in stored text form.
type List struct {
	ID        int64             `json:"-"`
	Name      string            `json:"name"`
	Domain    string            `json:"domain"`
	Address   string            `json:"address"`
	ListID    string            `json:"list_id"`
	CreatedAt string            `json:"created_at"`
	Members   int               `json:"members"`
	Owners    int               `json:"owners"`
	Held      int               `json:"held"`
	Settings  map[string]string `json:"settings,omitempty"`
}

// Setting returns a setting's stored text ("" if unknown).
func (l *List) Setting(name string) string { return l.Settings[name] }

// Bool returns a boolean setting.
func (l *List) Bool(name string) bool { return l.Settings[name] == "1" }

// Int returns an integer setting (0 if unset or bad).
func (l *List) Int(name string) int {
	n, _ := strconv.Atoi(l.Settings[name])
	return n
}

// Float returns a float setting.
func (l *List) Float(name string) float64 {
	f, _ := strconv.ParseFloat(l.Settings[name], 64)
	return f
}

var listNameRE = regexp.MustCompile(`^[a-z0-9][-_.a-z0-9]*$`)

// CreateList creates the list at address (name@domain, already
// normalised). The domain is registered if it is new, as Mailman's
// `mailman create` does; creating a list in an alias domain is refused
// because its mail would resolve elsewhere.
func (s *Store) CreateList(ctx context.Context, address string) (*List, error) {
	address = strings.ToLower(address)
	name, domain, ok := strings.Cut(address, "@")
	if !ok || domain == "" {
		return nil, fmt.Errorf("%w: list address %q: want NAME@DOMAIN", ErrInvalid, address)
	}
	if !listNameRE.MatchString(name) || len(name) > 64 {
		return nil, fmt.Errorf("%w: list name %q: use lower-case letters, digits, '-', '_' and '.'", ErrInvalid, name)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var did int64
		var aliasOf sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT d.id, a.name FROM domains d LEFT JOIN domains a ON a.id = d.alias_of WHERE d.name = ?`, domain).Scan(&did, &aliasOf)
		if errors.Is(err, sql.ErrNoRows) {
			res, err := tx.ExecContext(ctx, "INSERT INTO domains (name) VALUES (?)", domain)
			if err != nil {
				return err
			}
			did, _ = res.LastInsertId()
		} else if err != nil {
			return err
		} else if aliasOf.Valid {
			return fmt.Errorf("%w: %s is an alias of %s; create the list as %s@%s", ErrInvalid, domain, aliasOf.String, name, aliasOf.String)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO lists (id, name, domain_id, address, list_id, display_name, subject_prefix)
			VALUES (`+nextIDLists+`, ?, ?, ?, ?, ?, ?)`,
			name, did, address, name+"."+domain, displayName(name), "["+displayName(name)+"] ")
		if err != nil {
			return classify(err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO events (list_id, kind, detail) VALUES ((SELECT id FROM lists WHERE address = ?), 'list_created', ?)`, address, address)
		return err
	})
	if errors.Is(err, ErrExists) {
		return nil, fmt.Errorf("%w: list %s", ErrExists, address)
	}
	if err != nil {
		return nil, fmt.Errorf("create list %s: %w", address, err)
	}
	return s.GetList(ctx, address)
}

// displayName capitalises the list name, as Mailman's default style does.
func displayName(name string) string {
	if name == "" {
		return name
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

// RemoveList deletes a list and, through foreign keys, its members, held
// messages, tokens and pending deliveries. Stored messages stay for the
// record of other lists and intake rows.
func (s *Store) RemoveList(ctx context.Context, address string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM lists WHERE address = ?", address)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: list %s", ErrNotFound, address)
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO events (kind, detail) VALUES ('list_removed', ?)", address)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove list %s: %w", address, err)
	}
	return nil
}

func settingColumns() string {
	cols := make([]string, len(ListSettings))
	for i, st := range ListSettings {
		cols[i] = "coalesce(l." + st.Name + ", '')"
	}
	return strings.Join(cols, ", ")
}

const listCounts = `(SELECT count(*) FROM members m WHERE m.list_id = l.id AND m.role = 'member'),
	(SELECT count(*) FROM members m WHERE m.list_id = l.id AND m.role = 'owner'),
	(SELECT count(*) FROM held h WHERE h.list_id = l.id AND h.state = 'held')`

func scanList(sc interface{ Scan(...any) error }) (*List, error) {
	l := &List{Settings: make(map[string]string, len(ListSettings))}
	vals := make([]string, len(ListSettings))
	dest := []any{&l.ID, &l.Name, &l.Domain, &l.Address, &l.ListID, &l.CreatedAt, &l.Members, &l.Owners, &l.Held}
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	for i, st := range ListSettings {
		l.Settings[st.Name] = vals[i]
	}
	return l, nil
}

func (s *Store) listQuery(where string) string {
	return `SELECT l.id, l.name, d.name, l.address, l.list_id, l.created_at, ` + listCounts + `, ` + settingColumns() + `
		FROM lists l JOIN domains d ON d.id = l.domain_id ` + where
}

// GetList returns one list by posting address.
func (s *Store) GetList(ctx context.Context, address string) (*List, error) {
	l, err := scanList(s.r.QueryRowContext(ctx, s.listQuery("WHERE l.address = ?"), address))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: list %s", ErrNotFound, address)
	}
	if err != nil {
		return nil, fmt.Errorf("get list %s: %w", address, err)
	}
	return l, nil
}

// Lists returns every list, ordered by address.
func (s *Store) Lists(ctx context.Context) ([]*List, error) {
	rows, err := s.r.QueryContext(ctx, s.listQuery("ORDER BY l.address"))
	if err != nil {
		return nil, fmt.Errorf("list lists: %w", err)
	}
	defer rows.Close()
	var out []*List
	for rows.Next() {
		l, err := scanList(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// SetListSetting changes one setting after checking name and value.
func (s *Store) SetListSetting(ctx context.Context, address, key, value string) error {
	st, ok := findSetting(key)
	if !ok {
		return fmt.Errorf("%w: unknown list setting %q (see `postlist lists show`)", ErrInvalid, key)
	}
	v, err := normalizeSetting(st, value)
	if err != nil {
		return err
	}
	if st.Name == "moderator_password" {
		if value == "" {
			v = nil
		} else if v, err = HashPassword(value); err != nil {
			return fmt.Errorf("set %s on %s: %w", key, address, err)
		}
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		// The column name comes from the registry above, never from input.
		res, err := tx.ExecContext(ctx, "UPDATE lists SET "+st.Name+" = ? WHERE address = ?", v, address)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: list %s", ErrNotFound, address)
		}
		shown := value
		if st.Secret {
			shown = "(secret)"
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO events (list_id, kind, detail) VALUES ((SELECT id FROM lists WHERE address = ?), 'setting_changed', ?)`, address, key+"="+shown)
		return err
	})
	if err != nil {
		return fmt.Errorf("set %s on %s: %w", key, address, err)
	}
	return nil
}

// ListByID returns a list by row id.
func (s *Store) ListByID(ctx context.Context, id int64) (*List, error) {
	l, err := scanList(s.r.QueryRowContext(ctx, s.listQuery("WHERE l.id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: list #%d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get list #%d: %w", id, err)
	}
	return l, nil
}

// ListDomains returns the list's domain followed by its alias domains: a
// post addressed to the list at an alias domain names the list too.
func (s *Store) ListDomains(ctx context.Context, listID int64) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT d.name, 0 FROM lists l JOIN domains d ON d.id = l.domain_id WHERE l.id = ?
		UNION ALL
		SELECT a.name, 1 FROM lists l JOIN domains a ON a.alias_of = l.domain_id WHERE l.id = ?
		ORDER BY 2, 1`, listID, listID)
	if err != nil {
		return nil, fmt.Errorf("domains of list #%d: %w", listID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		var alias int
		if err := rows.Scan(&d, &alias); err != nil {
			return nil, fmt.Errorf("domains of list #%d: %w", listID, err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ListAdmins returns the owners and moderators of a list whose delivery is
// enabled, each address once: who hears about held posts.
func (s *Store) ListAdmins(ctx context.Context, listID int64) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT min(address) FROM members
		WHERE list_id = ? AND role IN ('owner', 'moderator') AND delivery_status = 'enabled'
		GROUP BY lower(address) ORDER BY lower(address)`, listID)
	if err != nil {
		return nil, fmt.Errorf("admins of list #%d: %w", listID, err)
	}
	return scanStrings(rows)
}

// ListByListID returns the list whose RFC 2919 List-Id is listID
// ("test.lists.example.org"); ErrNotFound if there is none.
func (s *Store) ListByListID(ctx context.Context, listID string) (*List, error) {
	// Without regard to case, like the rest of the link: URLs get
	// case-folded on their way, and a List-Id is an address.
	l, err := scanList(s.r.QueryRowContext(ctx, s.listQuery("WHERE l.list_id = ? COLLATE NOCASE ORDER BY l.id"), listID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: list-id %s", ErrNotFound, listID)
	}
	if err != nil {
		return nil, fmt.Errorf("get list-id %s: %w", listID, err)
	}
	return l, nil
}
