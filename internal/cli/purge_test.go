package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"postlist/store"
)

// finishedPost stores a post to test@lists.example.org received at `at`,
// processed, with n deliveries all sent, as the daemon would leave it.
func (e *env) finishedPost(at time.Time, n int) int64 {
	e.t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	st.Now = func() time.Time { return at }
	const list = "test@lists.example.org"
	in, err := st.Intake(ctx, &store.IntakeMessage{Sender: "alice@example.com", Body: []byte("Subject: hi\r\n\r\nx\r\n"),
		Recipients: []store.IntakeRecipient{{Recipient: list, List: list, Kind: "post"}}})
	if err != nil {
		e.t.Fatal(err)
	}
	rows := make([]store.NewDelivery, n)
	for i := range rows {
		rows[i] = store.NewDelivery{Recipient: fmt.Sprintf("m%d@example.com", i), EnvelopeFrom: "test-bounces@lists.example.org"}
	}
	if err := st.QueueDeliveries(ctx, in.MessageID, 0, rows); err != nil {
		e.t.Fatal(err)
	}
	claimed, err := st.ClaimDeliveries(ctx, n)
	if err != nil || len(claimed) != n {
		e.t.Fatalf("claimed %d of %d deliveries: %v", len(claimed), n, err)
	}
	outs := make([]store.DeliveryOutcome, n)
	for i, d := range claimed {
		outs[i] = store.DeliveryOutcome{ID: d.ID, State: store.DeliverySent, Reply: "250 2.0.0 ok"}
	}
	if err := st.RecordDeliveries(ctx, outs); err != nil {
		e.t.Fatal(err)
	}
	if err := st.MarkIntake(ctx, in.IntakeIDs[0], store.IntakeDone, "accepted"); err != nil {
		e.t.Fatal(err)
	}
	return in.MessageID
}

// setRetention writes retention into the environment's [database] table.
func (e *env) setRetention(v string) {
	e.t.Helper()
	b, err := os.ReadFile(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	text := strings.Replace(string(b), "[database]\n", "[database]\nretention = "+v+"\n", 1)
	if err := os.WriteFile(e.cfg, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

type purgeJSON struct {
	OlderThan  string `json:"older_than"`
	Messages   int64  `json:"messages"`
	Deliveries int64  `json:"deliveries"`
	Intake     int64  `json:"intake"`
	Held       int64  `json:"held"`
	Posts      int64  `json:"posts"`
	Tokens     int64  `json:"tokens"`
}

func (e *env) purgeJSON(args ...string) purgeJSON {
	e.t.Helper()
	var got purgeJSON
	out := e.mustRun(append([]string{"--json", "purge"}, args...)...)
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		e.t.Fatalf("purge --json: %v\n%s", err, out)
	}
	return got
}

func TestPurgeUsesConfiguredRetention(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", "test@lists.example.org")
	now := time.Now()
	e.finishedPost(now.Add(-10*24*time.Hour), 3)
	e.finishedPost(now.Add(-3*24*time.Hour), 2)

	got := e.purgeJSON()
	if got.Messages != 1 || got.Deliveries != 3 || got.Intake != 1 {
		t.Errorf("purge with the default 7d retention = %+v, want the 10-day-old post and its 3 deliveries", got)
	}
	at, err := store.ParseTime(got.OlderThan)
	if err != nil || now.Add(-7*24*time.Hour).Sub(at).Abs() > time.Minute {
		t.Errorf("older_than = %q, want 7 days ago", got.OlderThan)
	}

	out := e.mustRun("purge")
	for _, want := range []string{`(?m)^purged what finished and was received before \d{4}-\d\d-\d\dT`, `(?m)^messages\s+0$`, `(?m)^deliveries\s+0$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("second purge output lacks %s:\n%s", want, out)
		}
	}

	if got := e.purgeJSON("--older-than", "2d"); got.Messages != 1 || got.Deliveries != 2 {
		t.Errorf("purge --older-than 2d = %+v, want the 3-day-old post", got)
	}
	var queue struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("--json", "queue", "--all")), &queue); err != nil || len(queue.Messages) != 0 {
		t.Errorf("queue after purging everything: %v, %s", err, queue.Messages)
	}
}

func TestPurgeRetentionZero(t *testing.T) {
	e := newEnv(t)
	e.setRetention(`"0"`)
	e.mustRun("lists", "create", "test@lists.example.org")
	e.finishedPost(time.Now().Add(-time.Hour), 2)

	code, out, errs := e.run("", "purge")
	if code != ExitUsage || !strings.Contains(errs, "retention is 0") || !strings.Contains(errs, "--older-than") || out != "" {
		t.Errorf("purge with retention 0: exit %d, stdout %q, stderr %q; want exit 2 naming --older-than", code, out, errs)
	}
	if got := e.purgeJSON("--older-than", "0"); got.Messages != 1 || got.Deliveries != 2 {
		t.Errorf("purge --older-than 0 = %+v, want the finished post", got)
	}
}

func TestPurgeBadOlderThan(t *testing.T) {
	e := newEnv(t)
	for _, arg := range []string{"soon", "-1h", ""} {
		code, _, errs := e.run("", "purge", "--older-than", arg)
		if code != ExitUsage || !strings.Contains(errs, "--older-than") {
			t.Errorf("purge --older-than %q: exit %d, stderr %q; want exit 2", arg, code, errs)
		}
	}
	if code, _, _ := e.run("", "purge", "extra"); code != ExitUsage {
		t.Errorf("purge with an argument: exit %d, want %d", code, ExitUsage)
	}
}
