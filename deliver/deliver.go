// Package deliver sends queued mail to list members through the smart host
// (Postfix) over SMTP, and records what became of every recipient.
//
// The work queue is the deliveries table: one row per (message,
// recipient), written by the posting pipeline with its envelope sender
// already chosen. A Deliverer claims due rows in batches, turns them into
// SMTP transactions and sends them over a pool of persistent connections,
// then commits each row's outcome:
//
//   - 2xx: sent.
//   - 4xx, a timeout or a lost connection: deferred, retried with
//     exponential back-off until the retry period ends, then failed.
//   - 5xx: failed, and a bounce is recorded against the member (scored
//     unless it is a policy refusal such as a spam or DMARC rejection).
//   - an address no server could be asked to take (address.Deliverable;
//     a member stored before members add checked it): failed before any
//     SMTP, alone, with the same event and a scored bounce. It never
//     shares a transaction, so the other members' copies go out.
//
// Personalized (VERP) delivery needs no special case: every row then has
// its own envelope sender, so every transaction carries one recipient.
// Rows of one message that share an envelope sender (a bulk list's plain
// -bounces address) are grouped by recipient domain into transactions of
// up to MaxRecipients.
//
// Crash safety: a row is in state sending from its claim until its outcome
// is committed. Rows found sending at start-up are sent again, so a crash
// can only duplicate a message a member's server had accepted but whose
// outcome we had not yet committed; nothing is lost.
package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"postlist/metrics"
	"postlist/store"
)

// Defaults for zero Options fields.
const (
	DefaultWorkers         = 20
	DefaultRetryInterval   = 15 * time.Minute
	DefaultRetryPeriod     = 5 * 24 * time.Hour
	DefaultMaxBackoff      = 4 * time.Hour
	DefaultDialTimeout     = 30 * time.Second
	DefaultCommandTimeout  = 5 * time.Minute  // RFC 5321 §4.5.3.2's MAIL and RCPT timeouts
	DefaultDataTimeout     = 10 * time.Minute // RFC 5321 §4.5.3.2.6, the wait after the final dot
	DefaultIdleTimeout     = 30 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultPollInterval    = time.Second
	DefaultClaimBatch      = 500
	DefaultFlushRows       = 100
	DefaultFlushInterval   = 20 * time.Millisecond
)

// Options configures a Deliverer. Zero values take the defaults above.
type Options struct {
	Store *store.Store
	Log   *zap.Logger

	// Addr is the smart host, host:port.
	Addr string
	// User and Pass enable AUTH (PLAIN, or LOGIN if PLAIN is not
	// offered). Pass is never logged.
	User, Pass string
	// SecureMode is "smtp" (plain), "starttls" or "smtps" (TLS from the
	// first byte).
	SecureMode string
	// VerifyCert checks the smart host's certificate against the system
	// roots (or TLSConfig.RootCAs) and Addr's host name.
	VerifyCert bool
	// TLSConfig, if set, is the base TLS configuration (RootCAs for a
	// private CA, client certificates). ServerName defaults to Addr's host
	// and VerifyCert decides verification.
	TLSConfig *tls.Config
	// HeloName is the EHLO argument; the host name by default.
	HeloName string

	// Workers is the number of SMTP sessions used in parallel
	// (max_delivery_threads).
	Workers int
	// MaxSessionsPerConnection is the number of transactions after which a
	// connection is closed and a new one opened; 0 = no limit.
	MaxSessionsPerConnection int
	// MaxRecipients caps the recipients of one bulk transaction; 0 = no
	// limit, as in Mailman.
	MaxRecipients int

	// RetryInterval is the first back-off after a temporary failure; each
	// further failure doubles it, up to MaxBackoff. RetryPeriod, counted
	// from when the row was queued, is how long temporary failures are
	// retried before the row fails.
	RetryPeriod, RetryInterval, MaxBackoff time.Duration

	// Render builds each transaction's message (see RenderFunc); nil sends
	// the stored message unchanged.
	Render RenderFunc

	// Timeouts: connecting, each command's reply, the reply after the
	// message data, and how long an unused connection is kept open.
	DialTimeout, CommandTimeout, DataTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Run lets in-flight transactions
	// finish once its context ends; then their connections are closed.
	ShutdownTimeout time.Duration
	// PollInterval is how often the queue is checked without a Kick, which
	// is how rows retried from the command line are noticed.
	PollInterval time.Duration
	// ClaimBatch is how many rows one claim moves to sending.
	ClaimBatch int
	// FlushRows and FlushInterval bound how many outcomes, and for how
	// long, wait to be committed together (one fsync per batch).
	FlushRows     int
	FlushInterval time.Duration
}

// Stats counts what a Deliverer did since it was created. Outcomes count
// once they are committed.
type Stats struct {
	Sent, Deferred, Failed uint64
	Transactions           uint64 // transactions started (MAIL FROM sent)
	Connections            uint64 // SMTP connections opened
}

