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
// Replies that are not 2xx/3xx are returned as *smtp.SMTPError, so the
// rest of the package (and its classification of codes) is shared with
// go-smtp's types.
type client struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	ext  map[string]string // EHLO keywords (upper case) and their parameters

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
func (c *client) cmd(line string) (reply, error) {
	c.deadline(c.cmdTimeout)
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return reply{}, err
	}
	return c.readReply()
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
