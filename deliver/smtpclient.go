package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// client is the SMTP client side of one connection to the smart host.
//
// It exists because go-smtp's client sends one command per round trip:
// four round trips (MAIL, RCPT, DATA, the message) per member, plus an
// EHLO after every RSET, which measured well short of the 10,000 VERP
// recipients/s this package must sustain on two cores. This client uses
// PIPELINING (RFC 2920) when the server offers it, as Postfix does: MAIL,
// every RCPT and DATA go out in one write, the message and its final dot
// in another, so a transaction costs two round trips and a handful of
// system calls. Each write is a whole command group (TCP_NODELAY is Go's
// default), so Nagle's algorithm and the peer's delayed ACK can never hold
// a command back — the 40 ms stall that slows per-line writers such as
// mlmmj against Postfix.
//
// A whole mail transaction is one call of transaction, which hands back
// every reply; what they mean for each recipient is the caller's to say.
//
// Replies that are not 2xx/3xx are returned as *smtp.SMTPError, so the
// rest of the package (and its classification of codes) is shared with
// go-smtp's types.
type client struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	ext  map[string]string // EHLO keywords (upper case) and their parameters
	// dirty says the last transaction did not complete: the next starts
	// with RSET.
	dirty bool
	// rcptReplies is kept from one transaction to the next, so that a
	// fan-out of single-recipient transactions allocates no slice each.
	rcptReplies []reply

	cmdTimeout, dataTimeout time.Duration
}

// maxReplyLine bounds one reply line; RFC 5321 allows 512 octets.
const maxReplyLine = 4096

func newClient(conn net.Conn, cmdTimeout, dataTimeout time.Duration) *client {
	return &client{
		conn:        conn,
		r:           bufio.NewReaderSize(conn, 4096),
		w:           bufio.NewWriterSize(conn, 64<<10),
		cmdTimeout:  cmdTimeout,
		dataTimeout: dataTimeout,
	}
}

// reply is one server reply.
type reply struct {
	code int
	text string // the lines joined by "\n", enhanced code included
}

// err returns the reply as an error if its code is not in the expected
// class (2 for 2xx, 3 for 3xx), else nil.
func (r reply) err(class int) error {
	if r.code/100 == class {
		return nil
	}
	return r.smtpError()
}

// smtpError converts the reply to go-smtp's error type, splitting off the
// RFC 3463 enhanced status code as go-smtp does.
func (r reply) smtpError() *smtp.SMTPError {
	se := &smtp.SMTPError{Code: r.code, Message: r.text}
	first, rest, ok := strings.Cut(r.text, " ")
	if !ok {
		return se
	}
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return se
	}
	var enh smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return se
		}
		enh[i] = n
	}
	if enh[0] != r.code/100 {
		return se
	}
	se.EnhancedCode = enh
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}

// readReply reads one possibly multi-line reply.
func (c *client) readReply() (reply, error) {
	var rp reply
	var lines []string
	for {
		line, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxReplyLine {
			return rp, fmt.Errorf("reply line longer than %d bytes", maxReplyLine)
		}
		if err != nil {
			return rp, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		if len(s) < 3 {
			return rp, fmt.Errorf("malformed reply %q", s)
		}
		code, err := strconv.Atoi(s[:3])
		if err != nil || code < 100 || code > 599 || (rp.code != 0 && code != rp.code) {
			return rp, fmt.Errorf("malformed reply %q", s)
		}
		rp.code = code
		more := len(s) > 3 && s[3] == '-'
		if len(s) > 3 && s[3] != ' ' && s[3] != '-' {
			return rp, fmt.Errorf("malformed reply %q", s)
		}
		if len(s) > 4 {
			lines = append(lines, s[4:])
		} else {
			lines = append(lines, "")
		}
		if !more {
			rp.text = strings.Join(lines, "\n")
			return rp, nil
		}
	}
}

// deadline bounds the next exchange.
func (c *client) deadline(d time.Duration) {
	c.conn.SetDeadline(time.Now().Add(d))
}

// cmd sends one command line and reads its reply.
func (c *client) cmd(line string) (reply, error) { return c.exchange(line, c.cmdTimeout) }

// exchange sends one line and reads its reply, both within timeout.
func (c *client) exchange(line string, timeout time.Duration) (reply, error) {
	c.deadline(timeout)
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return reply{}, err
	}
	rp, err := c.readReply()
	if err != nil {
		return reply{}, err
	}
	return rp, nil
}