// Deliverer sends due deliveries rows. Create it with New and run it with
// Run.
type Deliverer struct {
	o       Options
	st      *store.Store
	log     *zap.Logger
	tlsConf *tls.Config
	kick    chan struct{}
	running atomic.Bool
	// hostDown is set while sessions to the smart host cannot be opened,
	// so that an outage is logged once rather than once per member.
	hostDown atomic.Bool
	bodies   bodyCache

	sent, deferred, failed atomic.Uint64
	transactions, conns    atomic.Uint64
}

// New returns a Deliverer for o; it does nothing until Run.
func New(o Options) *Deliverer {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.RetryInterval, DefaultRetryInterval)
	def(&o.RetryPeriod, DefaultRetryPeriod)
	def(&o.MaxBackoff, max(DefaultMaxBackoff, o.RetryInterval))
	def(&o.DialTimeout, DefaultDialTimeout)
	def(&o.CommandTimeout, DefaultCommandTimeout)
	def(&o.DataTimeout, DefaultDataTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	def(&o.ShutdownTimeout, DefaultShutdownTimeout)
	def(&o.PollInterval, DefaultPollInterval)
	def(&o.FlushInterval, DefaultFlushInterval)
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.ClaimBatch <= 0 {
		o.ClaimBatch = DefaultClaimBatch
	}
	if o.FlushRows <= 0 {
		o.FlushRows = DefaultFlushRows
	}
	if o.SecureMode == "" {
		o.SecureMode = "smtp"
	}
	if o.HeloName == "" {
		o.HeloName, _ = os.Hostname()
		if o.HeloName == "" {
			o.HeloName = "localhost"
		}
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Deliverer{
		o:       o,
		st:      o.Store,
		log:     o.Log,
		tlsConf: tlsConfig(o),
		kick:    make(chan struct{}, 1),
	}
}

// Kick wakes the Deliverer after rows were queued; it never blocks.
func (d *Deliverer) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (d *Deliverer) Stats() Stats {
	return Stats{
		Sent: d.sent.Load(), Deferred: d.deferred.Load(), Failed: d.failed.Load(),
		Transactions: d.transactions.Load(), Connections: d.conns.Load(),
	}
}

// job is a Job with the rows it covers, rows[i] being Recipients[i].
type job struct {
	Job
	rows []store.Delivery
}

// Run delivers until ctx ends. It first hands rows left sending by a
// previous process back to the queue. When ctx ends it stops claiming,
// hands back claimed rows it has not started, lets transactions in flight
// finish (for at most ShutdownTimeout, after which their connections are
// closed and they count as deferred), commits every outcome and returns
// nil. It returns an error only if it cannot start.
func (d *Deliverer) Run(ctx context.Context) error {
	if d.st == nil || d.o.Addr == "" {
		return errors.New("deliver: Options.Store and Options.Addr are required")
	}
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("deliver: Run called twice")
	}
	// Store writes must not be torn by the shutdown they are part of.
	bg := context.WithoutCancel(ctx)
	n, err := d.recoverSending(ctx, bg)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil // stopped before the database came back; nothing was claimed
	}
	if n > 0 {
		d.log.Info("requeued deliveries left sending by a previous run", zap.Int64("rows", n))
	}

	// hard ends when the shutdown grace is over: connections still open
	// are closed, which unblocks any transaction stuck in I/O.
	hard, hardStop := context.WithCancel(bg)
	defer hardStop()

	jobs := make(chan *job, d.o.ClaimBatch)
	outs := make(chan store.DeliveryOutcome, 2*d.o.FlushRows)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.recorder(bg, hard, outs)
	}()
	var wg sync.WaitGroup
	for range d.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.worker(ctx, hard, jobs, outs)
		}()
	}
	d.log.Info("delivery started", zap.String("smart_host", d.o.Addr), zap.String("secure_mode", d.o.SecureMode),
		zap.Int("workers", d.o.Workers), zap.Bool("auth", d.o.User != ""))

	d.dispatch(ctx, bg, jobs, outs)

	close(jobs)
	grace := time.AfterFunc(d.o.ShutdownTimeout, hardStop)
	defer grace.Stop()
	wg.Wait()
	close(outs)
	<-recorded
	st := d.Stats()
	d.log.Info("delivery stopped", zap.Uint64("sent", st.Sent), zap.Uint64("deferred", st.Deferred), zap.Uint64("failed", st.Failed))
	return nil
}

// recoverSending hands rows left sending by a previous process back to
// the queue. That is a write, and a database that is read-only or full
// when the daemon starts (a restart in the middle of such a fault) must
// not stop the daemon: its milter and LMTP server still answer, with 451
// for what cannot be stored, and delivery can start once the fault
// clears. Returning the error would make the daemon exit and leave the
// restarting to systemd, which gives up after a few quick failures, so
// service would not resume by itself. It retries until the store works
// or ctx ends (then it returns 0 and no error).
func (d *Deliverer) recoverSending(ctx, bg context.Context) (int64, error) {
	for wait := time.Second; ; wait = min(2*wait, time.Minute) {
		n, err := d.st.ResetSendingDeliveries(bg)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, store.ErrReadOnly) && !errors.Is(err, store.ErrStorageFailed) {
			return 0, fmt.Errorf("deliver: recover rows left sending: %w", err)
		}
		d.log.Error("recover deliveries left sending: database unavailable; delivery waits for it",
			zap.Duration("retry_in", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, nil
		case <-t.C:
		}
	}
}

