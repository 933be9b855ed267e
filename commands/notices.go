package commands

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

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

func expiry(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// confirmRequest is the mail asking addr to confirm a request. It comes
// from NAME-confirm+TOKEN, so that replying confirms, and carries
// "confirm TOKEN" in the Subject and body for replies that lose the
// address's extension and for mail to -request.
func (p *Processor) confirmRequest(l *store.List, t store.Token, inReplyTo string) store.Notice {
	verb, noun, what, prep := "join", "subscribe", "subscription", "to"
	if t.Kind == store.TokenUnsubscribe {
		verb, noun, what, prep = "leave", "unsubscribe", "unsubscription", "from"
	}
	request := ListAddress(l.Address, address.Request, "", "")
	var b strings.Builder
	fmt.Fprintf(&b, "Mailing list %s confirmation\n\n", what)
	fmt.Fprintf(&b, "We have received a request to %s the address\n\n    %s\n\n", noun, t.Address)
	fmt.Fprintf(&b, "%s the %s mailing list (%s).\n\n", prep, l.Address, ListName(l))
	b.WriteString("To confirm, simply reply to this message; most mail programs do the\nright thing. Or send a message to\n\n")
	fmt.Fprintf(&b, "    %s\n\ncontaining just this line:\n\n    confirm %s\n\n", request, t.Token)
	fmt.Fprintf(&b, "The request expires on %s.\n\n", expiry(t.ExpiresAt))
	fmt.Fprintf(&b, "If you do not wish to %s the list, or did not ask to, simply\ndisregard this message. ", verb)
	fmt.Fprintf(&b, "Questions go to the list's owners at\n%s.\n", ListAddress(l.Address, address.Owner, "", ""))
	m := Mail{
		From:    ListAddress(l.Address, address.Confirm, t.Token, p.o.Delimiter),
		To:      Mailbox(t.DisplayName, t.Address),
		Subject: fmt.Sprintf("Your confirmation is needed to %s the %s mailing list (confirm %s)", verb, l.Address, t.Token),
		Kind:    "confirm", Auto: "auto-replied", InReplyTo: inReplyTo, ListID: l.ListID,
		Text: b.String(),
	}
	return AutoNotice(l.Address, m, p.st.Now(), p.o.MaxAutoresponsesPerDay, p.limited(l), t.Address)
}

// limited logs an automatic mail to addr left out by the daily cap.
func (p *Processor) limited(l *store.List) func(addr string, count int) {
	return func(addr string, count int) {
		p.log.Info("automatic mail not sent: daily limit reached", zap.String("list", l.Address),
			zap.String("address", addr), zap.Int("today", count), zap.Int("limit", p.o.MaxAutoresponsesPerDay))
	}
}

// stateNotice tells addr, which a join named, what became of the request
// (it is a member already, or a request waits for its confirmation):
// this goes to the address concerned, never to whoever asked.
func (p *Processor) stateNotice(l *store.List, addr, inReplyTo, text string) store.Notice {
	var b strings.Builder
	b.WriteString(text)
	fmt.Fprintf(&b, "\nIf you did not ask for this, simply disregard this message. Questions go\nto the list's owners at %s.\n",
		ListAddress(l.Address, address.Owner, "", ""))
	m := Mail{
		From:    ListAddress(l.Address, address.Request, "", ""),
		To:      addr,
		Subject: fmt.Sprintf("Your subscription to the %s mailing list", l.Address),
		Kind:    "join-state", Auto: "auto-replied", InReplyTo: inReplyTo, ListID: l.ListID,
		Text: b.String(),
	}
	return AutoNotice(l.Address, m, p.st.Now(), p.o.MaxAutoresponsesPerDay, p.limited(l), addr)
}

// moderationRequest asks the moderators to approve a confirmed request;
// replying to it (it comes from NAME-confirm+TOKEN) approves.
func (p *Processor) moderationRequest(l *store.List, t store.Token, admins []string) store.Notice {
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
	fmt.Fprintf(&b, "To approve, reply to this message, or send the line\n\n    confirm %s\n\nto %s.\n\n",
		t.Token, ListAddress(l.Address, address.Request, "", ""))
	fmt.Fprintf(&b, "To refuse, do nothing: the request expires on %s.\n", expiry(t.ExpiresAt))
	owner := ListAddress(l.Address, address.Owner, "", "")
	m := Mail{
		From:    ListAddress(l.Address, address.Confirm, t.Token, p.o.Delimiter),
		To:      owner,
		Subject: fmt.Sprintf("New %s request to %s from %s (confirm %s)", what, l.Address, t.Address, t.Token),
		Kind:    "moderation-request", Auto: "auto-generated", ListID: l.ListID,
		Text: b.String(),
	}
	return Notice(l.Address, m, p.st.Now(), admins...)
}

// welcome greets a new member, if the list says so.
func (p *Processor) welcome(l *store.List, name, addr string) []store.Notice {
	if !l.Bool("send_welcome_message") {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Welcome to the %q mailing list!\n\n", ListName(l))
	if d := message.OneLine(l.Setting("description")); d != "" {
		fmt.Fprintf(&b, "%s\n\n", d)
	}
	fmt.Fprintf(&b, "To post to the list, send your message to\n\n    %s\n\n", l.Address)
	fmt.Fprintf(&b, "To leave the list, send a message to\n\n    %s\n\n", ListAddress(l.Address, address.Leave, "", ""))
	fmt.Fprintf(&b, "or the line \"leave\" to %s.\n", ListAddress(l.Address, address.Request, "", ""))
	fmt.Fprintf(&b, "The list's owners can be reached at %s.\n", ListAddress(l.Address, address.Owner, "", ""))
	m := Mail{
		From:    ListAddress(l.Address, address.Request, "", ""),
		To:      Mailbox(name, addr),
		Subject: fmt.Sprintf("Welcome to the %q mailing list", ListName(l)),
		Kind:    "welcome", Auto: "auto-generated", ListID: l.ListID, NoArchive: true,
		Text: b.String(),
	}
	return []store.Notice{Notice(l.Address, m, p.st.Now(), addr)}
}

// goodbye tells a member who left that they did, if the list says so.
func (p *Processor) goodbye(l *store.List, name, addr string) []store.Notice {
	if !l.Bool("send_goodbye_message") {
		return nil
	}
	return []store.Notice{Goodbye(l, name, addr, "", p.st.Now())}
}

// Goodbye is the message telling addr it was unsubscribed from l; why,
// when set, is a paragraph saying why (bounce processing removes members
// and says so).
func Goodbye(l *store.List, name, addr, why string, now time.Time) store.Notice {
	var b strings.Builder
	fmt.Fprintf(&b, "You have been unsubscribed from the %s mailing list (%s).\n\n", ListName(l), l.Address)
	if why != "" {
		b.WriteString(why + "\n\n")
	}
	fmt.Fprintf(&b, "To join again, send a message to %s.\n", ListAddress(l.Address, address.Join, "", ""))
	fmt.Fprintf(&b, "Questions go to the list's owners at %s.\n", ListAddress(l.Address, address.Owner, "", ""))
	m := Mail{
		From:    ListAddress(l.Address, address.Request, "", ""),
		To:      Mailbox(name, addr),
		Subject: fmt.Sprintf("You have been unsubscribed from the %s mailing list", ListName(l)),
		Kind:    "goodbye", Auto: "auto-generated", ListID: l.ListID,
		Text: b.String(),
	}
	return Notice(l.Address, m, now, addr)
}

// reply finishes the row with the results mail, unless an implicit
// command has nothing to say, and reports whether mail was queued.
func (s *session) reply(ctx context.Context) (bool, error) {
	d := store.FinishedIntake{IntakeID: s.it.ID, ListID: s.l.ID, Result: s.resultText()}
	answer := !s.implicit || s.force
	if answer {
		d.Notices = []store.Notice{s.resultsMail()}
	}
	d.Notices = append(d.Notices, s.notices...)
	if err := s.p.finish(ctx, s.log, d); err != nil {
		return false, err
	}
	s.log.Info("command mail processed", zap.String("kind", s.it.Kind), zap.Bool("reply", answer), zap.String("result", d.Result))
	return answer || s.queued || len(s.notices) > 0, nil
}

// resultText summarises the results for intake.result.
func (s *session) resultText() string {
	r := strings.Join(s.summary, "; ")
	if r == "" {
		r = "no commands"
	}
	if len(r) > 500 {
		r = r[:500] + "..."
	}
	return r
}

// resultsMail is the results mail, laid out as Mailman's.
func (s *session) resultsMail() store.Notice {
	l := s.l
	var b strings.Builder
	b.WriteString("The results of your email command are provided below.\n\n")
	b.WriteString("- Original message details:\n")
	orNA := func(v string) string {
		if v = clipLine(v); v == "" {
			return "n/a"
		}
		return v
	}
	fmt.Fprintf(&b, "    From: %s\n", orNA(message.DecodeHeader(s.msg.Get("From"))))
	fmt.Fprintf(&b, "    Subject: %s\n", orNA(message.DecodeHeader(s.msg.Get("Subject"))))
	fmt.Fprintf(&b, "    Date: %s\n", orNA(s.msg.Get("Date")))
	fmt.Fprintf(&b, "    Message-ID: %s\n\n", orNA(s.msg.Get("Message-ID")))
	b.WriteString("- Results:\n")
	if s.nonText {
		b.WriteString("    Ignoring non-text/plain MIME parts\n")
	}
	if len(s.results) == 0 {
		b.WriteString("    No commands found.\n")
	}
	for _, r := range s.results {
		fmt.Fprintf(&b, "    %s\n", r)
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
	section("Unprocessed", s.unprocessed)
	section("Ignored", s.ignored)
	b.WriteString("\n- Done.\n")
	m := Mail{
		From:    ListAddress(l.Address, address.Request, "", ""),
		To:      Mailbox(s.name, s.sender),
		Subject: "The results of your email commands",
		Kind:    "results", Auto: "auto-replied", InReplyTo: s.msg.Get("Message-ID"), ListID: l.ListID,
		Text: b.String(),
	}
	return AutoNotice(l.Address, m, s.p.st.Now(), s.p.o.MaxAutoresponsesPerDay, s.p.limited(l), s.sender)
}
