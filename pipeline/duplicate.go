package pipeline

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/store"
)

// ruleDuplicate names the decision about a post that is another copy of a
// queued message the list already took (see store.EarlierPost).
const ruleDuplicate = "duplicate"

// discardDuplicate records post it as discarded: list l already took the
// same queued message as message first. The members got (or will get) it
// from that one; nobody is notified, since nothing went wrong for the
// poster.
func (p *Pipeline) discardDuplicate(ctx context.Context, l *store.List, it store.IntakeItem, sender string, first int64) error {
	reason := fmt.Sprintf("the same queued message was already posted as message %d", first)
	_, err := p.st.RecordPost(ctx, store.PostDecision{
		IntakeID: it.ID, ListID: l.ID, MessageID: it.MessageID,
		Action: store.ActionDiscard, Rule: ruleDuplicate, Reason: reason, Sender: sender,
	})
	if err != nil {
		return err
	}
	p.log.Info("post decided",
		zap.String("list", l.Address), zap.Int64("msg_id", it.MessageID), zap.String("sender", address.Redact(sender, "")),
		zap.String("rule", ruleDuplicate), zap.String("action", store.ActionDiscard), zap.String("reason", reason))
	return nil
}
