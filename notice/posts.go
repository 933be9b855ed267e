package notice

import (
	"fmt"
	"strings"

	"postlist/address"
	"postlist/message"
	"postlist/store"
)

// Held is what a hold notice says about a held post.
type Held struct {
	ID int64
	// Token is the held post's NAME-confirm+TOKEN token, Delim the
	// site's recipient delimiter.
	Token, Delim string
	// Poster is who the post is from ("" if nobody could tell),
	// Subject its Subject.
	Poster, Subject string
	// Rule and Reason are what held it.
	Rule, Reason string
	Post         []byte
}

// HeldMail tells the list's owners and moderators that a post is held,
// why, and how to act. The post is attached (its header only when it is
// over MaxAttached: moderators read it with `postlist held show`).
//
// Its Reply-To is NAME-confirm+TOKEN, so a moderator can decide by
// replying, as in Mailman: with the moderator password in an Approved:
// line the post is approved, without it discarded.
func HeldMail(l *store.List, h Held) Mail {
	from := h.Poster
	if from == "" {
		from = "an unknown sender"
	}
	var text strings.Builder
	fmt.Fprintf(&text, "A post to the %s mailing list is held for moderation.\n\n", l.Address)
	fmt.Fprintf(&text, "    List:     %s\n", l.Address)
	fmt.Fprintf(&text, "    From:     %s\n", from)
	fmt.Fprintf(&text, "    Subject:  %s\n", orNone(message.OneLine(h.Subject)))
	fmt.Fprintf(&text, "    Reason:   %s: %s\n", h.Rule, h.Reason)
	fmt.Fprintf(&text, "    Held as:  %d\n\n", h.ID)
	confirm := ListAddress(l.Address, address.Confirm, h.Token, h.Delim)
	if l.Setting("moderator_password") != "" {
		fmt.Fprintf(&text, "To approve it by mail, reply to this message (the reply goes to\n%s)\n", confirm)
		fmt.Fprintf(&text, "with this line first in the reply:\n\n    Approved: <the list's moderator password>\n\n")
		fmt.Fprintf(&text, "A reply without that line discards the post.\n\n")
	} else {
		fmt.Fprintf(&text, "To discard it by mail, reply to this message (the reply goes to\n%s).\n", confirm)
		fmt.Fprintf(&text, "The list has no moderator password, so approving takes the command\nbelow.\n\n")
	}
	fmt.Fprintf(&text, "Or run on the list server:\n\n")
	fmt.Fprintf(&text, "    postlist held approve %d\n", h.ID)
	fmt.Fprintf(&text, "    postlist held reject %d --reason \"...\"\n", h.ID)
	fmt.Fprintf(&text, "    postlist held discard %d\n\n", h.ID)
	if len(h.Post) <= MaxAttached {
		text.WriteString("The held message is attached.\n")
	} else {
		fmt.Fprintf(&text, "The held message is %d KiB; its header is attached, and\n`postlist held show %d` prints all of it.\n", len(h.Post)/1024, h.ID)
	}
	return Mail{
		From: owner(l), To: owner(l), ReplyTo: confirm,
		Subject: fmt.Sprintf("%s post from %s requires approval", l.Address, from),
		Auto:    "auto-generated", Kind: "held",
		Text: text.String(), Attach: attachment(h.Post),
	}
}

// RejectedMail tells poster why their post was rejected, with the header
// of their message, never the whole message: a notice to a forged sender
// must not carry someone else's content around.
func RejectedMail(l *store.List, poster, reason string, post []byte) Mail {
	m := message.Parse(post)
	var text strings.Builder
	fmt.Fprintf(&text, "Your message to the %s mailing list was rejected.\n\n", l.Address)
	fmt.Fprintf(&text, "    Subject:  %s\n", orNone(message.OneLine(message.DecodeHeader(m.Get("Subject")))))
	fmt.Fprintf(&text, "    Reason:   %s\n\n", message.OneLine(reason))
	fmt.Fprintf(&text, "The list's owners can be reached at %s.\n", owner(l))
	fmt.Fprintf(&text, "The header of your message is attached.\n")
	return Mail{
		From: owner(l), To: poster,
		Subject: "Your message to " + l.Address + " was rejected",
		Auto:    "auto-replied", Kind: "rejected", InReplyTo: m.Get("Message-ID"),
		Text: text.String(), Attach: attachment(post), HeaderOnly: true,
	}
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(no subject)"
	}
	return s
}

// attachment is post as Mail.Attach, where nil would mean no attachment:
// these notices always have one, if empty.
func attachment(post []byte) []byte {
	if post == nil {
		return []byte{}
	}
	return post
}
