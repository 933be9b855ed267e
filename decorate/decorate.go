// Package decorate builds the message a list member receives from the
// stored original: RFC 2369 and RFC 2919 list headers, the RFC 8058
// one-click unsubscribe headers, the subject prefix, an optional footer,
// Reply-To policy and DMARC mitigation.
//
// It is pure: bytes and a few list facts in, bytes out, no I/O. The
// pipeline calls it at send time, so no per-member copy of a post is ever
// stored.
//
// # What is kept
//
// The body of the original is kept byte for byte unless a footer is added,
// and even then a signed (multipart/signed, multipart/encrypted, S/MIME),
// HTML or other non-plain-text body is never changed: it becomes the first
// part of a new multipart/mixed whose second part is the footer. Header
// fields that decoration does not touch are kept exactly as written,
// folding included. The message's own line ending (CRLF or LF) is used for
// every line decoration writes.
//
// Decoration still breaks the poster's DKIM signature whenever it changes
// a signed header field (Subject, From) or the body: that is accepted, and
// what DMARC mitigation (munge_from, wrap_message) is for.
//
// # What is removed
//
// Fields that must not leak to members or that the list replaces: the
// moderator password fields (Approved, Approve, X-Approved, X-Approve),
// Return-Path (the receiving MTA writes its own), Urgent, read-receipt
// requests, Archived-At, Precedence, and every upstream List-* field.
package decorate

import (
	"bytes"
	"fmt"
	"strings"

	"postlist/address"
	"postlist/message"
)

// List holds the list facts decoration needs, in their stored form
// (setting names and values are Mailman's).
type List struct {
	// Address is the posting address, test@lists.example.org.
	Address string
	// ListID is the RFC 2919 identifier, test.lists.example.org.
	ListID string
	// DisplayName is the human name ("Test"), used for "Alice via Test".
	DisplayName string
	// Description, when set, is the List-Id phrase.
	Description string
	// SubjectPrefix is added once to subjects ("[Test] "); "" for none.
	// A %d in it stands for PostNumber, as in Mailman ("[Test %d] ").
	SubjectPrefix string
	// PostNumber is the list's number for this post (Mailman's post_id).
	PostNumber int64
	// Footer is appended to every post when not empty.
	Footer string
	// ArchiveURL, when set, becomes List-Archive.
	ArchiveURL string
	// ReplyGoesToList is no_munging, point_to_list or explicit_header.
	ReplyGoesToList string
	// ReplyToAddress is the Reply-To for explicit_header.
	ReplyToAddress string
	// DMARCMitigateAction is no_mitigation, munge_from or wrap_message.
	DMARCMitigateAction string
	// Personalize is Mailman's personalize: with "full", each member's
	// copy is addressed To: them, and the list goes to Cc (unless
	// Reply-To already points to it) so that replying to all reaches it.
	Personalize string

	// The list's robot addresses. Empty ones are derived from Address
	// (NAME-request@DOMAIN and so on); the caller sets them when it knows
	// better, e.g. -subscribe for a list whose NAME-join is another list.
	RequestAddress string
	JoinAddress    string
	LeaveAddress   string
	OwnerAddress   string
}

// Recipient is what differs per member.
type Recipient struct {
	// UnsubscribeURL is the member's one-click unsubscribe URL, "" when
	// there is none (no [http] base_url, or bulk delivery where one
	// message goes to many members): List-Unsubscribe is then mailto
	// only, without List-Unsubscribe-Post.
	UnsubscribeURL string
	// Address is the member a copy is for, on a personalized list; ""
	// for a copy that goes to several members.
	Address string
}

func (l *List) fill() error {
	name, domain := address.ListName(l.Address)
	if name == "" || domain == "" {
		return fmt.Errorf("decorate: list address %q: want NAME@DOMAIN", l.Address)
	}
	if l.ListID == "" {
		l.ListID = name + "." + domain
	}
	if l.DisplayName == "" {
		l.DisplayName = name
	}
	sub := func(p *string, word string) {
		if *p == "" {
			*p = name + "-" + word + "@" + domain
		}
	}
	sub(&l.RequestAddress, "request")
	sub(&l.JoinAddress, "join")
	sub(&l.LeaveAddress, "leave")
	sub(&l.OwnerAddress, "owner")
	for _, v := range []string{l.Address, l.ListID, l.RequestAddress, l.JoinAddress, l.LeaveAddress, l.OwnerAddress} {
		if !safeURIPart(v) {
			return fmt.Errorf("decorate: list fact %q contains characters not allowed in a header URI", v)
		}
	}
	return nil
}

