// Package pipeline processes list posts after LMTP intake: it runs the
// posting rules on each new post, holds, rejects, discards or accepts it,
// fans accepted posts out to one delivery row per member, tells
// moderators about held posts, renders each member's decorated copy at
// send time, and serves the one-click unsubscribe endpoint.
//
// The flow for one post (an intake row of kind post):
//
//	intake row --rules--> accept  -> posts row + deliveries rows (one per member)
//	                      hold    -> held row + notice to owners and moderators
//	                      reject  -> notice to the poster
//	                      discard -> nothing but the record
//
// Each decision is one store transaction that also marks the intake row
// done with the rule and reason, so a crash leaves a post either
// untouched (it is processed again) or completely decided. A held post
// that a moderator approves (Approve) continues exactly as if the rules
// had accepted it.
//
// Nothing is stored per member: Render builds each member's copy from the
// stored post and the list's settings when the deliverer sends it, with
// the member's one-click unsubscribe link derived from a site secret, the
// List-Id, the address and the time (see UnsubscribeURL).
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/internal/stage"
	"postlist/message"
	"postlist/notice"
	"postlist/store"
)

// Options configure a Pipeline.
type Options struct {
	Store *store.Store
	Log   *zap.Logger
	// Delimiter is the VERP (recipient) delimiter, "+" when empty.
	Delimiter string
	// BaseURL is the public URL of the HTTP listener ([http] base_url)
	// for one-click unsubscribe links; "" means mailto links only.
	BaseURL string
	// SiteOwner receives hold notices for lists without owners or
	// moderators.
	SiteOwner string
	// Secret keys the per-member unsubscribe tokens (HMAC). Without it no
	// one-click link is offered. See Secret.
	Secret []byte
	// UnsubscribeLinkLife is how long a one-click link works after the
	// copy carrying it was rendered ([http] unsubscribe_link_life); 0
	// means DefaultUnsubscribeLinkLife.
	UnsubscribeLinkLife time.Duration
	// Signer signs each member's VERP return path (see
	// store.VERPSigner), so that only bounces of mail we sent can score
	// against a member. Without a key, Mailman's unsigned form is used.
	Signer address.VERPSigner
	// Notify is called after deliveries were queued, to wake the
	// deliverer; nil when nobody needs waking (the CLI: the daemon polls).
	Notify func()
	// PollInterval is how often intake is checked without a Kick; 0
	// means one second.
	PollInterval time.Duration
	// HeldTokenLifetime is how long a held post can be decided by mail;
	// 0 means DefaultHeldTokenLifetime.
	HeldTokenLifetime time.Duration
	// MaxAutoresponsesPerDay caps the reject notices (and any other
	// automatic mail to a poster) one address gets per UTC day ([mta]
	// max_autoresponses_per_day); 0 means no limit.
	MaxAutoresponsesPerDay int
}

// Pipeline processes posts. Its methods are safe for concurrent use.
type Pipeline struct {
	st       *store.Store
	log      *zap.Logger
	delim    string
	baseURL  string
	owner    string
	secret   []byte
	macs     sync.Pool // keyed HMACs, see tokenMAC
	linkLife time.Duration
	signer   address.VERPSigner
	notify   func()
	heldLife time.Duration
	maxAuto  int
	stage    *stage.Stage
	cache    renderCache
}

// New returns a Pipeline. It does not start anything: Run processes
// intake, Render and UnsubscribeHandler serve the deliverer and the HTTP
// listener.
func New(o Options) *Pipeline {
	p := &Pipeline{
		st:      o.Store,
		delim:   o.Delimiter,
		baseURL: strings.TrimRight(o.BaseURL, "/"),
		owner:   o.SiteOwner,
		secret:  o.Secret,
		signer:  o.Signer,
		notify:  o.Notify,
	}
	// The pipeline wakes the deliverer itself, right after each decision
	// (as after a moderator's), so the stage has no Notify.
	p.stage = stage.New(stage.Config{
		Name: "pipeline", Kinds: []string{"post"}, Store: o.Store, Log: o.Log, PollInterval: o.PollInterval,
		Process: func(ctx context.Context, it store.IntakeItem) (bool, error) { return false, p.process(ctx, it) },
	})
	p.log = p.stage.Log()
	p.maxAuto = o.MaxAutoresponsesPerDay
	p.linkLife = o.UnsubscribeLinkLife
	if p.linkLife <= 0 {
		p.linkLife = DefaultUnsubscribeLinkLife
	}
	p.heldLife = o.HeldTokenLifetime
	if p.heldLife <= 0 {
		p.heldLife = DefaultHeldTokenLifetime
	}
	p.cache.init()
	if p.baseURL != "" && len(p.secret) == 0 {
		p.log.Warn("base_url is set but no unsubscribe secret was given: List-Unsubscribe carries mailto links only")
	}
	return p
}

