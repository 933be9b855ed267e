package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"postlist/bounce"
	"postlist/store"
)

// recordBounce records one bounce for addr as the bounce processor does,
// scored by the real rules when scored is set.
func recordBounce(t *testing.T, st *store.Store, list, addr, kind, status, diag string, at time.Time, scored bool) {
	t.Helper()
	ctx := context.Background()
	l, err := st.GetList(ctx, list)
	if err != nil {
		t.Fatal(err)
	}
	b := store.Bounce{ListID: l.ID, Address: addr, Kind: kind, Status: status, Diagnostic: diag, At: at,
		Event: store.EventBounceRecorded, Detail: "not scored: policy"}
	if scored {
		b.Decide = func(s store.BounceState) store.BounceVerdict { return bounce.Score(s, at, bounce.PolicyOf(l)) }
	}
	if err := st.RecordBounces(ctx, store.BounceBatch{ListID: l.ID, At: at, Bounces: []store.Bounce{b}}); err != nil {
		t.Fatal(err)
	}
}

func TestMembersBounces(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", testList)
	e.mustRun("members", "add", testList, "alice@example.com", "bob@example.com", "carol@example.com")
	st := e.openStore()
	day := time.Now().UTC().Truncate(24 * time.Hour)
	for i, b := range []struct {
		addr, kind, status, diag string
		scored                   bool
	}{
		{"alice@example.com", store.BouncePermanent, "5.1.1", "550 5.1.1 <alice@example.com>: Recipient address rejected", true},
		{"alice@example.com", store.BouncePermanent, "5.1.1", "550 5.1.1 <alice@example.com>: Recipient address rejected", true},
		{"alice@example.com", store.BouncePolicy, "5.7.26", "550 5.7.26 Unauthenticated email\r\n\tDMARC policy", false},
		{"carol@example.com", store.BouncePermanent, "5.1.1", "550 5.1.1 no such user", true},
	} {
		// A day apart, so that each scored bounce raises the score.
		recordBounce(t, st, testList, b.addr, b.kind, b.status, b.diag, day.Add(time.Duration(i-5)*24*time.Hour), b.scored)
	}
	e.mustRun("members", "remove", testList, "carol@example.com")

	type bounceJSON struct {
		Member       bool     `json:"member"`
		Address      string   `json:"address"`
		Delivery     *string  `json:"delivery_status"`
		Score        *float64 `json:"bounce_score"`
		LastBounceAt string   `json:"last_bounce_at"`
		Bounces      []struct {
			Kind       string `json:"kind"`
			Status     string `json:"status"`
			Scored     bool   `json:"scored"`
			Diagnostic string `json:"diagnostic"`
		} `json:"bounces"`
	}
	for _, c := range []struct {
		addr      string
		member    bool
		score     float64
		scored    []bool
		wantTable []string
	}{
		{"alice@example.com", true, 2, []bool{true, true, false}, []string{
			`(?m)^delivery\s+enabled$`, `(?m)^bounce score\s+2\.0$`, `(?m)^last bounce\s+\d{4}-`, `(?m)^warnings sent\s+0$`,
			`(?m)^RECEIVED\s+KIND\s+STATUS\s+SCORED\s+DIAGNOSTIC$`,
			`(?m)^\d{4}-\S+\s+permanent\s+5\.1\.1\s+yes\s+550 5\.1\.1 <alice@example\.com>: Recipient`,
			`(?m)^\d{4}-\S+\s+policy\s+5\.7\.26\s+no\s+550 5\.7\.26 Unauthenticated email DMARC policy$`,
		}},
		{"bob@example.com", true, 0, nil, []string{`(?m)^bounce score\s+0\.0$`, `(?m)^no bounces recorded$`}},
		// Removed since: the history is what an admin wants to read.
		{"carol@example.com", false, 0, []bool{true}, []string{`(?m)^member\s+no `, `(?m)^\S+\s+permanent\s+5\.1\.1\s+yes\s+550 5\.1\.1 no such user$`}},
	} {
		t.Run(c.addr, func(t *testing.T) {
			var got bounceJSON
			if err := json.Unmarshal([]byte(e.mustRun("--json", "members", "bounces", testList, c.addr)), &got); err != nil {
				t.Fatal(err)
			}
			if got.Member != c.member || got.Address != c.addr || len(got.Bounces) != len(c.scored) {
				t.Fatalf("members bounces --json = %+v", got)
			}
			if c.member && (got.Score == nil || *got.Score != c.score || got.Delivery == nil || *got.Delivery != "enabled") {
				t.Errorf("record = score %v, delivery %v; want %g, enabled", got.Score, got.Delivery, c.score)
			}
			if !c.member && (got.Score != nil || got.Delivery != nil) {
				t.Errorf("former member has a record: %+v", got)
			}
			for i, b := range got.Bounces {
				if b.Scored != c.scored[i] {
					t.Errorf("bounce %d scored = %v, want %v (%+v)", i, b.Scored, c.scored[i], b)
				}
			}
			out := e.mustRun("members", "bounces", testList, c.addr)
			for _, want := range c.wantTable {
				if !regexp.MustCompile(want).MatchString(out) {
					t.Errorf("table lacks %s:\n%s", want, out)
				}
			}
		})
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{testList, "nobody@example.com"}, ExitFailure, "nobody@example.com is not a member of test@lists.example.org"},
		{[]string{"nope@lists.example.org", "alice@example.com"}, ExitFailure, "not found: list nope@lists.example.org"},
		{[]string{testList, "not an address"}, ExitUsage, ""},
		{[]string{testList}, ExitUsage, "want 2 argument"},
	} {
		if code, _, errs := e.run("", append([]string{"members", "bounces"}, c.args...)...); code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("members bounces %v: exit %d %q, want exit %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
}
