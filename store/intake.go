package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mattn/go-sqlite3"
)

// Intake row states.
const (
	IntakeNew    = "new"
	IntakeDone   = "done"
	IntakeFailed = "failed"
)

// validKind reports an intake.kind value: the subaddress a message arrived
// on (the values of address.Kind), which picks its processing stage.
func validKind(k string) bool {
	switch k {
	case "post", "bounces", "confirm", "join", "leave", "owner", "request":
		return true
	}
	return false
}

// IntakeRecipient is one accepted recipient of an incoming message.
type IntakeRecipient struct {
	// Recipient is the envelope recipient exactly as the MTA gave it
	// (extension and case preserved), for tracing.
	Recipient string
	// List is the posting address the recipient resolved to. The list's
	// row id is looked up in the same transaction; a list removed in the
	// meantime leaves list_id NULL rather than losing the message.
	List      string
	Kind      string
	Extension string
}

// IntakeMessage is a message accepted over LMTP with its recipients.
type IntakeMessage struct {
	MessageID  string // the Message-ID header value
	Sender     string // envelope sender, "" for <>
	QueueID    string // the MTA's queue id, "" if unknown
	Body       []byte // the message as stored (never empty)
	Recipients []IntakeRecipient
}

// IntakeResult names the rows written for one IntakeMessage.
type IntakeResult struct {
	MessageID int64   // messages.id
	IntakeIDs []int64 // intake.id, in the order of IntakeMessage.Recipients
}

func (m *IntakeMessage) validate() error {
	if len(m.Body) == 0 {
		return fmt.Errorf("%w: empty message body", ErrInvalid)
	}
	if len(m.Recipients) == 0 {
		return fmt.Errorf("%w: message without recipients", ErrInvalid)
	}
	for _, r := range m.Recipients {
		if !validKind(r.Kind) {
			return fmt.Errorf("%w: intake kind %q", ErrInvalid, r.Kind)
		}
	}
	return nil
}

// Intake stores one message and its intake rows in a transaction of its
// own. LMTP uses an IntakeCommitter instead, which shares each fsync among
// concurrent messages; this is for callers with one message at a time.
func (s *Store) Intake(ctx context.Context, m *IntakeMessage) (IntakeResult, error) {
	if err := m.validate(); err != nil {
		return IntakeResult{}, err
	}
	var res IntakeResult
	err := s.tx(ctx, func(tx *sql.Tx) error {
		w, err := s.prepareIntake(ctx, tx)
		if err != nil {
			return err
		}
		defer w.close()
		res, err = w.write(ctx, m)
		return err
	})
	if err != nil {
		return IntakeResult{}, fmt.Errorf("store message: %w", err)
	}
	return res, nil
}

// The intake statements. The committer prepares them once on the writer
// connection; a lone Intake prepares them in its transaction.
const (
	insertMessageSQL = `INSERT INTO messages (id, message_id, sender, queue_id, size, body, received_at)
		VALUES (` + nextIDMessages + `, ?, ?, ?, ?, ?, ?)`
	insertIntakeSQL = `INSERT INTO intake (id, message_id, list_id, recipient, kind, extension, received_at)
		VALUES (` + nextIDIntake + `, ?, (SELECT id FROM lists WHERE address = ?), ?, ?, ?, ?)`
)

// intakeWriter holds the statements of one intake transaction.
type intakeWriter struct {
	msg, rcpt *sql.Stmt
	now       string
}

func (s *Store) prepareIntake(ctx context.Context, tx *sql.Tx) (*intakeWriter, error) {
	msg, err := tx.PrepareContext(ctx, insertMessageSQL)
	if err != nil {
		return nil, err
	}
	rcpt, err := tx.PrepareContext(ctx, insertIntakeSQL)
	if err != nil {
		msg.Close()
		return nil, err
	}
	return &intakeWriter{msg: msg, rcpt: rcpt, now: s.now()}, nil
}

func (w *intakeWriter) close() {
	w.msg.Close()
	w.rcpt.Close()
}

