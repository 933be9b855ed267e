// Package reply holds the SMTP replies postlist gives, as values.
//
// The milter and the LMTP server answer the same situations (unknown list,
// message too big, our own trouble) and must answer them the same way, so
// the codes, enhanced codes and texts are decided here and nowhere else.
package reply

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// Reply is one SMTP reply: basic code, enhanced status code (RFC 3463) and
// human text.
type Reply struct {
	Code     int
	Enhanced [3]int
	Text     string
}

// String renders the reply as it appears on the wire (one line).
func (r Reply) String() string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

// EnhancedText is the text with the enhanced code in front, the form the
// milter protocol wants for a custom reply.
func (r Reply) EnhancedText() string {
	return fmt.Sprintf("%d.%d.%d %s", r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

// Temporary reports a 4xx reply.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 }

// SMTPError converts to go-smtp's error type. Returning this (never a bare
// error) from a go-smtp session is what keeps our own failures temporary:
// go-smtp turns a bare error into a permanent 554 that leaks its text.
func (r Reply) SMTPError() *smtp.SMTPError {
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCode(r.Enhanced), Message: r.Text}
}

// clean keeps reply text on one printable line: an address or reason that
// came from the network must not inject a second reply line. Bytes that
// are not UTF-8 become '?' too: mapped as they are, each would grow into
// a three-byte U+FFFD, and an address already clipped to fit a reply
// line (see index's clipAddr) could then triple in length, which go-milter
// answers by splitting the reply over several lines (found by
// reliability.FuzzMilterSession).
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// The replies. Constructors take the address they are about so that the
// sender's bounce names it.

// NoSuchList: the address is in a list domain but names no list.
func NoSuchList(addr string) Reply {
	return Reply{550, [3]int{5, 1, 1}, fmt.Sprintf("<%s>: no such list address here", clean(addr))}
}

// BadVERP: a -bounces+ extension that names no member, or whose signature
// is wrong.
func BadVERP(addr string) Reply {
	return Reply{550, [3]int{5, 1, 1}, fmt.Sprintf("<%s>: unknown or forged bounce address", clean(addr))}
}

// BadToken: a -confirm+ extension that is not a live token.
func BadToken(addr string) Reply {
	return Reply{550, [3]int{5, 1, 1}, fmt.Sprintf("<%s>: unknown or expired confirmation token", clean(addr))}
}

// Malformed: an address we cannot parse.
func Malformed(addr, why string) Reply {
	return Reply{553, [3]int{5, 1, 3}, fmt.Sprintf("<%s>: malformed address: %s", clean(addr), clean(why))}
}

// NonMemberRejected: the list refuses posts from non-members.
func NonMemberRejected(list, sender string) Reply {
	return Reply{550, [3]int{5, 7, 1}, fmt.Sprintf("<%s>: only members may post to %s", clean(sender), clean(list))}
}

// Banned: the sender is banned from the list.
func Banned(list, sender string) Reply {
	return Reply{550, [3]int{5, 7, 1}, fmt.Sprintf("<%s>: banned from %s", clean(sender), clean(list))}
}

// TooBig: the message exceeds a size limit (limit in bytes).
func TooBig(limit int64) Reply {
	return Reply{552, [3]int{5, 3, 4}, fmt.Sprintf("message too big for this list (limit %d bytes)", limit)}
}

// Loop: the message already went through this list.
func Loop(list string) Reply {
	return Reply{554, [3]int{5, 4, 6}, fmt.Sprintf("mail loop: message already went through %s", clean(list))}
}

// Unreadable: the message cannot be parsed as mail.
func Unreadable(why string) Reply {
	return Reply{554, [3]int{5, 6, 0}, "message is not readable mail: " + clean(why)}
}

// TooManyRecipients: per-transaction recipient limit.
func TooManyRecipients(limit int) Reply {
	return Reply{452, [3]int{4, 5, 3}, fmt.Sprintf("too many recipients (limit %d per transaction)", limit)}
}

// TempFail: our own trouble; the sender should retry. The text never
// carries internal error details.
func TempFail() Reply {
	return Reply{451, [3]int{4, 3, 0}, "temporary local problem, please try again later"}
}

// ShuttingDown: the server is stopping.
func ShuttingDown() Reply {
	return Reply{421, [3]int{4, 3, 2}, "postlist shutting down, try again later"}
}

// QueuedAs is the per-recipient LMTP 250, carrying our message id so
// Postfix's status=sent log line joins ours. go-smtp puts "<rcpt> " in
// front of every per-recipient reply text itself, so the text carries only
// the id: "250 2.0.0 <rcpt> queued as 42" on the wire.
func QueuedAs(id int64) Reply {
	return Reply{250, [3]int{2, 0, 0}, fmt.Sprintf("queued as %d", id)}
}

// TooBusy: every session slot is taken; the client should come back later.
func TooBusy() Reply {
	return Reply{421, [3]int{4, 3, 2}, "too many concurrent sessions, try again later"}
}
