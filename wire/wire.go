// Package wire builds postlist's mail-processing system — the posting
// pipeline, the email interface, bounce processing and the deliverer —
// from the configuration, in one place. `postlist serve`, every admin verb
// that sends or decides mail, and the whole-stack test harness all call
// Build, so a decision made from the command line goes out exactly as the
// daemon would send it: the same signed VERP return paths (whose bounces
// postlist's own milter accepts and scores), the same unsubscribe secret,
// token lifetimes, base URL, site owner and delimiter.
//
// The mapping from configuration keys to the parts' options is the
// function options; a new option of a part is added there, in one line.
// Build only adds what links the parts to each other (the deliverer's
// wake-up, held-post confirmation, send-time rendering).
package wire

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/bounce"
	"postlist/commands"
	"postlist/config"
	"postlist/deliver"
	"postlist/pipeline"
	"postlist/store"
)

// Option changes how Build assembles a System beyond the configuration.
type Option func(*settings)

// settings are what Options set: process facts and test knobs that have
// no configuration key.
type settings struct {
	store    *store.Store
	open     func(context.Context, *config.Config) (*store.Store, error)
	hostname string
	now      func() time.Time
	tuning   Tuning
}

// Tuning holds intervals no configuration key exposes; zero leaves each
// part's default. Tests shorten them so that a round trip takes
// milliseconds.
type Tuning struct {
	// PollInterval is how often each stage checks for work without a kick.
	PollInterval time.Duration
	// SweepInterval is how often bounce warnings and removals are due.
	SweepInterval time.Duration
	// FlushInterval bounds how long delivery outcomes wait to be committed
	// together.
	FlushInterval time.Duration
	// ShutdownTimeout bounds how long the deliverer lets in-flight
	// transactions finish once its context ends.
	ShutdownTimeout time.Duration
}

// WithStore makes the System use an open store instead of opening
// [database] path; System.Close then leaves it open.
func WithStore(st *store.Store) Option { return func(s *settings) { s.store = st } }

// WithOpener makes Build open the store with open instead of
// store.OpenWith; System.Close closes it. The command line opens through
// it so that a root invocation works as the database's owner.
func WithOpener(open func(context.Context, *config.Config) (*store.Store, error)) Option {
	return func(s *settings) { s.open = open }
}

// WithHostname sets the deliverer's EHLO name (the host name by default).
func WithHostname(h string) Option { return func(s *settings) { s.hostname = h } }

// WithClock sets the clock bounces are scored by (the store's by
// default), so that a test can move it a day at a time.
func WithClock(now func() time.Time) Option { return func(s *settings) { s.now = now } }

// WithTuning sets intervals no configuration key exposes.
func WithTuning(t Tuning) Option { return func(s *settings) { s.tuning = t } }

// System is postlist's mail processing, built from one configuration.
// Running it is the caller's business: the daemon runs every Worker, the
// command line none (the daemon's deliverer notices queued rows by
// polling).
type System struct {
	Store *store.Store
	// Signer signs and checks VERP return paths with the site's key.
	Signer address.VERPSigner
	// Secret keys one-click unsubscribe tokens.
	Secret []byte

	Pipeline *pipeline.Pipeline
	Commands *commands.Processor
	Bounces  *bounce.Processor
	Deliver  *deliver.Deliverer

	// Moderation decides held posts and subscription requests.
	Moderation *Moderation

	opts       Options
	closeStore bool
}

// Options are the options every part of a System was built with.
type Options struct {
	Pipeline pipeline.Options
	Commands commands.Options
	Bounce   bounce.Options
	Deliver  deliver.Options
}

// Build assembles the System cfg describes, opening [database] path
// unless WithStore gives a store. log is named per part.
func Build(ctx context.Context, cfg *config.Config, log *zap.Logger, opts ...Option) (*System, error) {
	var set settings
	for _, o := range opts {
		o(&set)
	}
	if set.hostname == "" {
		set.hostname, _ = os.Hostname()
	}
	sys := &System{Store: set.store}
	if sys.Store == nil {
		open := set.open
		if open == nil {
			open = func(ctx context.Context, cfg *config.Config) (*store.Store, error) {
				return store.OpenWith(ctx, cfg.Database.Path, store.Options{Group: cfg.Database.Group})
			}
		}
		st, err := open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		sys.Store, sys.closeStore = st, true
	}
	fail := func(err error) (*System, error) {
		sys.Close()
		return nil, err
	}
	// Every signer the store hands out (here, the index's, the CLI's
	// lookup) honours bounces for the configured window.
	sys.Store.VERPWindow = cfg.MTA.VERPBounceWindow.D()
	var err error
	if sys.Secret, err = pipeline.Secret(ctx, sys.Store); err != nil {
		return fail(err)
	}
	if sys.Signer, err = sys.Store.VERPSigner(ctx); err != nil {
		return fail(err)
	}

	o := options(cfg, log, sys.Store, sys.Secret, sys.Signer, set)
	// The parts wake the deliverer when they queued mail; it is built
	// last because it renders through the pipeline.
	kick := func() { sys.Deliver.Kick() }
	o.Pipeline.Notify, o.Commands.Notify, o.Bounce.Notify = kick, kick, kick
	sys.Pipeline = pipeline.New(o.Pipeline)
	o.Commands.ConfirmHeld = sys.Pipeline.ConfirmHeld
	sys.Commands = commands.New(o.Commands)
	sys.Bounces = bounce.New(o.Bounce)
	o.Deliver.Render = sys.Pipeline.Render
	sys.Deliver = deliver.New(o.Deliver)
	sys.Moderation = &Moderation{st: sys.Store, pipeline: sys.Pipeline, commands: sys.Commands}
	sys.opts = o
	return sys, nil
}

