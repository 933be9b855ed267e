// Package index keeps in memory what postlist must know to answer Postfix
// while the remote sender is still connected: list domains and aliases,
// lists with their SMTP-time settings, who is a member of what, recently
// removed members (their bounces are still welcome), live confirmation
// tokens and bans.
//
// A RCPT decision must never wait on the disk: Postfix holds the remote
// client while the milter thinks, and a slow answer under load is an
// outage. So decisions read an immutable Snapshot through an atomic
// pointer, and Run rebuilds the whole snapshot in the background whenever
// the store's generation counter moves (every change to domains, lists,
// members, bans or tokens bumps it), so an edit made by the CLI is live
// within about a second. A full rebuild, rather than incremental updates,
// keeps one code path and one truth; it is measured in docs/milter.md.
//
// Both the milter and the LMTP server ask this index, so a recipient that
// was accepted at SMTP time is accepted again after queueing.
package index

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/reply"
	"postlist/store"
)

// Defaults for Options.
const (
	DefaultPollInterval  = 200 * time.Millisecond
	DefaultRemovedWindow = 30 * 24 * time.Hour
	DefaultMaxAge        = 10 * time.Minute
)

// Options configures New.
type Options struct {
	// Delimiter is the recipient delimiter (verp_delimiter), "+" if empty.
	Delimiter string
	Log       *zap.Logger
	// PollInterval is how often Run reads the store generation.
	PollInterval time.Duration
	// RemovedWindow is how long a removed member's VERP address stays
	// deliverable: bounces of mail sent before the removal arrive for
	// days (Postfix retries for five by default).
	RemovedWindow time.Duration
	// MaxAge forces a rebuild even without changes, so that removals
	// drop out of RemovedWindow on time.
	MaxAge time.Duration
	// Now is the clock (token expiry, the removal window); tests replace it.
	Now func() time.Time
	// Signer checks the signature of -bounces+ extensions (see
	// store.VERPSigner). Without a key a -bounces+ address is accepted
	// when it names a member, signed or not.
	Signer address.VERPSigner
}

// Index serves decisions from the current Snapshot and keeps it fresh.
type Index struct {
	src  Source
	res  address.Resolver
	log  *zap.Logger
	opts Options

	cur      atomic.Pointer[Snapshot]
	reloadMu sync.Mutex

	// failing and lastFailLog rate-limit error logs while the store is
	// unreadable: one line when it starts, then one a minute.
	failing     bool
	lastFailLog time.Time
	// lastEnd and lastTook pace rebuilds (see refresh).
	lastEnd  time.Time
	lastTook time.Duration
}