func (w *intakeWriter) write(ctx context.Context, m *IntakeMessage) (IntakeResult, error) {
	r, err := w.msg.ExecContext(ctx, m.MessageID, m.Sender, m.QueueID, len(m.Body), m.Body, w.now)
	if err != nil {
		return IntakeResult{}, fmt.Errorf("insert message: %w", err)
	}
	id, err := r.LastInsertId()
	if err != nil {
		return IntakeResult{}, fmt.Errorf("insert message: %w", err)
	}
	res := IntakeResult{MessageID: id, IntakeIDs: make([]int64, 0, len(m.Recipients))}
	for _, rc := range m.Recipients {
		r, err := w.rcpt.ExecContext(ctx, id, strings.ToLower(rc.List), rc.Recipient, rc.Kind, rc.Extension, w.now)
		if err != nil {
			return IntakeResult{}, fmt.Errorf("insert intake row for %s: %w", rc.Recipient, err)
		}
		iid, err := r.LastInsertId()
		if err != nil {
			return IntakeResult{}, fmt.Errorf("insert intake row for %s: %w", rc.Recipient, err)
		}
		res.IntakeIDs = append(res.IntakeIDs, iid)
	}
	return res, nil
}

// ErrCommitterClosed is returned by IntakeCommitter.Commit after Close.
var ErrCommitterClosed = errors.New("intake committer closed")

// Group commit limits. A batch takes whatever was queued while the
// previous commit was being fsynced, up to these bounds, so that one slow
// batch of large messages cannot grow without end.
const (
	maxBatchMessages = 128
	maxBatchBytes    = 32 << 20
)

// IntakeCommitter writes intake messages in group commits: one goroutine
// takes every request that is waiting, writes them all in one transaction
// and commits once, so that concurrent LMTP sessions share one fsync
// instead of queuing for one each. It never waits to let a batch fill:
// a lone message is committed at once, and batches form by themselves
// exactly when the disk is the bottleneck.
//
// When a batch fails for a reason that concerns the whole database (read
// only, disk full or broken, locked by another process) every request in
// it gets that error: each would fail alone as well, and the MTA retries.
// Any other failure may be caused by one message, so the requests are then
// retried one per transaction and only the culprit fails.
type IntakeCommitter struct {
	s    *Store
	reqs chan *intakeRequest
	stop chan struct{}
	done chan struct{}

	// mu orders Commit's send against Close: once closed is set, no
	// request can enter reqs, so the loop can drain it completely.
	mu        sync.RWMutex
	closed    bool
	closeOnce sync.Once

	// Statements prepared once on the writer connection and rebound to
	// each batch's transaction: preparing them per batch took 40 to 90 µs
	// of the 130 to 160 µs a batch of three messages took to write.
	// Used by the committer goroutine only.
	msgStmt, rcptStmt *sql.Stmt

	messages atomic.Uint64
	commits  atomic.Uint64
	failures atomic.Uint64
	taken    atomic.Uint64 // requests taken off reqs, for tests
}

type intakeRequest struct {
	ctx  context.Context
	m    *IntakeMessage
	done chan intakeAnswer
}

type intakeAnswer struct {
	res IntakeResult
	err error
}

// IntakeStats counts what a committer did.
type IntakeStats struct {
	Messages uint64 // messages committed
	Commits  uint64 // successful transactions, i.e. WAL fsyncs
	Failures uint64 // messages answered with an error
}

// NewIntakeCommitter starts a group committer on s. Close stops it.
func (s *Store) NewIntakeCommitter() *IntakeCommitter {
	c := &IntakeCommitter{
		s:    s,
		reqs: make(chan *intakeRequest, maxBatchMessages),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go c.run()
	return c
}

// Commit stores m durably and returns its row ids once the transaction
// holding it is committed (fsynced). If ctx ends first, Commit returns
// ctx's error although the message may still be committed: the caller
// must then answer as for a failure (4xx), and the MTA's retry brings a
// duplicate, which is the safe side of the choice.
func (c *IntakeCommitter) Commit(ctx context.Context, m *IntakeMessage) (IntakeResult, error) {
	if err := m.validate(); err != nil {
		c.failures.Add(1)
		return IntakeResult{}, err
	}
	req := &intakeRequest{ctx: ctx, m: m, done: make(chan intakeAnswer, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return IntakeResult{}, ErrCommitterClosed
	}
	select {
	case c.reqs <- req:
	case <-ctx.Done():
		c.mu.RUnlock()
		return IntakeResult{}, fmt.Errorf("queue message for commit: %w", ctx.Err())
	}
	c.mu.RUnlock()
	select {
	case a := <-req.done:
		return a.res, a.err
	case <-ctx.Done():
		return IntakeResult{}, fmt.Errorf("wait for commit: %w", ctx.Err())
	}
}

// Close commits what is already queued, then stops the committer. Commit
// calls after Close fail with ErrCommitterClosed.
func (c *IntakeCommitter) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
	})
	<-c.done
	return nil
}

