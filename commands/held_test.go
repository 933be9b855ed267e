package commands_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"postlist/commands"
	"postlist/internal/testenv/stack"
	"postlist/store"
)

// holdPost stores a held post with a held-message token, as the posting
// pipeline does, and returns the held id and the token.
func holdPost(t *testing.T, f *stack.Fixture) (int64, string) {
	t.Helper()
	it := f.Inject(t, "stranger@example.net", stack.List, stack.Message("stranger@example.net", stack.List, "held", "hi"))
	const tok = "0123456789abcdef0123456789abcdef"
	res, err := f.Store.RecordPost(context.Background(), store.PostDecision{
		IntakeID: it.ID, ListID: f.List.ID, MessageID: it.MessageID, Action: store.ActionHold,
		Rule: "nonmember-moderation", Reason: "not a member", Sender: "stranger@example.net",
		HeldToken: &store.Token{Token: tok, ExpiresAt: f.Clock.Now().Add(time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.HeldID, tok
}

// TestConfirmHeldToken: a reply to a hold notice reaches the moderation
// hook with the held id, the whole reply and who sent it, and the
// moderator hears back only when something went wrong.
func TestConfirmHeldToken(t *testing.T) {
	tests := []struct {
		name      string
		outcome   string
		err       error
		noHook    bool
		wantReply string // "" for no reply
	}{
		{name: "approved", outcome: store.HeldApproved},
		{name: "discarded", outcome: store.HeldDiscarded},
		{name: "wrong password", outcome: store.HeldHeld, wantReply: "Invalid Approved: password"},
		{name: "decided meanwhile", err: fmt.Errorf("approve: %w", store.ErrAlreadyDone), wantReply: "The held message was already decided"},
		{name: "no moderation hook", noHook: true, wantReply: "Confirmation token did not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := stack.NewFixture(t)
			id, tok := holdPost(t, f)
			type call struct {
				id    int64
				reply string
				by    string
			}
			var calls []call
			o := commands.Options{Store: f.Store, Log: zaptest.NewLogger(t), Delimiter: "+", SiteOwner: "postmaster@example.com"}
			if !tc.noHook {
				o.ConfirmHeld = func(_ context.Context, heldID int64, reply []byte, by string) (string, error) {
					calls = append(calls, call{heldID, string(reply), by})
					return tc.outcome, tc.err
				}
			}
			e := &env{Fixture: f, p: commands.New(o)}
			e.send(t, "mod@example.com", "test-confirm+"+tok+"@lists.example.org", "Re: held", "Approved: pw\n")
			if !tc.noHook {
				if len(calls) != 1 || calls[0].id != id || calls[0].by != "mail from mod@example.com" ||
					!strings.Contains(calls[0].reply, "Approved: pw\r\n") {
					t.Fatalf("hook calls %+v, want one for #%d with the reply", calls, id)
				}
			}
			replies := e.MailTo(t, "mod@example.com")
			if tc.wantReply == "" {
				if len(replies) != 0 {
					t.Errorf("unexpected reply:\n%s", replies[0].Text())
				}
				return
			}
			if r := only(t, replies, 0); !strings.Contains(r.Text(), tc.wantReply) {
				t.Errorf("reply lacks %q:\n%s", tc.wantReply, r.Text())
			}
		})
	}
}
