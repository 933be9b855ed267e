package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"postlist/address"
)

// TestAddMembersRefusesUndeliverable: the store applies address.Deliverable
// to every member it adds, whichever path the address came by, and a
// refused batch writes nothing.
func TestAddMembersRefusesUndeliverable(t *testing.T) {
	for _, bad := range []string{`"a>b"@example.com`, `"john smith"@example.com`, "x@[192.0.2.1]", "a\r\nb@example.com", ""} {
		s, _, _ := emailFixture(t)
		ctx := context.Background()
		_, err := s.AddMembers(ctx, emailList, "member", []NewMember{{Address: "good@example.com"}, {Address: bad}}, nil)
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, address.ErrMalformed) {
			t.Errorf("AddMembers(%q) = %v, want ErrInvalid and address.ErrMalformed", bad, err)
		}
		ms, err := s.Members(ctx, emailList, "member")
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].Address != "alice@example.com" {
			t.Errorf("after a refused batch with %q: members %+v, want only the fixture's", bad, ms)
		}
	}
}

// TestSubscribeRequestRefusesUndeliverable: an email join cannot store a
// request for an address that could not be delivered to, and a request
// stored before the rule cannot make such a member when confirmed.
func TestSubscribeRequestRefusesUndeliverable(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	const bad = `"a>b"@example.com`
	tok := Token{Token: strings.Repeat("a", 32), ListID: l.ID, Kind: TokenSubscribe, Address: bad, ExpiresAt: clock.Now().Add(time.Hour)}
	if err := s.AddToken(ctx, tok, []Notice{testNotice(bad)}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "needs quotes") {
		t.Errorf("AddToken for %s: %v, want ErrInvalid with the reason", bad, err)
	}
	if n := queuedTo(t, s, bad); n != 0 {
		t.Errorf("a refused request queued %d confirmation(s)", n)
	}
	// An unsubscription request is not refused: leaving must always work.
	leave := tok
	leave.Kind, leave.Token = TokenUnsubscribe, strings.Repeat("b", 32)
	if err := s.AddToken(ctx, leave, nil); err != nil {
		t.Errorf("unsubscribe request for %s: %v", bad, err)
	}

	// A request stored before the rule existed.
	if _, err := s.w.Exec(`INSERT INTO tokens (token, list_id, kind, address, display_name, data, created_at, expires_at)
		VALUES (?, ?, 'subscribe', ?, '', '', ?, ?)`, strings.Repeat("c", 32), l.ID, bad,
		FormatTime(clock.Now()), FormatTime(clock.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompleteToken(ctx, TokenCompletion{Token: strings.Repeat("c", 32), Action: TokenSubscribe, By: "test"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("confirming an old request for %s: %v, want ErrInvalid", bad, err)
	}
	if ok, err := s.IsMember(ctx, l.ID, bad); err != nil || ok {
		t.Errorf("IsMember(%s) = %v, %v after a refused confirmation", bad, ok, err)
	}
}
