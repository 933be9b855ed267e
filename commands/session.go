package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/message"
	"postlist/notice"
	"postlist/store"
)

// session runs the commands of one message and collects the reply.
type session struct {
	p      *Processor
	log    *zap.Logger
	l      *store.List
	it     store.IntakeItem
	raw    []byte
	msg    *message.Message
	sender string // normalised From (or envelope) address
	name   string // its display name
	// implicit marks mail to -join, -leave or -confirm+TOKEN: as in
	// Mailman, the person gets no results mail unless something needs
	// saying (an error, or a request waiting for a moderator).
	implicit bool
	force    bool
	queued   bool // mail other than the reply was queued

	results     []string // reply lines
	summary     []string // short results for intake.result
	unprocessed []string
	ignored     []string
	nonText     bool
	seen        map[string]bool // commands already run in this message
	// targeted is set once a join named an address= : one per message,
	// so that one message cannot send confirmations to ten strangers.
	targeted bool
	// notices are mail to someone other than the sender, queued with
	// the reply (to the address a join named).
	notices []store.Notice
}

// parseAndRun reads the Subject and first text/plain part as commands.
func (s *session) parseAndRun(ctx context.Context, raw []byte) error {
	text, other := message.TextBody(raw)
	s.nonText = other
	cmds, ignored := Parse(message.DecodeHeader(s.msg.Get("Subject")), []byte(text))
	s.ignored = ignored
	return s.run(ctx, cmds)
}

// run executes cmds in order until one stops processing.
func (s *session) run(ctx context.Context, cmds []Command) error {
	for i, c := range cmds {
		if !s.implicit {
			s.results = append(s.results, "> "+c.Line)
		}
		key := c.Name + " " + strings.Join(c.Args, " ")
		if c.Name != "" && c.Name != CmdEcho && c.Name != CmdHelp && s.seen[key] {
			// Mailman ignores a repeated join, leave or confirm: quoting
			// a message twice must not send two confirmations.
			s.say("(already done above)")
			continue
		}
		s.seen[key] = true
		stop, err := s.exec(ctx, c)
		if err != nil {
			return err
		}
		if stop {
			for _, rest := range cmds[i+1:] {
				s.unprocessed = append(s.unprocessed, rest.Line)
			}
			return nil
		}
	}
	return nil
}

// say adds a line to the reply; sayForced also makes an implicit command
// reply.
func (s *session) say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	s.results = append(s.results, line)
	s.summary = append(s.summary, line)
}

// note records a result for intake.result (which only the site's
// administrators read) without putting it in the reply.
func (s *session) note(format string, args ...any) {
	s.summary = append(s.summary, fmt.Sprintf(format, args...))
}

func (s *session) sayForced(format string, args ...any) {
	s.force = true
	s.say(format, args...)
}

// exec runs one command and reports whether processing stops there.
func (s *session) exec(ctx context.Context, c Command) (bool, error) {
	switch c.Name {
	case CmdJoin:
		return s.join(ctx, c.Args)
	case CmdLeave:
		return false, s.leave(ctx)
	case CmdConfirm:
		if len(c.Args) != 1 {
			s.sayForced("confirm: give exactly one token")
			return true, nil
		}
		// Mailman stops after confirm: the rest of a reply to a
		// confirmation request is quoted text.
		return true, s.confirm(ctx, strings.ToLower(c.Args[0]))
	case CmdHelp:
		s.help(c.Args)
		return false, nil
	case CmdEcho:
		s.say("%s", strings.Join(c.Args, " "))
		return false, nil
	case CmdEnd:
		return true, nil
	}
	s.say("No such command: %s", c.Word)
	return false, nil
}

