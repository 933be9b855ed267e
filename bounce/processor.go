package bounce

import (
	"bytes"
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
	DefaultPollInterval = stage.DefaultPollInterval
	// DefaultSweepInterval is how often disabled members are checked for
	// warnings and removal; warnings are days apart, so minutes of delay
	// do not matter.
	DefaultSweepInterval = 5 * time.Minute
)

// Options configures a Processor.
type Options struct {
	Store *store.Store
	Log   *zap.Logger
	// Delimiter is the recipient delimiter (verp_delimiter), "+" if empty.
	Delimiter string
	// Signer checks signed VERP extensions (see store.VERPSigner).
	Signer address.VERPSigner
	// SiteOwner receives unrecognised bounces of lists that say so, and
	// notices of lists without owners.
	SiteOwner string
	// Notify is called after mail was queued, to wake the deliverer.
	Notify func()
	// Now is the clock bounces are scored by; Store.Now when nil. Tests
	// move it to score bounces on different days.
	Now func() time.Time
	// PollInterval is how often intake is checked without a Kick;
	// SweepInterval how often warnings and removals are due.
	PollInterval, SweepInterval time.Duration
}

// Processor handles -bounces intake and the warnings and removals of
// members whose delivery bounces disabled.
type Processor struct {
	o     Options
	st    *store.Store
	log   *zap.Logger
	stage *stage.Stage
}

// New returns a Processor; Run starts it.
func New(o Options) *Processor {
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.Now == nil && o.Store != nil {
		o.Now = o.Store.Now
	}
	p := &Processor{o: o, st: o.Store}
	p.stage = stage.New(stage.Config{
		Name: "bounce", Kinds: []string{"bounces"}, Store: o.Store, Log: o.Log, PollInterval: o.PollInterval,
		Process: p.process, Notify: o.Notify, Then: p.scoreRecorded,
		Chores: []stage.Chore{{Name: "sweeping members disabled by bounces", Every: o.SweepInterval, Do: p.Sweep}},
	})
	p.log = p.stage.Log()
	if len(o.Signer.Key) == 0 {
		p.log.Warn("no VERP signing key: signed bounce addresses cannot be verified, so only lists accepting unsigned VERP score VERP bounces")
	}
	return p
}

// Kick wakes Run, e.g. after LMTP committed new intake rows. It never
// blocks.
func (p *Processor) Kick() { p.stage.Kick() }

// Run processes -bounces intake rows and the bounces the deliverer
// recorded, and every SweepInterval warns and removes disabled members,
// until ctx ends. It returns nil when ctx ends.
func (p *Processor) Run(ctx context.Context) error { return p.stage.Run(ctx) }

// RunOnce processes the -bounces mail waiting now and the bounces the
// deliverer recorded (up to one batch of each) and returns how many items
// it took. An error means the database failed.
func (p *Processor) RunOnce(ctx context.Context) (int, error) { return p.stage.RunOnce(ctx) }

// scoreRecorded scores up to one batch of the bounces the deliverer
// recorded.
func (p *Processor) scoreRecorded(ctx context.Context) (n int, queued bool, err error) {
	recorded, err := p.st.UnprocessedBounces(ctx, stage.BatchSize)
	if err != nil {
		return 0, false, err
	}
	for _, b := range recorded {
		q, err := p.applyRecorded(ctx, b)
		queued = queued || q
		if err == nil {
			continue
		}
		if stage.Transient(ctx, err) {
			return 0, queued, err
		}
		// A row that cannot be scored must not block the ones behind it.
		p.log.Error("scoring a recorded bounce failed; marking it processed unscored",
			zap.Int64("bounce_id", b.ID), zap.String("rcpt", address.Redact(b.Address, "")), zap.Error(err))
		if err := p.st.ApplyBounce(ctx, b, b.ReceivedAt, nil); err != nil && !errors.Is(err, store.ErrAlreadyDone) {
			return 0, queued, err
		}
	}
	return len(recorded), queued, nil
}