// Stats returns counters since the committer started.
func (c *IntakeCommitter) Stats() IntakeStats {
	return IntakeStats{
		Messages: c.messages.Load(),
		Commits:  c.commits.Load(),
		Failures: c.failures.Load(),
	}
}

func (c *IntakeCommitter) run() {
	defer close(c.done)
	defer func() {
		// Closing a prepared statement cannot lose data; errors are moot.
		for _, st := range []*sql.Stmt{c.msgStmt, c.rcptStmt} {
			if st != nil {
				_ = st.Close()
			}
		}
	}()
	for {
		var first *intakeRequest
		select {
		case first = <-c.reqs:
		case <-c.stop:
			// Close holds off new requests before closing stop, so this
			// drain sees everything that was accepted.
			for {
				select {
				case r := <-c.reqs:
					c.commitBatch(c.gather(r))
				default:
					return
				}
			}
		}
		c.commitBatch(c.gather(first))
	}
}

// gather adds to first whatever else is already waiting, within the batch
// bounds; it never blocks.
func (c *IntakeCommitter) gather(first *intakeRequest) []*intakeRequest {
	batch := []*intakeRequest{first}
	size := len(first.m.Body)
	defer func() { c.taken.Add(uint64(len(batch))) }()
	for len(batch) < maxBatchMessages && size < maxBatchBytes {
		select {
		case r := <-c.reqs:
			batch = append(batch, r)
			size += len(r.m.Body)
		default:
			return batch
		}
	}
	return batch
}

