package notice

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"

	"postlist/address"
	"postlist/message"
	"postlist/store"
)

// Header is the header field that marks every message postlist
// writes itself (replies, confirmation requests, notices), naming its
// kind. A bounce that quotes it is a bounce of our own mail: forwarding
// such a bounce to the owners could loop (an owner's broken address
// bouncing the forward), so bounce processing records it instead.
const Header = "X-Postlist-Notice"

// ListAddress returns one of a list's own addresses: kind
// address.Bounces gives NAME-bounces@DOMAIN; ext (a token) is added
// after the first usable character of delim.
func ListAddress(list string, kind address.Kind, ext, delim string) string {
	return address.Target{List: list, Kind: kind, Ext: ext}.Address(delim)
}

// Mailbox formats an address with an optional display name for a header
// field. The name may come from the network: net/mail quotes or encodes
// it, and message.FormatField later turns any control character into a
// space, so it can never start a header field of its own.
func Mailbox(name, addr string) string {
	name = message.OneLine(name)
	if name == "" {
		return addr
	}
	return (&mail.Address{Name: name, Address: addr}).String()
}

// Mail is a message postlist writes itself.
type Mail struct {
	From, To string // header values (see Mailbox)
	// ReplyTo, when set, adds a Reply-To field (a hold notice's
	// NAME-confirm+TOKEN, so that replying decides).
	ReplyTo string
	Subject string
	// Kind names the message in Header ("confirm", "welcome"...).
	Kind string
	// Auto is the Auto-Submitted value (RFC 3834): "auto-replied" for
	// answers to a message, "auto-generated" for the rest.
	Auto string
	// InReplyTo is the Message-ID answered, if any (checked here).
	InReplyTo string
	// ListID, when set, adds a List-Id field: mail carrying one is
	// never answered automatically, by us or by well-behaved robots.
	ListID string
	// NoArchive adds X-No-Archive: yes (welcome messages, as Mailman).
	NoArchive bool
	Text      string
	// Attach, when set, is a message attached after the text: whole as
	// message/rfc822 up to MaxAttached bytes, else its header only.
	Attach []byte
	// HeaderOnly attaches only Attach's header, whatever its size: a
	// notice to a possibly forged sender must not carry someone else's
	// content around.
	HeaderOnly bool
}

// MaxAttached is the largest message a notice attaches whole.
const MaxAttached = 256 << 10

