package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/internal/stage"
	"postlist/message"
	"postlist/notice"
	"postlist/store"
)

// Defaults for zero Options fields.
const (
	// DefaultTokenLifetime is how long a confirmation request stays valid
	// (Mailman's pending_request_life).
	DefaultTokenLifetime = 3 * 24 * time.Hour
	// DefaultModeratorTokenLifetime is how long a request waits for a
	// moderator (Mailman's moderator_request_life).
	DefaultModeratorTokenLifetime = 180 * 24 * time.Hour
	DefaultPollInterval           = stage.DefaultPollInterval
	// purgeInterval is how often expired requests are deleted (Mailman's
	// task runner evicts them hourly).
	purgeInterval = time.Hour
)

// Options configures a Processor.
type Options struct {
	Store *store.Store
	Log   *zap.Logger
	// Delimiter is the recipient delimiter (verp_delimiter), "+" if empty:
	// confirmation addresses are NAME-confirm+TOKEN.
	Delimiter string
	// SiteOwner receives owner mail and moderation requests of lists
	// without owners.
	SiteOwner string
	// Notify is called after mail was queued, to wake the deliverer.
	Notify func()
	// PollInterval is how often intake is checked without a Kick.
	PollInterval time.Duration
	// TokenLifetime and ModeratorTokenLifetime bound how long requests
	// wait for the person and for a moderator.
	TokenLifetime, ModeratorTokenLifetime time.Duration
	// ConfirmHeld decides a held post from a moderator's reply to its
	// hold notice (the posting pipeline's ConfirmHeld); nil refuses
	// held-message tokens.
	ConfirmHeld func(ctx context.Context, heldID int64, reply []byte, by string) (string, error)
	// MaxAutoresponsesPerDay caps the automatic mail one address gets
	// per UTC day ([mta] max_autoresponses_per_day): results,
	// confirmation requests and notices to the address a command named.
	// 0 means no limit.
	MaxAutoresponsesPerDay int
}

// Processor handles the intake rows of the email interface. Its methods
// are safe for concurrent use, but one Run at a time is enough: rows are
// processed in order.
type Processor struct {
	o     Options
	st    *store.Store
	log   *zap.Logger
	stage *stage.Stage
}

// kinds are the intake kinds a Processor takes; posts belong to the
// posting pipeline, bounces to package bounce.
var kinds = []string{"request", "join", "leave", "confirm", "owner"}

// New returns a Processor; Run starts it.
func New(o Options) *Processor {
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = DefaultTokenLifetime
	}
	if o.ModeratorTokenLifetime <= 0 {
		o.ModeratorTokenLifetime = DefaultModeratorTokenLifetime
	}
	p := &Processor{o: o, st: o.Store}
	p.stage = stage.New(stage.Config{
		Name: "commands", Kinds: kinds, Store: o.Store, Log: o.Log, PollInterval: o.PollInterval,
		Process: p.process, Notify: o.Notify,
		Chores: []stage.Chore{{Name: "deleting expired requests", Every: purgeInterval, Do: p.purge}},
	})
	p.log = p.stage.Log()
	return p
}

// Kick wakes Run, e.g. after LMTP committed new intake rows. It never
// blocks.
func (p *Processor) Kick() { p.stage.Kick() }

// Run processes intake rows of kinds request, join, leave, confirm and
// owner until ctx ends, and deletes expired requests hourly. It returns
// nil when ctx ends.
func (p *Processor) Run(ctx context.Context) error { return p.stage.Run(ctx) }

// RunOnce processes the rows waiting now (up to one batch) and returns how
// many it took. An error means the database failed; unfinished rows stay
// new.
func (p *Processor) RunOnce(ctx context.Context) (int, error) { return p.stage.RunOnce(ctx) }

// purge deletes the requests that expired.
func (p *Processor) purge(ctx context.Context) error {
	n, err := p.st.PurgeExpiredTokens(ctx)
	if err == nil && n > 0 {
		p.log.Info("expired requests deleted", zap.Int("requests", n))
	}
	return err
}

