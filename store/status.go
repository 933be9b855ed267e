package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Backlog is the work waiting in the database: what a metrics scrape
// reads every few seconds. Every count comes from a partial index that
// holds only waiting rows, so its cost follows the backlog, not the size
// of the history (sent deliveries, decided held messages, processed
// intake), which is what makes it safe to run at every scrape.
// QueueSummary, which counts sent and failed rows too, scans the whole
// deliveries table and is for the admin commands.
type Backlog struct {
	Queued   int64 // deliveries waiting for their first attempt
	Deferred int64 // deliveries waiting for a retry
	Sending  int64 // deliveries claimed by a deliverer
	// OldestWaiting is when the oldest queued or deferred delivery was
	// queued; zero when none waits.
	OldestWaiting time.Time
	Held          int64 // posts waiting for a moderator
	IntakePending int64 // accepted mail not yet processed
}

// The Backlog queries. Their WHERE terms spell the partial indexes'
// conditions exactly (deliveries_due, deliveries_sending, intake_new;
// held_state leads with state): SQLite uses a partial index only then.
const (
	backlogDeliveriesSQL = `SELECT state, count(*), min(created_at) FROM deliveries
		WHERE state IN ('queued','deferred') GROUP BY state`
	backlogCountsSQL = `SELECT
		(SELECT count(*) FROM deliveries WHERE state = 'sending'),
		(SELECT count(*) FROM held WHERE state = 'held'),
		(SELECT count(*) FROM intake WHERE state = 'new')`
)

// Backlog counts the waiting work.
func (s *Store) Backlog(ctx context.Context) (Backlog, error) {
	var b Backlog
	rows, err := s.r.QueryContext(ctx, backlogDeliveriesSQL)
	if err != nil {
		return b, fmt.Errorf("backlog: deliveries: %w", err)
	}
	defer rows.Close()
	var oldest string
	for rows.Next() {
		var state, first string
		var n int64
		if err := rows.Scan(&state, &n, &first); err != nil {
			return b, fmt.Errorf("backlog: deliveries: %w", err)
		}
		switch state {
		case DeliveryQueued:
			b.Queued = n
		case DeliveryDeferred:
			b.Deferred = n
		}
		if oldest == "" || first < oldest {
			oldest = first
		}
	}
	if err := rows.Err(); err != nil {
		return b, fmt.Errorf("backlog: deliveries: %w", err)
	}
	if oldest != "" {
		if b.OldestWaiting, err = ParseTime(oldest); err != nil {
			return b, fmt.Errorf("backlog: oldest delivery %q: %w", oldest, err)
		}
	}
	err = s.r.QueryRowContext(ctx, backlogCountsSQL).Scan(&b.Sending, &b.Held, &b.IntakePending)
	if err != nil {
		return b, fmt.Errorf("backlog: %w", err)
	}
	return b, nil
}

// Status is the site summary `postlist status` prints. Field names are
// its --json keys, a promise to scripts.
type Status struct {
	Queue []QueueState `json:"queue"` // deliveries by state, as `postlist queue`
	Held  int64        `json:"held"`  // posts waiting for a moderator
	// OldestHeld is when the oldest held post was held; "" if none.
	OldestHeld    string `json:"oldest_held"`
	IntakePending int64  `json:"intake_pending"` // accepted mail not yet processed
	// OldestIntake is when the oldest unprocessed mail was received; ""
	// if none. An old one means the processing stage is stuck.
	OldestIntake string `json:"oldest_intake"`
	// Bouncing counts members with a bounce score or disabled by
	// bounces (the bouncing_members view); DisabledByBounces is the part
	// of them whose delivery is off.
	Bouncing          int64 `json:"bouncing_members"`
	DisabledByBounces int64 `json:"disabled_by_bounces"`
	Domains           int64 `json:"domains"` // alias domains included
	Lists             int64 `json:"lists"`
	// Members counts (list, address) memberships with role member;
	// Receiving is those whose delivery is enabled.
	Members    int64 `json:"members"`
	Receiving  int64 `json:"receiving"`
	Owners     int64 `json:"owners"`
	Moderators int64 `json:"moderators"`
}

// Status gathers the site summary. Unlike Backlog it counts the whole
// delivery history and every member row: it is for an admin's command,
// not for a scrape.
func (s *Store) Status(ctx context.Context) (*Status, error) {
	q, err := s.QueueSummary(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st := &Status{Queue: q}
	var oldestHeld, oldestIntake sql.NullString
	err = s.r.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM held WHERE state = 'held'),
		(SELECT min(held_at) FROM held WHERE state = 'held'),
		(SELECT count(*) FROM intake WHERE state = 'new'),
		(SELECT min(received_at) FROM intake WHERE state = 'new'),
		(SELECT count(*) FROM domains),
		(SELECT count(*) FROM lists)`).Scan(&st.Held, &oldestHeld, &st.IntakePending, &oldestIntake, &st.Domains, &st.Lists)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st.OldestHeld, st.OldestIntake = oldestHeld.String, oldestIntake.String
	// One pass over members for every member count; the bouncing
	// condition is the bouncing_members view's.
	err = s.r.QueryRowContext(ctx, `SELECT
		coalesce(sum(role = 'member'), 0),
		coalesce(sum(role = 'member' AND delivery_status = 'enabled'), 0),
		coalesce(sum(role = 'owner'), 0),
		coalesce(sum(role = 'moderator'), 0),
		coalesce(sum(bounce_score > 0 OR delivery_status = 'by_bounces'), 0),
		coalesce(sum(delivery_status = 'by_bounces'), 0)
		FROM members`).Scan(&st.Members, &st.Receiving, &st.Owners, &st.Moderators, &st.Bouncing, &st.DisabledByBounces)
	if err != nil {
		return nil, fmt.Errorf("status: members: %w", err)
	}
	return st, nil
}
