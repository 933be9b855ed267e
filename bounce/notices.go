package bounce

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/commands"
	"postlist/store"
)

// The notices follow Mailman 3's (model/bounce.py, app/bounces.py): the
// owners hear when a member is disabled and when one is removed, the
// member is warned, and unrecognised bounces go to whoever
// forward_unrecognized_bounces_to names. All of them are built with
// package commands' helpers, so they carry the same marks (Auto-Submitted,
// Precedence, X-Postlist-Notice) and the list's -bounces envelope sender.

func ownerAddr(l *store.List) string { return commands.ListAddress(l.Address, address.Owner, "", "") }

// adminNotice is a notice to a list's administrators, From and To its
// -owner address so that a reply reaches all of them.
func (p *Processor) adminNotice(l *store.List, admins []string, kind, subject, text string, attach []byte) []store.Notice {
	to := commands.Admins(admins, p.o.SiteOwner)
	if len(to) == 0 {
		return nil
	}
	m := commands.Mail{
		From: ownerAddr(l), To: ownerAddr(l), Subject: subject, Kind: kind, Auto: "auto-generated",
		ListID: l.ListID, Text: text, Attach: attach,
	}
	return []store.Notice{commands.Notice(l.Address, m, p.o.Now(), to...)}
}

// disabledNotice tells the owners that bounces disabled delivery to a
// member, with the report that tipped it (Mailman's
// bounce_notify_owner_on_disable).
func (p *Processor) disabledNotice(l *store.List, admins []string, st store.BounceState, score float64, f Failure, report []byte) []store.Notice {
	pol := PolicyOf(l)
	var b strings.Builder
	fmt.Fprintf(&b, "Delivery to %s on the %s mailing list has been disabled:\n", st.Address, l.Address)
	fmt.Fprintf(&b, "its bounce score reached %g (the threshold is %g).\n\n", score, pol.Threshold)
	fmt.Fprintf(&b, "Last failure: %s %s\n\n", orUnknown(f.Status), clip(f.Diagnostic, 300))
	if pol.Warnings > 0 {
		fmt.Fprintf(&b, "The member will be warned %d time(s), %s apart, and then removed,\n", pol.Warnings, days(pol.Interval))
	} else {
		b.WriteString("The member will be removed shortly,\n")
	}
	b.WriteString("unless delivery is re-enabled first, on the list server:\n\n")
	fmt.Fprintf(&b, "    postlist members set %s %s delivery_status enabled\n", l.Address, st.Address)
	if report != nil {
		b.WriteString("\nThe bounce that reached the threshold is attached.\n")
	}
	subject := fmt.Sprintf("%s's subscription disabled on %s", st.Address, commands.ListName(l))
	return p.adminNotice(l, admins, "bounce-disabled", subject, b.String(), report)
}

func days(d time.Duration) string {
	if h := d.Hours(); h >= 24 && int(h)%24 == 0 {
		return fmt.Sprintf("%d day(s)", int(h)/24)
	}
	return fmt.Sprintf("%g hour(s)", d.Hours())
}

// unrecognizedNotice forwards a bounce nobody could attribute (Mailman's
// "Uncaught bounce notification").
func (p *Processor) unrecognizedNotice(l *store.List, report []byte, to []string) store.Notice {
	text := fmt.Sprintf("The attached message was received as a bounce by the %s mailing list,\n"+
		"but either its format was not recognised or no member address could be\n"+
		"found in it. The list sends such messages to %s\n"+
		"(forward_unrecognized_bounces_to).\n", l.Address, l.Setting("forward_unrecognized_bounces_to"))
	m := commands.Mail{
		From: ownerAddr(l), To: ownerAddr(l), Subject: "Uncaught bounce notification", Kind: "bounce-unrecognized",
		Auto: "auto-generated", ListID: l.ListID, Text: text, Attach: report,
	}
	return commands.Notice(l.Address, m, p.o.Now(), to...)
}