// options maps the configuration onto the parts' options: the one place
// where a configuration key reaches the code that obeys it. Links between
// the parts (Notify, ConfirmHeld, Render) are Build's.
func options(cfg *config.Config, log *zap.Logger, st *store.Store, secret []byte, signer address.VERPSigner, set settings) Options {
	tu := set.tuning
	return Options{
		Pipeline: pipeline.Options{
			Store: st, Log: log.Named("pipeline"),
			Delimiter:              cfg.MTA.VERPDelimiter,
			BaseURL:                cfg.HTTP.BaseURL,
			SiteOwner:              cfg.Site.Owner,
			Secret:                 secret,
			Signer:                 signer,
			HeldTokenLifetime:      cfg.Site.ModeratorRequestLife.D(),
			PollInterval:           tu.PollInterval,
			MaxAutoresponsesPerDay: cfg.MTA.MaxAutoresponsesPerDay,
			UnsubscribeLinkLife:    cfg.HTTP.UnsubscribeLinkLife.D(),
		},
		Commands: commands.Options{
			Store: st, Log: log.Named("commands"),
			Delimiter:              cfg.MTA.VERPDelimiter,
			SiteOwner:              cfg.Site.Owner,
			TokenLifetime:          cfg.Site.PendingRequestLife.D(),
			ModeratorTokenLifetime: cfg.Site.ModeratorRequestLife.D(),
			PollInterval:           tu.PollInterval,
			MaxAutoresponsesPerDay: cfg.MTA.MaxAutoresponsesPerDay,
		},
		Bounce: bounce.Options{
			Store: st, Log: log.Named("bounce"),
			Delimiter:     cfg.MTA.VERPDelimiter,
			Signer:        signer,
			SiteOwner:     cfg.Site.Owner,
			Now:           set.now,
			PollInterval:  tu.PollInterval,
			SweepInterval: tu.SweepInterval,
		},
		Deliver: deliver.Options{
			Store: st, Log: log.Named("deliver"),
			Addr:                     cfg.SMTPAddr(),
			User:                     cfg.MTA.SMTPUser,
			Pass:                     cfg.MTA.SMTPPass.Reveal(),
			SecureMode:               cfg.MTA.SMTPSecureMode,
			VerifyCert:               cfg.MTA.SMTPVerifyCert,
			HeloName:                 set.hostname,
			Workers:                  cfg.MTA.MaxDeliveryThreads,
			MaxSessionsPerConnection: cfg.MTA.MaxSessionsPerConnection,
			MaxRecipients:            cfg.MTA.MaxRecipients,
			RetryPeriod:              cfg.MTA.DeliveryRetryPeriod.D(),
			RetryInterval:            cfg.MTA.DeliveryRetryInterval.D(),
			DialTimeout:              cfg.MTA.SMTPConnectTimeout.D(),
			CommandTimeout:           cfg.MTA.SMTPCommandTimeout.D(),
			DataTimeout:              cfg.MTA.SMTPDataTimeout.D(),
			ShutdownTimeout:          tu.ShutdownTimeout,
			PollInterval:             tu.PollInterval,
			FlushInterval:            tu.FlushInterval,
		},
	}
}

// Options returns the options the parts were built with.
func (s *System) Options() Options { return s.opts }

// Settings returns o without what belongs to one process (the store
// handle, loggers, the functions linking the parts), leaving what two
// Systems built from one configuration and one database must agree on.
// Its fields compare with reflect.DeepEqual.
func (o Options) Settings() Options {
	o.Pipeline.Store, o.Pipeline.Log, o.Pipeline.Notify = nil, nil, nil
	o.Commands.Store, o.Commands.Log, o.Commands.Notify, o.Commands.ConfirmHeld = nil, nil, nil, nil
	o.Bounce.Store, o.Bounce.Log, o.Bounce.Notify, o.Bounce.Now = nil, nil, nil, nil
	o.Deliver.Store, o.Deliver.Log, o.Deliver.Render = nil, nil, nil
	return o
}

// Worker is one background stage of a System.
type Worker struct {
	Name string
	Run  func(context.Context) error
}

// Workers are the stages a daemon runs, each until its context ends.
func (s *System) Workers() []Worker {
	return []Worker{
		{"pipeline", s.Pipeline.Run},
		{"commands", s.Commands.Run},
		{"bounce", s.Bounces.Run},
		{"deliver", s.Deliver.Run},
	}
}

// Committed wakes the stages that read intake; the LMTP server calls it
// after each commit.
func (s *System) Committed() {
	s.Pipeline.Kick()
	s.Commands.Kick()
	s.Bounces.Kick()
}

// Close closes the store if Build opened it.
func (s *System) Close() error {
	if s.closeStore && s.Store != nil {
		if err := s.Store.Close(); err != nil {
			return fmt.Errorf("close database: %w", err)
		}
	}
	return nil
}
