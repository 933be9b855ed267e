package lmtp

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"postlist/address"
	"postlist/metrics"
	"postlist/reply"
	"postlist/store"
)

// session is one LMTP connection after LHLO.
type session struct {
	srv  *Server
	conn *conn // nil only if go-smtp handed us a foreign net.Conn
	id   uint64
	log  *zap.Logger

	// mu guards the envelope: over BDAT, go-smtp runs LMTPData on a
	// goroutine of its own while RSET can reset the session.
	mu       sync.Mutex
	inTx     bool
	from     string
	sizeHint int64
	rcpts    []recipient // one per accepted RCPT, duplicates included
}

type recipient struct {
	addr   string // as passed to Rcpt: the StatusCollector key
	target address.Target
}

func (s *session) inTransaction() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inTx
}

// Mail starts a transaction. While the server drains, it refuses with 421
// instead, so that no new message starts.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.srv.draining.Load() {
		if s.conn != nil {
			s.conn.saidGoodbye()
		}
		return reply.ShuttingDown().SMTPError()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inTx = true
	s.from = from
	s.sizeHint = 0
	if opts != nil {
		s.sizeHint = opts.Size
	}
	s.rcpts = s.rcpts[:0]
	return nil
}

// Rcpt resolves a recipient with the shared resolver. go-smtp hands over
// the local part's value, Postfix's quoting removed ("test+a"@ arrives as
// test+a@); the resolver judges values, so the answer is the one the
// milter gave the quoted spelling at SMTP time.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	n, from := len(s.rcpts), s.from
	s.mu.Unlock()
	if n >= s.srv.o.MaxRecipients {
		r := reply.TooManyRecipients(s.srv.o.MaxRecipients)
		s.log.Warn("recipient refused", zap.String("rcpt", address.Redact(to, "")), zap.String("sender", address.Redact(from, "")),
			zap.Int("smtp_code", r.Code), zap.String("reason", r.Text))
		metrics.LMTPReplies(metrics.StageRcpt, r.Code, 1)
		return r.SMTPError()
	}
	t, rep := s.srv.o.Resolve(to)
	if rep == nil && (t.List == "" || t.Kind == "") {
		// Accepting would only fail at commit, after DATA.
		s.log.Error("resolver accepted a recipient without a target; answering temporary failure", zap.String("rcpt", address.Redact(to, "")))
		rep = ptr(reply.TempFail())
	}
	if rep != nil {
		r := *rep
		if r.Code < 400 || r.Code > 599 {
			// A resolver bug must not turn into acceptance or a bounce.
			s.log.Error("resolver returned a non-error reply; answering temporary failure",
				zap.String("rcpt", address.Redact(to, "")), zap.Int("smtp_code", r.Code))
			r = reply.TempFail()
		}
		s.log.Info("recipient refused", zap.String("rcpt", address.Redact(to, "")), zap.String("sender", address.Redact(from, "")),
			zap.Int("smtp_code", r.Code), zap.String("reason", r.Text))
		metrics.LMTPReplies(metrics.StageRcpt, r.Code, 1)
		return r.SMTPError()
	}
	s.mu.Lock()
	s.rcpts = append(s.rcpts, recipient{addr: to, target: t})
	s.mu.Unlock()
	metrics.LMTPReplies(metrics.StageRcpt, 250, 1)
	return nil
}

// Reset ends the transaction (RSET, or go-smtp after DATA). A draining
// server ends the connection at the next read (see conn.Read).
func (s *session) Reset() {
	s.mu.Lock()
	s.inTx = false
	s.from = ""
	s.sizeHint = 0
	s.rcpts = nil
	s.mu.Unlock()
}

// Logout is called when the connection closes; nothing is held.
func (s *session) Logout() error { return nil }

// Data is never called: in LMTP mode go-smtp calls LMTPData on sessions
// that have it. Should that change, a temporary failure is the safe
// answer.
func (s *session) Data(r io.Reader) error {
	return reply.TempFail().SMTPError()
}

// envelope is a snapshot of the transaction for LMTPData.
type envelope struct {
	from     string
	sizeHint int64
	rcpts    []recipient
}

func (s *session) envelope() envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return envelope{from: s.from, sizeHint: s.sizeHint, rcpts: append([]recipient(nil), s.rcpts...)}
}