// join asks the sender (or address=) to confirm a subscription.
func (s *session) join(ctx context.Context, args []string) (bool, error) {
	name, target := s.name, s.sender
	for _, a := range args {
		key, val, ok := strings.Cut(a, "=")
		switch {
		case !ok:
			// Prose such as "subscribe me please": ignored, as a person
			// writing it means a plain join.
		case strings.EqualFold(key, "address"):
			if s.targeted {
				s.say("ignored: only one address= per message")
				return false, nil
			}
			s.targeted = true
			n, err := address.Normalize(val)
			if err != nil {
				s.sayForced("join: bad address: %s", notice.Clip(val))
				return true, nil
			}
			name, target = "", n
		case strings.EqualFold(key, "digest"):
			if !strings.EqualFold(val, "no") {
				s.say("join: digests are not offered; you will get each post as it is sent")
			}
		default:
			s.sayForced("join bad argument: %s", a)
			return true, nil
		}
	}
	if !s.seenOnce("join-target " + strings.ToLower(target)) {
		return false, nil
	}
	if ownAddress(s.l.Address, target) {
		s.sayForced("join: %s is one of the list's own addresses", target)
		return false, nil
	}
	if site, err := s.p.siteAddress(ctx, target); err != nil {
		return false, err
	} else if site {
		// Subscribing another list would distribute our confirmation
		// request to its members as a post, and any of them could
		// confirm it.
		s.sayForced("join: %s is an address of this site and cannot be subscribed", target)
		s.log.Info("join refused: an address of this site", zap.String("address", target))
		return false, nil
	}
	if err := address.Deliverable(target); err != nil {
		// The store would refuse the request; saying why here gives the
		// sender a reply instead of a failed message.
		reason := err.Error()
		var se *address.SyntaxError
		if errors.As(err, &se) {
			reason = se.Reason
		}
		s.sayForced("join: %s cannot be subscribed: %s", notice.Clip(target), reason)
		return false, nil
	}
	l := s.l
	if l.Setting("subscription_policy") == "closed" {
		s.sayForced("%s does not accept subscription requests by mail; ask its owners at %s", l.Address, s.owner())
		return false, nil
	}
	if target != s.sender {
		return false, s.joinOther(ctx, target)
	}
	if refused, err := s.refuseBanned(ctx, target); refused || err != nil {
		return false, err
	}
	member, err := s.p.st.IsMember(ctx, l.ID, target)
	if err != nil {
		return false, err
	}
	if member {
		s.sayForced("%s is already a member of %s", target, l.Address)
		return false, nil
	}
	_, err = s.request(ctx, store.TokenSubscribe, name, target)
	return false, err
}

// joinOther handles a join for an address= other than the sender's. The
// sender learns nothing about the address (member, pending, banned or
// none of these: the same answer), and whatever there is to say goes to
// the address itself, the only one who can act on it.
func (s *session) joinOther(ctx context.Context, target string) error {
	l := s.l
	s.say("A request for %s was passed on: anything to say about it goes to that address only", target)
	log := s.log.With(zap.String("address", target))
	banned, err := s.p.st.Banned(ctx, l.Address, target)
	if err != nil {
		return err
	}
	if banned {
		log.Info("join for another address refused: banned")
		s.note("%s is banned: nothing sent", target)
		return nil
	}
	member, err := s.p.st.IsMember(ctx, l.ID, target)
	if err != nil {
		return err
	}
	if member {
		log.Info("join for another address: already a member; told the address")
		s.note("%s is already a member: told that address", target)
		s.notices = append(s.notices, s.p.stateNotice(l, target, s.it.HeaderMessageID,
			fmt.Sprintf("Someone asked for your address, %s, to join the %s mailing list.\nIt is already a member, so nothing was changed.\n", target, l.Address)))
		return nil
	}
	pending, err := s.request(ctx, store.TokenSubscribe, "", target)
	if err != nil || !pending {
		return err
	}
	log.Info("join for another address: a request is already pending; told the address")
	s.note("%s already has a pending request: told that address", target)
	s.notices = append(s.notices, s.p.stateNotice(l, target, s.it.HeaderMessageID,
		fmt.Sprintf("Someone asked again for your address, %s, to join the %s mailing list.\n"+
			"A request is already waiting for your confirmation: reply to the\nconfirmation request sent earlier, or ignore it to let it expire.\n", target, l.Address)))
	return nil
}

// seenOnce reports whether key is new in this message, and remembers it.
func (s *session) seenOnce(key string) bool {
	if s.seen[key] {
		return false
	}
	s.seen[key] = true
	return true
}

func (s *session) refuseBanned(ctx context.Context, addr string) (bool, error) {
	banned, err := s.p.st.Banned(ctx, s.l.Address, addr)
	if err != nil || !banned {
		return false, err
	}
	s.sayForced("%s may not subscribe to %s", addr, s.l.Address)
	s.log.Info("join refused: banned", zap.String("address", addr))
	return true, nil
}

// leave removes the sender, at once under an open unsubscription policy,
// else after confirmation.
func (s *session) leave(ctx context.Context) error {
	l := s.l
	member, err := s.p.st.IsMember(ctx, l.ID, s.sender)
	if err != nil {
		return err
	}
	if !member {
		s.sayForced("%s is not a member of %s", s.sender, l.Address)
		return nil
	}
	if l.Setting("unsubscription_policy") != "open" {
		_, err := s.request(ctx, store.TokenUnsubscribe, s.name, s.sender)
		return err
	}
	removed, err := s.p.st.LeaveList(ctx, l.ID, s.sender, "email (leave)", func() []store.Notice {
		return s.p.goodbye(l, s.name, s.sender)
	})
	if err != nil {
		return err
	}
	if removed {
		s.say("%s left %s", s.sender, l.Address)
		s.log.Info("member left", zap.String("address", s.sender))
	} else {
		s.sayForced("%s is not a member of %s", s.sender, l.Address)
	}
	return nil
}

