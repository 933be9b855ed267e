package commands_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"postlist/address"
	"postlist/commands"
	"postlist/internal/testenv/stack"
	"postlist/store"
)

// TestDecideRequestRefusals covers what the command line cannot easily
// reach: the list changed while the request waited, and the request must
// survive the refusal as it does a moderator's refused reply.
func TestDecideRequestRefusals(t *testing.T) {
	for _, c := range []struct {
		name    string
		prepare func(t *testing.T, e *env)
		kind    string // what the token is, or asks for a moderate one
		moder   bool
		approve bool
		want    error
	}{
		{"banned since", func(t *testing.T, e *env) {
			if err := e.Store.Ban(context.Background(), stack.List, "dave@example.net"); err != nil {
				t.Fatal(err)
			}
		}, store.TokenSubscribe, true, true, commands.ErrRefused},
		{"closed since", func(t *testing.T, e *env) { e.Set(t, "subscription_policy", "closed") },
			store.TokenSubscribe, true, true, commands.ErrRefused},
		{"person's own token", nil, store.TokenSubscribe, false, true, commands.ErrNotModeration},
		{"person's own token, discard", nil, store.TokenUnsubscribe, false, false, commands.ErrNotModeration},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			tok, err := address.NewToken()
			if err != nil {
				t.Fatal(err)
			}
			tk := store.Token{Token: tok, ListID: e.List.ID, Kind: c.kind, Address: "dave@example.net",
				ExpiresAt: e.Store.Now().Add(time.Hour)}
			if c.moder {
				tk.Kind, tk.Data = store.TokenModerate, c.kind
			}
			if err := e.Store.AddToken(ctx, tk, nil); err != nil {
				t.Fatal(err)
			}
			if c.prepare != nil {
				c.prepare(t, e)
			}
			_, err = e.p.DecideRequest(ctx, tok, c.approve, "cli:test")
			if !errors.Is(err, c.want) {
				t.Fatalf("DecideRequest = %v, want %v", err, c.want)
			}
			if _, err := e.Store.LiveToken(ctx, tok); err != nil {
				t.Errorf("refused request was spent: %v", err)
			}
			if e.IsMember(t, "dave@example.net") {
				t.Error("refused request made a member")
			}
		})
	}
}