// New returns an index over src that has not loaded yet: until Reload or
// Run succeeds every recipient is answered 451 4.3.0.
func New(src Source, o Options) *Index {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.RemovedWindow <= 0 {
		o.RemovedWindow = DefaultRemovedWindow
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := address.CheckDelimiter(o.Delimiter); err != nil {
		o.Log.Warn("recipient delimiter partly ignored", zap.Error(err))
	}
	return &Index{src: src, res: address.Resolver{Delimiter: o.Delimiter}, log: o.Log, opts: o}
}

// Load builds the index from st once. A database failure is not an error:
// the index then answers 451 4.3.0 (never "accept" blindly) and Run keeps
// retrying. The error return is for misuse only.
func Load(ctx context.Context, st *store.Store, delim string, log *zap.Logger) (*Index, error) {
	if st == nil {
		return nil, errors.New("index: nil store")
	}
	o := Options{Delimiter: delim, Log: log}
	if signer, err := st.VERPSigner(ctx); err == nil {
		o.Signer = signer
	} else if log != nil {
		log.Error("VERP signing key unreadable: -bounces+ addresses are checked for membership only", zap.Error(err))
	}
	ix := New(st, o)
	_ = ix.Reload(ctx) // logged; Run retries
	return ix, nil
}

// Snapshot returns the current snapshot, nil before the first successful
// load. Callers that make several related decisions (a RCPT and its sender
// check) should take one snapshot and ask it everything.
func (ix *Index) Snapshot() *Snapshot { return ix.cur.Load() }

// Ready reports whether a snapshot is loaded.
func (ix *Index) Ready() bool { return ix.cur.Load() != nil }

// Delimiter is the recipient delimiter in use.
func (ix *Index) Delimiter() string { return ix.res.Delimiter }

// Decide answers one recipient from the current snapshot.
func (ix *Index) Decide(rcpt string) Decision { return ix.Snapshot().Decide(rcpt) }

// Resolve is Decide for the LMTP server. Postfix routes only list domains
// there, but an address outside them (mail injected around the milter, a
// transport map typo) must still be refused, so where Decide says "not
// ours" Resolve answers 550 5.1.1 NoSuchList. A nil reply means accept,
// and the target says which list and subaddress.
//
// A refusal that a change not yet polled could turn into acceptance (a
// list created, a token issued a moment ago) is checked against the
// store first: by the time Postfix hands a message over, the sender has
// been told 250, and a 5xx here would become a bounce.
func (ix *Index) Resolve(rcpt string) (address.Target, *reply.Reply) {
	_, d := ix.Fresh(func(s *Snapshot) Decision { return s.Decide(rcpt) })
	if !d.Ours {
		r := reply.NoSuchList(clipAddr(rcpt))
		return address.Target{}, &r
	}
	return d.Target, d.Reply
}

// catchUpTimeout bounds what one refused recipient may wait for the
// store; past it the refusal stands.
const catchUpTimeout = 2 * time.Second

// Fresh runs decide on the current snapshot and returns its answer with
// the snapshot it came from. When the answer may be stale (MayBeStale)
// and the store changed since that snapshot, the snapshot is brought up
// to date first (CatchUp) and decide runs again: the LMTP server and the
// policy service use it so that a list, domain or token created within
// the poll interval is not refused.
func (ix *Index) Fresh(decide func(*Snapshot) Decision) (*Snapshot, Decision) {
	snap := ix.Snapshot()
	d := decide(snap)
	if !d.MayBeStale() {
		return snap, d
	}
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	defer cancel()
	if ix.CatchUp(ctx) {
		snap = ix.Snapshot()
		d = decide(snap)
	}
	return snap, d
}

// MayBeStale reports a refusal that a snapshot newer than the one that
// decided it might reverse: an unknown list, domain, token or VERP member
// may have been created since the last poll.
func (d Decision) MayBeStale() bool {
	switch {
	case !d.Ours:
		return true // perhaps a domain added a moment ago
	case d.Reply == nil:
		return false
	}
	switch d.Reason {
	case ReasonNoSuchList, ReasonBadToken, ReasonBadVERP:
		return true
	}
	return false
}

// CatchUp brings the snapshot up to date at once if the store changed
// since it was built, without waiting for the next poll, and reports
// whether it swapped in a newer one. It costs two small queries when
// nothing changed, so callers use it only on a miss.
func (ix *Index) CatchUp(ctx context.Context) bool {
	ix.reloadMu.Lock()
	defer ix.reloadMu.Unlock()
	cur := ix.cur.Load()
	if cur == nil {
		return false
	}
	g, err := ix.src.Generation(ctx)
	if err != nil {
		return false
	}
	if g != cur.gen {
		return ix.reloadLocked(ctx) == nil
	}
	tg, err := ix.src.TokenGeneration(ctx)
	if err != nil || tg == cur.tokenGen {
		return false
	}
	ix.reloadTokensLocked(ctx, cur)
	return ix.cur.Load() != cur
}

// Reload rebuilds the snapshot now and swaps it in. Concurrent calls are
// serialised; decisions keep using the old snapshot meanwhile.
func (ix *Index) Reload(ctx context.Context) error {
	ix.reloadMu.Lock()
	defer ix.reloadMu.Unlock()
	return ix.reloadLocked(ctx)
}

func (ix *Index) reloadLocked(ctx context.Context) error {
	start := time.Now()
	s, bad, err := build(ctx, ix.src, ix.res, ix.opts.Now, ix.opts.RemovedWindow, ix.opts.Signer)
	ix.lastEnd, ix.lastTook = time.Now(), time.Since(start)
	if err != nil {
		if ctx.Err() == nil {
			ix.noteFailure(err)
		}
		return err
	}
	for _, p := range bad {
		ix.log.Warn("ban pattern ignored: not a valid regular expression", zap.String("pattern", p))
	}
	old := ix.cur.Swap(s)
	st := s.Stats()
	fields := []zap.Field{
		zap.Int64("generation", st.Generation), zap.Int("lists", st.Lists), zap.Int("members", st.Members),
		zap.Int("removed", st.Removed), zap.Int("tokens", st.Tokens), zap.Duration("took", st.LoadTime),
	}
	if ix.failing {
		ix.failing = false
		ix.log.Info("index recovered", fields...)
	} else if old == nil {
		ix.log.Info("index loaded", fields...)
	} else {
		ix.log.Debug("index reloaded", fields...)
	}
	return nil
}

// reloadTokensLocked swaps in cur with fresh tokens; see withTokens.
func (ix *Index) reloadTokensLocked(ctx context.Context, cur *Snapshot) {
	next, err := withTokens(ctx, ix.src, cur)
	if err != nil {
		if ctx.Err() == nil {
			ix.noteFailure(err)
		}
		return
	}
	ix.cur.Store(next)
	ix.log.Debug("index tokens reloaded", zap.Int64("token_generation", next.tokenGen), zap.Int("tokens", len(next.tokens)))
}

func (ix *Index) noteFailure(err error) {
	now := time.Now()
	if !ix.failing || now.Sub(ix.lastFailLog) >= time.Minute {
		state := "stale"
		if ix.cur.Load() == nil {
			state = "unavailable: answering 451 4.3.0"
		}
		ix.log.Error("index reload failed", zap.String("state", state), zap.Error(err))
		ix.lastFailLog = now
	}
	ix.failing = true
}

// Run keeps the snapshot fresh until ctx is done: it polls the store
// generation every PollInterval and rebuilds on a change, when no snapshot
// is loaded yet, or when the snapshot is older than MaxAge.
func (ix *Index) Run(ctx context.Context) {
	t := time.NewTicker(ix.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ix.refresh(ctx)
		}
	}
}

func (ix *Index) refresh(ctx context.Context) {
	ix.reloadMu.Lock()
	defer ix.reloadMu.Unlock()
	cur := ix.cur.Load()
	g, err := ix.src.Generation(ctx)
	if err != nil {
		if ctx.Err() == nil {
			ix.noteFailure(err)
		}
		return
	}
	tg, err := ix.src.TokenGeneration(ctx)
	if err != nil {
		if ctx.Err() == nil {
			ix.noteFailure(err)
		}
		return
	}
	if cur != nil && !ix.failing && cur.gen == g && time.Since(cur.loadedAt) < ix.opts.MaxAge {
		if cur.tokenGen != tg {
			ix.reloadTokensLocked(ctx, cur)
		}
		return
	}
	// A script running the CLI in a loop changes the generation at every
	// poll; on a big site back-to-back rebuilds (0.4 s at a million
	// members) would then keep a core busy. Resting half a rebuild's time
	// between them bounds that to two thirds of a core and delays a change
	// by at most that rest.
	if cur != nil && time.Since(ix.lastEnd) < ix.lastTook/2 {
		return
	}
	_ = ix.reloadLocked(ctx) // failures are logged, and retried next tick
}