// warning tells a disabled member that their delivery is off, and when
// they will be removed.
func (p *Processor) warning(l *store.List, m store.DisabledMember, pol Policy) store.Notice {
	var b strings.Builder
	fmt.Fprintf(&b, "Your subscription to the %s mailing list (%s) has been disabled,\n", commands.ListName(l), l.Address)
	fmt.Fprintf(&b, "because mail to your address bounced too often (bounce score %g).\n", m.Score)
	b.WriteString("You will receive no list mail until delivery is re-enabled.\n\n")
	fmt.Fprintf(&b, "This is warning %d of %d. ", m.WarningsSent+1, pol.Warnings)
	fmt.Fprintf(&b, "%s after the last warning, your address is removed\nfrom the list.\n\n", strings.ToUpper(days(pol.Interval)[:1])+days(pol.Interval)[1:])
	fmt.Fprintf(&b, "To keep your subscription, ask the list's owners at %s\nto re-enable delivery.\n", ownerAddr(l))
	mail := commands.Mail{
		From:    commands.ListAddress(l.Address, address.Request, "", ""),
		To:      commands.Mailbox(m.DisplayName, m.Address),
		Subject: fmt.Sprintf("Your subscription for the %s mailing list has been disabled", commands.ListName(l)),
		Kind:    "bounce-warning", Auto: "auto-generated", ListID: l.ListID, Text: b.String(),
	}
	return commands.Notice(l.Address, mail, p.o.Now(), m.Address)
}

// Sweep warns the members whose delivery bounces disabled and removes
// those warned enough, as each list's settings say (Mailman's
// send_warnings and removal pass). Each step is one transaction with its
// mail and event; a member re-enabled meanwhile is left alone.
func (p *Processor) Sweep(ctx context.Context) error {
	ms, err := p.st.DisabledByBounces(ctx)
	if err != nil {
		return err
	}
	now := p.o.Now()
	lists := map[int64]*store.List{}
	admins := map[int64][]string{}
	queued := false
	defer func() { p.wake(queued) }()
	for _, m := range ms {
		pol := Policy{Warnings: m.Warnings, Interval: ParseDuration(m.Interval, DefaultInterval)}
		warn, remove := Due(m, now, pol)
		if !warn && !remove {
			continue
		}
		l, ok := lists[m.ListID]
		if !ok {
			if l, err = p.st.ListByID(ctx, m.ListID); err != nil {
				return err
			}
			if admins[m.ListID], err = p.st.ListAdmins(ctx, m.ListID); err != nil {
				return err
			}
			lists[m.ListID] = l
		}
		log := p.log.With(zap.String("list", l.Address), zap.String("rcpt", m.Address))
		if warn {
			done, err := p.st.RecordBounceWarning(ctx, m, now, p.warning(l, m, pol))
			if err != nil {
				return err
			}
			if done {
				queued = true
				log.Info("bounce warning sent", zap.Int("warning", m.WarningsSent+1), zap.Int("of", pol.Warnings))
			}
			continue
		}
		why := fmt.Sprintf("Mail to your address bounced too often: delivery was disabled, and\n%d warning(s) went unanswered.", m.WarningsSent)
		notices := []store.Notice{commands.Goodbye(l, m.DisplayName, m.Address, why, now)}
		text := fmt.Sprintf("%s has been removed from the %s mailing list because mail to it\n"+
			"bounced (bounce score %g, %d warning(s) sent).\n", m.Address, l.Address, m.Score, m.WarningsSent)
		notices = append(notices, p.adminNotice(l, admins[m.ListID], "bounce-removed",
			fmt.Sprintf("%s unsubscribed from %s mailing list due to bounces", m.Address, commands.ListName(l)), text, nil)...)
		removed, err := p.st.RemoveBouncingMember(ctx, m, now, notices)
		if err != nil {
			return err
		}
		if removed {
			queued = true
			log.Info("member removed for bouncing", zap.Float64("score", m.Score), zap.Int("warnings", m.WarningsSent))
		}
	}
	return nil
}
