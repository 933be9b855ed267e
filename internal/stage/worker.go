package stage

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"postlist/store"
)

// Config says what one stage does; New fills in the zero fields.
type Config struct {
	// Name is the stage's name in errors ("bounce", "commands",
	// "pipeline").
	Name string
	// Kinds are the intake kinds the stage takes; the other kinds are
	// left for their own stages.
	Kinds []string
	Store *store.Store
	// Log is a no-op logger when nil.
	Log *zap.Logger
	// PollInterval is how often intake is checked without a Kick;
	// DefaultPollInterval when zero.
	PollInterval time.Duration
	// Process handles one intake row and reports whether it queued mail.
	// It must finish the row (or leave it new by failing). An error fails
	// the row (see Failures) unless it is Transient, which ends the pass
	// for the loop to back off: a database in trouble fails every row
	// alike, and none of them is to blame.
	Process func(ctx context.Context, it store.IntakeItem) (queued bool, err error)
	// Notify is called as soon as an item queued mail, to wake the
	// deliverer; nil when nobody needs waking.
	Notify func()
	// Then, when set, is more work of every pass after the intake batch
	// (the bounce processor scores the bounces the deliverer recorded):
	// it returns how many items it took and whether it queued mail; an
	// error means the database failed. It runs only after a batch that
	// did not fail.
	Then func(ctx context.Context) (n int, queued bool, err error)
	// Chores are periodic upkeep between passes (see Chore).
	Chores []Chore
}

// Chore is upkeep a stage does besides its intake, at most once per Every:
// at the first pass Run makes, then again Every after it last succeeded.
// It runs after a pass that did not fail, so that the upkeep sees what the
// pass decided. A Transient failure (the database is in trouble) fails
// the pass, and the loop backs off; any other failure is logged and the
// chore is tried again after the next pass: an upkeep that trips a bug
// must not hold the intake up.
type Chore struct {
	// Name says what the chore does, for the log.
	Name  string
	Every time.Duration
	Do    func(context.Context) error
}

// Stage runs the intake rows of some kinds through Config.Process. Its
// methods are safe for concurrent use, but one Run at a time is enough:
// rows are processed in order.
type Stage struct {
	c        Config
	kick     Kicker
	failures Failures
}

// New returns a Stage; Run starts it.
func New(c Config) *Stage {
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	return &Stage{c: c, kick: NewKicker()}
}

// Kick wakes Run, e.g. after LMTP committed new intake rows. It never
// blocks.
func (s *Stage) Kick() { s.kick.Kick() }

// Run makes passes (see RunOnce) and does the chores until ctx ends, as
// Loop says. It returns nil when ctx ends.
func (s *Stage) Run(ctx context.Context) error {
	if s.c.Store == nil {
		return fmt.Errorf("%s: Options.Store is required", s.c.Name)
	}
	last := make([]time.Time, len(s.c.Chores))
	Loop(ctx, s.c.PollInterval, s.kick, s.c.Log, func(ctx context.Context) (int, error) {
		n, err := s.RunOnce(ctx)
		if err != nil {
			return n, err
		}
		for i, ch := range s.c.Chores {
			if !last[i].IsZero() && time.Since(last[i]) < ch.Every {
				continue
			}
			if err := ch.Do(ctx); err != nil {
				if Transient(ctx, err) {
					return n, fmt.Errorf("%s: %w", ch.Name, err)
				}
				s.c.Log.Warn(ch.Name+" failed, will retry", zap.Error(err))
				continue
			}
			last[i] = time.Now()
		}
		return n, nil
	})
	return nil
}

// RunOnce processes the rows waiting now (up to one batch), then
// Config.Then, and returns how many items it took. An error means the
// database failed; unfinished rows stay new.
func (s *Stage) RunOnce(ctx context.Context) (int, error) {
	items, err := s.c.Store.PendingIntake(ctx, BatchSize, s.c.Kinds...)
	if err != nil {
		return 0, err
	}
	for _, it := range items {
		var queued bool
		err := Protect(s.c.Log, func() (err error) {
			queued, err = s.c.Process(ctx, it)
			return err
		})
		if queued {
			s.notify()
		}
		if err != nil {
			if Transient(ctx, err) {
				return 0, err
			}
			s.failures.Fail(ctx, s.c.Store, s.c.Log, it, err)
		}
	}
	if s.c.Then == nil {
		return len(items), nil
	}
	n, queued, err := s.c.Then(ctx)
	if queued {
		s.notify()
	}
	if err != nil {
		return 0, err
	}
	return max(len(items), n), nil
}

func (s *Stage) notify() {
	if s.c.Notify != nil {
		s.c.Notify()
	}
}

// Log returns the stage's logger (a no-op one when Config.Log was nil).
func (s *Stage) Log() *zap.Logger { return s.c.Log }