// process handles one intake row and reports whether mail was queued.
func (p *Processor) process(ctx context.Context, it store.IntakeItem) (bool, error) {
	log := p.log.With(zap.String("list", it.List), zap.Int64("msg_id", it.MessageID), zap.String("rcpt", address.Redact(it.Recipient, "")))
	if it.List == "" {
		return false, p.finish(ctx, log, store.FinishedIntake{IntakeID: it.ID, Result: "ignored: the list was removed"})
	}
	l, err := p.st.GetList(ctx, it.List)
	if errors.Is(err, store.ErrNotFound) {
		return false, p.finish(ctx, log, store.FinishedIntake{IntakeID: it.ID, Result: "ignored: the list was removed"})
	}
	if err != nil {
		return false, err
	}
	if it.Kind != "owner" {
		// One message, one answer, however many command addresses it
		// names (test-request+1 ... +1000): the others are answered by
		// the first.
		first, err := p.st.AnsweringIntake(ctx, it.MessageID)
		if err != nil {
			return false, err
		}
		if first != 0 && first != it.ID {
			log.Info("command mail ignored: the message is answered through another recipient", zap.Int64("answering_intake", first))
			return false, p.finish(ctx, log, store.FinishedIntake{IntakeID: it.ID, ListID: l.ID,
				Result: fmt.Sprintf("ignored, no reply: the message is answered through intake row %d", first)})
		}
	}
	envSender, body, err := p.st.MessageSender(ctx, it.MessageID)
	if err != nil {
		return false, err
	}
	m := message.Parse(body)
	if it.Kind == "owner" {
		return p.forwardOwnerMail(ctx, log, l, it, envSender)
	}
	if why := notice.Automatic(m, envSender); why != "" {
		// No reply and no action: a robot's message is never a request,
		// and answering it could start a loop.
		log.Info("command mail ignored: automatic", zap.String("sender", address.Redact(envSender, "")), zap.String("reason", why))
		return false, p.finish(ctx, log, store.FinishedIntake{IntakeID: it.ID, ListID: l.ID, Result: "ignored, no reply: automatic mail (" + why + ")"})
	}
	name, sender := Sender(m, envSender)
	if sender == "" {
		return false, p.finish(ctx, log, store.FinishedIntake{IntakeID: it.ID, ListID: l.ID, Result: "ignored: no usable sender address"})
	}
	if ownAddress(l.Address, sender) {
		// Our own mail come back (a reply sent to the list, say):
		// answering it would be talking to ourselves.
		log.Info("command mail ignored: from the list's own address", zap.String("sender", address.Redact(sender, "")))
		return false, p.finish(ctx, log, store.FinishedIntake{IntakeID: it.ID, ListID: l.ID, Result: "ignored, no reply: from the list's own address " + sender})
	}
	if site, err := p.siteAddress(ctx, sender); err != nil {
		return false, err
	} else if site {
		// Another list's address (or any address in a list domain): a
		// reply would be distributed to that list's members as a post,
		// and a join would subscribe one list to another.
		log.Info("command mail ignored: from an address of this site", zap.String("sender", address.Redact(sender, "")))
		return false, p.finish(ctx, log, store.FinishedIntake{IntakeID: it.ID, ListID: l.ID, Result: "ignored, no reply: from an address of this site " + sender})
	}
	s := &session{p: p, log: log.With(zap.String("sender", address.Redact(sender, ""))), l: l, it: it, raw: body, msg: m, sender: sender, name: name, seen: map[string]bool{}}
	switch it.Kind {
	case "join":
		s.implicit = true
		err = s.run(ctx, []Command{{Name: CmdJoin, Word: CmdJoin, Line: CmdJoin}})
	case "leave":
		s.implicit = true
		err = s.run(ctx, []Command{{Name: CmdLeave, Word: CmdLeave, Line: CmdLeave}})
	case "confirm":
		// The token travels in the address; Postfix may have changed its
		// case, tokens are lower-case hex.
		if tok := strings.ToLower(it.Extension); address.ValidToken(tok) {
			s.implicit = true
			err = s.run(ctx, []Command{{Name: CmdConfirm, Word: CmdConfirm, Args: []string{tok}, Line: "confirm " + tok}})
			break
		}
		// A bare -confirm address (the extension was lost on the way):
		// read the Subject and body like -request mail, as Mailman does.
		err = s.parseAndRun(ctx, body)
	default:
		err = s.parseAndRun(ctx, body)
	}
	if err != nil {
		return false, err
	}
	return s.reply(ctx)
}