// dispatch claims due rows and feeds them to the workers until ctx ends.
func (d *Deliverer) dispatch(ctx, bg context.Context, jobs chan<- *job, outs chan<- store.DeliveryOutcome) {
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	for ctx.Err() == nil {
		rows, err := d.st.ClaimDeliveries(bg, d.o.ClaimBatch)
		if err != nil {
			d.log.Error("claim deliveries", zap.Error(err))
			d.sleep(ctx, wait, d.o.PollInterval)
			continue
		}
		if len(rows) == 0 {
			d.idle(ctx, bg, wait)
			continue
		}
		d.log.Debug("claimed deliveries", zap.Int("rows", len(rows)))
		js := group(rows, d.o.MaxRecipients)
		for i, j := range js {
			select {
			case jobs <- j:
			case <-ctx.Done():
				for _, rest := range js[i:] {
					release(rest, outs)
				}
				return
			}
		}
	}
}

// idle waits until the next row falls due, a Kick, or PollInterval.
func (d *Deliverer) idle(ctx, bg context.Context, wait *time.Timer) {
	dur := d.o.PollInterval
	due, ok, err := d.st.NextDeliveryDue(bg)
	if err != nil {
		d.log.Error("next delivery due", zap.Error(err))
	} else if ok {
		// The stored times have millisecond precision: wake just after.
		dur = min(dur, max(0, due.Sub(d.st.Now())+time.Millisecond))
	}
	d.sleep(ctx, wait, dur)
}

func (d *Deliverer) sleep(ctx context.Context, wait *time.Timer, dur time.Duration) {
	wait.Reset(dur)
	select {
	case <-wait.C:
		return
	case <-d.kick:
	case <-ctx.Done():
	}
	if !wait.Stop() {
		<-wait.C
	}
}

// release hands a job's rows back unattempted.
func release(j *job, outs chan<- store.DeliveryOutcome) {
	for _, r := range j.rows {
		outs <- store.DeliveryOutcome{ID: r.ID, State: store.DeliveryQueued}
	}
}

// group turns claimed rows into transactions: rows of one message with the
// same envelope sender and recipient domain share a transaction, up to
// maxRcpt recipients (0 = no limit). Claim order is kept otherwise.
func group(rows []store.Delivery, maxRcpt int) []*job {
	type key struct {
		msg    int64
		from   string
		domain string
	}
	open := make(map[key]*job)
	var out []*job
	for _, r := range rows {
		k := key{r.MessageID, r.EnvelopeFrom, domainOf(r.Recipient)}
		j := open[k]
		if j == nil || (maxRcpt > 0 && len(j.rows) >= maxRcpt) {
			j = &job{Job: Job{MessageID: r.MessageID, ListID: r.ListID, List: r.List, EnvelopeFrom: r.EnvelopeFrom}}
			open[k] = j
			out = append(out, j)
		}
		j.rows = append(j.rows, r)
		j.Recipients = append(j.Recipients, r.Recipient)
	}
	return out
}

// recorder commits outcomes in batches: at most FlushRows, and no outcome
// waits longer than FlushInterval. A failed commit is retried (the rows
// stay sending meanwhile, and workers block once outs is full) until it
// succeeds or, during shutdown, the grace period is over: the rows are
// then still sending and are sent again after the next start.
func (d *Deliverer) recorder(bg, hard context.Context, outs <-chan store.DeliveryOutcome) {
	batch := make([]store.DeliveryOutcome, 0, d.o.FlushRows)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		for pause := 50 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
			err := d.st.RecordDeliveries(bg, batch)
			if err == nil {
				break
			}
			if hard.Err() != nil {
				d.log.Error("record delivery outcomes; giving up at shutdown, the rows will be sent again after restart",
					zap.Int("rows", len(batch)), zap.Error(err))
				batch = batch[:0]
				return
			}
			d.log.Error("record delivery outcomes; retrying", zap.Int("rows", len(batch)), zap.Error(err))
			select {
			case <-time.After(pause):
			case <-hard.Done():
			}
		}
		for _, o := range batch {
			metrics.Delivery(o.State)
			switch o.State {
			case store.DeliverySent:
				d.sent.Add(1)
			case store.DeliveryDeferred:
				d.deferred.Add(1)
			case store.DeliveryFailed:
				d.failed.Add(1)
			}
		}
		batch = batch[:0]
	}
	for {
		select {
		case o, ok := <-outs:
			if !ok {
				flush()
				return
			}
			batch = append(batch, o)
			if len(batch) == 1 {
				timer.Reset(d.o.FlushInterval)
			}
			if len(batch) >= d.o.FlushRows {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// domainOf returns the lower-cased domain of an address, "" if it has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}
