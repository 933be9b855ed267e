package pipeline

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/message"
	"postlist/store"
)

// DefaultRejectReason is the reason a rejected poster is given when the
// moderator gives none.
const DefaultRejectReason = "the list's moderators rejected it"

// Approve releases a held message: it is recorded as a post of its list
// and queued for every member, exactly as if the rules had accepted it.
// by names the moderator for the record ("cli:alice"). A message already
// decided gives an error wrapping store.ErrAlreadyDone.
func (p *Pipeline) Approve(ctx context.Context, heldID int64, by string) error {
	h, err := p.st.GetHeld(ctx, heldID)
	if err != nil {
		return err
	}
	l, err := p.st.ListByID(ctx, h.ListID)
	if err != nil {
		return err
	}
	res, err := p.st.DecideHeld(ctx, store.HeldDecision{
		HeldID: heldID, State: store.HeldApproved, By: by, Envelope: p.envelopeFunc(l),
	})
	if err != nil {
		return err
	}
	p.logDecision(res.Held, store.ActionAccept, by, "approved by a moderator", zap.Int("deliveries", res.Deliveries))
	if res.Deliveries > 0 {
		p.wakeDeliverer()
	}
	return nil
}

// Reject refuses a held message and tells the poster why (reason, or
// DefaultRejectReason), unless the post was automatic mail or came from
// the null sender, which must never be answered.
func (p *Pipeline) Reject(ctx context.Context, heldID int64, by, reason string) error {
	reason = message.OneLine(strings.TrimSpace(reason))
	if reason == "" {
		reason = DefaultRejectReason
	}
	h, err := p.st.GetHeld(ctx, heldID)
	if err != nil {
		return err
	}
	if h.State != store.HeldHeld {
		// Checked again atomically by DecideHeld; this only spares
		// building a notice that would be thrown away.
		return fmt.Errorf("reject held message %d: it was %s by %s at %s: %w", h.ID, h.State, h.DecidedBy, h.DecidedAt, store.ErrAlreadyDone)
	}
	l, err := p.st.ListByID(ctx, h.ListID)
	if err != nil {
		return err
	}
	envSender, body, err := p.st.MessageSender(ctx, h.MessageID)
	if err != nil {
		return err
	}
	d := store.HeldDecision{HeldID: heldID, State: store.HeldRejected, By: by, Reason: reason}
	if n, ok := p.rejectNotice(l, h.Sender, envSender, reason, body); ok {
		d.Notices = []store.Notice{n}
	}
	res, err := p.st.DecideHeld(ctx, d)
	if err != nil {
		return err
	}
	p.logDecision(res.Held, store.ActionReject, by, reason, zap.Int("notices", res.Notices))
	if res.Notices > 0 {
		p.wakeDeliverer()
	}
	return nil
}

// Discard drops a held message without telling anyone.
func (p *Pipeline) Discard(ctx context.Context, heldID int64, by string) error {
	res, err := p.st.DecideHeld(ctx, store.HeldDecision{HeldID: heldID, State: store.HeldDiscarded, By: by})
	if err != nil {
		return err
	}
	p.logDecision(res.Held, store.ActionDiscard, by, "discarded by a moderator")
	return nil
}

// ConfirmHeld carries out a moderator's reply to a hold notice, which
// reached the held post's NAME-confirm+TOKEN address: with the list's
// moderator password in an Approved: field or first text line the post is
// approved, without any Approved: it is discarded, and with a wrong
// password it stays held. This is Mailman's rule; the token alone, which
// only the moderators were sent, is enough to discard but not to publish.
// by names the moderator for the record. It returns the post's state
// afterwards: store.HeldApproved, store.HeldDiscarded, or store.HeldHeld
// when the password was wrong (or the list has none).
func (p *Pipeline) ConfirmHeld(ctx context.Context, heldID int64, reply []byte, by string) (string, error) {
	h, err := p.st.GetHeld(ctx, heldID)
	if err != nil {
		return "", err
	}
	l, err := p.st.ListByID(ctx, h.ListID)
	if err != nil {
		return "", err
	}
	password := l.Setting("moderator_password")
	a := findApproval(reply, message.Parse(reply), password)
	switch {
	case a.Where == "":
		return store.HeldDiscarded, p.Discard(ctx, heldID, by)
	case password == "" || !a.Valid:
		p.log.Info("held message not approved by mail: wrong moderator password",
			zap.String("list", l.Address), zap.Int64("held_id", heldID), zap.String("by", by))
		return store.HeldHeld, nil
	}
	return store.HeldApproved, p.Approve(ctx, heldID, by)
}

func (p *Pipeline) logDecision(h store.Held, action, by, reason string, extra ...zap.Field) {
	fields := append([]zap.Field{
		zap.String("list", h.List), zap.Int64("msg_id", h.MessageID), zap.Int64("held_id", h.ID),
		zap.String("sender", address.Redact(h.Sender, "")), zap.String("rule", "moderator"), zap.String("action", action),
		zap.String("reason", reason), zap.String("by", by),
	}, extra...)
	p.log.Info("held message decided", fields...)
}