func (p *Processor) wake(queued bool) {
	if queued && p.o.Notify != nil {
		p.o.Notify()
	}
}

// process handles one bounce message and reports whether mail was queued.
func (p *Processor) process(ctx context.Context, it store.IntakeItem) (bool, error) {
	log := p.log.With(zap.String("list", it.List), zap.Int64("msg_id", it.MessageID), zap.String("rcpt", address.Redact(it.Recipient, "")))
	at := p.o.Now()
	batch := store.BounceBatch{IntakeID: it.ID, At: at}
	if it.List == "" {
		batch.Result = "ignored: the list was removed"
		return false, p.record(ctx, log, batch)
	}
	l, err := p.st.GetList(ctx, it.List)
	if errors.Is(err, store.ErrNotFound) {
		batch.Result = "ignored: the list was removed"
		return false, p.record(ctx, log, batch)
	}
	if err != nil {
		return false, err
	}
	batch.ListID = l.ID
	_, body, err := p.st.MessageSender(ctx, it.MessageID)
	if err != nil {
		return false, err
	}
	admins, err := p.st.ListAdmins(ctx, l.ID)
	if err != nil {
		return false, err
	}
	b := &bounceMail{p: p, log: log, l: l, admins: admins, pol: PolicyOf(l), it: it, body: body, at: at, batch: &batch}
	b.failures, _ = ParseDSN(body) // unreadable mail is simply unrecognised
	if it.Extension != "" {
		err = b.verp(ctx)
	} else {
		err = b.plain(ctx)
	}
	if err != nil {
		return false, err
	}
	if err := p.record(ctx, log, batch); err != nil {
		return false, err
	}
	queued := len(batch.Notices) > 0
	for _, x := range batch.Bounces {
		queued = queued || x.Decide != nil
	}
	return queued, nil
}

// record commits a batch (or logs that someone else did).
func (p *Processor) record(ctx context.Context, log *zap.Logger, b store.BounceBatch) error {
	err := p.st.RecordBounces(ctx, b)
	if errors.Is(err, store.ErrAlreadyDone) {
		log.Info("bounce already processed")
		return nil
	}
	if err == nil {
		log.Info("bounce processed", zap.String("result", b.Result), zap.Int("failures", len(b.Bounces)))
	}
	return err
}

// bounceMail is one -bounces message being processed.
type bounceMail struct {
	p        *Processor
	log      *zap.Logger
	l        *store.List
	admins   []string
	pol      Policy
	it       store.IntakeItem
	body     []byte
	at       time.Time
	failures []Failure
	batch    *store.BounceBatch
}

