package notice

import (
	"fmt"
	"strings"
	"time"

	"postlist/address"
	"postlist/message"
	"postlist/store"
)

// The texts follow Mailman 3's templates in substance (the request, what
// to do, whom to ask), so people moving from a Mailman list meet the same
// steps, with postlist's addresses.

// ListName is the name people know a list by: its display name, else
// the local part of its address.
func ListName(l *store.List) string {
	if n := message.OneLine(l.Setting("display_name")); n != "" {
		return n
	}
	name, _ := address.ListName(l.Address)
	return name
}

func owner(l *store.List) string   { return ListAddress(l.Address, address.Owner, "", "") }
func request(l *store.List) string { return ListAddress(l.Address, address.Request, "", "") }

func expiry(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// Confirm is the mail asking t's address to confirm the request t
// stands for. It comes from NAME-confirm+TOKEN (delim is the site's
// recipient delimiter), so that replying confirms, and carries "confirm
// TOKEN" in the Subject and body for replies that lose the address's
// extension and for mail to -request.
func Confirm(l *store.List, t store.Token, inReplyTo, delim string) Mail {
	verb, noun, what, prep := "join", "subscribe", "subscription", "to"
	if t.Kind == store.TokenUnsubscribe {
		verb, noun, what, prep = "leave", "unsubscribe", "unsubscription", "from"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Mailing list %s confirmation\n\n", what)
	fmt.Fprintf(&b, "We have received a request to %s the address\n\n    %s\n\n", noun, t.Address)
	fmt.Fprintf(&b, "%s the %s mailing list (%s).\n\n", prep, l.Address, ListName(l))
	b.WriteString("To confirm, simply reply to this message; most mail programs do the\nright thing. Or send a message to\n\n")
	fmt.Fprintf(&b, "    %s\n\ncontaining just this line:\n\n    confirm %s\n\n", request(l), t.Token)
	fmt.Fprintf(&b, "The request expires on %s.\n\n", expiry(t.ExpiresAt))
	fmt.Fprintf(&b, "If you do not wish to %s the list, or did not ask to, simply\ndisregard this message. ", verb)
	fmt.Fprintf(&b, "Questions go to the list's owners at\n%s.\n", owner(l))
	return Mail{
		From:    ListAddress(l.Address, address.Confirm, t.Token, delim),
		To:      Mailbox(t.DisplayName, t.Address),
		Subject: fmt.Sprintf("Your confirmation is needed to %s the %s mailing list (confirm %s)", verb, l.Address, t.Token),
		Kind:    "confirm", Auto: "auto-replied", InReplyTo: inReplyTo, ListID: l.ListID,
		Text: b.String(),
	}
}

// JoinState tells addr, which a join named, what became of the request
// (text: it is a member already, or a request waits for its
// confirmation). It goes to the address concerned, never to whoever
// asked.
func JoinState(l *store.List, addr, inReplyTo, text string) Mail {
	var b strings.Builder
	b.WriteString(text)
	fmt.Fprintf(&b, "\nIf you did not ask for this, simply disregard this message. Questions go\nto the list's owners at %s.\n", owner(l))
	return Mail{
		From:    request(l),
		To:      addr,
		Subject: fmt.Sprintf("Your subscription to the %s mailing list", l.Address),
		Kind:    "join-state", Auto: "auto-replied", InReplyTo: inReplyTo, ListID: l.ListID,
		Text: b.String(),
	}
}

// ModerationRequest asks the moderators to approve the confirmed
// request t; replying to it (it comes from NAME-confirm+TOKEN) approves.
func ModerationRequest(l *store.List, t store.Token, delim string) Mail {
	what, verb := "subscription", "join"
	if t.Data == store.TokenUnsubscribe {
		what, verb = "unsubscription", "leave"
	}
	who := t.Address
	if t.DisplayName != "" {
		who = fmt.Sprintf("%s (%s)", t.Address, message.OneLine(t.DisplayName))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s has confirmed a request to %s the %s mailing list.\n", who, verb, l.Address)
	fmt.Fprintf(&b, "The list's policy asks a moderator to approve it.\n\n")
	fmt.Fprintf(&b, "To approve, reply to this message, or send the line\n\n    confirm %s\n\nto %s.\n\n", t.Token, request(l))
	fmt.Fprintf(&b, "To refuse, do nothing: the request expires on %s.\n", expiry(t.ExpiresAt))
	return Mail{
		From:    ListAddress(l.Address, address.Confirm, t.Token, delim),
		To:      owner(l),
		Subject: fmt.Sprintf("New %s request to %s from %s (confirm %s)", what, l.Address, t.Address, t.Token),
		Kind:    "moderation-request", Auto: "auto-generated", ListID: l.ListID,
		Text: b.String(),
	}
}

// Welcome greets a new member.
func Welcome(l *store.List, name, addr string) Mail {
	var b strings.Builder
	fmt.Fprintf(&b, "Welcome to the %q mailing list!\n\n", ListName(l))
	if d := message.OneLine(l.Setting("description")); d != "" {
		fmt.Fprintf(&b, "%s\n\n", d)
	}
	fmt.Fprintf(&b, "To post to the list, send your message to\n\n    %s\n\n", l.Address)
	fmt.Fprintf(&b, "To leave the list, send a message to\n\n    %s\n\n", ListAddress(l.Address, address.Leave, "", ""))
	fmt.Fprintf(&b, "or the line \"leave\" to %s.\n", request(l))
	fmt.Fprintf(&b, "The list's owners can be reached at %s.\n", owner(l))
	return Mail{
		From:    request(l),
		To:      Mailbox(name, addr),
		Subject: fmt.Sprintf("Welcome to the %q mailing list", ListName(l)),
		Kind:    "welcome", Auto: "auto-generated", ListID: l.ListID, NoArchive: true,
		Text: b.String(),
	}
}

// Goodbye tells addr it was unsubscribed from l; why, when set, is a
// paragraph saying why (bounce processing removes members and says so).
func Goodbye(l *store.List, name, addr, why string) Mail {
	var b strings.Builder
	fmt.Fprintf(&b, "You have been unsubscribed from the %s mailing list (%s).\n\n", ListName(l), l.Address)
	if why != "" {
		b.WriteString(why + "\n\n")
	}
	fmt.Fprintf(&b, "To join again, send a message to %s.\n", ListAddress(l.Address, address.Join, "", ""))
	fmt.Fprintf(&b, "Questions go to the list's owners at %s.\n", owner(l))
	return Mail{
		From:    request(l),
		To:      Mailbox(name, addr),
		Subject: fmt.Sprintf("You have been unsubscribed from the %s mailing list", ListName(l)),
		Kind:    "goodbye", Auto: "auto-generated", ListID: l.ListID,
		Text: b.String(),
	}
}

// Results is what a results mail reports about one command message.
type Results struct {
	// Name and Address are whom the mail answers.
	Name, Address string
	// From, Subject, Date and MessageID are the original message's
	// (From and Subject decoded); each is quoted clipped to one line.
	From, Subject, Date, MessageID string
	// NonText says parts other than text were ignored.
	NonText bool
	// Lines are the results, Unprocessed the commands after one that
	// stopped processing, Ignored the lines that were no command.
	Lines, Unprocessed, Ignored []string
}

// ResultsMail is the answer to a command message, laid out as
// Mailman's.
func ResultsMail(l *store.List, r Results) Mail {
	var b strings.Builder
	b.WriteString("The results of your email command are provided below.\n\n")
	b.WriteString("- Original message details:\n")
	orNA := func(v string) string {
		if v = Clip(v); v == "" {
			return "n/a"
		}
		return v
	}
	fmt.Fprintf(&b, "    From: %s\n", orNA(r.From))
	fmt.Fprintf(&b, "    Subject: %s\n", orNA(r.Subject))
	fmt.Fprintf(&b, "    Date: %s\n", orNA(r.Date))
	fmt.Fprintf(&b, "    Message-ID: %s\n\n", orNA(r.MessageID))
	b.WriteString("- Results:\n")
	if r.NonText {
		b.WriteString("    Ignoring non-text/plain MIME parts\n")
	}
	if len(r.Lines) == 0 {
		b.WriteString("    No commands found.\n")
	}
	for _, x := range r.Lines {
		fmt.Fprintf(&b, "    %s\n", x)
	}
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n- %s:\n", title)
		for _, x := range lines {
			fmt.Fprintf(&b, "    %s\n", x)
		}
	}
	section("Unprocessed", r.Unprocessed)
	section("Ignored", r.Ignored)
	b.WriteString("\n- Done.\n")
	return Mail{
		From:    request(l),
		To:      Mailbox(r.Name, r.Address),
		Subject: "The results of your email commands",
		Kind:    "results", Auto: "auto-replied", InReplyTo: r.MessageID, ListID: l.ListID,
		Text: b.String(),
	}
}
