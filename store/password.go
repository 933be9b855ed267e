package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Moderator passwords are stored as bcrypt hashes. bcrypt rather than
// argon2id: a check costs CPU only, while argon2id's strength is memory
// (tens of MiB per check), and a burst of posts carrying Approved: would
// turn that into memory pressure on a small list server; bcrypt's hash
// also carries its salt and cost in one string, so a cost raised later
// still verifies old hashes.

// MaxPasswordLen is the longest moderator password: bcrypt reads only
// the first 72 bytes, and a longer one would silently be a shorter one.
const MaxPasswordLen = 72

// passwordCost is bcrypt's default (about 70 ms a check on the test
// machine, BenchmarkPasswordCheck): slow for a stolen database, cheap for
// one moderator's post.
var passwordCost = bcrypt.DefaultCost

// HashPassword returns the stored form of a moderator password.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", fmt.Errorf("%w: moderator_password: empty", ErrInvalid)
	}
	if len(pw) > MaxPasswordLen {
		return "", fmt.Errorf("%w: moderator_password: %d bytes, at most %d", ErrInvalid, len(pw), MaxPasswordLen)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), passwordCost)
	if err != nil {
		return "", fmt.Errorf("hash moderator_password: %w", err)
	}
	return string(h), nil
}

// IsPasswordHash tells a stored bcrypt hash from a clear-text password
// written by a postlist older than hashing.
func IsPasswordHash(s string) bool {
	if !strings.HasPrefix(s, "$2a$") && !strings.HasPrefix(s, "$2b$") && !strings.HasPrefix(s, "$2y$") {
		return false
	}
	_, err := bcrypt.Cost([]byte(s))
	return err == nil
}

// Checks against a hash are bounded so that strangers posting with wrong
// Approved: lines cannot keep a core busy: at most one bcrypt runs at a
// time, and at most checkRate per second with a burst of checkBurst;
// beyond that a check fails without hashing (the post is then moderated
// as if it had no password, which is safe: a moderator can still approve
// it). A right password is remembered (as a digest keyed by the hash, so
// a changed password forgets it), so a moderator's repeated posts do not
// pay the cost again and keep passing while the limit is reached.
const (
	checkRate  = 5
	checkBurst = 10
	okCacheMax = 64
	// maxGivenLen refuses absurd Approved: values before any work.
	maxGivenLen = 1024
)

var checker = struct {
	mu     sync.Mutex
	now    func() time.Time // the clock; tests stop it
	tokens float64
	last   time.Time
	run    sync.Mutex
	ok     map[[32]byte]bool
}{now: time.Now, tokens: checkBurst, ok: map[[32]byte]bool{}}

// ErrPasswordChecksBusy is returned by CheckPassword when the check was
// not made because too many were made recently.
var ErrPasswordChecksBusy = errors.New("too many moderator password checks; try again shortly")

// CheckPassword reports whether given matches the stored hash. Anything
// that is not a bcrypt hash (an empty setting, an unconverted clear-text
// value) matches nothing, so clear text is never compared. The error is
// ErrPasswordChecksBusy when the rate limit refused to check; the result
// is then false.
func CheckPassword(hash, given string) (bool, error) {
	if given == "" || len(given) > maxGivenLen || !IsPasswordHash(hash) {
		return false, nil
	}
	if len(given) > MaxPasswordLen {
		// bcrypt reads 72 bytes; an old clear-text password longer than
		// that was hashed on its first 72 (see hashClearPasswords).
		given = given[:MaxPasswordLen]
	}
	key := sha256.Sum256([]byte(hash + "\x00" + given))
	checker.mu.Lock()
	if checker.ok[key] {
		checker.mu.Unlock()
		return true, nil
	}
	now := checker.now()
	if !checker.last.IsZero() {
		checker.tokens = min(checkBurst, checker.tokens+now.Sub(checker.last).Seconds()*checkRate)
	}
	checker.last = now
	if checker.tokens < 1 {
		checker.mu.Unlock()
		return false, ErrPasswordChecksBusy
	}
	checker.tokens--
	checker.mu.Unlock()

	checker.run.Lock()
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(given))
	checker.run.Unlock()
	if err != nil {
		return false, nil
	}
	checker.mu.Lock()
	if len(checker.ok) >= okCacheMax {
		clear(checker.ok)
	}
	checker.ok[key] = true
	checker.mu.Unlock()
	return true, nil
}

// hashClearPasswords converts moderator passwords stored in clear by an
// older postlist, once, at open. A read-only database is left as it is:
// CheckPassword refuses clear text anyway, so such a list simply has no
// working password until a writable open converts it.
func (s *Store) hashClearPasswords(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, "SELECT id, moderator_password FROM lists WHERE coalesce(moderator_password, '') != ''")
	if err != nil {
		return fmt.Errorf("read moderator passwords: %w", err)
	}
	type clearPW struct {
		id int64
		pw string
	}
	var todo []clearPW
	for rows.Next() {
		var c clearPW
		if err := rows.Scan(&c.id, &c.pw); err != nil {
			rows.Close()
			return fmt.Errorf("read moderator passwords: %w", err)
		}
		if !IsPasswordHash(c.pw) {
			todo = append(todo, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read moderator passwords: %w", err)
	}
	for _, c := range todo {
		pw := c.pw
		if len(pw) > MaxPasswordLen {
			// bcrypt reads 72 bytes; CheckPassword cuts what is typed
			// the same way, so the old password still works in full.
			pw = pw[:MaxPasswordLen]
		}
		h, err := HashPassword(pw)
		if err != nil {
			return err
		}
		err = s.tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "UPDATE lists SET moderator_password = ? WHERE id = ? AND moderator_password = ?", h, c.id, c.pw)
			return err
		})
		if errors.Is(err, ErrReadOnly) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("hash moderator password of list %d: %w", c.id, err)
		}
	}
	return nil
}
