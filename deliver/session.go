package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"postlist/address"
	"postlist/metrics"
	"postlist/store"
)

// worker runs one SMTP session at a time, taking jobs until jobs is closed.
// Once ctx has ended it no longer starts transactions and hands the jobs it
// still receives back to the queue.
func (d *Deliverer) worker(ctx, hard context.Context, jobs <-chan *job, outs chan<- store.DeliveryOutcome) {
	var s *session
	defer func() {
		if s != nil {
			s.quit()
		}
	}()
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for {
		idle.Reset(d.o.IdleTimeout)
		var j *job
		var ok bool
		select {
		case j, ok = <-jobs:
		case <-idle.C:
			// Servers drop idle clients (Postfix after smtpd_timeout);
			// closing first saves a failed attempt on a dead connection.
			if s != nil {
				s.quit()
				s = nil
			}
			continue
		}
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
		if !ok {
			return
		}
		if ctx.Err() != nil {
			release(j, outs)
			continue
		}
		s = d.deliver(hard, s, j, outs)
	}
}

// deliver sends one job over s (opening a connection if needed), sends
// its outcomes to outs and returns the session to use next (nil if it was
// closed).
func (d *Deliverer) deliver(ctx context.Context, s *session, j *job, outs chan<- store.DeliveryOutcome) *session {
	if j = d.screen(j, outs); j == nil {
		return s
	}
	body, err := d.body(ctx, j)
	if errors.Is(err, ErrRecipient) {
		// Retrying cannot help: the rows fail, the rest of the fan-out
		// is unaffected. Not scored, since the fault may be ours.
		d.finish(j, allSame(j, verdict{state: store.DeliveryFailed, bounce: store.BounceUnknown,
			reply: "local error: " + oneLine(err.Error())}), outs)
		return s
	}
	if err != nil {
		d.log.Error("cannot build message; deferring", zap.Int64("msg_id", j.MessageID), zap.String("list", j.List), zap.Error(err))
		d.finish(j, allSame(j, verdict{state: store.DeliveryDeferred, reply: "local error: " + err.Error()}), outs)
		return s
	}
	for try := 0; ; try++ {
		if s == nil {
			if s, err = d.connect(ctx); err != nil {
				// Warn once per outage, not once per member.
				level := zapcore.DebugLevel
				if d.hostDown.CompareAndSwap(false, true) {
					level = zapcore.WarnLevel
				}
				d.log.Check(level, "cannot open an SMTP session to the smart host; deferring").Write(
					zap.String("smart_host", d.o.Addr), zap.Int64("msg_id", j.MessageID),
					zap.Int("recipients", len(j.rows)), zap.Error(err))
				v := verdict{state: store.DeliveryDeferred, reply: replyOf(err), code: codeOf(err), session: true}
				d.finish(j, allSame(j, v), outs)
				return nil
			}
			if d.hostDown.CompareAndSwap(true, false) {
				d.log.Info("SMTP sessions to the smart host work again", zap.String("smart_host", d.o.Addr))
			}
		}
		vs, stale := s.transact(d, j, body)
		if s.broken || s.tooOld(d.o.MaxSessionsPerConnection) {
			s.quit()
			reused := s.count > 1
			s = nil
			// A kept-open connection the server had already dropped fails
			// before anything was accepted: try once on a fresh one rather
			// than spend an attempt and a back-off on it.
			if stale && reused && try == 0 {
				continue
			}
		}
		d.finish(j, vs, outs)
		return s
	}
}

// screen fails, each on its own, the rows of j that no SMTP server could
// be asked to take, and returns a job for the others (nil if none is
// left). Such rows come from members stored before members add checked
// addresses (see address.Deliverable), or put into the database by hand;
// sending them would have the smart host refuse the command (or worse, a
// line break would inject commands), and in a bulk transaction take the
// other recipients down with them.
//
// A recipient that is not deliverable fails like a 5xx for its mailbox:
// a permanent, scored bounce, so that bounce processing treats it as it
// would a server's 550. A bad envelope sender is about the message, not
// its recipients, and is not scored.
func (d *Deliverer) screen(j *job, outs chan<- store.DeliveryOutcome) *job {
	fromErr := checkEnvelopeFrom(j.EnvelopeFrom)
	var bad, good *job
	var vs []verdict
	for i, r := range j.rows {
		var v verdict
		if err := address.Deliverable(r.Recipient); err != nil {
			v = verdict{state: store.DeliveryFailed, bounce: store.BouncePermanent, scored: true,
				reply: "local error: recipient not deliverable: " + oneLine(err.Error())}
		} else if fromErr != nil {
			v = verdict{state: store.DeliveryFailed, bounce: store.BounceUnknown,
				reply: "local error: envelope sender not usable: " + oneLine(fromErr.Error())}
		} else {
			if good == nil {
				good = &job{Job: j.Job}
				good.Recipients = nil
			}
			good.rows = append(good.rows, r)
			good.Recipients = append(good.Recipients, j.Recipients[i])
			continue
		}
		if bad == nil {
			bad = &job{Job: j.Job}
		}
		bad.rows = append(bad.rows, r)
		vs = append(vs, v)
	}
	if bad == nil {
		return j
	}
	d.finish(bad, vs, outs)
	return good
}

