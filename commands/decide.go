package commands

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"postlist/store"
)

// ErrNotModeration means a token is not a membership request waiting for a
// moderator: it waits for the person's own confirmation, or stands for a
// held post. A moderator deciding it would skip the person's consent.
var ErrNotModeration = errors.New("not a membership request waiting for a moderator")

// ErrRefused means the list's settings no longer allow what a request
// asks: its address was banned, or the list closed, after the request was
// made. The request stays pending, as it does when a moderator's reply
// meets the same refusal.
var ErrRefused = errors.New("request refused")

// Decision says what DecideRequest did.
type Decision struct {
	// Request is the request as it was; its token is spent.
	Request store.Token `json:"request"`
	// Action is what it asked: store.TokenSubscribe or TokenUnsubscribe.
	Action   string `json:"action"`
	Approved bool   `json:"approved"`
	// Changed is false when an approved request found the address already
	// a member (subscribe) or already gone (unsubscribe).
	Changed bool `json:"changed"`
	// Notices is how many welcome or goodbye messages were queued.
	Notices int `json:"notices"`
}

// DecideRequest approves or discards a confirmed request that waits for a
// moderator (a store.TokenModerate token), as a moderator outside mail
// does it. Approval completes it exactly as a moderator's reply to the
// moderation request does, welcome or goodbye included; discarding drops
// it without telling anyone, as letting it expire would. by names the
// moderator for the events ("cli:alice"). An unknown, used or expired
// token gives store.ErrNotFound.
func (p *Processor) DecideRequest(ctx context.Context, token string, approve bool, by string) (Decision, error) {
	t, err := p.st.LiveToken(ctx, token)
	if err != nil {
		return Decision{}, fmt.Errorf("request %s: %w", tokenPrefix(token), err)
	}
	switch t.Kind {
	case store.TokenModerate:
	case store.TokenHeld:
		return Decision{}, fmt.Errorf("%w: token %s stands for held message %s", ErrNotModeration, tokenPrefix(t.Token), t.Data)
	default:
		return Decision{}, fmt.Errorf("%w: token %s waits for %s's own confirmation of a %s request",
			ErrNotModeration, tokenPrefix(t.Token), t.Address, t.Kind)
	}
	d := Decision{Request: *t, Action: t.Data, Approved: approve}
	log := p.log.With(zap.String("list", t.List), zap.String("token", tokenPrefix(t.Token)), zap.String("address", t.Address),
		zap.String("action", d.Action), zap.String("by", by))
	if !approve {
		if _, err := p.st.DiscardRequest(ctx, t.Token, "moderator ("+by+")"); err != nil {
			return Decision{}, err
		}
		log.Info("request discarded by moderator")
		return d, nil
	}
	l, err := p.st.ListByID(ctx, t.ListID)
	if err != nil {
		return Decision{}, err
	}
	if d.Action == store.TokenSubscribe {
		// The same checks a moderator's reply meets: the list may have
		// changed in the months a request can wait.
		if l.Setting("subscription_policy") == "closed" {
			return Decision{}, fmt.Errorf("%w: %s no longer accepts subscription requests", ErrRefused, l.Address)
		}
		banned, err := p.st.Banned(ctx, l.Address, t.Address)
		if err != nil {
			return Decision{}, err
		}
		if banned {
			return Decision{}, fmt.Errorf("%w: %s may not subscribe to %s", ErrRefused, t.Address, l.Address)
		}
	}
	res, err := p.st.CompleteToken(ctx, store.TokenCompletion{
		Token: t.Token, Action: d.Action, By: "moderator approval (" + by + ")",
		Notices: func(changed bool) []store.Notice {
			var ns []store.Notice
			switch {
			case !changed:
			case d.Action == store.TokenSubscribe:
				ns = p.welcome(l, t.DisplayName, t.Address)
			default:
				ns = p.goodbye(l, t.DisplayName, t.Address)
			}
			d.Notices = len(ns)
			return ns
		},
	})
	if err != nil {
		return Decision{}, err
	}
	d.Changed = res.Changed
	log.Info("request approved by moderator", zap.Bool("changed", d.Changed))
	if d.Notices > 0 && p.o.Notify != nil {
		p.o.Notify()
	}
	return d, nil
}