// verp handles a bounce to -bounces+EXT: the extension names the member,
// the report (if any) says how it failed.
func (b *bounceMail) verp(ctx context.Context) error {
	member, st := b.p.o.Signer.Member(b.l.Address, b.it.Extension, b.l.Bool("accept_unsigned_verp"), b.at)
	if st == address.VERPExpired {
		// Genuine, but older than [mta] verp_bounce_window: the milter
		// accepted it so that nobody bounces a bounce, yet whoever saw
		// that copy's Return-Path could be replaying it. Not scored.
		b.batch.Result = "ignored: the bounce address is older than verp_bounce_window"
		b.batch.Event, b.batch.Address, b.batch.Detail = store.EventBounceRecorded, member, "not scored: signed return path older than verp_bounce_window"
		b.log.Info("bounce ignored: return path older than the bounce window", zap.String("member", member))
		return nil
	}
	if !st.Accepted() {
		// The milter refuses these at RCPT time; one that got through
		// (an index not yet reloaded, mail injected around the milter)
		// is still no evidence against anyone.
		b.batch.Result = "refused: the bounce address's signature is wrong"
		b.batch.Event, b.batch.Detail = store.EventBounceRefused, "-bounces+"+clip(message.OneLine(b.it.Extension), 200)+": bad or missing signature"
		b.log.Warn("bounce refused: bad VERP signature", zap.String("extension", clip(message.OneLine(address.RedactVERP(b.it.Extension)), 200)))
		return nil
	}
	if len(b.failures) == 0 {
		if auto := message.Parse(b.body).Get("Auto-Submitted"); strings.HasPrefix(strings.ToLower(auto), "auto-replied") {
			// A vacation reply sent, as RFC 3834 says, to our envelope
			// sender: nothing failed, and the owners need not read it.
			b.batch.Result = "ignored: an automatic reply, not a bounce"
			b.batch.Event, b.batch.Address, b.batch.Detail = store.EventBounceRecorded, member, "ignored: automatic reply (Auto-Submitted: auto-replied)"
			return nil
		}
		// Mailman forwards VERP mail that is no recognisable report to
		// the owners: it may be a human answering.
		b.batch.Bounces = append(b.batch.Bounces, store.Bounce{ListID: b.l.ID, Address: member, Kind: store.BounceUnknown, MessageID: b.it.MessageID, At: b.at,
			Event: store.EventBounceRecorded, Detail: "not scored: no recognised failure in the report"})
		return b.unrecognized(ctx, "a VERP bounce for "+member+" that is no recognised report")
	}
	f := strongest(b.failures)
	via := "signed VERP"
	if st == address.VERPUnsigned {
		via = "unsigned VERP"
	}
	b.add(member, f, via, true)
	b.batch.Result = fmt.Sprintf("%s bounce for %s (%s)", f.Kind, member, via)
	return nil
}

// plain handles a bounce to the bare -bounces address: only the report
// says who failed. Such a report is unverified (anyone can write one), so
// on a list that sends signed VERP it is recorded but never scored: all
// genuine member bounces of such a list come back to a signed address.
// Lists without VERP (bulk delivery) and lists migrating from Mailman
// (accept_unsigned_verp) must rely on the report, as Mailman does.
func (b *bounceMail) plain(ctx context.Context) error {
	if len(b.failures) == 0 {
		return b.unrecognized(ctx, "no failed recipient found in it")
	}
	attributable := !b.l.Bool("verp") || b.l.Bool("accept_unsigned_verp")
	var names []string
	for _, f := range b.failures {
		b.add(f.Address, f, "report", attributable)
		names = append(names, f.Address)
	}
	b.batch.Result = fmt.Sprintf("report for %s", clip(strings.Join(names, ", "), 300))
	return nil
}

// strongest is the failure a VERP bounce is judged by: permanent before
// policy before a delay.
func strongest(fs []Failure) Failure {
	best := fs[0]
	rank := map[string]int{store.BouncePermanent: 3, store.BouncePolicy: 2, store.BounceTemporary: 1}
	for _, f := range fs[1:] {
		if rank[f.Kind] > rank[best.Kind] {
			best = f
		}
	}
	return best
}

// add records failure f for addr; it is scored only when it is permanent,
// the list processes bounces, and the report is attributable.
func (b *bounceMail) add(addr string, f Failure, via string, attributable bool) {
	x := store.Bounce{ListID: b.l.ID, Address: addr, Kind: f.Kind, Status: f.Status, Diagnostic: f.Diagnostic,
		MessageID: b.it.MessageID, At: b.at, Event: store.EventBounceRecorded}
	switch {
	case f.Kind == store.BouncePolicy:
		x.Detail = "not scored: a policy or content rejection (" + orUnknown(f.Status) + "), not the mailbox's fault"
	case f.Kind == store.BounceTemporary:
		x.Detail = "not scored: a temporary failure (" + orUnknown(f.Status) + ")"
	case !b.pol.Process:
		x.Detail = "not scored: process_bounces is off"
	case !attributable:
		x.Detail = "not scored: an unverified report to the plain bounce address of a list that signs its VERP addresses"
	default:
		x.Decide = b.p.decider(b.l, b.admins, b.pol, f, b.at, via, b.body)
	}
	b.batch.Bounces = append(b.batch.Bounces, x)
}

