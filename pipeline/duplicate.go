package pipeline

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/message"
	"postlist/notice"
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

// ruleOwnNotice names the decision about a post that is one of postlist's
// own notices (it carries notice.Header).
const ruleOwnNotice = "own-notice"

// discardOwnNotice records post it as discarded: it is a notice postlist
// wrote (a confirmation request or a results mail sent to an address
// that is another list, say). Distributing it would hand a confirmation
// token to every member; answering it could loop, so nobody is told.
func (p *Pipeline) discardOwnNotice(ctx context.Context, l *store.List, it store.IntakeItem, sender, kind string) error {
	reason := fmt.Sprintf("the message is a notice of this list server (%s: %s)", notice.Header, message.OneLine(kind))
	_, err := p.st.RecordPost(ctx, store.PostDecision{
		IntakeID: it.ID, ListID: l.ID, MessageID: it.MessageID,
		Action: store.ActionDiscard, Rule: ruleOwnNotice, Reason: reason, Sender: sender,
	})
	if err != nil {
		return err
	}
	p.log.Info("post decided",
		zap.String("list", l.Address), zap.Int64("msg_id", it.MessageID), zap.String("sender", sender),
		zap.String("rule", ruleOwnNotice), zap.String("action", store.ActionDiscard), zap.String("reason", reason))
	return nil
}