// checkEnvelopeFrom refuses what cannot follow MAIL FROM:< on one line. It
// is looser than address.Deliverable because a VERP local part is longer
// than 64 octets by design; "" is the null sender.
func checkEnvelopeFrom(from string) error {
	for i := 0; i < len(from); i++ {
		if c := from[i]; c < 0x20 || c == 0x7f || c == '<' || c == '>' {
			return fmt.Errorf("%q contains %q", from, c)
		}
	}
	if from != "" && !strings.Contains(from, "@") {
		return fmt.Errorf("%q has no @", from)
	}
	return nil
}

// allSame gives every row of j the same verdict.
func allSame(j *job, v verdict) []verdict {
	vs := make([]verdict, len(j.rows))
	for i := range vs {
		vs[i] = v
	}
	return vs
}

// finish decides each row's outcome from its verdict, logs it and hands it
// to the recorder.
func (d *Deliverer) finish(j *job, vs []verdict, outs chan<- store.DeliveryOutcome) {
	now := d.st.Now()
	for i, r := range j.rows {
		out := d.decide(r, vs[i], now)
		d.logOutcome(r, vs[i], out)
		if out.State == store.DeliverySent {
			metrics.DeliveryLatency(now.Sub(r.CreatedAt))
		}
		outs <- out
	}
}

// logOutcome logs one row's outcome: sent at debug level (a fan-out to
// 100,000 members would otherwise log 100,000 lines), deferred at info,
// failed at warn. The field names are the ones admins grep for.
func (d *Deliverer) logOutcome(r store.Delivery, v verdict, out store.DeliveryOutcome) {
	level, msg := zapcore.DebugLevel, "delivered"
	switch out.State {
	case store.DeliveryDeferred:
		msg = "deferred"
		if !v.session {
			// A session that could not be opened was logged once for
			// the whole job.
			level = zapcore.InfoLevel
		}
	case store.DeliveryFailed:
		level, msg = zapcore.WarnLevel, "failed"
	}
	ce := d.log.Check(level, msg)
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.Int64("msg_id", r.MessageID), zap.String("rcpt", address.Redact(r.Recipient, "")), zap.String("list", r.List),
		zap.Int("smtp_code", v.code), zap.Int("attempt", r.Attempts+1), zap.String("status", out.State),
		zap.String("reply", address.RedactText(out.Reply, "")),
	}
	switch out.State {
	case store.DeliveryDeferred:
		fields = append(fields, zap.Time("next_attempt", out.NextAttempt))
	case store.DeliveryFailed:
		fields = append(fields, zap.String("bounce", out.Bounce))
	}
	ce.Write(fields...)
}

// session is one SMTP connection to the smart host.
type session struct {
	c      *client
	unhook func() bool // cancels the close-at-shutdown hook
	count  int         // transactions started
	broken bool        // unusable: close it
}

// connect dials the smart host and readies a session: greeting, EHLO,
// STARTTLS and AUTH as configured.
func (d *Deliverer) connect(ctx context.Context) (s *session, err error) {
	dialer := net.Dialer{Timeout: d.o.DialTimeout}
	conn, err := dialer.DialContext(ctx, "tcp", d.o.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", d.o.Addr, err)
	}
	// Closing the socket is how a blocked read or write is interrupted;
	// it happens only when the shutdown grace is over.
	unhook := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		if err != nil {
			unhook()
			conn.Close()
		}
	}()
	if d.o.SecureMode == "smtps" {
		tc := tls.Client(conn, d.tlsConf)
		tc.SetDeadline(time.Now().Add(d.o.CommandTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS handshake with %s: %w", d.o.Addr, err)
		}
		conn = tc
	}
	c := newClient(conn, d.o.CommandTimeout, d.o.DataTimeout)
	if err := c.hello(d.o.HeloName, true); err != nil {
		return nil, fmt.Errorf("%s: %w", d.o.Addr, err)
	}
	if d.o.SecureMode == "starttls" {
		if err := c.startTLS(ctx, d.tlsConf, d.o.HeloName); err != nil {
			return nil, fmt.Errorf("STARTTLS with %s: %w", d.o.Addr, err)
		}
	}
	if d.o.User != "" {
		if err := c.auth(d.o.User, d.o.Pass); err != nil {
			return nil, fmt.Errorf("AUTH as %s at %s: %w", d.o.User, d.o.Addr, err)
		}
	}
	d.conns.Add(1)
	d.log.Debug("SMTP session opened", zap.String("smart_host", d.o.Addr), zap.Bool("pipelining", c.has("PIPELINING")))
	return &session{c: c, unhook: unhook}, nil
}

