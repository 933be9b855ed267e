// Package stage is the worker loop every intake processing stage shares
// (the posting pipeline, the email commands, the bounce processor). A
// stage supplies only how to process one intake row (and which kinds of
// row it takes); Stage does the rest once for all of them: a polling loop
// that a Kick wakes early and that backs off while the database is in
// trouble, protection against a message that trips a bug, and a count of
// failed attempts per intake row, so that one such message cannot stop
// every message behind it.
package stage

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"

	"postlist/store"
)

// BatchSize is how many intake rows one pass of a stage takes.
const BatchSize = 100

// DefaultPollInterval is how often a stage checks its intake without a
// Kick when Config.PollInterval is zero.
const DefaultPollInterval = time.Second

// MaxAttempts is how often an intake row may fail for a reason that is
// not the database's before it is marked failed, so that one message that
// trips a bug cannot stop every message behind it.
const MaxAttempts = 5

// Kicker wakes a Loop early (after LMTP committed new intake rows). Make
// one with NewKicker.
type Kicker chan struct{}

// NewKicker returns a Kicker that remembers one pending wake-up.
func NewKicker() Kicker { return make(Kicker, 1) }

// Kick wakes the Loop waiting on k. It never blocks: a wake-up already
// pending covers this one.
func (k Kicker) Kick() {
	select {
	case k <- struct{}{}:
	default:
	}
}

// Loop calls once until ctx ends: again at once while it reports a full
// batch, after poll otherwise or when kick fires, and with a growing pause
// (up to a minute) while it fails. It returns when ctx ends.
func Loop(ctx context.Context, poll time.Duration, kick <-chan struct{}, log *zap.Logger, once func(context.Context) (int, error)) {
	var backoff time.Duration
	for {
		n, err := once(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := poll
		switch {
		case err != nil:
			// The database is in trouble (read-only, full): nothing can
			// be decided; try again later without spinning.
			backoff = min(max(2*backoff, time.Second), time.Minute)
			wait = backoff
			log.Error("processing failed, retrying", zap.Duration("retry_in", wait), zap.Error(err))
		case n >= BatchSize:
			backoff = 0
			continue
		default:
			backoff = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// Transient reports errors that say nothing about the message being
// processed: the database or the context failed, and the same row will
// work later.
func Transient(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, store.ErrReadOnly) || errors.Is(err, store.ErrStorageFailed)
}

// Protect runs fn and turns a panic in it into an error, logged with its
// stack. A message that trips a bug then fails like any other bad
// message (see Failures) instead of taking the daemon down - and with it
// the milter and the LMTP server - at every restart, since the row would
// be processed again.
func Protect(log *zap.Logger, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			log.Error("panic while processing; the row counts as failed", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("internal error: %v", v)
		}
	}()
	return fn()
}

// Failures counts failed attempts at intake rows. The zero value is ready.
type Failures struct {
	mu sync.Mutex
	n  map[int64]int
}

// PermanentError marks a failure that no retry can cure (the list of a
// post was removed): Fail gives up on the row at once.
type PermanentError struct{ Err error }

func (e PermanentError) Error() string { return e.Err.Error() }
func (e PermanentError) Unwrap() error { return e.Err }

// Fail records a failed attempt at it and, after MaxAttempts (at once for
// a PermanentError), marks the row failed with err for an admin to look
// at.
func (f *Failures) Fail(ctx context.Context, st *store.Store, log *zap.Logger, it store.IntakeItem, err error) {
	f.mu.Lock()
	if f.n == nil {
		f.n = map[int64]int{}
	}
	f.n[it.ID]++
	n := f.n[it.ID]
	f.mu.Unlock()
	log = log.With(zap.String("list", it.List), zap.Int64("msg_id", it.MessageID), zap.Int64("intake_id", it.ID), zap.String("kind", it.Kind))
	var perm PermanentError
	if n < MaxAttempts && !errors.As(err, &perm) {
		log.Warn("processing failed, will retry", zap.Int("attempt", n), zap.Error(err))
		return
	}
	log.Error("processing failed, giving up", zap.Error(err))
	if merr := st.MarkIntake(ctx, it.ID, store.IntakeFailed, err.Error()); merr != nil {
		log.Error("marking intake row failed", zap.Error(merr))
		return
	}
	f.mu.Lock()
	delete(f.n, it.ID)
	f.mu.Unlock()
}