// safeURIPart reports whether s can go between < and > in a list header:
// no white space, controls, angle brackets or quotes.
func safeURIPart(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' {
			return false
		}
	}
	return true
}

// Prepared is a decorated post with the per-member part left open: For
// fills it in. Decorating once per message and then only splicing the
// List-Unsubscribe field per member keeps personalized delivery to a large
// list cheap.
type Prepared struct {
	head  []byte // header fields before List-Unsubscribe
	tail  []byte // header fields after it, the empty line and the body
	leave string
	eol   string
	// personal: personalize full; To: is written per copy, origTo for a
	// copy to several members.
	personal bool
	origTo   string
}

// Decorate is Prepare followed by For, for one recipient.
func Decorate(orig []byte, l List, r Recipient) ([]byte, error) {
	p, err := Prepare(orig, l)
	if err != nil {
		return nil, err
	}
	return p.For(r), nil
}

// Prepare decorates orig for list l.
func Prepare(orig []byte, l List) (*Prepared, error) {
	if err := l.fill(); err != nil {
		return nil, err
	}
	m := message.Parse(orig)
	cleanse(m)
	var inner []byte
	if l.DMARCMitigateAction == "wrap_message" {
		// The wrapper carries the post as it came, minus only the fields
		// that must never leak, so the poster's signature can still be
		// checked inside it.
		inner = m.Bytes()
	}

	prefixSubject(m, l.SubjectPrefix, l.PostNumber)
	replyTo(m, l)
	switch l.DMARCMitigateAction {
	case "munge_from":
		mungeFrom(m, m, l)
	case "wrap_message":
		m = wrapMessage(m, inner, l)
	}
	if strings.TrimSpace(l.Footer) != "" {
		addFooter(m, l.Footer)
	}
	var origTo string
	personal := l.Personalize == "full"
	if personal {
		// To: is written per copy (see appendOwn); the original stays
		// for copies to several members.
		origTo = strings.Join(m.Values("To"), ", ")
		m.Del("To")
		if l.ReplyGoesToList != "point_to_list" {
			appendAddress(m, "Cc", message.FormatAddress(l.DisplayName, l.Address))
		}
	}

	eol := m.EOL
	var head, tail bytes.Buffer
	m.WriteFields(&head, m.Fields)
	id := "<" + l.ListID + ">"
	if l.Description != "" {
		id = message.EncodePhrase(l.Description) + " " + id
	}
	head.WriteString(message.FormatField("List-Id", id, eol))
	if l.ArchiveURL != "" && safeURIPart(l.ArchiveURL) {
		head.WriteString(message.FormatField("List-Archive", "<"+l.ArchiveURL+">", eol))
	}
	head.WriteString(message.FormatField("List-Help", "<mailto:"+l.RequestAddress+"?subject=help>", eol))
	head.WriteString(message.FormatField("List-Owner", "<mailto:"+l.OwnerAddress+">", eol))
	head.WriteString(message.FormatField("List-Post", "<mailto:"+l.Address+">", eol))
	head.WriteString(message.FormatField("List-Subscribe", "<mailto:"+l.JoinAddress+">", eol))

	tail.WriteString(message.FormatField("Precedence", "list", eol))
	tail.WriteString(message.FormatField("X-BeenThere", l.Address, eol))
	tail.Write(m.Separator())
	tail.Write(m.Body)
	return &Prepared{head: head.Bytes(), tail: tail.Bytes(), leave: l.LeaveAddress, eol: eol, personal: personal, origTo: origTo}, nil
}