func (c *IntakeCommitter) commitBatch(batch []*intakeRequest) {
	live := batch[:0]
	for _, r := range batch {
		// Nobody would answer 250 for a request whose session gave up;
		// committing it would only make a duplicate of the MTA's retry.
		if err := r.ctx.Err(); err != nil {
			c.answer(r, IntakeResult{}, fmt.Errorf("wait for commit: %w", err))
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	results, err := c.write(live)
	if err == nil {
		c.commits.Add(1)
		for i, r := range live {
			c.answer(r, results[i], nil)
		}
		return
	}
	if len(live) == 1 || databaseWide(err) {
		for _, r := range live {
			c.answer(r, IntakeResult{}, err)
		}
		return
	}
	for _, r := range live {
		res, err := c.write([]*intakeRequest{r})
		if err != nil {
			c.answer(r, IntakeResult{}, err)
			continue
		}
		c.commits.Add(1)
		c.answer(r, res[0], nil)
	}
}

// write stores batch in one transaction. The transaction does not use the
// requests' contexts: one session hanging up must not roll back the
// others' messages.
func (c *IntakeCommitter) write(batch []*intakeRequest) ([]IntakeResult, error) {
	ctx := context.Background()
	results := make([]IntakeResult, len(batch))
	if err := c.prepare(ctx); err != nil {
		return nil, fmt.Errorf("commit %d message(s): %w", len(batch), err)
	}
	err := c.s.tx(ctx, func(tx *sql.Tx) error {
		w := &intakeWriter{msg: tx.StmtContext(ctx, c.msgStmt), rcpt: tx.StmtContext(ctx, c.rcptStmt), now: c.s.now()}
		defer w.close()
		var err error
		for i, r := range batch {
			if results[i], err = w.write(ctx, r.m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commit %d message(s): %w", len(batch), err)
	}
	return results, nil
}

// prepare readies the committer's statements; a failure (the database
// unreadable, say) is retried at the next batch.
func (c *IntakeCommitter) prepare(ctx context.Context) error {
	if c.msgStmt == nil {
		st, err := c.s.w.PrepareContext(ctx, insertMessageSQL)
		if err != nil {
			return classify(err)
		}
		c.msgStmt = st
	}
	if c.rcptStmt == nil {
		st, err := c.s.w.PrepareContext(ctx, insertIntakeSQL)
		if err != nil {
			return classify(err)
		}
		c.rcptStmt = st
	}
	return nil
}

func (c *IntakeCommitter) answer(r *intakeRequest, res IntakeResult, err error) {
	if err != nil {
		c.failures.Add(1)
	} else {
		c.messages.Add(1)
	}
	r.done <- intakeAnswer{res: res, err: err}
}

// databaseWide reports failures that no message causes by itself, so
// retrying the messages of a batch one by one would only fail N times.
func databaseWide(err error) bool {
	if errors.Is(err, ErrReadOnly) || errors.Is(err, ErrStorageFailed) {
		return true
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return false
}

// IntakeItem is an intake row waiting for (or done by) a processing stage.
type IntakeItem struct {
	ID              int64  `json:"id"`
	MessageID       int64  `json:"message_id"` // messages.id
	List            string `json:"list"`       // "" if the list was removed
	Recipient       string `json:"recipient"`
	Kind            string `json:"kind"`
	Extension       string `json:"extension"`
	State           string `json:"state"`
	Result          string `json:"result"`
	ReceivedAt      string `json:"received_at"`
	Sender          string `json:"sender"`
	HeaderMessageID string `json:"message_header_id"`
	QueueID         string `json:"queue_id"`
	Size            int64  `json:"size"`
}

// PendingIntake returns up to limit intake rows in state new, oldest
// first; with kinds, only rows of those kinds, so that each processing
// stage takes its own subaddresses (posts, commands, owner mail, bounces).
func (s *Store) PendingIntake(ctx context.Context, limit int, kinds ...string) ([]IntakeItem, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalid, limit)
	}
	q := `SELECT i.id, i.message_id, coalesce(l.address, ''), i.recipient, i.kind, i.extension,
	             i.state, i.result, i.received_at, m.sender, m.message_id, m.queue_id, m.size
	      FROM intake i JOIN messages m ON m.id = i.message_id LEFT JOIN lists l ON l.id = i.list_id
	      WHERE i.state = 'new'`
	args := make([]any, 0, len(kinds)+1)
	if len(kinds) > 0 {
		q += " AND i.kind IN (?" + strings.Repeat(", ?", len(kinds)-1) + ")"
		for _, k := range kinds {
			if !validKind(k) {
				return nil, fmt.Errorf("%w: intake kind %q", ErrInvalid, k)
			}
			args = append(args, k)
		}
	}
	q += " ORDER BY i.id LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pending intake: %w", err)
	}
	defer rows.Close()
	var out []IntakeItem
	for rows.Next() {
		var it IntakeItem
		if err := rows.Scan(&it.ID, &it.MessageID, &it.List, &it.Recipient, &it.Kind, &it.Extension,
			&it.State, &it.Result, &it.ReceivedAt, &it.Sender, &it.HeaderMessageID, &it.QueueID, &it.Size); err != nil {
			return nil, fmt.Errorf("pending intake: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pending intake: %w", err)
	}
	return out, nil
}

// MarkIntake records what a processing stage did with an intake row: state
// done or failed with a human-readable result, or new to hand it back.
func (s *Store) MarkIntake(ctx context.Context, id int64, state, result string) error {
	switch state {
	case IntakeNew, IntakeDone, IntakeFailed:
	default:
		return fmt.Errorf("mark intake %d: %w: state %q", id, ErrInvalid, state)
	}
	var processed any
	if state != IntakeNew {
		processed = s.now()
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, "UPDATE intake SET state = ?, result = ?, processed_at = ? WHERE id = ?",
			state, result, processed, id)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark intake %d: %w", id, err)
	}
	return nil
}

// IntakeBody returns the stored message of messages.id id.
func (s *Store) IntakeBody(ctx context.Context, id int64) ([]byte, error) {
	var b []byte
	err := s.r.QueryRowContext(ctx, "SELECT body FROM messages WHERE id = ?", id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", id, err)
	}
	return b, nil
}
