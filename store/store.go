// Package store owns postlist's SQLite database: the schema, its
// migrations, and every query. No other package speaks SQL, so the schema
// can change in one place and stay readable for admins using sqlite3.
//
// The database runs in WAL mode with synchronous=FULL: a commit returns only
// after the write-ahead log is fsynced, which is what lets the LMTP server
// promise "250 means on disk". All writes go through one connection (SQLite
// has one writer anyway; queuing in Go avoids busy-wait retries), reads use
// a small pool that WAL lets run beside the writer.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"postlist/address"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Sentinel errors; protocol code maps them to replies.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrInvalid       = errors.New("invalid value")
	ErrSchemaTooNew  = errors.New("database schema is newer than this postlist")
	ErrReadOnly      = errors.New("database is read-only")
	ErrStorageFailed = errors.New("storage failure")
)

// TimeFormat is how every timestamp is stored: UTC, fixed width, so that
// text comparison in SQL is time comparison.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// FormatTime renders t in the stored form.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// ParseTime reads a stored timestamp.
func ParseTime(s string) (time.Time, error) { return time.Parse(TimeFormat, s) }

// Store is an open database.
type Store struct {
	path string
	w    *sql.DB
	r    *sql.DB
	// Now is the clock; tests replace it to move time (bounce scoring,
	// token expiry) without sleeping.
	Now func() time.Time
	// VERPWindow is the Window of the signers VERPSigner returns ([mta]
	// verp_bounce_window); 0 means address.DefaultVERPWindow. Set it
	// before the store is shared.
	VERPWindow time.Duration
	subMu      sync.Mutex
	subStmt    *sql.Stmt // see subscriptionStmt
	// writerStale is set while the writer connection may have been opened
	// read-only (see reopenWriter).
	writerStale atomic.Bool
}

// Open opens (creating if needed) the database at path and brings its schema
// up to date. A database written by a newer postlist is refused rather than
// guessed at.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, Options{})
}

// Options are the settings of OpenWith.
type Options struct {
	// Group, when set, is the group of the database files, which are
	// then mode 0660 ([database] group); otherwise they are 0600.
	Group string
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, o Options) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
	}
	perm, err := o.files()
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := perm.create(path); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := checkWritable(path); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "on")
	q.Set("_busy_timeout", "5000")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)

	q.Set("_query_only", "1")
	q.Del("_txlock")
	r, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	s := &Store{path: path, w: w, r: r, Now: time.Now}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := s.hashClearPasswords(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// The -wal and -shm files exist now; SQLite gives them the main
	// file's mode, but ones left by an older postlist may be 0644.
	if err := perm.fix(path); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes both connection pools.
func (s *Store) Close() error {
	s.subMu.Lock()
	var stmtErr error
	if s.subStmt != nil {
		stmtErr = s.subStmt.Close()
		s.subStmt = nil
	}
	s.subMu.Unlock()
	return errors.Join(stmtErr, s.w.Close(), s.r.Close())
}

// now returns the current time in stored form.
func (s *Store) now() string { return FormatTime(s.Now()) }

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary writes: the number of
// its newest migration.
func SchemaVersion() int {
	ms, _ := migrations()
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies each missing migration in its own transaction, bumping
// user_version in that same transaction, so a crash leaves the database at
// a clean version.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	var cur int
	if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if latest := SchemaVersion(); cur > latest {
		return fmt.Errorf("%w: database has schema version %d, this postlist knows up to %d; upgrade postlist or restore a backup", ErrSchemaTooNew, cur, latest)
	}
	for _, m := range ms {
		if m.version <= cur {
			continue
		}
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.name, err)
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// tx runs fn in a write transaction (BEGIN IMMEDIATE through the single
// writer connection) and commits; the commit is fsynced.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	defer func() {
		if errors.Is(err, ErrReadOnly) {
			s.reopenWriter()
		}
	}()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return classify(err)
	}
	if err := tx.Commit(); err != nil {
		return classify(err)
	}
	return nil
}

// reopenWriter is called after a write failed as read-only. SQLite opens
// a database file it may not write (an immutable file, a read-only mount)
// read-only without complaint, and such a connection stays read-only for
// its whole life: a daemon started during the fault would answer 451 to
// every message long after the fault was gone. So while the file itself
// cannot be opened for writing, the writer connection is closed after
// each refused write (the next write opens a fresh one, read-only again
// while the fault lasts), and once the file can be written again it is
// closed one last time so that the next connection is a writable one. A
// refusal while the file is writable (PRAGMA query_only) leaves the
// connection alone.
func (s *Store) reopenWriter() {
	if f, err := os.OpenFile(s.path, os.O_RDWR, 0); err == nil {
		f.Close()
		if !s.writerStale.Swap(false) {
			return
		}
	} else {
		s.writerStale.Store(true)
	}
	s.w.SetMaxIdleConns(0) // closes the idle connection now
	s.w.SetMaxIdleConns(1)
}

