package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"postlist/store"
)

// runStatus runs `postlist status` in-process like env.run, also before
// the verb is registered in root (then it is added here), so this test
// does not depend on the order the verbs were wired in.
func (e *env) runStatus(args ...string) (int, string, string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}
	root := a.root()
	if c, _, err := root.Find([]string{"status"}); err != nil || c.Name() != "status" {
		root.AddCommand(a.statusCmd())
	}
	root.SetArgs(append([]string{"-c", e.cfg, "status"}, args...))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return ExitOK, out.String(), errb.String()
	}
	errb.WriteString(err.Error() + "\n")
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage, out.String(), errb.String()
	}
	return ExitFailure, out.String(), errb.String()
}

func (e *env) mustStatus(args ...string) string {
	e.t.Helper()
	code, out, errs := e.runStatus(args...)
	if code != ExitOK {
		e.t.Fatalf("postlist status %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

type statusJSON struct {
	Queue []struct {
		State      string `json:"state"`
		Deliveries int64  `json:"deliveries"`
	} `json:"queue"`
	Held          int64  `json:"held"`
	OldestHeld    string `json:"oldest_held"`
	IntakePending int64  `json:"intake_pending"`
	Bouncing      int64  `json:"bouncing_members"`
	Disabled      int64  `json:"disabled_by_bounces"`
	Domains       int64  `json:"domains"`
	Lists         int64  `json:"lists"`
	Members       int64  `json:"members"`
	Receiving     int64  `json:"receiving"`
	Owners        int64  `json:"owners"`
	Moderators    int64  `json:"moderators"`
}

func TestStatusEmptySite(t *testing.T) {
	e := newEnv(t)
	out := e.mustStatus()
	for _, want := range []string{`(?m)^\(none\)\s+0\s+0`, `(?m)^lists\s+0$`, `(?m)^held posts\s+0$`, `(?m)^members\s+0 \(0 receiving mail\)$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status lacks %s:\n%s", want, out)
		}
	}
	js := e.mustStatus("--json")
	// Scripts iterate over queue: an empty one must be [], not null.
	if !strings.Contains(js, `"queue": []`) {
		t.Errorf("empty queue not printed as []:\n%s", js)
	}
	if code, _, _ := e.runStatus("extra"); code != ExitUsage {
		t.Errorf("status with an argument: exit %d, want %d", code, ExitUsage)
	}
}

func TestStatusCountsSite(t *testing.T) {
	e := newEnv(t)
	const list = "test@lists.example.org"
	e.mustRun("domains", "add", "lists.example.org", "--alias", "lists.example.net")
	e.mustRun("lists", "create", list)
	e.mustRun("lists", "create", "other@lists.example.org")
	e.mustRun("members", "add", list, "alice@example.com", "bob@example.com", "carol@example.com")
	e.mustRun("members", "add", "other@lists.example.org", "alice@example.com")
	e.mustRun("members", "add", list, "owner@example.com", "--role", "owner")
	e.mustRun("members", "set", list, "carol@example.com", "delivery_status", "by_user")
	// Two held posts, through the real pipeline: each also queues a
	// notice to the owner.
	e.holdOne("first")
	e.holdOne("second")
	// One message accepted but not processed yet.
	ctx := context.Background()
	st, err := store.Open(ctx, e.db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Intake(ctx, &store.IntakeMessage{
		MessageID: "<pending@example.net>", Sender: "alice@example.com", Body: []byte("Subject: pending\r\n\r\nx\r\n"),
		Recipients: []store.IntakeRecipient{{Recipient: list, List: list, Kind: "post"}},
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	var got statusJSON
	if err := json.Unmarshal([]byte(e.mustStatus("--json")), &got); err != nil {
		t.Fatal(err)
	}
	queued := int64(0)
	for _, q := range got.Queue {
		if q.State == "queued" {
			queued = q.Deliveries
		}
	}
	if queued < 2 {
		t.Errorf("queued deliveries = %d, want the 2 owner notices at least (queue %+v)", queued, got.Queue)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"held", got.Held, int64(2)},
		{"oldest held set", got.OldestHeld != "", true},
		{"intake pending", got.IntakePending, int64(1)},
		{"bouncing", got.Bouncing, int64(0)},
		{"domains", got.Domains, int64(2)},
		{"lists", got.Lists, int64(2)},
		{"members", got.Members, int64(4)},
		{"receiving", got.Receiving, int64(3)},
		{"owners", got.Owners, int64(1)},
		{"moderators", got.Moderators, int64(0)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	out := e.mustStatus()
	for _, want := range []string{`(?m)^queued\s+\d+\s+\d+\s+\d{4}-`, `(?m)^held posts\s+2 \(oldest \d{4}-`, `(?m)^unprocessed mail\s+1 \(oldest `,
		`(?m)^lists\s+2$`, `(?m)^members\s+4 \(3 receiving mail\)$`, `(?m)^owners, moderators\s+1, 0$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status lacks %s:\n%s", want, out)
		}
	}
}
