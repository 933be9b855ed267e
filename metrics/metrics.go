// Package metrics defines postlist's Prometheus metrics and the small API
// the protocol packages call where a decision is taken (MilterDecision,
// LMTPReplies, Delivery, ...), and builds the registry served on the HTTP
// listener's /metrics.
//
// The event counters are package-level, like the log calls beside them:
// threading a metrics object through every Options struct would cost each
// package a field for one line of counting. They are not registered in
// Prometheus' global default registry, though: NewRegistry registers them,
// with the scrape-time collectors of one store and index, in a registry of
// its own, so two daemons in one test binary never collide on a metric
// and nothing a library registers globally leaks into postlist's scrape.
//
// Labels carry only small fixed sets of values (verdicts, reasons, reply
// codes, states): never an address, a list or a queue id, which would make
// one time series per correspondent.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"postlist/store"
)

// Label values for the stage of a milter decision.
const (
	StageRcpt    = "rcpt"    // a RCPT TO
	StageMessage = "message" // end of message
)

// Label values for the stage of an LMTP reply.
const (
	StageConnect = "connect" // refused instead of a greeting
	StageData    = "data"    // the per-recipient status after DATA
	// StageRcpt (above) is also used: the reply to RCPT TO.
)

// Socketmap lookup results, the protocol's reply words.
const (
	ResultOK       = "OK"
	ResultNotFound = "NOTFOUND"
	ResultTemp     = "TEMP"
	ResultTimeout  = "TIMEOUT"
	ResultPerm     = "PERM"
)

// The namespace every metric name starts with.
const namespace = "postlist"

var (
	milterDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "milter", Name: "decisions_total",
		Help: "Milter decisions by stage (rcpt, message), verdict (accept, reject, tempfail, continue) and reason (the reason field of the log line).",
	}, []string{"stage", "verdict", "reason"})

	policyDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "policy", Name: "decisions_total",
		Help: "Postfix policy service answers by verdict (accept, reject, tempfail, continue) and reason (the reason field of the log line).",
	}, []string{"verdict", "reason"})

	lmtpReplies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "lmtp", Name: "replies_total",
		Help: "LMTP replies by stage (connect, rcpt, data: one per recipient) and SMTP code.",
	}, []string{"stage", "code"})

	intakeMessages = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "intake", Name: "messages_total",
		Help: "Messages committed by the LMTP server (each answered 250).",
	})

	intakeRecipients = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "intake", Name: "recipients_total",
		Help: "List recipients of committed messages, by subaddress kind (post, bounces, request, ...).",
	}, []string{"kind"})

	deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "deliveries_total",
		Help: "Outgoing delivery attempts by committed outcome: sent, deferred (4xx, retried) or failed (5xx or retry period over).",
	}, []string{"outcome"})

	deliveryLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "delivery", Name: "latency_seconds",
		Help: "Time from queueing a delivery to the smart host's 250, retries included.",
		// From a fan-out on an idle site (well under a second) to mail
		// that waited out a smart-host outage (hours).
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
	})

	socketmapLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "socketmap", Name: "lookups_total",
		Help: "Postfix socketmap lookups by map (transport, recipients, domains, unknown) and result (OK, NOTFOUND, TEMP, PERM).",
	}, []string{"map", "result"})
)

// events lists the counters and histograms above, for NewRegistry.
var events = []prometheus.Collector{
	milterDecisions, policyDecisions, lmtpReplies, intakeMessages, intakeRecipients,
	deliveries, deliveryLatency, socketmapLookups,
}

func init() {
	// Series that exist from the start read 0 instead of being absent, so
	// that rate() and alerts on them work before the first event.
	for _, o := range []string{store.DeliverySent, store.DeliveryDeferred, store.DeliveryFailed} {
		deliveries.WithLabelValues(o)
	}
}

// MilterDecision counts one milter decision. stage is StageRcpt or
// StageMessage; verdict and reason are the constants the milter logs.
func MilterDecision(stage, verdict, reason string) {
	milterDecisions.WithLabelValues(stage, verdict, reason).Inc()
}

// PolicyDecision counts one answer of the policy service; verdict and
// reason are the constants it logs.
func PolicyDecision(verdict, reason string) {
	policyDecisions.WithLabelValues(verdict, reason).Inc()
}

// LMTPReplies counts n LMTP replies with code at stage (StageConnect,
// StageRcpt or StageData). After DATA there is one reply per recipient,
// hence n.
func LMTPReplies(stage string, code, n int) {
	if n <= 0 {
		return
	}
	lmtpReplies.WithLabelValues(stage, codeLabel(code)).Add(float64(n))
}

// codeLabels holds the label text of every SMTP reply code, so that
// counting a reply does not allocate.
var codeLabels = func() (l [400]string) {
	for i := range l {
		l[i] = strconv.Itoa(200 + i)
	}
	return l
}()

// codeLabel bounds the code label to the reply codes SMTP has.
func codeLabel(code int) string {
	if code < 200 || code > 599 {
		return "other"
	}
	return codeLabels[code-200]
}

// Intake counts a message the LMTP server committed, and its recipients by
// kind.
func Intake(m *store.IntakeMessage) {
	intakeMessages.Inc()
	for _, r := range m.Recipients {
		intakeRecipients.WithLabelValues(r.Kind).Inc()
	}
}

// Delivery counts one committed delivery outcome (store.DeliverySent,
// DeliveryDeferred or DeliveryFailed); a row handed back unattempted
// (store.DeliveryQueued) is not an outcome and is not counted.
func Delivery(outcome string) {
	switch outcome {
	case store.DeliverySent, store.DeliveryDeferred, store.DeliveryFailed:
		deliveries.WithLabelValues(outcome).Inc()
	}
}

// DeliveryLatency records the time from queueing to sending of one
// delivery.
func DeliveryLatency(d time.Duration) {
	deliveryLatency.Observe(max(d, 0).Seconds())
}

// SocketmapLookup counts one socketmap lookup. mapName must be one of the
// server's map names or "unknown" (the socketmap server maps anything a
// client invents to that).
func SocketmapLookup(mapName, result string) {
	socketmapLookups.WithLabelValues(mapName, result).Inc()
}