// hello greets the server (after reading its banner if greet) and records
// its extensions. A server that does not know EHLO gets HELO.
func (c *client) hello(name string, greet bool) error {
	if greet {
		c.deadline(c.cmdTimeout)
		rp, err := c.readReply()
		if err != nil {
			return fmt.Errorf("greeting: %w", err)
		}
		if err := rp.err(2); err != nil {
			return fmt.Errorf("greeting: %w", err)
		}
	}
	rp, err := c.cmd("EHLO " + name)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	c.ext = map[string]string{}
	if rp.code == 500 || rp.code == 502 {
		if rp, err = c.cmd("HELO " + name); err != nil {
			return fmt.Errorf("HELO: %w", err)
		}
		if err := rp.err(2); err != nil {
			return fmt.Errorf("HELO: %w", err)
		}
		return nil
	}
	if err := rp.err(2); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	lines := strings.Split(rp.text, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// has reports whether the server offered an extension.
func (c *client) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// startTLS upgrades the connection and greets again over TLS.
func (c *client) startTLS(ctx context.Context, conf *tls.Config, name string) error {
	if !c.has("STARTTLS") {
		return errors.New("the server does not offer STARTTLS")
	}
	rp, err := c.cmd("STARTTLS")
	if err != nil {
		return err
	}
	if err := rp.err(2); err != nil {
		return err
	}
	tc := tls.Client(c.conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.conn = tc
	c.r.Reset(tc)
	c.w.Reset(tc)
	return c.hello(name, false)
}

// auth authenticates with PLAIN or, failing that, LOGIN.
func (c *client) auth(user, pass string) error {
	mechs := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	var a sasl.Client
	switch {
	case contains(mechs, sasl.Plain):
		a = sasl.NewPlainClient("", user, pass)
	case contains(mechs, sasl.Login):
		a = sasl.NewLoginClient(user, pass)
	default:
		return errors.New("the server offers neither AUTH PLAIN nor AUTH LOGIN")
	}
	mech, ir, err := a.Start()
	if err != nil {
		return err
	}
	line := "AUTH " + mech
	if ir != nil {
		line += " " + encode64(ir)
	}
	for {
		// The reply never contains the credentials; errors built from
		// it are safe to log.
		rp, err := c.cmd(line)
		if err != nil {
			return err
		}
		switch rp.code {
		case 235:
			return nil
		case 334:
			ch, err := base64.StdEncoding.DecodeString(rp.text)
			if err != nil {
				c.cmd("*")
				return fmt.Errorf("AUTH %s: undecodable challenge: %w", mech, err)
			}
			if mech == sasl.Login && string(ch) == "Username:" {
				// A LOGIN server that ignored the initial response asks
				// for the user name first; go-sasl only answers
				// "Password:".
				line = encode64([]byte(user))
				continue
			}
			resp, err := a.Next(ch)
			if err != nil {
				c.cmd("*")
				return fmt.Errorf("AUTH %s: %w", mech, err)
			}
			line = encode64(resp)
		default:
			return rp.smtpError()
		}
	}
}

func encode64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// quit says goodbye and closes the connection.
func (c *client) quit(timeout time.Duration) {
	c.deadline(timeout)
	c.w.WriteString("QUIT\r\n")
	if c.w.Flush() == nil {
		c.readReply()
	}
	c.conn.Close()
}

// replies is what the server answered in one transaction, a field per
// command; a zero reply (code 0) is one that was not read, because the
// command was not sent or the transaction stopped before its reply.
type replies struct {
	rset reply // to the RSET ending a transaction left unfinished
	mail reply
	// rcpts are in the order of the recipients, and fewer of them if the
	// transaction stopped early. The client reuses them: they are valid
	// until its next transaction.
	rcpts []reply
	data  reply
	dot   reply // to the lone dot ending a DATA with nothing to carry
	end   reply // to the message's final dot
}

// localError says that a transaction was not started: nothing was sent,
// and the connection is as it was.
type localError struct{ msg string }

func (e *localError) Error() string { return e.msg }

// transaction runs one mail transaction: MAIL FROM, a RCPT TO for each
// recipient, DATA and the message (p), preceded by RSET if the last one
// did not complete. It returns every reply it read.
//
// With PIPELINING, [RSET,] MAIL, every RCPT and DATA are written at once
// and their replies read in order; the message follows only if DATA got
// 354 and a recipient was accepted (with none, a lone dot ends the DATA,
// RFC 2920 §3.1). After a refused MAIL FROM the replies still owed are
// read, so the next transaction's replies are its own. Without
// PIPELINING, each command waits for its reply and the transaction stops
// at the first step that cannot go on. A 421, or a refused RSET, stops it
// at once: the connection is no longer of use.
//
// The error is a *localError if the envelope cannot go on this connection
// (nothing was sent), else the connection failing, named by the step; the
// replies read before it come with it.
func (c *client) transaction(from string, rcpts []string, p *payload) (x replies, err error) {
	// The caller has refused such addresses already; checked again here,
	// next to the writes, because a line break in an address would inject
	// commands into the session.
	if strings.ContainsAny(from, "\r\n<>") {
		return x, &localError{fmt.Sprintf("invalid address %q", from)}
	}
	for _, a := range rcpts {
		if strings.ContainsAny(a, "\r\n<>") {
			return x, &localError{fmt.Sprintf("invalid address %q", a)}
		}
	}
	mail := "MAIL FROM:<" + from + ">"
	if c.has("SIZE") {
		mail += " SIZE=" + strconv.Itoa(p.size)
	}
	if p.eightBit && c.has("8BITMIME") {
		mail += " BODY=8BITMIME"
	}
	if needsUTF8(from, rcpts) {
		if !c.has("SMTPUTF8") {
			return x, &localError{"address needs SMTPUTF8, which the smart host does not offer"}
		}
		mail += " SMTPUTF8"
	}

	pipe := c.has("PIPELINING")
	// send writes a command now, or queues it in the buffer when
	// pipelining (flushed with DATA).
	send := func(line string) error {
		c.w.WriteString(line)
		c.w.WriteString("\r\n")
		if pipe && line != "DATA" {
			return nil
		}
		c.deadline(c.cmdTimeout)
		return c.w.Flush()
	}
	read := func() (reply, error) {
		c.deadline(c.cmdTimeout)
		return c.readReply()
	}
	if cap(c.rcptReplies) < len(rcpts) {
		c.rcptReplies = make([]reply, 0, len(rcpts))
	}
	x.rcpts = c.rcptReplies[:0]
	rset := c.dirty
	c.dirty = true
	// A long pipelined group can fill the write buffer, which then
	// flushes before DATA does: the deadline must already be fresh.
	c.deadline(c.cmdTimeout)
	if pipe {
		if rset {
			send("RSET")
		}
		send(mail)
		for _, r := range rcpts {
			send("RCPT TO:<" + r + ">")
		}
		if err := send("DATA"); err != nil {
			return x, fmt.Errorf("sending MAIL FROM: %w", err)
		}
	}

	if rset {
		if !pipe {
			if err := send("RSET"); err != nil {
				return x, fmt.Errorf("sending RSET: %w", err)
			}
		}
		rp, err := read()
		if err != nil {
			return x, fmt.Errorf("after RSET: %w", err)
		}
		if x.rset = rp; rp.code/100 != 2 {
			return x, nil
		}
	}

	if !pipe {
		if err := send(mail); err != nil {
			return x, fmt.Errorf("sending MAIL FROM: %w", err)
		}
	}
	rp, err := read()
	if err != nil {
		return x, fmt.Errorf("after MAIL FROM: %w", err)
	}
	if x.mail = rp; rp.code/100 != 2 {
		if rp.code == 421 || !pipe {
			return x, nil
		}
		if err := c.drain(&x, len(rcpts)); err != nil {
			return x, fmt.Errorf("after a refused MAIL FROM: %w", err)
		}
		return x, nil
	}

	accepted := 0
	for _, r := range rcpts {
		if !pipe {
			if err := send("RCPT TO:<" + r + ">"); err != nil {
				return x, fmt.Errorf("sending RCPT TO: %w", err)
			}
		}
		rp, err := read()
		if err != nil {
			return x, fmt.Errorf("after RCPT TO: %w", err)
		}
		x.rcpts = append(x.rcpts, rp)
		if rp.code/100 == 2 {
			accepted++
		} else if rp.code == 421 {
			return x, nil
		}
	}
	if !pipe {
		if accepted == 0 {
			return x, nil
		}
		if err := send("DATA"); err != nil {
			return x, fmt.Errorf("sending DATA: %w", err)
		}
	}
	if rp, err = read(); err != nil {
		return x, fmt.Errorf("after DATA: %w", err)
	}
	if x.data = rp; rp.code != 354 {
		return x, nil
	}
	if accepted == 0 {
		if x.dot, err = c.endEmptyData(); err != nil {
			return x, fmt.Errorf("ending an empty DATA: %w", err)
		}
		return x, nil
	}
	c.deadline(c.dataTimeout)
	c.w.Write(p.own)
	c.w.Write(p.shared)
	if err := c.w.Flush(); err != nil {
		return x, fmt.Errorf("while sending the message: %w", err)
	}
	if rp, err = c.readReply(); err != nil {
		// The server may have accepted the message before the
		// connection went: the one case where a retry can duplicate.
		return x, fmt.Errorf("after end of data: %w", err)
	}
	// The final reply ends the transaction either way (RFC 5321
	// §4.1.1.4), so the next MAIL needs no RSET.
	c.dirty = false
	x.end = rp
	return x, nil
}

// drain reads the replies owed to pipelined RCPTs and DATA after MAIL
// FROM was refused, ending the DATA if it was accepted anyway.
func (c *client) drain(x *replies, rcpts int) error {
	for range rcpts {
		c.deadline(c.cmdTimeout)
		rp, err := c.readReply()
		if err != nil {
			return err
		}
		x.rcpts = append(x.rcpts, rp)
	}
	c.deadline(c.cmdTimeout)
	rp, err := c.readReply()
	if err != nil {
		return err
	}
	if x.data = rp; rp.code == 354 {
		x.dot, err = c.endEmptyData()
	}
	return err
}

// endEmptyData ends a DATA that has nothing to carry.
func (c *client) endEmptyData() (reply, error) { return c.exchange(".", c.dataTimeout) }

// needsUTF8 reports whether an envelope has non-ASCII addresses.
func needsUTF8(from string, rcpts []string) bool {
	isASCII := func(s string) bool {
		for i := range len(s) {
			if s[i] >= 0x80 {
				return false
			}
		}
		return true
	}
	if !isASCII(from) {
		return true
	}
	for _, r := range rcpts {
		if !isASCII(r) {
			return true
		}
	}
	return false
}
