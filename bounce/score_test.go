package bounce_test

import (
	"testing"
	"time"

	"postlist/bounce"
	"postlist/store"
)

func TestScore(t *testing.T) {
	pol := bounce.Policy{Process: true, Threshold: 5, StaleAfter: 7 * 24 * time.Hour, Warnings: 3, Interval: 7 * 24 * time.Hour}
	day := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	member := func(score float64, last time.Time) store.BounceState {
		return store.BounceState{Found: true, Address: "alice@example.com", DeliveryStatus: "enabled", Score: score, LastBounceAt: last}
	}
	cases := []struct {
		name    string
		st      store.BounceState
		at      time.Time
		apply   bool
		scored  bool
		score   float64
		disable bool
	}{
		{"first bounce", member(0, time.Time{}), day, true, true, 1, false},
		{"next day", member(1, day), day.Add(24 * time.Hour), true, true, 2, false},
		{"same day", member(1, day), day.Add(11 * time.Hour), true, false, 1, false},
		{"just after midnight UTC", member(1, day.Add(11*time.Hour+59*time.Minute)), day.Add(12*time.Hour + time.Minute), true, true, 2, false},
		{"threshold", member(4, day), day.Add(24 * time.Hour), true, true, 5, true},
		{"stale", member(4, day), day.Add(8 * 24 * time.Hour), true, true, 1, false},
		{"exactly stale-after later still counts", member(4, day), day.Add(7 * 24 * time.Hour), true, true, 5, true},
		{"re-enabled by an admin starts again", member(5, day), day.Add(24 * time.Hour), true, true, 1, false},
		{"older than the last", member(2, day), day.Add(-48 * time.Hour), false, false, 0, false},
		{"not a member", store.BounceState{Address: "x@example.com"}, day, false, false, 0, false},
		{"already disabled", store.BounceState{Found: true, DeliveryStatus: "by_bounces", Score: 5, LastBounceAt: day}, day.Add(48 * time.Hour), false, false, 0, false},
	}
	for _, c := range cases {
		v := bounce.Score(c.st, c.at, pol)
		if v.Apply != c.apply || v.Scored != c.scored || v.Disable != c.disable || (c.apply && v.Score != c.score) {
			t.Errorf("%s: %+v, want apply %v scored %v score %g disable %v", c.name, v, c.apply, c.scored, c.score, c.disable)
		}
		if v.Apply && !v.LastBounceAt.Equal(c.at) {
			t.Errorf("%s: last bounce %v, want %v", c.name, v.LastBounceAt, c.at)
		}
		if v.Event == "" || v.Detail == "" {
			t.Errorf("%s: no event", c.name)
		}
	}
}

func TestDue(t *testing.T) {
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	pol := bounce.Policy{Warnings: 3, Interval: week}
	cases := []struct {
		name         string
		sent         int
		last         time.Time
		pol          bounce.Policy
		warn, remove bool
	}{
		{"just disabled", 0, time.Time{}, pol, true, false},
		{"warned yesterday", 1, now.Add(-24 * time.Hour), pol, false, false},
		{"warned a week ago", 1, now.Add(-week), pol, true, false},
		{"last warning recent", 3, now.Add(-24 * time.Hour), pol, false, false},
		{"last warning a week ago", 3, now.Add(-week), pol, false, true},
		{"no warnings configured", 0, time.Time{}, bounce.Policy{Interval: week}, false, true},
	}
	for _, c := range cases {
		warn, remove := bounce.Due(store.DisabledMember{WarningsSent: c.sent, LastWarningAt: c.last}, now, c.pol)
		if warn != c.warn || remove != c.remove {
			t.Errorf("%s: warn %v remove %v, want %v %v", c.name, warn, remove, c.warn, c.remove)
		}
	}
}

func TestParseDuration(t *testing.T) {
	def := time.Minute
	cases := map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "12h": 12 * time.Hour, "1w2d": 9 * 24 * time.Hour, "90s": 90 * time.Second,
		"": def, "7": def, "d": def, "7x": def, "-1d": def, "7d ": def, "99999999d": def,
	}
	for in, want := range cases {
		if got := bounce.ParseDuration(in, def); got != want {
			t.Errorf("ParseDuration(%q) = %v, want %v", in, got, want)
		}
	}
}
