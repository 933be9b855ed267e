package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Reply is one SMTP server reply.
type Reply struct {
	// Code is the three-digit reply code; 0 means the command was never
	// sent (see SendResult).
	Code int
	// EnhancedCode is the RFC 3463 status code that starts the reply text,
	// or the zero value if the server sent none.
	EnhancedCode smtp.EnhancedCode
	// Text is the reply text without code and enhanced code; the lines of a
	// multi-line reply are joined with "\n".
	Text string
}

// String formats the reply as it appeared on the wire (first line style),
// for test failure messages.
func (r Reply) String() string {
	if r.Code == 0 {
		return "(not sent)"
	}
	if r.EnhancedCode == (smtp.EnhancedCode{}) {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	e := r.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, e[0], e[1], e[2], r.Text)
}

// OK reports whether the reply is a positive completion (2xx) reply.
func (r Reply) OK() bool { return r.Code >= 200 && r.Code < 300 }

// SendResult records every reply of one SMTP transaction. A command the
// client did not send keeps a zero Reply: after a failed greeting or EHLO
// nothing else is sent, after a rejected MAIL no RCPT, and DATA only if at
// least one RCPT was accepted. Rcpt always has one entry per recipient.
type SendResult struct {
	Greeting Reply
	Ehlo     Reply
	// XClient is the reply to XCLIENT, when SendOptions.XClient was set.
	// Postfix answers a successful XCLIENT with a fresh 220 greeting.
	XClient Reply
	Mail    Reply
	Rcpt    []Reply
	// Data is the final verdict on the message: the reply after the
	// terminating dot, or the reply to the DATA command itself if that was
	// not 354.
	Data Reply
}

var queuedAsRE = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// QueueID returns the queue id from Postfix's "250 2.0.0 Ok: queued as ID"
// reply to the message, or "" if the message was not queued.
func (r SendResult) QueueID() string {
	if !r.Data.OK() {
		return ""
	}
	if m := queuedAsRE.FindStringSubmatch(r.Data.Text); m != nil {
		return m[1]
	}
	return ""
}

// String summarises the transaction for test failure messages.
func (r SendResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "greeting: %v\nEHLO: %v\n", r.Greeting, r.Ehlo)
	if r.XClient.Code != 0 {
		fmt.Fprintf(&b, "XCLIENT: %v\n", r.XClient)
	}
	fmt.Fprintf(&b, "MAIL: %v\n", r.Mail)
	for i, rc := range r.Rcpt {
		fmt.Fprintf(&b, "RCPT %d: %v\n", i, rc)
	}
	fmt.Fprintf(&b, "DATA: %v", r.Data)
	return b.String()
}

// XClient holds the attributes of Postfix's XCLIENT command, which lets a
// test on loopback pose as a remote client: with ADDR set to a
// non-loopback address, mynetworks no longer matches and relaying is
// denied, exactly as for a stranger on the internet. Empty fields are not
// sent. The instance started by StartPostfix authorises XCLIENT from
// loopback.
type XClient struct {
	Addr  string // client IP address, e.g. "192.0.2.7"
	Name  string // client hostname as from reverse DNS
	Login string // SASL login name; the milter sees it as {auth_authen}
	Helo  string
	Proto string // "SMTP" or "ESMTP"
}

// SendOptions tunes Transact and SendMailWith.
type SendOptions struct {
	// Helo is the EHLO name; default "client.example.net".
	Helo string
	// XClient, when non-nil, is sent right after EHLO (followed by a second
	// EHLO, as the protocol requires).
	XClient *XClient
	// Timeout bounds the whole transaction; default 30s.
	Timeout time.Duration
}

// SendMail performs one SMTP transaction with the server at addr and
// returns every reply. Rejections are results, not failures; the test
// fails only if the conversation breaks (connection refused, timeout,
// malformed reply).
func SendMail(t testing.TB, addr, from string, to []string, msg []byte) SendResult {
	t.Helper()
	return SendMailWith(t, addr, SendOptions{}, from, to, msg)
}

// SendMailWith is SendMail with options, e.g. XCLIENT.
func SendMailWith(t testing.TB, addr string, opts SendOptions, from string, to []string, msg []byte) SendResult {
	t.Helper()
	res, err := Transact(addr, opts, from, to, msg)
	if err != nil {
		t.Fatalf("testenv: SMTP transaction with %s: %v\nreplies so far:\n%v", addr, err, res)
	}
	return res
}

