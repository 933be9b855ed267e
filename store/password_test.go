package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// resetChecker gives a test a full rate-limit bucket and an empty cache.
func resetChecker(t *testing.T) {
	t.Helper()
	checker.mu.Lock()
	checker.tokens, checker.last = checkBurst, time.Time{}
	clear(checker.ok)
	checker.mu.Unlock()
}

func TestSetModeratorPasswordStoresHash(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.CreateList(ctx, "test@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value string
		wantErr     error
	}{
		{"plain", "hunter2", nil},
		{"72 bytes", strings.Repeat("p", MaxPasswordLen), nil},
		{"73 bytes refused", strings.Repeat("p", MaxPasswordLen+1), ErrInvalid},
		{"line break refused", "a\nb", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resetChecker(t)
			err := s.SetListSetting(ctx, "test@lists.example.org", "moderator_password", tc.value)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("set: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			l, err := s.GetList(ctx, "test@lists.example.org")
			if err != nil {
				t.Fatal(err)
			}
			stored := l.Setting("moderator_password")
			if stored == tc.value || strings.Contains(stored, tc.value) || !IsPasswordHash(stored) {
				t.Fatalf("stored %q: want a bcrypt hash, not the password", stored)
			}
			if ok, err := CheckPassword(stored, tc.value); !ok || err != nil {
				t.Errorf("right password: %v, %v", ok, err)
			}
			if ok, _ := CheckPassword(stored, tc.value+"x"); ok && len(tc.value) < MaxPasswordLen {
				t.Error("wrong password accepted")
			}
		})
	}
	if err := s.SetListSetting(ctx, "test@lists.example.org", "moderator_password", ""); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.GetList(ctx, "test@lists.example.org"); l.Setting("moderator_password") != "" {
		t.Errorf("cleared password stored as %q", l.Setting("moderator_password"))
	}
}

func TestCheckPasswordRefusesClearTextAndJunk(t *testing.T) {
	resetChecker(t)
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hash, given string
		want              bool
	}{
		{"right", h, "s3cret", true},
		{"wrong", h, "guess", false},
		{"empty given", h, "", false},
		{"clear-text setting never compared", "s3cret", "s3cret", false},
		{"empty setting", "", "", false},
		{"huge given refused unhashed", h, strings.Repeat("s", maxGivenLen+1), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := CheckPassword(tc.hash, tc.given); got != tc.want || err != nil {
				t.Errorf("CheckPassword(%q…, %.10q) = %v, %v; want %v", tc.hash[:min(len(tc.hash), 7)], tc.given, got, err, tc.want)
			}
		})
	}
}

// TestCheckPasswordRateLimited: a flood of wrong guesses is refused
// without hashing once the burst is spent, so it costs no CPU, the bucket
// refills with time, and the moderator's right password, checked once,
// keeps passing. The clock stands still so that the machine's speed does
// not matter.
func TestCheckPasswordRateLimited(t *testing.T) {
	resetChecker(t)
	clock := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	checker.mu.Lock()
	checker.now = func() time.Time { return clock }
	checker.mu.Unlock()
	t.Cleanup(func() {
		checker.mu.Lock()
		checker.now = time.Now
		checker.mu.Unlock()
	})
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := CheckPassword(h, "s3cret"); !ok {
		t.Fatal("right password refused")
	}
	hashed := 0
	for range 2 * checkBurst {
		ok, err := CheckPassword(h, "guess")
		if ok {
			t.Fatal("wrong guess accepted")
		}
		if err == nil {
			hashed++
		} else if !errors.Is(err, ErrPasswordChecksBusy) {
			t.Fatal(err)
		}
	}
	if hashed != checkBurst-1 {
		t.Errorf("%d wrong guesses hashed with the clock stopped, want the rest of the burst, %d", hashed, checkBurst-1)
	}
	if ok, err := CheckPassword(h, "s3cret"); !ok || err != nil {
		t.Errorf("right password during the flood: %v, %v", ok, err)
	}
	clock = clock.Add(time.Second)
	hashed = 0
	for range 2 * checkBurst {
		if _, err := CheckPassword(h, "guess"); err == nil {
			hashed++
		}
	}
	if hashed != checkRate {
		t.Errorf("%d guesses hashed a second later, want %d", hashed, checkRate)
	}
}

// TestClearPasswordHashedAtOpen: a database written before hashing keeps
// its moderator password working, stored as a hash after the next open.
func TestClearPasswordHashedAtOpen(t *testing.T) {
	resetChecker(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "postlist.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("L", MaxPasswordLen+8)
	for addr, pw := range map[string]string{"a@lists.example.org": "oldclear", "b@lists.example.org": long} {
		if _, err := s.CreateList(ctx, addr); err != nil {
			t.Fatal(err)
		}
		// As an older postlist wrote it.
		if _, err := s.w.ExecContext(ctx, "UPDATE lists SET moderator_password = ? WHERE address = ?", pw, addr); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for addr, pw := range map[string]string{"a@lists.example.org": "oldclear", "b@lists.example.org": long} {
		l, err := s.GetList(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		stored := l.Setting("moderator_password")
		if !IsPasswordHash(stored) {
			t.Fatalf("%s: stored %q after open, want a hash", addr, stored)
		}
		if ok, _ := CheckPassword(stored, pw); !ok {
			t.Errorf("%s: the old password no longer works", addr)
		}
	}
}

// BenchmarkPasswordCheck is what one Approved: check costs (bcrypt at
// the stored cost), the figure the rate limit multiplies.
func BenchmarkPasswordCheck(b *testing.B) {
	h, err := HashPassword("s3cret")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		checker.mu.Lock()
		checker.tokens, checker.last = checkBurst, time.Time{}
		checker.mu.Unlock()
		if ok, err := CheckPassword(h, "guess"); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
