package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"postlist/index"
	"postlist/index/indextest"
	"postlist/internal/testenv/storetest"
	"postlist/metrics"
	"postlist/store"
)

// value returns the value of the series name{labels} in reg (a counter,
// gauge, or a histogram's sample count), and whether it exists.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func TestEventCounters(t *testing.T) {
	reg := metrics.NewRegistry(metrics.Sources{})
	type series struct {
		name   string
		labels map[string]string
		delta  float64
	}
	for _, c := range []struct {
		name  string
		event func()
		want  []series
	}{
		{"milter rcpt", func() { metrics.MilterDecision(metrics.StageRcpt, "reject", "no_such_list") },
			[]series{{"postlist_milter_decisions_total", map[string]string{"stage": "rcpt", "verdict": "reject", "reason": "no_such_list"}, 1}}},
		{"policy rcpt", func() { metrics.PolicyDecision("reject", "bad_verp") },
			[]series{{"postlist_policy_decisions_total", map[string]string{"verdict": "reject", "reason": "bad_verp"}, 1}}},
		{"lmtp data", func() { metrics.LMTPReplies(metrics.StageData, 250, 3) },
			[]series{{"postlist_lmtp_replies_total", map[string]string{"stage": "data", "code": "250"}, 3}}},
		{"lmtp none", func() { metrics.LMTPReplies(metrics.StageData, 451, 0) },
			[]series{{"postlist_lmtp_replies_total", map[string]string{"stage": "data", "code": "451"}, 0}}},
		{"lmtp odd code", func() { metrics.LMTPReplies(metrics.StageRcpt, 99999, 1) },
			[]series{{"postlist_lmtp_replies_total", map[string]string{"stage": "rcpt", "code": "other"}, 1}}},
		{"intake", func() {
			metrics.Intake(&store.IntakeMessage{Recipients: []store.IntakeRecipient{{Kind: "post"}, {Kind: "post"}, {Kind: "bounces"}}})
		}, []series{
			{"postlist_intake_messages_total", map[string]string{}, 1},
			{"postlist_intake_recipients_total", map[string]string{"kind": "post"}, 2},
			{"postlist_intake_recipients_total", map[string]string{"kind": "bounces"}, 1},
		}},
		{"delivery sent", func() { metrics.Delivery(store.DeliverySent) },
			[]series{{"postlist_deliveries_total", map[string]string{"outcome": "sent"}, 1}}},
		{"delivery handed back is no outcome", func() { metrics.Delivery(store.DeliveryQueued) },
			[]series{
				{"postlist_deliveries_total", map[string]string{"outcome": "sent"}, 0},
				{"postlist_deliveries_total", map[string]string{"outcome": "queued"}, 0},
			}},
		{"latency", func() { metrics.DeliveryLatency(1500 * time.Millisecond); metrics.DeliveryLatency(-time.Second) },
			[]series{{"postlist_delivery_latency_seconds", map[string]string{}, 2}}},
		{"socketmap", func() { metrics.SocketmapLookup("transport", metrics.ResultOK) },
			[]series{{"postlist_socketmap_lookups_total", map[string]string{"map": "transport", "result": "OK"}, 1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := make([]float64, len(c.want))
			for i, s := range c.want {
				before[i], _ = value(t, reg, s.name, s.labels)
			}
			c.event()
			for i, s := range c.want {
				after, _ := value(t, reg, s.name, s.labels)
				if d := after - before[i]; d != s.delta {
					t.Errorf("%s%v moved by %v, want %v", s.name, s.labels, d, s.delta)
				}
			}
		})
	}
	// Outcomes exist from the start, so that alerts on them work at once.
	for _, o := range []string{"sent", "deferred", "failed"} {
		if _, ok := value(t, reg, "postlist_deliveries_total", map[string]string{"outcome": o}); !ok {
			t.Errorf("postlist_deliveries_total{outcome=%q} not present", o)
		}
	}
}