// tooOld reports whether the connection has carried its quota of
// transactions.
func (s *session) tooOld(limit int) bool {
	return limit > 0 && s.count >= limit
}

// quit ends the session politely if it still works, and closes it.
func (s *session) quit() {
	defer s.unhook()
	if s.broken {
		s.c.conn.Close()
		return
	}
	// A QUIT that hangs must not hold up the worker for minutes.
	s.c.quit(min(s.c.cmdTimeout, 10*time.Second))
}

// transact runs one mail transaction for j and returns a verdict per row,
// which it reads from the server's replies; it also gives the session up
// when they say the connection is of no further use. stale reports a
// failure before the server said anything on a connection that may simply
// have been dropped while idle.
func (s *session) transact(d *Deliverer, j *job, p *payload) (vs []verdict, stale bool) {
	vs = make([]verdict, len(j.rows))
	// fail sets every row without a verdict yet to v.
	fail := func(v verdict) {
		for i := range vs {
			if vs[i].state == "" {
				vs[i] = v
			}
		}
	}
	x, err := s.c.transaction(j.EnvelopeFrom, j.Recipients, p)
	var le *localError
	if errors.As(err, &le) {
		fail(verdict{state: store.DeliveryFailed, bounce: store.BounceUnknown, reply: "local error: " + le.msg})
		return vs, false
	}
	s.count++
	d.transactions.Add(1)
	// lost handles an error that is not a server reply: the connection is
	// gone (reset, timeout, garbage), so the rows are deferred.
	lost := func() {
		s.broken = true
		fail(verdict{state: store.DeliveryDeferred, reply: "lost connection " + err.Error()})
	}

	switch {
	case x.rset.code != 0 && x.rset.code/100 != 2:
		s.broken = true
		fail(verdict{state: store.DeliveryDeferred, code: x.rset.code, reply: "RSET refused: " + formatReply(x.rset.smtpError())})
		return vs, true
	case x.mail.code == 0:
		lost()
		return vs, true
	case x.mail.code/100 != 2:
		// A refused envelope sender is about this message, never about
		// its recipients: no bounce is scored against them.
		fail(classify(x.mail.smtpError(), false))
		if x.mail.code == 421 {
			s.broken = true
			return vs, true
		}
		// Lost while reading the replies owed to the pipelined commands:
		// the verdicts stand, the connection does not.
		if err != nil {
			s.broken = true
		}
		return vs, false
	}

	accepted := 0
	for i, rp := range x.rcpts {
		if rp.code/100 == 2 {
			accepted++
			continue
		}
		vs[i] = classify(rp.smtpError(), true)
		if rp.code == 421 {
			s.broken = true
			fail(vs[i])
			return vs, false
		}
	}
	if err != nil {
		lost()
		return vs, false
	}
	switch {
	case x.data.code == 0:
		// One command at a time and every RCPT refused: no DATA was sent.
		return vs, false
	case x.data.code != 354:
		if x.data.code == 421 {
			s.broken = true
		}
		fail(classify(x.data.smtpError(), false))
		return vs, false
	case accepted == 0:
		// Every RCPT refused: the DATA ended without a message.
		return vs, false
	}
	if x.end.code/100 != 2 {
		if x.end.code == 421 {
			s.broken = true
		}
		// One recipient (personalized): a refusal after the data may
		// still be about the recipient. Several: it is about the message.
		fail(classify(x.end.smtpError(), accepted == 1))
		return vs, false
	}
	fail(verdict{state: store.DeliverySent, code: x.end.code, reply: strconv.Itoa(x.end.code) + " " + oneLine(x.end.text)})
	return vs, false
}

// tlsConfig derives the TLS settings for the smart host from o.
func tlsConfig(o Options) *tls.Config {
	c := &tls.Config{}
	if o.TLSConfig != nil {
		c = o.TLSConfig.Clone()
	}
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(o.Addr); err == nil {
			c.ServerName = host
		}
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	// The smart host is usually the local Postfix with a self-signed or
	// snakeoil certificate, which is why verification is a setting.
	c.InsecureSkipVerify = !o.VerifyCert
	return c
}

// replyOf renders an error for last_reply: the server's reply if it is
// one, else the local error.
func replyOf(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return formatReply(se)
	}
	return oneLine(err.Error())
}

// codeOf returns the SMTP code inside err, 0 if it is a local error.
func codeOf(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// oneLine joins a multi-line reply so it fits a log field and a table cell.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