func orUnknown(s string) string {
	if s == "" {
		return "no status"
	}
	return s
}

// decider returns the scoring function for a permanent failure, adding
// the owners' notice when it disables delivery.
func (p *Processor) decider(l *store.List, admins []string, pol Policy, f Failure, at time.Time, via string, report []byte) func(store.BounceState) store.BounceVerdict {
	return func(st store.BounceState) store.BounceVerdict {
		v := Score(st, at, pol)
		if v.Scored {
			v.Detail += "; " + orUnknown(f.Status) + " via " + via
		}
		if v.Disable {
			v.Notices = p.disabledNotice(l, admins, st, v.Score, f, report)
		}
		return v
	}
}

// applyRecorded scores a bounce the deliverer recorded for a 5xx reply
// in its own session, at the time it was recorded.
func (p *Processor) applyRecorded(ctx context.Context, b store.RecordedBounce) (bool, error) {
	var decide func(store.BounceState) store.BounceVerdict
	queued := false
	if b.Scored && b.ListID != 0 && b.Kind == store.BouncePermanent {
		l, err := p.st.ListByID(ctx, b.ListID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		if err == nil {
			admins, err := p.st.ListAdmins(ctx, l.ID)
			if err != nil {
				return false, err
			}
			pol := PolicyOf(l)
			f := Failure{Address: b.Address, Status: b.Status, Action: "failed", Diagnostic: b.Diagnostic, Kind: b.Kind}
			decide = func(st store.BounceState) store.BounceVerdict {
				v := Score(st, b.ReceivedAt, pol)
				if v.Scored {
					v.Detail += "; refused in our SMTP session: " + clip(message.OneLine(b.Diagnostic), 200)
				}
				if v.Disable {
					v.Notices = p.disabledNotice(l, admins, st, v.Score, f, nil)
					queued = true
				}
				return v
			}
		}
	}
	err := p.st.ApplyBounce(ctx, b, b.ReceivedAt, decide)
	if errors.Is(err, store.ErrAlreadyDone) {
		return false, nil
	}
	return queued, err
}

// unrecognized forwards a bounce nobody could attribute, as the list's
// forward_unrecognized_bounces_to says (Mailman's maybe_forward).
func (b *bounceMail) unrecognized(ctx context.Context, why string) error {
	l := b.l
	b.batch.Event, b.batch.Detail = store.EventBounceUnrecognized, why
	b.batch.Result = "unrecognised: " + why
	if bytes.Contains(b.body, []byte(notice.Header+":")) {
		// A bounce of our own notice (a forwarded bounce, a reply):
		// forwarding it again could bounce again, forever.
		b.batch.Detail += "; it returns one of our own notices, so it is not forwarded"
		b.batch.Result += " (a returned notice: not forwarded)"
		return nil
	}
	var to []string
	switch l.Setting("forward_unrecognized_bounces_to") {
	case "discard":
		b.batch.Detail += "; discarded (forward_unrecognized_bounces_to discard)"
		b.batch.Result += " (discarded)"
		return nil
	case "site_owner":
		to = notice.Admins(nil, b.p.o.SiteOwner)
	default:
		admins, err := b.p.st.ListAdmins(ctx, l.ID)
		if err != nil {
			return err
		}
		to = notice.Admins(admins, b.p.o.SiteOwner)
	}
	if len(to) == 0 {
		b.batch.Detail += "; nobody to forward it to"
		return nil
	}
	b.batch.Notices = append(b.batch.Notices, b.p.unrecognizedNotice(l, b.body, to))
	b.batch.Detail += "; forwarded to " + strings.Join(to, ", ")
	b.batch.Result += " (forwarded)"
	return nil
}