// ownAddress reports whether addr is one of list's own addresses (the
// posting address or a subaddress, with any extension).
func ownAddress(list, addr string) bool {
	name, domain := address.ListName(list)
	local, d, ok := strings.Cut(strings.ToLower(addr), "@")
	if !ok || d != domain {
		return false
	}
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	return local == name || strings.HasPrefix(local, name+"-")
}

// siteAddress reports whether addr is in one of the site's list domains
// or alias domains: every address there is a list, a list's subaddress
// or nobody, and none of them may be answered or subscribed.
func (p *Processor) siteAddress(ctx context.Context, addr string) (bool, error) {
	_, domain, ok := strings.Cut(strings.ToLower(addr), "@")
	if !ok {
		return false, nil
	}
	ds, err := p.st.Domains(ctx)
	if err != nil {
		return false, fmt.Errorf("site domains: %w", err)
	}
	for _, d := range ds {
		if strings.EqualFold(d.Name, domain) {
			return true, nil
		}
	}
	return false, nil
}

// finish marks a row done (or logs that someone else did).
func (p *Processor) finish(ctx context.Context, log *zap.Logger, d store.FinishedIntake) error {
	err := p.st.FinishIntake(ctx, d)
	if errors.Is(err, store.ErrAlreadyDone) {
		log.Info("intake row already finished")
		return nil
	}
	return err
}

// forwardOwnerMail passes mail for NAME-owner on to the owners (and
// moderators, per owner_mail_to_moderators) unchanged, with the list's
// -bounces address as envelope sender: a bounce from an owner's address
// then comes back to the list, never to whoever wrote to the owners, and
// a dead owner address cannot start a loop between the two.
func (p *Processor) forwardOwnerMail(ctx context.Context, log *zap.Logger, l *store.List, it store.IntakeItem, envSender string) (bool, error) {
	rcpts, err := p.st.OwnerMailRecipients(ctx, l.ID)
	if err != nil {
		return false, err
	}
	rcpts = notice.Admins(rcpts, p.o.SiteOwner)
	if len(rcpts) == 0 {
		log.Warn("owner mail dropped: the list has no owners and no site owner is configured")
		return false, p.finish(ctx, log, store.FinishedIntake{IntakeID: it.ID, ListID: l.ID, Result: "dropped: no owners and no site owner"})
	}
	from := notice.ListAddress(l.Address, address.Bounces, "", "")
	fwd := make([]store.NewDelivery, len(rcpts))
	for i, r := range rcpts {
		fwd[i] = store.NewDelivery{Recipient: r, EnvelopeFrom: from}
	}
	detail := fmt.Sprintf("message %d forwarded to %d address(es)", it.MessageID, len(rcpts))
	err = p.finish(ctx, log, store.FinishedIntake{
		IntakeID: it.ID, ListID: l.ID, Result: "forwarded to " + strings.Join(rcpts, ", "),
		MessageID: it.MessageID, Forward: fwd,
		Event: store.EventOwnerMailForwarded, Address: envSender, Detail: detail,
	})
	if err != nil {
		return false, err
	}
	log.Info("owner mail forwarded", zap.String("sender", address.Redact(envSender, "")), zap.Int("owners", len(rcpts)))
	return true, nil
}
