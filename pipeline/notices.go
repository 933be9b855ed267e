package pipeline

import (
	"strings"

	"go.uber.org/zap"

	"postlist/message"
	"postlist/notice"
	"postlist/store"
)

// Notices are ordinary stored messages queued through the deliveries
// table like posts. They are never decorated (they have no posts row) and
// their envelope sender is the list's -bounces address, so a notice that
// bounces comes back to the list and never to a person.

// holdNotice tells the list's owners and moderators (or the site owner,
// for a list without any) that a post is held (see notice.HeldMail);
// replying to it decides (see ConfirmHeld).
func (p *Pipeline) holdNotice(l *store.List, admins []string, heldID int64, token string, v Verdict, poster, subject string, post []byte) (store.Notice, bool) {
	if len(admins) == 0 && p.owner != "" {
		admins = []string{p.owner}
	}
	if len(admins) == 0 {
		return store.Notice{}, false
	}
	m := notice.HeldMail(l, notice.Held{
		ID: heldID, Token: token, Delim: p.delim, Poster: poster, Subject: subject,
		Rule: v.Rule, Reason: v.Reason, Post: post,
	})
	return notice.New(l.Address, m, p.st.Now(), admins...), true
}

// rejectNotice tells a poster why their post was rejected (see
// notice.RejectedMail). It is not sent (ok false) when there is nobody
// to tell or the post was automatic mail (RFC 3834: never answer mail
// from <>, auto-submitted mail, or mail from another list or bulk
// sender), which is what keeps notices from looping or becoming
// backscatter.
func (p *Pipeline) rejectNotice(l *store.List, poster, envSender, reason string, post []byte) (store.Notice, bool) {
	m := message.Parse(post)
	if poster == "" || envSender == "" || automatic(m) || notice.Automatic(m, envSender) != "" {
		return store.Notice{}, false
	}
	// A reject notice answers whoever the From names, forged or not:
	// it counts against that address's daily allowance.
	return notice.Auto(l.Address, notice.RejectedMail(l, poster, reason, post), p.st.Now(), p.maxAuto, func(addr string, count int) {
		p.log.Info("automatic mail not sent: daily limit reached", zap.String("list", l.Address),
			zap.String("address", addr), zap.Int("today", count), zap.Int("limit", p.maxAuto))
	}, poster), true
}

// automatic reports mail that must not be answered (RFC 3834 section 2).
func automatic(m *message.Message) bool {
	if m.Has(notice.Header) {
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
