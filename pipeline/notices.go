package pipeline

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/commands"
	"postlist/message"
	"postlist/store"
)

// Notices are ordinary stored messages queued through the deliveries
// table like posts. They are never decorated (they have no posts row) and
// their envelope sender is the list's -bounces address, so a notice that
// bounces comes back to the list and never to a person.

// maxAttached is the largest held post a hold notice attaches whole;
// bigger ones (the max-size rule holds exactly those) get their header
// only, and moderators read them with `postlist held show`.
const maxAttached = 256 << 10

// holdNotice tells the list's owners and moderators (or the site owner,
// for a list without any) that a post is held, why, and how to act. The
// post is attached.
//
// The notice's Reply-To is NAME-confirm+TOKEN, so a moderator can decide
// by replying, as in Mailman: with the moderator password in an Approved:
// line the post is approved, without it discarded (see ConfirmHeld).
func (p *Pipeline) holdNotice(l *store.List, admins []string, heldID int64, token string, v Verdict, poster, subject string, post []byte) (store.Notice, bool) {
	if len(admins) == 0 && p.owner != "" {
		admins = []string{p.owner}
	}
	if len(admins) == 0 {
		return store.Notice{}, false
	}
	name, domain := address.ListName(l.Address)
	owner := name + "-owner@" + domain
	from := poster
	if from == "" {
		from = "an unknown sender"
	}
	var text strings.Builder
	fmt.Fprintf(&text, "A post to the %s mailing list is held for moderation.\n\n", l.Address)
	fmt.Fprintf(&text, "    List:     %s\n", l.Address)
	fmt.Fprintf(&text, "    From:     %s\n", from)
	fmt.Fprintf(&text, "    Subject:  %s\n", orNone(message.OneLine(subject)))
	fmt.Fprintf(&text, "    Reason:   %s: %s\n", v.Rule, v.Reason)
	fmt.Fprintf(&text, "    Held as:  %d\n\n", heldID)
	confirm := address.Target{List: l.Address, Kind: address.Confirm, Ext: token}.Address(p.delim)
	if l.Setting("moderator_password") != "" {
		fmt.Fprintf(&text, "To approve it by mail, reply to this message (the reply goes to\n%s)\n", confirm)
		fmt.Fprintf(&text, "with this line first in the reply:\n\n    Approved: <the list's moderator password>\n\n")
		fmt.Fprintf(&text, "A reply without that line discards the post.\n\n")
	} else {
		fmt.Fprintf(&text, "To discard it by mail, reply to this message (the reply goes to\n%s).\n", confirm)
		fmt.Fprintf(&text, "The list has no moderator password, so approving takes the command\nbelow.\n\n")
	}
	fmt.Fprintf(&text, "Or run on the list server:\n\n")
	fmt.Fprintf(&text, "    postlist held approve %d\n", heldID)
	fmt.Fprintf(&text, "    postlist held reject %d --reason \"...\"\n", heldID)
	fmt.Fprintf(&text, "    postlist held discard %d\n\n", heldID)
	attachment := messagePart(post)
	if len(post) <= maxAttached {
		text.WriteString("The held message is attached.\n")
	} else {
		fmt.Fprintf(&text, "The held message is %d KiB; its header is attached, and\n`postlist held show %d` prints all of it.\n", len(post)/1024, heldID)
	}
	body := p.buildNotice(noticeHeader{
		from: owner, to: owner, replyTo: confirm, domain: domain,
		subject: fmt.Sprintf("%s post from %s requires approval", l.Address, from),
		auto:    "auto-generated", kind: "held",
	}, text.String(), attachment)
	rows := make([]store.NewDelivery, 0, len(admins))
	for _, a := range admins {
		rows = append(rows, store.NewDelivery{Recipient: a, EnvelopeFrom: bounces(l.Address)})
	}
	return store.Notice{Sender: bounces(l.Address), Body: body, Recipients: rows}, true
}

// rejectNotice tells a poster why their post was rejected, with the
// header of their message (not the whole message: a notice to a forged
// sender must not carry someone else's content around). It is not sent
// (ok false) when there is nobody to tell or the post was automatic mail
// (RFC 3834: never answer mail from <>, auto-submitted mail, or mail from
// another list or bulk sender), which is what keeps notices from looping
// or becoming backscatter.
func (p *Pipeline) rejectNotice(l *store.List, poster, envSender, reason string, post []byte) (store.Notice, bool) {
	m := message.Parse(post)
	if poster == "" || envSender == "" || automatic(m) || commands.Automatic(m, envSender) != "" {
		return store.Notice{}, false
	}
	name, domain := address.ListName(l.Address)
	owner := name + "-owner@" + domain
	var text strings.Builder
	fmt.Fprintf(&text, "Your message to the %s mailing list was rejected.\n\n", l.Address)
	fmt.Fprintf(&text, "    Subject:  %s\n", orNone(message.OneLine(message.DecodeHeader(m.Get("Subject")))))
	fmt.Fprintf(&text, "    Reason:   %s\n\n", message.OneLine(reason))
	fmt.Fprintf(&text, "The list's owners can be reached at %s.\n", owner)
	fmt.Fprintf(&text, "The header of your message is attached.\n")
	h := noticeHeader{
		from: owner, to: poster, domain: domain,
		subject: "Your message to " + l.Address + " was rejected",
		auto:    "auto-replied", kind: "rejected",
	}
	if id := m.Get("Message-ID"); validMsgID(id) {
		h.inReplyTo = id
	}
	n := store.Notice{
		Sender:     bounces(l.Address),
		Body:       p.buildNotice(h, text.String(), headerPart(m)),
		Recipients: []store.NewDelivery{{Recipient: poster, EnvelopeFrom: bounces(l.Address)}},
	}
	if p.maxAuto > 0 {
		// A reject notice answers whoever the From names, forged or
		// not: it counts against that address's daily allowance.
		n.DailyCap = p.maxAuto
		n.LastBody = p.buildNotice(h, text.String()+commands.LastAutoresponseNote, headerPart(m))
		n.Limited = func(addr string, count int) {
			p.log.Info("automatic mail not sent: daily limit reached", zap.String("list", l.Address),
				zap.String("address", addr), zap.Int("today", count), zap.Int("limit", p.maxAuto))
		}
	}
	return n, true
}