// request stores a subscription or unsubscription request and mails its
// confirmation request to the address concerned. pending reports that
// one was waiting already (nothing was stored or sent); the reply says
// so only when addr is the sender's own.
func (s *session) request(ctx context.Context, kind, name, addr string) (pending bool, err error) {
	tok, err := address.NewToken()
	if err != nil {
		return false, err
	}
	now := s.p.st.Now()
	t := store.Token{Token: tok, ListID: s.l.ID, Kind: kind, Address: addr, DisplayName: name, ExpiresAt: now.Add(s.p.o.TokenLifetime)}
	err = s.p.st.AddToken(ctx, t, []store.Notice{s.p.confirmRequest(s.l, t, s.it.HeaderMessageID)})
	what := "subscription"
	if kind == store.TokenUnsubscribe {
		what = "unsubscription"
	}
	if errors.Is(err, store.ErrPending) {
		if addr == s.sender {
			s.sayForced("%s already has a pending %s request for %s; reply to the confirmation request sent earlier", addr, what, s.l.Address)
		}
		return true, nil
	}
	if err != nil {
		return false, err
	}
	s.queued = true
	if addr == s.sender {
		s.say("Confirmation email sent to %s", addr)
	} else {
		s.note("confirmation request sent to %s", addr)
	}
	s.log.Info("confirmation requested", zap.String("kind", kind), zap.String("address", addr), zap.String("token", tokenPrefix(tok)))
	return false, nil
}

// tokenPrefix is what logs show of a token: enough to match a log line to
// a tokens row, not enough to use it.
func tokenPrefix(t string) string {
	if len(t) > 8 {
		return t[:8] + "..."
	}
	return t
}

// confirm completes the request tok stands for.
func (s *session) confirm(ctx context.Context, tok string) error {
	l := s.l
	if !address.ValidToken(tok) {
		s.sayForced("Confirmation token did not match")
		return nil
	}
	t, err := s.p.st.LiveToken(ctx, tok)
	if err == nil && t.ListID == l.ID && t.Kind == store.TokenHeld && s.p.o.ConfirmHeld != nil {
		return s.confirmHeld(ctx, t)
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && (t.ListID != l.ID || t.Kind == store.TokenHeld)) {
		s.sayForced("Confirmation token did not match")
		s.log.Info("confirmation refused: unknown, used or expired token", zap.String("token", tokenPrefix(tok)))
		return nil
	}
	if err != nil {
		return err
	}
	log := s.log.With(zap.String("token", tokenPrefix(tok)), zap.String("address", t.Address))
	action, by := t.Kind, "email confirmation"
	if t.Kind == store.TokenModerate {
		action, by = t.Data, "moderator approval (mail from "+s.sender+")"
	} else if moderated(l, t.Kind) {
		return s.toModerators(ctx, log, t)
	}
	if action == store.TokenSubscribe {
		if l.Setting("subscription_policy") == "closed" {
			s.sayForced("%s no longer accepts subscription requests by mail", l.Address)
			return nil
		}
		if refused, err := s.refuseBanned(ctx, t.Address); refused || err != nil {
			return err
		}
	}
	res, err := s.p.st.CompleteToken(ctx, store.TokenCompletion{
		Token: tok, Action: action, By: by,
		Notices: func(changed bool) []store.Notice {
			switch {
			case !changed:
				return nil
			case action == store.TokenSubscribe:
				return s.p.welcome(l, t.DisplayName, t.Address)
			default:
				return s.p.goodbye(l, t.DisplayName, t.Address)
			}
		},
	})
	if errors.Is(err, store.ErrNotFound) {
		s.sayForced("Confirmation token did not match")
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case res.Changed:
		s.queued = true
		s.say("Confirmed")
		log.Info("request completed", zap.String("action", action), zap.String("by", by))
	case action == store.TokenSubscribe:
		s.sayForced("%s is already a member of %s", t.Address, l.Address)
	default:
		s.sayForced("%s is not a member of %s", t.Address, l.Address)
	}
	return nil
}

