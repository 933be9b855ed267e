package commands

import (
	"context"
	"strings"

	"go.uber.org/zap"

	"postlist/message"
	"postlist/notice"
	"postlist/store"
)

// The mail itself is package notice's; what is here decides who gets it
// and counts the automatic replies against the daily cap.

// confirmRequest is the mail asking t's address to confirm a request.
func (p *Processor) confirmRequest(l *store.List, t store.Token, inReplyTo string) store.Notice {
	m := notice.Confirm(l, t, inReplyTo, p.o.Delimiter)
	return notice.Auto(l.Address, m, p.st.Now(), p.o.MaxAutoresponsesPerDay, p.limited(l), t.Address)
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
	m := notice.JoinState(l, addr, inReplyTo, text)
	return notice.Auto(l.Address, m, p.st.Now(), p.o.MaxAutoresponsesPerDay, p.limited(l), addr)
}

// moderationRequest asks the moderators to approve a confirmed request.
func (p *Processor) moderationRequest(l *store.List, t store.Token, admins []string) store.Notice {
	return notice.New(l.Address, notice.ModerationRequest(l, t, p.o.Delimiter), p.st.Now(), admins...)
}

// welcome greets a new member, if the list says so.
func (p *Processor) welcome(l *store.List, name, addr string) []store.Notice {
	if !l.Bool("send_welcome_message") {
		return nil
	}
	return []store.Notice{notice.New(l.Address, notice.Welcome(l, name, addr), p.st.Now(), addr)}
}

// goodbye tells a member who left that they did, if the list says so.
func (p *Processor) goodbye(l *store.List, name, addr string) []store.Notice {
	if !l.Bool("send_goodbye_message") {
		return nil
	}
	return []store.Notice{notice.New(l.Address, notice.Goodbye(l, name, addr, ""), p.st.Now(), addr)}
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

// resultsMail is the results mail to the sender.
func (s *session) resultsMail() store.Notice {
	m := notice.ResultsMail(s.l, notice.Results{
		Name: s.name, Address: s.sender,
		From:    message.DecodeHeader(s.msg.Get("From")),
		Subject: message.DecodeHeader(s.msg.Get("Subject")),
		Date:    s.msg.Get("Date"), MessageID: s.msg.Get("Message-ID"),
		NonText: s.nonText, Lines: s.results, Unprocessed: s.unprocessed, Ignored: s.ignored,
	})
	return notice.Auto(s.l.Address, m, s.p.st.Now(), s.p.o.MaxAutoresponsesPerDay, s.p.limited(s.l), s.sender)
}
