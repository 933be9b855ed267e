package cli

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"postlist/address"
	"postlist/store"
)

// eventKeys runs `postlist --json events ARGS` and returns each event as
// "list address kind", in the order printed.
func (e *env) eventKeys(args ...string) []string {
	e.t.Helper()
	var evs []store.Event
	out := e.mustRun(append([]string{"--json", "events"}, args...)...)
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		e.t.Fatalf("events %v: %v\n%s", args, err, out)
	}
	keys := []string{}
	for i, ev := range evs {
		if i > 0 && ev.ID >= evs[i-1].ID {
			e.t.Errorf("events %v not newest first: id %d after %d", args, ev.ID, evs[i-1].ID)
		}
		keys = append(keys, fmt.Sprintf("%s %s %s", dash(ev.List), dash(ev.Address), ev.Kind))
	}
	return keys
}

func TestEventsFilters(t *testing.T) {
	e := newEnv(t)
	const other = "other@lists.example.org"
	e.mustRun("lists", "create", testList)
	e.mustRun("lists", "create", other)
	st := e.openStore()
	e.addRequest(st, testList, store.TokenSubscribe, "", "alice@example.com", "", tok("01"))
	e.addRequest(st, testList, store.TokenSubscribe, "", "bob@example.com", "", tok("02"))
	e.addRequest(st, other, store.TokenSubscribe, "", "alice@example.com", "", tok("03"))
	e.mustRun("members", "add", testList, "carol@example.com")

	const (
		created     = "test@lists.example.org - list_created"
		otherCreate = "other@lists.example.org - list_created"
		aliceTest   = "test@lists.example.org alice@example.com subscribe_requested"
		bobTest     = "test@lists.example.org bob@example.com subscribe_requested"
		aliceOther  = "other@lists.example.org alice@example.com subscribe_requested"
		added       = "test@lists.example.org - members_added"
	)
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"all", nil, []string{added, aliceOther, bobTest, aliceTest, otherCreate, created}},
		{"list", []string{testList}, []string{added, bobTest, aliceTest, created}},
		{"address", []string{"--address", "alice@example.com"}, []string{aliceOther, aliceTest}},
		{"list and address in another case", []string{"Test@Lists.Example.org", "--address", "ALICE@example.com"}, []string{aliceTest}},
		{"kinds repeated", []string{"--kind", "members_added", "--kind", "list_created"}, []string{added, otherCreate, created}},
		{"kinds with commas", []string{"other@lists.example.org", "--kind", "list_created,subscribe_requested"}, []string{aliceOther, otherCreate}},
		{"limit", []string{"--limit", "2"}, []string{added, aliceOther}},
		{"limit with filter", []string{"--address", "alice@example.com", "--limit", "1"}, []string{aliceOther}},
		{"no match", []string{"--kind", "nonesuch"}, []string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := e.eventKeys(c.args...); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("events %v:\n got %q\nwant %q", c.args, got, c.want)
			}
		})
	}

	out := e.mustRun("events", testList, "--address", "bob@example.com")
	for _, want := range []string{`(?m)^AT\s+LIST\s+ADDRESS\s+KIND\s+DETAIL$`,
		`(?m)^\d{4}-\d\d-\d\dT\S+\s+test@lists\.example\.org\s+bob@example\.com\s+subscribe_requested\s+token 02000000\.\.\., expires `} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("events table lacks %s:\n%s", want, out)
		}
	}
	if strings.Count(out, "\n") != 2 {
		t.Errorf("events table for bob: want a header and one row:\n%s", out)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"nope@lists.example.org"}, ExitFailure, "not found: list nope@lists.example.org"},
		{[]string{"--limit", "-1"}, ExitUsage, "--limit -1"},
		{[]string{"--address", "not an address"}, ExitUsage, "--address"},
		{[]string{testList, other}, ExitUsage, "at most 1 argument"},
	} {
		if code, _, errs := e.run("", append([]string{"events"}, c.args...)...); code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("events %v: exit %d %q, want exit %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
}

func TestEventsDefaultLimit(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", testList)
	st := e.openStore()
	for i := range 60 {
		tk, err := address.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		e.addRequest(st, testList, store.TokenSubscribe, "", fmt.Sprintf("m%02d@example.com", i), "", tk)
	}
	keys := e.eventKeys()
	if len(keys) != 50 || keys[0] != "test@lists.example.org m59@example.com subscribe_requested" {
		t.Errorf("events without --limit: %d, first %q; want the newest 50", len(keys), keys[0])
	}
	if n := len(e.eventKeys("--limit", "0")); n != 61 {
		t.Errorf("events --limit 0: %d, want all 61", n)
	}
	if n := strings.Count(e.mustRun("events"), "\n"); n != 51 {
		t.Errorf("events table: %d lines, want a header and 50 rows", n)
	}
}