// Transact is SendMailWith for code that cannot use a testing.TB, such as
// goroutines of a load test: it returns the replies received so far with
// the error instead of failing the test.
//
// The client is written on net/textproto rather than go-smtp's client
// because tests need every reply, positive ones included, and go-smtp's
// client neither returns those nor can send XCLIENT. It does not
// pipeline, so each reply belongs unambiguously to its command.
func Transact(addr string, opts SendOptions, from string, to []string, msg []byte) (SendResult, error) {
	res := SendResult{Rcpt: make([]Reply, len(to))}
	for _, s := range append([]string{from}, to...) {
		if strings.ContainsAny(s, "\r\n<>") {
			return res, fmt.Errorf("address %q contains CR, LF or angle brackets", s)
		}
	}
	if opts.Helo == "" {
		opts.Helo = "client.example.net"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}

	conn, err := net.DialTimeout("tcp", addr, opts.Timeout)
	if err != nil {
		return res, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(opts.Timeout)); err != nil {
		return res, fmt.Errorf("set deadline: %w", err)
	}
	c := &smtpConn{text: textproto.NewConn(conn)}

	if res.Greeting, err = c.read(); err != nil {
		return res, fmt.Errorf("greeting: %w", err)
	}
	if res.Greeting.Code != 220 {
		c.quit()
		return res, nil
	}
	if res.Ehlo, err = c.cmd("EHLO " + opts.Helo); err != nil {
		return res, fmt.Errorf("EHLO: %w", err)
	}
	if !res.Ehlo.OK() {
		c.quit()
		return res, nil
	}
	if x := opts.XClient; x != nil {
		line, err := x.command()
		if err != nil {
			return res, err
		}
		if res.XClient, err = c.cmd(line); err != nil {
			return res, fmt.Errorf("XCLIENT: %w", err)
		}
		if res.XClient.Code != 220 {
			c.quit()
			return res, nil
		}
		if res.Ehlo, err = c.cmd("EHLO " + opts.Helo); err != nil {
			return res, fmt.Errorf("EHLO after XCLIENT: %w", err)
		}
		if !res.Ehlo.OK() {
			c.quit()
			return res, nil
		}
	}

	if res.Mail, err = c.cmd("MAIL FROM:<" + from + ">"); err != nil {
		return res, fmt.Errorf("MAIL: %w", err)
	}
	if !res.Mail.OK() {
		c.quit()
		return res, nil
	}
	accepted := 0
	for i, rcpt := range to {
		if res.Rcpt[i], err = c.cmd("RCPT TO:<" + rcpt + ">"); err != nil {
			return res, fmt.Errorf("RCPT %d: %w", i, err)
		}
		if res.Rcpt[i].Code == 421 {
			return res, nil // the server is closing the connection
		}
		if res.Rcpt[i].OK() {
			accepted++
		}
	}
	if accepted == 0 {
		c.quit()
		return res, nil
	}

	dataCmd, err := c.cmd("DATA")
	if err != nil {
		return res, fmt.Errorf("DATA: %w", err)
	}
	if dataCmd.Code != 354 {
		res.Data = dataCmd
		c.quit()
		return res, nil
	}
	w := c.text.DotWriter()
	if _, err := w.Write(msg); err != nil {
		return res, fmt.Errorf("write message: %w", err)
	}
	if err := w.Close(); err != nil {
		return res, fmt.Errorf("end message: %w", err)
	}
	if res.Data, err = c.read(); err != nil {
		return res, fmt.Errorf("reply to message: %w", err)
	}
	c.quit()
	return res, nil
}

type smtpConn struct {
	text *textproto.Conn
}

func (c *smtpConn) cmd(line string) (Reply, error) {
	if err := c.text.PrintfLine("%s", line); err != nil {
		return Reply{}, err
	}
	return c.read()
}

func (c *smtpConn) read() (Reply, error) {
	// Expecting code 0 accepts any code, so rejections come back as
	// replies, not as errors.
	code, text, err := c.text.ReadResponse(0)
	if err != nil {
		return Reply{}, err
	}
	return parseReply(code, text), nil
}

// quit ends the session politely. Its outcome is ignored: the server may
// already have closed the connection after a 421 or 554, and the replies
// that matter were recorded before.
func (c *smtpConn) quit() {
	if err := c.text.PrintfLine("QUIT"); err == nil {
		_, _, _ = c.text.ReadResponse(0)
	}
}

var enhancedRE = regexp.MustCompile(`^([245])\.(\d{1,3})\.(\d{1,3}) `)

// parseReply splits the enhanced status code off a reply. Postfix repeats
// it on every line of a multi-line reply; it is removed from each line.
func parseReply(code int, text string) Reply {
	r := Reply{Code: code, Text: text}
	m := enhancedRE.FindStringSubmatch(text)
	if m == nil {
		return r
	}
	for i := range 3 {
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return r
		}
		r.EnhancedCode[i] = n
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, m[0])
	}
	r.Text = strings.Join(lines, "\n")
	return r
}

func (x *XClient) command() (string, error) {
	attrs := []struct{ name, value string }{
		{"ADDR", x.Addr}, {"NAME", x.Name}, {"LOGIN", x.Login}, {"HELO", x.Helo}, {"PROTO", x.Proto},
	}
	line := "XCLIENT"
	for _, a := range attrs {
		if a.value == "" {
			continue
		}
		line += " " + a.name + "=" + xtext(a.value)
	}
	if line == "XCLIENT" {
		return "", errors.New("XCLIENT requested without any attribute")
	}
	return line, nil
}

// xtext encodes an XCLIENT attribute value as RFC 1891 xtext, which Postfix
// decodes.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