// Bytes renders m with CRLF line endings; domain is used for the
// Message-ID, now for the Date.
func (m Mail) Bytes(domain string, now time.Time) []byte {
	const eol = "\r\n"
	var b bytes.Buffer
	field := func(name, value string) { b.WriteString(message.FormatField(name, value, eol)) }
	field("From", m.From)
	field("To", m.To)
	if m.ReplyTo != "" {
		field("Reply-To", m.ReplyTo)
	}
	field("Subject", mime.QEncoding.Encode("utf-8", message.OneLine(m.Subject)))
	field("Date", now.UTC().Format(time.RFC1123Z))
	field("Message-ID", "<postlist."+randomHex()+"@"+domain+">")
	if validMsgID(m.InReplyTo) {
		field("In-Reply-To", m.InReplyTo)
		field("References", m.InReplyTo)
	}
	if m.ListID != "" {
		field("List-Id", "<"+m.ListID+">")
	}
	field("Auto-Submitted", m.Auto)
	field("Precedence", "bulk")
	field(Header, m.Kind)
	if m.NoArchive {
		field("X-No-Archive", "yes")
	}
	field("MIME-Version", "1.0")
	text := strings.ReplaceAll(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n", eol)
	if m.Attach == nil {
		writeText(&b, text, eol)
		return b.Bytes()
	}
	att, attHeader := m.Attach, "Content-Type: message/rfc822"+eol+"Content-Disposition: inline"+eol
	if m.HeaderOnly || len(att) > MaxAttached {
		// RFC 6522's type for a header alone.
		att = message.Parse(att).Header()
		attHeader = "Content-Type: text/rfc822-headers" + eol + "Content-Disposition: inline" + eol
	}
	attHeader += "Content-Transfer-Encoding: " + cte(att) + eol
	boundary := "postlist-" + randomHex()
	for bytes.Contains(att, []byte(boundary)) {
		boundary = "postlist-" + randomHex()
	}
	field("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString(eol)
	b.WriteString("--" + boundary + eol)
	writeText(&b, text, eol)
	// The line break before a delimiter belongs to the delimiter (RFC
	// 2046 section 5.1.1), so each part keeps its own last line break.
	b.WriteString(eol + "--" + boundary + eol)
	b.WriteString(attHeader + eol)
	b.Write(att)
	b.WriteString(eol + "--" + boundary + "--" + eol)
	return b.Bytes()
}

// writeText writes a text/plain entity (its Content-* fields, the empty
// line and the text): 7bit when ASCII, quoted-printable UTF-8 otherwise.
func writeText(b *bytes.Buffer, text, eol string) {
	if isASCII(text) {
		b.WriteString(`Content-Type: text/plain; charset="us-ascii"` + eol + "Content-Transfer-Encoding: 7bit" + eol + eol)
		b.WriteString(text)
		return
	}
	b.WriteString(`Content-Type: text/plain; charset="utf-8"` + eol + "Content-Transfer-Encoding: quoted-printable" + eol + eol)
	w := quotedprintable.NewWriter(b)
	w.Write([]byte(text))
	w.Close()
}

func cte(b []byte) string {
	for _, c := range b {
		if c >= 0x80 {
			return "8bit"
		}
	}
	return "7bit"
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// validMsgID accepts a Message-ID we may copy into In-Reply-To: one
// bracketed token without spaces.
func validMsgID(s string) bool {
	return len(s) > 2 && len(s) < 250 && s[0] == '<' && s[len(s)-1] == '>' && !strings.ContainsAny(s, " \t\r\n") &&
		strings.Count(s, "<") == 1 && strings.Count(s, ">") == 1
}

// randomHex returns 128 random bits in hex, for Message-IDs and MIME
// boundaries.
func randomHex() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// New wraps m as a store.Notice from list to rcpts: the envelope
// sender is the list's -bounces address, so that a notice that bounces
// comes back to the list and never to a person.
func New(list string, m Mail, now time.Time, rcpts ...string) store.Notice {
	_, domain := address.ListName(list)
	from := ListAddress(list, address.Bounces, "", "")
	n := store.Notice{Sender: from, Body: m.Bytes(domain, now)}
	for _, r := range rcpts {
		n.Recipients = append(n.Recipients, store.NewDelivery{Recipient: r, EnvelopeFrom: from})
	}
	return n
}

// LastAutoresponseNote ends the last automatic mail an address gets on
// a day (Mailman's "Last autoresponse notification for today"), so that
// a person whose requests stop being answered knows why.
const LastAutoresponseNote = "\n--\nThis is the last automatic reply to you today: you have reached the\n" +
	"daily limit, and further mail from this list server that would answer\n" +
	"you automatically is not sent until tomorrow (UTC). The list's owners\n" +
	"can still be reached.\n"

// Auto is New for an automatic reply to one person, counted
// against their allowance of dailyCap automatic mails a day (0: no
// limit); the last one allowed carries LastAutoresponseNote, and limited
// (if set) hears of each one left out.
func Auto(list string, m Mail, now time.Time, dailyCap int, limited func(addr string, count int), rcpt string) store.Notice {
	n := New(list, m, now, rcpt)
	if dailyCap > 0 {
		_, domain := address.ListName(list)
		last := m
		last.Text += LastAutoresponseNote
		n.DailyCap, n.LastBody, n.Limited = dailyCap, last.Bytes(domain, now), limited
	}
	return n
}

// Admins returns who hears about a list's affairs: its owners and
// moderators, else the site owner; nil if there is nobody.
func Admins(admins []string, siteOwner string) []string {
	if len(admins) > 0 {
		return admins
	}
	if siteOwner != "" {
		return []string{siteOwner}
	}
	return nil
}