// For returns the message for one recipient: Own followed by Tail.
func (p *Prepared) For(r Recipient) []byte {
	return append(p.appendOwn(make([]byte, 0, len(p.head)+ownFieldsRoom+len(p.tail)), r), p.tail...)
}

// ownFieldsRoom is room for the List-Unsubscribe fields, so that the
// usual case appends without growing.
const ownFieldsRoom = 512

// Own returns the part of the message that is r's own: the header fields
// up to and including List-Unsubscribe, ending at a line end.
func (p *Prepared) Own(r Recipient) []byte {
	return p.appendOwn(make([]byte, 0, len(p.head)+ownFieldsRoom), r)
}

func (p *Prepared) appendOwn(out []byte, r Recipient) []byte {
	unsub := "<mailto:" + p.leave + ">"
	oneClick := false
	if u := r.UnsubscribeURL; u != "" && safeURIPart(u) {
		unsub = "<" + u + ">, " + unsub
		// RFC 8058 section 3.1: one-click needs an HTTPS URI; a plain
		// http one (a test set-up) is still offered, without the POST
		// promise.
		oneClick = strings.HasPrefix(strings.ToLower(u), "https://")
	}
	fields := message.FormatField("List-Unsubscribe", unsub, p.eol)
	if oneClick {
		fields += message.FormatField("List-Unsubscribe-Post", "List-Unsubscribe=One-Click", p.eol)
	}
	out = append(out, p.head...)
	if p.personal {
		switch {
		case r.Address != "" && !strings.ContainsAny(r.Address, "\r\n<>"):
			fields = message.FormatField("To", r.Address, p.eol) + fields
		case p.origTo != "":
			fields = message.FormatField("To", p.origTo, p.eol) + fields
		}
	}
	return append(out, fields...)
}

// Tail is what follows Own in every recipient's message: the last header
// fields, the empty line and the body. It must not be modified.
func (p *Prepared) Tail() []byte { return p.tail }

// cleanse removes the fields that must not reach members or that the
// list replaces with its own.
func cleanse(m *message.Message) {
	m.DelFunc(func(name string) bool {
		n := strings.ToLower(name)
		if strings.HasPrefix(n, "list-") {
			return true
		}
		switch n {
		case "approved", "approve", "x-approved", "x-approve",
			"return-path", "urgent", "archived-at", "precedence",
			"return-receipt-to", "disposition-notification-to", "x-confirm-reading-to", "x-pmrqc":
			return true
		}
		return false
	})
}

// prefixSubject applies the list's subject prefix in place (the Subject
// field keeps its position).
func prefixSubject(m *message.Message, prefix string, number int64) {
	raw := m.Get("Subject")
	v, changed := PrefixSubjectNumbered(raw, m.Has("Subject"), prefix, number)
	if changed {
		m.Set("Subject", v)
	}
}

// replyTo applies reply_goes_to_list. The poster's own Reply-To is kept
// and the list's address added to it (Mailman's default, with
// first_strip_reply_to off), so that nobody's chosen reply address is
// silently dropped.
func replyTo(m *message.Message, l List) {
	var add string
	switch l.ReplyGoesToList {
	case "point_to_list":
		add = message.FormatAddress(l.DisplayName, l.Address)
	case "explicit_header":
		if l.ReplyToAddress == "" || !safeURIPart(l.ReplyToAddress) {
			return
		}
		add = l.ReplyToAddress
	default:
		return
	}
	appendAddress(m, "Reply-To", add)
}

// appendAddress adds addr to the address field name, merging several
// fields of that name into one, unless an address with the same mailbox is
// already there.
func appendAddress(m *message.Message, name, addr string) {
	vals := m.Values(name)
	if len(vals) == 0 {
		m.Set(name, addr)
		return
	}
	joined := strings.Join(vals, ", ")
	if as, err := message.ParseAddressList(joined); err == nil {
		want := addrSpec(addr)
		for _, a := range as {
			if strings.EqualFold(a.Address, want) {
				return
			}
		}
	}
	m.Set(name, joined+", "+addr)
}

// addrSpec returns the bare address of a formatted mailbox.
func addrSpec(s string) string {
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		return strings.TrimSuffix(s[i+1:], ">")
	}
	return s
}
