package daemon

import (
	"context"
	"time"

	"go.uber.org/zap"

	"postlist/store"
)

// The retention purge's schedule. The first run waits a little so that
// start-up (index load, recovery of interrupted deliveries) has the
// writer to itself; after that, hourly is often enough for a limit
// counted in days. Variables so that tests can shorten them.
var (
	purgeFirstDelay = time.Minute
	purgeInterval   = time.Hour
)

// purger deletes finished work older than the retention period
// ([database] retention) from the store.
type purger struct {
	st        *store.Store
	retention time.Duration
	log       *zap.Logger
}

// run purges on the schedule until ctx ends. A failed purge is logged and
// tried again at the next run: the database keeps growing meanwhile, which
// is no reason to stop serving mail. It returns nil when ctx ends.
func (p purger) run(ctx context.Context) error {
	t := time.NewTimer(purgeFirstDelay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p.once(ctx)
		t.Reset(purgeInterval)
	}
}

// once runs one purge and logs what it removed.
func (p purger) once(ctx context.Context) {
	start := time.Now()
	cutoff := p.st.Now().Add(-p.retention)
	st, err := p.st.Purge(ctx, cutoff, store.DefaultPurgeBatch)
	if st.Any() {
		p.log.Info("finished work purged",
			zap.Int64("messages", st.Messages), zap.Int64("deliveries", st.Deliveries),
			zap.Int64("intake", st.Intake), zap.Int64("held", st.Held), zap.Int64("posts", st.Posts),
			zap.Int64("tokens", st.Tokens), zap.Int64("autoresponses", st.Autoresponses), zap.String("older_than", store.FormatTime(cutoff)),
			zap.Duration("took", time.Since(start)))
	}
	if err != nil && ctx.Err() == nil {
		p.log.Error("purge failed", zap.Error(err))
	}
}