// classify maps SQLite failures that callers must react to (a read-only
// or full disk: answer 4xx and retry later) onto sentinel errors, keeping
// the original for logs.
func classify(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrReadonly, sqlite3.ErrCantOpen, sqlite3.ErrPerm:
			return fmt.Errorf("%w: %w", ErrReadOnly, err)
		case sqlite3.ErrFull, sqlite3.ErrIoErr, sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
			return fmt.Errorf("%w: %w", ErrStorageFailed, err)
		case sqlite3.ErrConstraint:
			if se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey {
				return fmt.Errorf("%w: %w", ErrExists, err)
			}
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return err
}

// Generation is a counter bumped by triggers on every change to domains,
// lists, members and bans (tokens have their own, TokenGeneration). The
// daemon polls it (one indexed read) to
// notice CLI edits within a second without a restart.
func (s *Store) Generation(ctx context.Context) (int64, error) {
	var g int64
	err := s.r.QueryRowContext(ctx, "SELECT value FROM generation WHERE id = 1").Scan(&g)
	if err != nil {
		return 0, fmt.Errorf("read generation: %w", err)
	}
	return g, nil
}

// Check verifies the database is usable: schema current, integrity quick
// check passing. Used by `postlist check`.
func (s *Store) Check(ctx context.Context) error {
	var v int
	if err := s.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v != SchemaVersion() {
		return fmt.Errorf("schema version %d, want %d", v, SchemaVersion())
	}
	var res string
	if err := s.r.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
		return fmt.Errorf("quick_check: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("quick_check: %s", res)
	}
	return nil
}

// SiteValue returns a site-wide value, creating it with gen() on first use
// (used for secrets such as the VERP signing key, generated once per site).
func (s *Store) SiteValue(ctx context.Context, key string, gen func() (string, error)) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, "SELECT value FROM site WHERE key = ?", key).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("read site %s: %w", key, err)
	}
	nv, err := gen()
	if err != nil {
		return "", err
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO site (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING", key, nv)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT value FROM site WHERE key = ?", key).Scan(&v)
	})
	if err != nil {
		return "", fmt.Errorf("write site %s: %w", key, err)
	}
	return v, nil
}

// verpKeyName is the site table key of the VERP signing secret.
const verpKeyName = "verp_key"

// verpLegacyKey is the site table key of the time VERP signatures got a
// time stamp (set by migration 0120).
const verpLegacyKey = "verp_legacy_since"

// VERPSigner returns the site's VERP signer, creating its secret (256
// random bits) on first use, with s.VERPWindow as its window and the time
// of the upgrade to time-stamped signatures as its LegacySince. The
// daemon hands the same signer to the posting pipeline (which signs
// return paths), the address index (which refuses forged ones at RCPT
// time) and the bounce processor.
func (s *Store) VERPSigner(ctx context.Context) (address.VERPSigner, error) {
	v, err := s.SiteValue(ctx, verpKeyName, func() (string, error) {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		return hex.EncodeToString(b[:]), nil
	})
	if err != nil {
		return address.VERPSigner{}, fmt.Errorf("VERP signing key: %w", err)
	}
	signer := address.VERPSigner{Key: []byte(v), Window: s.VERPWindow}
	var since string
	err = s.r.QueryRowContext(ctx, "SELECT value FROM site WHERE key = ?", verpLegacyKey).Scan(&since)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Zero: untimed signatures are expired, the safe side.
	case err != nil:
		return address.VERPSigner{}, fmt.Errorf("VERP signing key: read %s: %w", verpLegacyKey, err)
	default:
		t, err := ParseTime(since)
		if err != nil {
			return address.VERPSigner{}, fmt.Errorf("VERP signing key: site %s %q: %w", verpLegacyKey, since, err)
		}
		signer.LegacySince = t
	}
	return signer, nil
}

// The id a new messages, intake, held, lists or members row gets: one above both the
// largest id in the table and the largest ever deleted from it (the
// id_floor table, kept by triggers), so that an id is never reused once
// its row was purged. The writer is the only connection that inserts, one
// transaction at a time, so the expression cannot race with itself.
const (
	nextIDMessages = `(SELECT max(coalesce((SELECT max(id) FROM messages), 0), last) + 1 FROM id_floor WHERE name = 'messages')`
	nextIDIntake   = `(SELECT max(coalesce((SELECT max(id) FROM intake), 0), last) + 1 FROM id_floor WHERE name = 'intake')`
	nextIDHeld     = `(SELECT max(coalesce((SELECT max(id) FROM held), 0), last) + 1 FROM id_floor WHERE name = 'held')`
	nextIDLists    = `(SELECT max(coalesce((SELECT max(id) FROM lists), 0), last) + 1 FROM id_floor WHERE name = 'lists')`
	nextIDMembers  = `(SELECT max(coalesce((SELECT max(id) FROM members), 0), last) + 1 FROM id_floor WHERE name = 'members')`
)