// Kick wakes Run, e.g. after LMTP committed new intake rows. It never
// blocks.
func (p *Pipeline) Kick() { p.stage.Kick() }

func (p *Pipeline) wakeDeliverer() {
	if p.notify != nil {
		p.notify()
	}
}

// Run processes new intake rows of kind post until ctx ends; other kinds
// are left for their own stages. It returns nil when ctx ends.
func (p *Pipeline) Run(ctx context.Context) error { return p.stage.Run(ctx) }

// RunOnce processes the posts waiting now (up to one batch) and returns
// how many it took. An error means the database failed; posts not yet
// decided stay new.
func (p *Pipeline) RunOnce(ctx context.Context) (int, error) { return p.stage.RunOnce(ctx) }

// DefaultHeldTokenLifetime is how long a held post can be decided by
// mail, as Mailman's moderator_request_life; `postlist held` works as
// long as the post is held.
const DefaultHeldTokenLifetime = 180 * 24 * time.Hour

// permanentError marks a post that will never process (its list is gone).
func permanentError(err error) error { return stage.PermanentError{Err: err} }

// process decides one post.
func (p *Pipeline) process(ctx context.Context, it store.IntakeItem) error {
	if it.List == "" {
		return permanentError(errors.New("the list was removed before the post was processed"))
	}
	l, err := p.st.GetList(ctx, it.List)
	if errors.Is(err, store.ErrNotFound) {
		return permanentError(fmt.Errorf("the list %s no longer exists", it.List))
	}
	if err != nil {
		return err
	}
	envSender, body, err := p.st.MessageSender(ctx, it.MessageID)
	if err != nil {
		return err
	}
	if kind := message.Parse(body).Get(notice.Header); kind != "" {
		return p.discardOwnNotice(ctx, l, it, envSender, kind)
	}
	// One queued message can reach us as several posts (see
	// store.EarlierPost); only the first is distributed.
	if first, err := p.st.EarlierPost(ctx, l.ID, it.MessageID); err != nil {
		return err
	} else if first != 0 {
		return p.discardDuplicate(ctx, l, it, envSender, first)
	}
	f, err := p.gather(ctx, l, body, envSender, it.Size)
	if err != nil {
		return err
	}
	v := evaluate(f)
	subject := message.DecodeHeader(f.Msg.Get("Subject"))
	d := store.PostDecision{
		IntakeID: it.ID, ListID: l.ID, MessageID: it.MessageID, Cleaned: f.Approval.Cleaned,
		Action: v.Action, Rule: v.Rule, Reason: v.Reason, Sender: f.Poster, Subject: message.OneLine(subject),
	}
	// The message that is held or rejected is the cleaned one: a
	// moderator or poster never sees the password again either.
	post := body
	if f.Approval.Cleaned != nil {
		post = f.Approval.Cleaned
	}
	switch v.Action {
	case store.ActionAccept:
		d.Envelope = p.envelopeFunc(l)
	case store.ActionHold:
		tok, err := address.NewToken()
		if err != nil {
			return err
		}
		d.HeldToken = &store.Token{Token: tok, ExpiresAt: p.st.Now().Add(p.heldLife)}
		if l.Bool("admin_immed_notify") {
			admins, err := p.st.ListAdmins(ctx, l.ID)
			if err != nil {
				return err
			}
			d.Notices = func(r store.PostResult) []store.Notice {
				n, ok := p.holdNotice(l, admins, r.HeldID, tok, v, f.Poster, subject, post)
				if !ok {
					return nil
				}
				return []store.Notice{n}
			}
		}
	case store.ActionReject:
		n, ok := p.rejectNotice(l, f.Poster, envSender, v.Rule+": "+v.Reason, post)
		if ok {
			d.Notices = func(store.PostResult) []store.Notice { return []store.Notice{n} }
		}
	}
	res, err := p.st.RecordPost(ctx, d)
	if errors.Is(err, store.ErrAlreadyDone) {
		// Someone else decided this row meanwhile; nothing is lost.
		p.log.Info("post already decided", zap.String("list", l.Address), zap.Int64("msg_id", it.MessageID))
		return nil
	}
	if err != nil {
		return err
	}
	p.log.Info("post decided",
		zap.String("list", l.Address), zap.Int64("msg_id", res.MessageID), zap.String("sender", address.Redact(f.Poster, "")),
		zap.String("rule", v.Rule), zap.String("action", v.Action), zap.String("reason", v.Reason),
		zap.Int("deliveries", res.Deliveries), zap.Int64("held_id", res.HeldID), zap.Int("notices", res.Notices))
	if res.Deliveries > 0 || res.Notices > 0 {
		p.wakeDeliverer()
	}
	return nil
}