// automatic reports mail that must not be answered (RFC 3834 section 2).
func automatic(m *message.Message) bool {
	if m.Has(commands.NoticeHeader) {
		return true
	}
	if v := strings.ToLower(m.Get("Auto-Submitted")); v != "" && v != "no" {
		return true
	}
	switch strings.ToLower(m.Get("Precedence")) {
	case "bulk", "junk", "list":
		return true
	}
	return m.Has("List-Id") || m.Has("List-Unsubscribe")
}

// validMsgID accepts a Message-ID we may copy into In-Reply-To: one
// bracketed token without spaces.
func validMsgID(s string) bool {
	return len(s) > 2 && len(s) < 250 && s[0] == '<' && s[len(s)-1] == '>' && !strings.ContainsAny(s, " \t\r\n") &&
		strings.Count(s, "<") == 1 && strings.Count(s, ">") == 1
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(no subject)"
	}
	return s
}

type noticeHeader struct {
	from, to, replyTo, domain, subject, auto, inReplyTo string
	// kind names the notice in commands.NoticeHeader, the mark that
	// keeps a notice sent to a list address from being distributed.
	kind string
}

// part is a ready MIME part: header fields and body, CRLF line endings.
type part struct {
	header string
	body   []byte
}

// messagePart attaches a whole message when small enough, else its
// header.
func messagePart(msg []byte) part {
	if len(msg) > maxAttached {
		return headerPart(message.Parse(msg))
	}
	return part{
		header: "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: " + cte8(msg) + "\r\n",
		body:   msg,
	}
}

// headerPart attaches a message's header as text/rfc822-headers (RFC
// 6522).
func headerPart(m *message.Message) part {
	h := m.Header()
	return part{
		header: "Content-Type: text/rfc822-headers\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: " + cte8(h) + "\r\n",
		body:   h,
	}
}

func cte8(b []byte) string {
	for _, c := range b {
		if c >= 0x80 {
			return "8bit"
		}
	}
	return "7bit"
}

// buildNotice writes a multipart/mixed notice: the text, then the
// attachment.
func (p *Pipeline) buildNotice(h noticeHeader, text string, att part) []byte {
	const eol = "\r\n"
	boundary := randomToken()
	for bytes.Contains(att.body, []byte(boundary)) {
		boundary = randomToken()
	}
	var b bytes.Buffer
	field := func(name, value string) { b.WriteString(message.FormatField(name, value, eol)) }
	field("From", h.from)
	field("To", h.to)
	if h.replyTo != "" {
		field("Reply-To", h.replyTo)
	}
	field("Subject", mime.QEncoding.Encode("utf-8", message.OneLine(h.subject)))
	field("Date", p.st.Now().UTC().Format(time.RFC1123Z))
	field("Message-ID", "<postlist."+randomToken()+"@"+h.domain+">")
	if h.inReplyTo != "" {
		field("In-Reply-To", h.inReplyTo)
		field("References", h.inReplyTo)
	}
	field("Auto-Submitted", h.auto)
	field("Precedence", "bulk")
	field(commands.NoticeHeader, h.kind)
	field("MIME-Version", "1.0")
	field("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString(eol)
	b.WriteString("--" + boundary + eol)
	text = strings.ReplaceAll(text, "\n", eol)
	if isASCII(text) {
		b.WriteString(`Content-Type: text/plain; charset="us-ascii"` + eol + "Content-Transfer-Encoding: 7bit" + eol + eol)
		b.WriteString(text)
	} else {
		b.WriteString(`Content-Type: text/plain; charset="utf-8"` + eol + "Content-Transfer-Encoding: quoted-printable" + eol + eol)
		w := quotedprintable.NewWriter(&b)
		w.Write([]byte(text))
		w.Close()
	}
	// The line break before a delimiter belongs to the delimiter (RFC
	// 2046 section 5.1.1), so each part keeps its own final line break.
	b.WriteString(eol + "--" + boundary + eol)
	b.WriteString(att.header)
	b.WriteString(eol)
	b.Write(att.body)
	b.WriteString(eol + "--" + boundary + "--" + eol)
	return b.Bytes()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// randomToken returns 128 random bits in hex, for Message-IDs and MIME
// boundaries.
func randomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
