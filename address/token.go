package address

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// TokenLen is the length of a token from NewToken.
const TokenLen = 32

// NewToken returns a confirmation token: 128 random bits as 32 lower-case
// hex characters. Hex like Mailman's tokens, so a confirmation address
// looks familiar and holds nothing a mail client might mangle.
func NewToken() (string, error) {
	var b [TokenLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ValidToken reports whether s has exactly the shape of a NewToken token, so
// that callers can refuse forged or mangled -confirm+ extensions before
// touching the database. It is strict about case; a caller that wants to
// tolerate upper-cased addresses lower-cases first.
func ValidToken(s string) bool {
	if len(s) != TokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