// gather collects the facts the rules need.
func (p *Pipeline) gather(ctx context.Context, l *store.List, body []byte, envSender string, size int64) (*facts, error) {
	m := message.Parse(body)
	domains, err := p.st.ListDomains(ctx, l.ID)
	if err != nil {
		return nil, err
	}
	f := &facts{
		List: listFacts{
			Address: strings.ToLower(l.Address), ListID: l.ListID, Domains: domains,
			Delimiters:             delimiters(p.delim),
			Emergency:              l.Bool("emergency"),
			MaxMessageKiB:          int64(l.Int("max_message_size")),
			DefaultMemberAction:    l.Setting("default_member_action"),
			DefaultNonmemberAction: l.Setting("default_nonmember_action"),
			RequireExplicitDest:    l.Bool("require_explicit_destination"),
			MaxNumRecipients:       l.Int("max_num_recipients"),
			Administrivia:          l.Bool("administrivia"),
			RequestAddress:         address.Target{List: l.Address, Kind: address.Request}.Address(p.delim),
		},
		Msg:  m,
		Size: size,
	}
	if f.List.Administrivia {
		f.Text, _ = message.TextBody(body)
	}
	hms, err := p.st.HeaderMatches(ctx, l.Address)
	if err != nil {
		return nil, err
	}
	for _, hm := range hms {
		re, err := store.CompileHeaderPattern(hm.Pattern)
		if err != nil {
			// Checked when added; a pattern that no longer compiles
			// is skipped, not a reason to stop the post.
			p.log.Warn("header check ignored: pattern does not compile", zap.String("list", l.Address),
				zap.Int64("header_match", hm.ID), zap.Error(err))
			continue
		}
		f.HeaderMatches = append(f.HeaderMatches, headerMatch{hm, re})
	}
	f.Senders, f.Poster = senders(m, envSender)
	rows, err := p.st.PostingMembers(ctx, l.ID, f.Senders)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		r := &rows[i]
		switch {
		case r.Role == "nonmember":
			if f.Nonmember == nil && r.ModerationAction != "" {
				f.Nonmember = r
			}
		case f.Member == nil:
			f.Member = r
		}
	}
	for _, s := range f.Senders {
		banned, err := p.st.Banned(ctx, l.Address, s)
		if err != nil {
			return nil, err
		}
		if banned {
			f.Banned = s
			break
		}
	}
	f.Approval = checkApproval(body, m, l.Setting("moderator_password"))
	return f, nil
}

// senders returns the candidate sender addresses of a post (From, Sender,
// envelope sender; normalised, each once) and the poster: the first From
// address, else the envelope sender.
func senders(m *message.Message, envSender string) (all []string, poster string) {
	seen := map[string]bool{}
	add := func(a string) {
		n, err := address.Normalize(a)
		if err != nil || seen[strings.ToLower(n)] {
			return
		}
		seen[strings.ToLower(n)] = true
		all = append(all, n)
	}
	for _, field := range []string{"From", "Sender"} {
		for _, v := range m.Values(field) {
			as, err := message.ParseAddressList(v)
			if err != nil {
				continue
			}
			for _, a := range as {
				add(a.Address)
			}
		}
		if field == "From" && len(all) > 0 {
			poster = all[0]
		}
	}
	add(envSender)
	if poster == "" && envSender != "" {
		if n, err := address.Normalize(envSender); err == nil {
			poster = n
		}
	}
	return all, poster
}

// delimiters keeps the characters of the configured delimiter that can
// separate an extension ("+" by default).
func delimiters(d string) string {
	var b strings.Builder
	for _, c := range d {
		if c != '-' && c != '.' && c < 0x80 && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') && c > ' ' {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "+"
	}
	return b.String()
}

// bounces returns the list's -bounces address.
func bounces(list string) string {
	name, domain := address.ListName(list)
	return name + "-bounces@" + domain
}

// envelopeFrom is the envelope sender of a post to member, sent at now:
// the member's VERP address on a personalized list (verp yes, the
// default), so a bounce names who bounced, else the plain -bounces
// address, which lets bulk delivery group members into shared
// transactions. With a signer the VERP address carries a time stamp and
// a signature, which the milter and the bounce processor check.
func (p *Pipeline) envelopeFrom(l *store.List, member string, now time.Time) string {
	if !l.Bool("verp") {
		return bounces(l.Address)
	}
	if len(p.signer.Key) > 0 {
		return p.signer.VERP(l.Address, member, p.delim, now)
	}
	return address.VERP(l.Address, member, p.delim)
}

// envelopeFunc signs every member's return path of one fan-out with the
// same time.
func (p *Pipeline) envelopeFunc(l *store.List) func(string) string {
	now := p.st.Now()
	return func(m string) string { return p.envelopeFrom(l, m, now) }
}