// TestMetricNames runs Prometheus' own linter over every metric family:
// names, units and help texts follow its conventions.
func TestMetricNames(t *testing.T) {
	st := storetest.Open(t)
	ix := index.New(&indextest.Source{}, index.Options{Log: zaptest.NewLogger(t)})
	if err := ix.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry(metrics.Sources{Store: st, Index: ix})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "postlist_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestBacklogGauges(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st.Now = func() time.Time { return now }
	reg := metrics.NewRegistry(metrics.Sources{Store: st, Now: func() time.Time { return now.Add(90 * time.Second) }})

	gauge := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := value(t, reg, name, labels)
		if !ok {
			t.Fatalf("%s%v missing", name, labels)
		}
		return v
	}
	if v := gauge("postlist_queue_oldest_age_seconds", map[string]string{}); v != 0 {
		t.Errorf("empty queue: oldest age %v, want 0", v)
	}

	l, err := st.CreateList(ctx, "test@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.StoreMessage(ctx, "alice@example.com", []byte("Subject: hi\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []store.NewDelivery
	for _, r := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		rows = append(rows, store.NewDelivery{Recipient: r, EnvelopeFrom: "test-bounces@lists.example.org"})
	}
	if err := st.QueueDeliveries(ctx, msg, l.ID, rows); err != nil {
		t.Fatal(err)
	}
	claimed, err := st.ClaimDeliveries(ctx, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	if _, err := st.Intake(ctx, &store.IntakeMessage{MessageID: "<m@example.com>", Sender: "x@example.com", Body: []byte("Subject: x\r\n\r\nx\r\n"),
		Recipients: []store.IntakeRecipient{{Recipient: "test@lists.example.org", List: "test@lists.example.org", Kind: "post"}}}); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"postlist_queue_deliveries", map[string]string{"state": "queued"}, 2},
		{"postlist_queue_deliveries", map[string]string{"state": "sending"}, 1},
		{"postlist_queue_deliveries", map[string]string{"state": "deferred"}, 0},
		{"postlist_queue_oldest_age_seconds", map[string]string{}, 90},
		{"postlist_held_messages", map[string]string{}, 0},
		{"postlist_intake_pending", map[string]string{}, 1},
	} {
		if got := gauge(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestScrapeSurvivesStoreFailure: with the database gone, /metrics still
// answers with everything that does not need it.
func TestScrapeSurvivesStoreFailure(t *testing.T) {
	st := storetest.Open(t)
	reg := metrics.NewRegistry(metrics.Sources{Store: st})
	srv := httptest.NewServer(metrics.Handler(reg, zaptest.NewLogger(t)))
	defer srv.Close()
	scrape := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	code, body := scrape()
	if code != http.StatusOK || !strings.Contains(body, `postlist_queue_deliveries{state="queued"} 0`) {
		t.Fatalf("healthy scrape: %d\n%s", code, body)
	}
	st.Close()
	code, body = scrape()
	if code != http.StatusOK {
		t.Errorf("scrape with the store closed: status %d", code)
	}
	if strings.Contains(body, "postlist_queue_deliveries") {
		t.Error("queue gauges served without a database")
	}
	if !strings.Contains(body, "postlist_deliveries_total") {
		t.Errorf("event counters missing when the store fails:\n%s", body)
	}
}

func TestIndexGauges(t *testing.T) {
	src := &indextest.Source{
		Domains: []store.IndexDomain{{Name: "lists.example.org"}},
		Lists:   []store.IndexList{{ID: 1, Address: "test@lists.example.org", ListID: "test.lists.example.org"}},
		Members: []store.IndexMember{{ListID: 1, Address: "a@example.com"}, {ListID: 1, Address: "b@example.com"}},
	}
	ix := index.New(src, index.Options{Log: zaptest.NewLogger(t)})
	reg := metrics.NewRegistry(metrics.Sources{Index: ix})
	if v, ok := value(t, reg, "postlist_index_ready", map[string]string{}); !ok || v != 0 {
		t.Errorf("before loading: ready %v (present %v), want 0", v, ok)
	}
	if _, ok := value(t, reg, "postlist_index_generation", map[string]string{}); ok {
		t.Error("generation reported before the index loaded")
	}
	src.Bump()
	src.Bump()
	if err := ix.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want float64
	}{
		{"postlist_index_ready", 1},
		{"postlist_index_generation", 2},
		{"postlist_index_lists", 1},
		{"postlist_index_members", 2},
	} {
		if v, _ := value(t, reg, c.name, map[string]string{}); v != c.want {
			t.Errorf("%s = %v, want %v", c.name, v, c.want)
		}
	}
	loaded, _ := value(t, reg, "postlist_index_loaded_timestamp_seconds", map[string]string{})
	if age := float64(time.Now().UnixNano())/1e9 - loaded; age < 0 || age > 60 {
		t.Errorf("loaded timestamp %v is %v s from now", loaded, age)
	}
}
