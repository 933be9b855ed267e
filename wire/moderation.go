package wire

import (
	"context"

	"postlist/commands"
	"postlist/pipeline"
	"postlist/store"
)

// Moderation is what a moderator does: decide held posts and the
// subscription requests a list's policy leaves to its moderators. The
// command line uses it today; a web interface or an API would call the
// same methods. by names the moderator for the record ("cli:alice").
type Moderation struct {
	st       *store.Store
	pipeline *pipeline.Pipeline
	commands *commands.Processor
}

// Held returns the posts waiting for a moderator on list ("" for every
// list), oldest first.
func (m *Moderation) Held(ctx context.Context, list string) ([]store.Held, error) {
	return m.st.HeldMessages(ctx, list)
}

// Requests returns the live membership requests of list ("" for every
// list), oldest first. Held posts' approval tokens are not among them:
// they are decided with Approve, Reject or Discard.
func (m *Moderation) Requests(ctx context.Context, list string) ([]store.Token, error) {
	all, err := m.st.PendingTokens(ctx, list)
	if err != nil {
		return nil, err
	}
	var out []store.Token
	for _, t := range all {
		if t.Kind != store.TokenHeld {
			out = append(out, t)
		}
	}
	return out, nil
}

// Approve sends a held post to the list's members, as if the rules had
// accepted it, and returns its record afterwards. A post already decided
// gives an error wrapping store.ErrAlreadyDone.
func (m *Moderation) Approve(ctx context.Context, heldID int64, by string) (*store.Held, error) {
	return m.decided(ctx, heldID, m.pipeline.Approve(ctx, heldID, by))
}

// Reject refuses a held post and tells the poster why (reason, or
// pipeline.DefaultRejectReason when empty), unless the post was automatic
// mail, which is never answered.
func (m *Moderation) Reject(ctx context.Context, heldID int64, by, reason string) (*store.Held, error) {
	return m.decided(ctx, heldID, m.pipeline.Reject(ctx, heldID, by, reason))
}

// Discard drops a held post without telling anyone.
func (m *Moderation) Discard(ctx context.Context, heldID int64, by string) (*store.Held, error) {
	return m.decided(ctx, heldID, m.pipeline.Discard(ctx, heldID, by))
}

func (m *Moderation) decided(ctx context.Context, heldID int64, err error) (*store.Held, error) {
	if err != nil {
		return nil, err
	}
	return m.st.GetHeld(ctx, heldID)
}

// ApproveRequest carries out a membership request waiting for a
// moderator (token is the whole token): the address joins or leaves, with
// the welcome or goodbye the list sends. An unknown, used or expired
// token gives an error wrapping store.ErrNotFound; a token that is not a
// moderator's to decide, one wrapping commands.ErrNotModeration.
func (m *Moderation) ApproveRequest(ctx context.Context, token, by string) (commands.Decision, error) {
	return m.commands.DecideRequest(ctx, token, true, by)
}

// DiscardRequest drops a membership request waiting for a moderator
// without telling anyone.
func (m *Moderation) DiscardRequest(ctx context.Context, token, by string) (commands.Decision, error) {
	return m.commands.DecideRequest(ctx, token, false, by)
}