// confirmHeld passes a moderator's reply to a hold notice to the posting
// pipeline, which approves, discards or keeps the post (see
// pipeline.ConfirmHeld), and says how it went.
func (s *session) confirmHeld(ctx context.Context, t *store.Token) error {
	id, err := strconv.ParseInt(t.Data, 10, 64)
	if err != nil {
		return fmt.Errorf("held-message token %s: held id %q: %w", tokenPrefix(t.Token), t.Data, err)
	}
	log := s.log.With(zap.String("token", tokenPrefix(t.Token)), zap.Int64("held_id", id))
	outcome, err := s.p.o.ConfirmHeld(ctx, id, s.raw, "mail from "+s.sender)
	switch {
	case errors.Is(err, store.ErrAlreadyDone):
		s.sayForced("The held message was already decided")
		return nil
	case errors.Is(err, store.ErrNotFound):
		s.sayForced("Confirmation token did not match")
		return nil
	case err != nil:
		return err
	case outcome == store.HeldHeld:
		s.sayForced("Invalid Approved: password")
		log.Info("held message kept: wrong moderator password")
		return nil
	}
	s.queued = true
	s.say("Confirmed: the held message was %s", outcome)
	log.Info("held message decided by mail", zap.String("outcome", outcome))
	return nil
}

// moderated reports whether a confirmed request of kind still needs a
// moderator under l's policies.
func moderated(l *store.List, kind string) bool {
	policy := l.Setting("subscription_policy")
	if kind == store.TokenUnsubscribe {
		policy = l.Setting("unsubscription_policy")
	}
	return policy == "moderate" || policy == "confirm_then_moderate"
}

// toModerators replaces a confirmed request by one waiting for a
// moderator, and tells the moderators.
func (s *session) toModerators(ctx context.Context, log *zap.Logger, t *store.Token) error {
	l := s.l
	tok, err := address.NewToken()
	if err != nil {
		return err
	}
	next := store.Token{Token: tok, Address: t.Address, DisplayName: t.DisplayName, Data: t.Kind,
		ExpiresAt: s.p.st.Now().Add(s.p.o.ModeratorTokenLifetime)}
	admins, err := s.p.st.ListAdmins(ctx, l.ID)
	if err != nil {
		return err
	}
	admins = notice.Admins(admins, s.p.o.SiteOwner)
	_, err = s.p.st.CompleteToken(ctx, store.TokenCompletion{
		Token: t.Token, Action: store.TokenModerate, Next: &next, By: "email confirmation",
		Notices: func(bool) []store.Notice {
			if len(admins) == 0 {
				return nil
			}
			next.ListID = l.ID
			return []store.Notice{s.p.moderationRequest(l, next, admins)}
		},
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.sayForced("Confirmation token did not match")
		return nil
	case errors.Is(err, store.ErrPending):
		s.sayForced("A moderator is already considering a request for %s", t.Address)
		return nil
	case err != nil:
		return err
	}
	s.queued = len(admins) > 0
	s.sayForced("Confirmed; the request for %s now waits for a moderator of %s", t.Address, l.Address)
	log.Info("request waits for a moderator", zap.String("moderation_token", tokenPrefix(tok)), zap.Int("moderators", len(admins)))
	if len(admins) == 0 {
		log.Warn("nobody to moderate the request: the list has no owners or moderators and no site owner is configured")
	}
	return nil
}

// help lists the commands, or explains one.
func (s *session) help(args []string) {
	if len(args) > 1 {
		s.say("help: too many arguments: %s", strings.Join(args, " "))
		return
	}
	if len(args) == 1 {
		word := strings.ToLower(args[0])
		name, ok := aliases[word]
		if !ok {
			s.say("help: no such command: %s", word)
			return
		}
		h := helpTexts[name]
		s.say("%s %s", word, h.usage)
		s.say("    %s", h.short)
		if h.long != "" {
			for line := range strings.SplitSeq(h.long, "\n") {
				s.say("    %s", line)
			}
		}
		return
	}
	for _, w := range helpOrder {
		s.say("%-12s - %s", w, helpTexts[aliases[w]].short)
	}
}

type helpText struct{ usage, short, long string }

var helpOrder = []string{"confirm", "echo", "end", "help", "join", "leave", "stop", "subscribe", "unsubscribe"}

var helpTexts = map[string]helpText{
	CmdConfirm: {"TOKEN", "Confirm a subscription or unsubscription request.",
		"Replying to a confirmation request does the same."},
	CmdEcho: {"[ARGS...]", "Echo back your arguments.", ""},
	CmdEnd:  {"", "Stop processing commands (also: stop).", "Put it before a signature your mail program adds."},
	CmdHelp: {"[COMMAND]", "Get help about the available email commands.", ""},
	CmdJoin: {"[address=ADDRESS]", "Join this mailing list (also: subscribe).",
		"A confirmation request is sent to the address, your own by default."},
	CmdLeave: {"", "Leave this mailing list (also: unsubscribe).",
		"The address you write from is removed, usually after you confirm."},
}

// owner is the list's -owner address.
func (s *session) owner() string { return notice.ListAddress(s.l.Address, address.Owner, "", "") }
