package bounce

import (
	"context"

	"go.uber.org/zap"

	"postlist/notice"
	"postlist/store"
)

// The notices themselves are package notice's; what is here decides
// who gets them.

// adminNotice is m to a list's administrators, else the site owner;
// nothing if there is nobody.
func (p *Processor) adminNotice(l *store.List, admins []string, m notice.Mail) []store.Notice {
	to := notice.Admins(admins, p.o.SiteOwner)
	if len(to) == 0 {
		return nil
	}
	return []store.Notice{notice.New(l.Address, m, p.o.Now(), to...)}
}

// disabledNotice tells the owners that bounces disabled delivery to a
// member, with the report that tipped it.
func (p *Processor) disabledNotice(l *store.List, admins []string, st store.BounceState, score float64, f Failure, report []byte) []store.Notice {
	pol := PolicyOf(l)
	return p.adminNotice(l, admins, notice.BounceDisabled(l, notice.Disabled{
		Address: st.Address, Score: score, Threshold: pol.Threshold,
		Status: orUnknown(f.Status), Diagnostic: clip(f.Diagnostic, 300),
		Warnings: pol.Warnings, Interval: pol.Interval, Report: report,
	}))
}

// unrecognizedNotice forwards a bounce nobody could attribute to to.
func (p *Processor) unrecognizedNotice(l *store.List, report []byte, to []string) store.Notice {
	return notice.New(l.Address, notice.BounceUnrecognized(l, report), p.o.Now(), to...)
}

// warning tells a disabled member that their delivery is off.
func (p *Processor) warning(l *store.List, m store.DisabledMember, pol Policy) store.Notice {
	return notice.New(l.Address, notice.BounceWarning(l, m, m.WarningsSent+1, pol.Warnings, pol.Interval), p.o.Now(), m.Address)
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
		bye, owners := notice.BounceRemoved(l, m)
		notices := append([]store.Notice{notice.New(l.Address, bye, now, m.Address)}, p.adminNotice(l, admins[m.ListID], owners)...)
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
