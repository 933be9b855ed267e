package bounce

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"postlist/store"
)

// Policy is a list's bounce settings, parsed.
type Policy struct {
	Process    bool          // process_bounces
	Threshold  float64       // bounce_score_threshold
	StaleAfter time.Duration // bounce_info_stale_after
	Warnings   int           // bounce_you_are_disabled_warnings
	Interval   time.Duration // bounce_you_are_disabled_warnings_interval
}

// Mailman's defaults, used where a stored value cannot be read.
const (
	DefaultThreshold  = 5.0
	DefaultStaleAfter = 7 * 24 * time.Hour
	DefaultWarnings   = 3
	DefaultInterval   = 7 * 24 * time.Hour
)

// PolicyOf reads l's bounce settings.
func PolicyOf(l *store.List) Policy {
	p := Policy{
		Process:    l.Bool("process_bounces"),
		Threshold:  l.Float("bounce_score_threshold"),
		StaleAfter: ParseDuration(l.Setting("bounce_info_stale_after"), DefaultStaleAfter),
		Warnings:   l.Int("bounce_you_are_disabled_warnings"),
		Interval:   ParseDuration(l.Setting("bounce_you_are_disabled_warnings_interval"), DefaultInterval),
	}
	if p.Threshold <= 0 {
		p.Threshold = DefaultThreshold
	}
	return p
}

var durationPart = regexp.MustCompile(`(\d+)([wdhms])`)

// ParseDuration reads a stored duration setting ("7d", "1w2d", "12h"),
// or returns def if s is not one.
func ParseDuration(s string, def time.Duration) time.Duration {
	parts := durationPart.FindAllStringSubmatch(s, -1)
	if len(parts) == 0 {
		return def
	}
	n := 0
	var d time.Duration
	for _, p := range parts {
		n += len(p[0])
		v, err := strconv.Atoi(p[1])
		if err != nil || v > 1e6 {
			return def
		}
		unit := map[string]time.Duration{"w": 7 * 24 * time.Hour, "d": 24 * time.Hour, "h": time.Hour, "m": time.Minute, "s": time.Second}[p[2]]
		d += time.Duration(v) * unit
	}
	if n != len(s) {
		return def
	}
	return d
}

// Score applies one scoring bounce received at at to a member's record,
// with Mailman 3's rules (model/bounce.py, process_event):
//
//   - a member already disabled by bounces is left alone (residual
//     bounces of mail sent before);
//   - the score rises at most once per calendar day (UTC): a second bounce
//     the same day only moves the last-bounce time;
//   - a member whose last bounce is older than StaleAfter starts again
//     at 1, any other bounce adds 1;
//   - so does a member whose score is already at the threshold but whose
//     delivery is enabled: an admin re-enabled it, and one more bounce
//     must not disable it again at once;
//   - at Threshold, delivery is disabled.
//
// The verdict's Event and Detail say what happened; the caller adds the
// notices.
func Score(st store.BounceState, at time.Time, p Policy) store.BounceVerdict {
	switch {
	case !st.Found:
		return store.BounceVerdict{Event: store.EventBounceRecorded, Detail: "not scored: not a member"}
	case st.DeliveryStatus == "by_bounces":
		return store.BounceVerdict{Event: store.EventBounceRecorded, Detail: "not scored: delivery already disabled by bounces"}
	case !st.LastBounceAt.IsZero() && at.Before(st.LastBounceAt):
		// Reported late (a bounce the deliverer recorded before this
		// one was processed): the day it belongs to was already judged.
		return store.BounceVerdict{Event: store.EventBounceRecorded, Detail: "not scored: older than the last bounce"}
	case !st.LastBounceAt.IsZero() && sameDay(st.LastBounceAt, at):
		return store.BounceVerdict{
			Apply: true, Score: st.Score, LastBounceAt: at,
			Event: store.EventBounceRecorded, Detail: fmt.Sprintf("not scored: the score already rose today (score %g)", st.Score),
		}
	}
	v := store.BounceVerdict{Apply: true, Scored: true, LastBounceAt: at, Event: store.EventBounceScored}
	reenabled := st.Score >= p.Threshold
	if st.LastBounceAt.IsZero() || at.Sub(st.LastBounceAt) > p.StaleAfter || reenabled {
		v.Score = 1
		v.Detail = fmt.Sprintf("score 1 (was %g", st.Score)
		switch {
		case reenabled:
			v.Detail += ", reset: delivery was re-enabled"
		case !st.LastBounceAt.IsZero():
			v.Detail += ", reset: last bounce " + st.LastBounceAt.UTC().Format("2006-01-02")
		}
		v.Detail += ")"
	} else {
		v.Score = st.Score + 1
		v.Detail = fmt.Sprintf("score %g (was %g)", v.Score, st.Score)
	}
	if v.Score >= p.Threshold {
		v.Disable = true
		v.Detail += fmt.Sprintf(", threshold %g reached: delivery disabled", p.Threshold)
	}
	return v
}

func sameDay(a, b time.Time) bool {
	ay, am, ad := a.UTC().Date()
	by, bm, bd := b.UTC().Date()
	return ay == by && am == bm && ad == bd
}

// Due says what the warning pass owes a member disabled by bounces at
// now: a warning (fewer than Warnings sent, the last one at least
// Interval ago: the first goes out at once), removal (all warnings sent
// and Interval passed since the last, or no warnings configured), or
// nothing yet.
func Due(m store.DisabledMember, now time.Time, p Policy) (warn, remove bool) {
	elapsed := m.LastWarningAt.IsZero() || !now.Before(m.LastWarningAt.Add(p.Interval))
	switch {
	case m.WarningsSent < p.Warnings:
		return elapsed, false
	case p.Warnings <= 0:
		return false, true
	default:
		return false, elapsed
	}
}