// LMTPData reads, checks and commits the message, then sets exactly one
// status per accepted RCPT. The return value only reaches recipients
// that got no status, which would be a bug here; it is a temporary
// failure so that such a bug can never produce a false 250.
func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	env := s.envelope()
	start := time.Now()
	limit := s.srv.o.MaxMessageBytes

	body, err := readMessage(r, env.sizeHint, limit)
	var verdict *reply.Reply // set: one reply for every recipient, nothing stored
	var why string
	var info messageInfo
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		verdict, why = ptr(reply.TooBig(limit)), "message larger than max_message_size"
	case errors.Is(err, smtp.ErrTooLongLine):
		// The connection cannot continue after this (go-smtp closes it);
		// the message would fail the same way on every retry.
		verdict, why = ptr(reply.Unreadable("line too long")), "line too long"
	case err != nil:
		// The client hung up or reset mid-message: nobody may hear the
		// answer, and nothing of the message is trustworthy.
		verdict, why = ptr(reply.TempFail()), err.Error()
	default:
		info, err = inspect(body)
		if err != nil {
			verdict, why = ptr(reply.Unreadable(err.Error())), err.Error()
		}
	}
	if verdict != nil {
		for _, rc := range env.rcpts {
			status.SetStatus(rc.addr, verdict.SMTPError())
		}
		metrics.LMTPReplies(metrics.StageData, verdict.Code, len(env.rcpts))
		s.log.Warn("message refused", zap.String("queue_id", info.QueueID), zap.String("sender", address.Redact(env.from, "")),
			zap.Int("rcpts", len(env.rcpts)), zap.Int("size", len(body)), zap.Int("smtp_code", verdict.Code),
			zap.String("reason", why), zap.Array("results", outcomes(env.rcpts, verdict, nil)))
		return reply.TempFail().SMTPError()
	}

	size := len(body)
	added := info.MessageID == ""
	if added {
		body, info.MessageID = withMessageID(body, s.srv.o.Hostname)
	}
	m, index := intakeMessage(env, info, body)
	res, err := s.srv.commit.Commit(s.srv.ctx, m)
	if err != nil {
		tf := reply.TempFail()
		// Logged before the replies go out (SetStatus sends each at
		// once), so that whoever reads the 451 finds the reason logged.
		s.log.Error("message not stored; answered temporary failure", zap.Error(err),
			zap.String("queue_id", info.QueueID), zap.String("sender", address.Redact(env.from, "")), zap.Int("rcpts", len(env.rcpts)),
			zap.Int("size", size), zap.Int("smtp_code", tf.Code), zap.Array("results", outcomes(env.rcpts, &tf, nil)))
		metrics.LMTPReplies(metrics.StageData, tf.Code, len(env.rcpts))
		for _, rc := range env.rcpts {
			status.SetStatus(rc.addr, tf.SMTPError())
		}
		return tf.SMTPError()
	}
	if s.srv.o.Committed != nil {
		s.srv.o.Committed()
	}
	ok := reply.QueuedAs(res.MessageID)
	for _, rc := range env.rcpts {
		status.SetStatus(rc.addr, ok.SMTPError())
	}
	metrics.Intake(m)
	metrics.LMTPReplies(metrics.StageData, ok.Code, len(env.rcpts))
	ids := make([]int64, len(env.rcpts))
	for i, rc := range env.rcpts {
		ids[i] = res.IntakeIDs[index[rc.target]]
	}
	s.log.Info("message queued", zap.String("queue_id", info.QueueID), zap.Int64("msg_id", res.MessageID),
		zap.String("message_id", info.MessageID), zap.Bool("message_id_added", added),
		zap.String("sender", address.Redact(env.from, "")), zap.Int("rcpts", len(env.rcpts)), zap.Int("size", size),
		zap.Duration("took", time.Since(start)), zap.Array("results", outcomes(env.rcpts, &ok, ids)))
	return reply.TempFail().SMTPError()
}

// intakeMessage builds the store request. A target named twice in one
// transaction (test@ and TEST@, say) is stored once: the list should get
// the post once; both RCPTs get the same 250. index maps each target to
// its position in the recipients.
func intakeMessage(env envelope, info messageInfo, body []byte) (*store.IntakeMessage, map[address.Target]int) {
	m := &store.IntakeMessage{
		MessageID: info.MessageID,
		Sender:    env.from,
		QueueID:   info.QueueID,
		Body:      body,
	}
	index := make(map[address.Target]int, len(env.rcpts))
	for _, rc := range env.rcpts {
		if _, ok := index[rc.target]; ok {
			continue
		}
		index[rc.target] = len(m.Recipients)
		m.Recipients = append(m.Recipients, store.IntakeRecipient{
			Recipient: rc.addr,
			List:      rc.target.List,
			Kind:      string(rc.target.Kind),
			Extension: rc.target.Ext,
		})
	}
	return m, index
}

func ptr[T any](v T) *T { return &v }

// outcome is one recipient's result in the per-message log line.
type outcome struct {
	rcpt     string
	target   address.Target
	code     int
	intakeID int64
}

func (o outcome) MarshalLogObject(e zapcore.ObjectEncoder) error {
	e.AddString("rcpt", address.Redact(o.rcpt, ""))
	e.AddString("list", o.target.List)
	e.AddString("kind", string(o.target.Kind))
	e.AddInt("smtp_code", o.code)
	if o.intakeID != 0 {
		e.AddInt64("intake_id", o.intakeID)
	}
	return nil
}

type outcomeList []outcome

func (l outcomeList) MarshalLogArray(e zapcore.ArrayEncoder) error {
	for _, o := range l {
		if err := e.AppendObject(o); err != nil {
			return fmt.Errorf("log outcome: %w", err)
		}
	}
	return nil
}

func outcomes(rcpts []recipient, r *reply.Reply, ids []int64) outcomeList {
	l := make(outcomeList, len(rcpts))
	for i, rc := range rcpts {
		l[i] = outcome{rcpt: rc.addr, target: rc.target, code: r.Code}
		if ids != nil {
			l[i].intakeID = ids[i]
		}
	}
	return l
}
