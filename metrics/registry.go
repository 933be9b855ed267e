package metrics

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"postlist/index"
	"postlist/store"
)

// ScrapeTimeout bounds the database queries of one scrape, so that a
// locked or failing disk makes a scrape report an error rather than hang
// the scraper's connection.
const ScrapeTimeout = 5 * time.Second

// Snapshotter is the index as the collector reads it (*index.Index).
type Snapshotter interface {
	Snapshot() *index.Snapshot
}

// Sources are what the scrape-time collectors read. A nil field leaves
// its metrics out.
type Sources struct {
	Store *store.Store
	Index Snapshotter
	// Now is the clock for ages; time.Now if nil.
	Now func() time.Time
}

// NewRegistry returns a registry holding the Go runtime and process
// metrics, every postlist event counter, and gauges read from src at
// scrape time.
func NewRegistry(src Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(events...)
	if src.Now == nil {
		src.Now = time.Now
	}
	if src.Store != nil {
		reg.MustRegister(&backlogCollector{st: src.Store, now: src.Now})
	}
	if src.Index != nil {
		reg.MustRegister(&indexCollector{ix: src.Index})
	}
	return reg
}

// Handler serves reg in the Prometheus text format. A collector that fails
// (the database unreadable) is logged and left out of that scrape, while
// the rest is still served: the event counters say the most during an
// outage.
func Handler(reg *prometheus.Registry, log *zap.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            zap.NewStdLog(log),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg, // counts its own scrape errors
		MaxRequestsInFlight: 4,
	})
}

var (
	queueDesc = prometheus.NewDesc(namespace+"_queue_deliveries",
		"Deliveries waiting or in progress, by state (queued, deferred, sending).", []string{"state"}, nil)
	queueOldestDesc = prometheus.NewDesc(namespace+"_queue_oldest_age_seconds",
		"Age of the oldest queued or deferred delivery; 0 when none waits.", nil, nil)
	heldDesc = prometheus.NewDesc(namespace+"_held_messages",
		"Posts waiting for a moderator.", nil, nil)
	intakePendingDesc = prometheus.NewDesc(namespace+"_intake_pending",
		"Recipients of accepted mail not yet processed.", nil, nil)
)

// backlogCollector reads store.Backlog at every scrape: a few counts
// from partial indexes that hold only waiting rows.
type backlogCollector struct {
	st  *store.Store
	now func() time.Time
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDesc
	ch <- queueOldestDesc
	ch <- heldDesc
	ch <- intakePendingDesc
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	b, err := c.st.Backlog(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueDesc, fmt.Errorf("metrics: read backlog: %w", err))
		return
	}
	for _, s := range []struct {
		state string
		n     int64
	}{{store.DeliveryQueued, b.Queued}, {store.DeliveryDeferred, b.Deferred}, {store.DeliverySending, b.Sending}} {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(s.n), s.state)
	}
	age := 0.0
	if !b.OldestWaiting.IsZero() {
		age = max(c.now().Sub(b.OldestWaiting).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(b.Held))
	ch <- prometheus.MustNewConstMetric(intakePendingDesc, prometheus.GaugeValue, float64(b.IntakePending))
}

var (
	indexReadyDesc = prometheus.NewDesc(namespace+"_index_ready",
		"1 when the address index is loaded; 0 means every list recipient is answered 451.", nil, nil)
	indexGenerationDesc = prometheus.NewDesc(namespace+"_index_generation",
		"Store generation the current index was built from; it moves with every CLI change.", nil, nil)
	indexLoadDesc = prometheus.NewDesc(namespace+"_index_load_duration_seconds",
		"How long building the current index took.", nil, nil)
	indexLoadedDesc = prometheus.NewDesc(namespace+"_index_loaded_timestamp_seconds",
		"When the current index was built (Unix time). The index is rebuilt at least every 10 minutes, so an older one means reloads fail.", nil, nil)
	indexListsDesc = prometheus.NewDesc(namespace+"_index_lists",
		"Lists in the current index.", nil, nil)
	indexMembersDesc = prometheus.NewDesc(namespace+"_index_members",
		"Distinct (list, address) entries in the current index.", nil, nil)
)

// indexCollector reports the current index snapshot. The snapshot is
// swapped atomically by the index's reloader, so reading it costs nothing.
type indexCollector struct {
	ix Snapshotter
}

func (c *indexCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{indexReadyDesc, indexGenerationDesc, indexLoadDesc, indexLoadedDesc, indexListsDesc, indexMembersDesc} {
		ch <- d
	}
}

func (c *indexCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.ix.Snapshot()
	if snap == nil {
		ch <- prometheus.MustNewConstMetric(indexReadyDesc, prometheus.GaugeValue, 0)
		return
	}
	st := snap.Stats()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(indexReadyDesc, 1)
	gauge(indexGenerationDesc, float64(st.Generation))
	gauge(indexLoadDesc, st.LoadTime.Seconds())
	gauge(indexLoadedDesc, float64(st.LoadedAt.UnixNano())/1e9)
	gauge(indexListsDesc, float64(st.Lists))
	gauge(indexMembersDesc, float64(st.Members))
}
