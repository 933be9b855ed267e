package notice

import (
	"fmt"
	"strings"
	"time"

	"postlist/address"
	"postlist/store"
)

// The bounce notices follow Mailman 3's (model/bounce.py,
// app/bounces.py): the owners hear when a member is disabled and when
// one is removed, the member is warned, and unrecognised bounces go to
// whoever forward_unrecognized_bounces_to names.

// adminMail is a notice to a list's administrators, From and To its
// -owner address so that a reply reaches all of them.
func adminMail(l *store.List, kind, subject, text string, attach []byte) Mail {
	return Mail{
		From: owner(l), To: owner(l), Subject: subject, Kind: kind, Auto: "auto-generated",
		ListID: l.ListID, Text: text, Attach: attach,
	}
}

// Disabled is what the owners hear when bounces disable a member.
type Disabled struct {
	Address          string
	Score, Threshold float64
	// Status and Diagnostic are the last failure's, as the notice
	// shows them.
	Status, Diagnostic string
	// Warnings are sent Interval apart before the member is removed.
	Warnings int
	Interval time.Duration
	// Report, when set, is the bounce that reached the threshold,
	// attached.
	Report []byte
}

// BounceDisabled tells the owners that bounces disabled delivery to a
// member (Mailman's bounce_notify_owner_on_disable).
func BounceDisabled(l *store.List, d Disabled) Mail {
	var b strings.Builder
	fmt.Fprintf(&b, "Delivery to %s on the %s mailing list has been disabled:\n", d.Address, l.Address)
	fmt.Fprintf(&b, "its bounce score reached %g (the threshold is %g).\n\n", d.Score, d.Threshold)
	fmt.Fprintf(&b, "Last failure: %s %s\n\n", d.Status, d.Diagnostic)
	if d.Warnings > 0 {
		fmt.Fprintf(&b, "The member will be warned %d time(s), %s apart, and then removed,\n", d.Warnings, days(d.Interval))
	} else {
		b.WriteString("The member will be removed shortly,\n")
	}
	b.WriteString("unless delivery is re-enabled first, on the list server:\n\n")
	fmt.Fprintf(&b, "    postlist members set %s %s delivery_status enabled\n", l.Address, d.Address)
	if d.Report != nil {
		b.WriteString("\nThe bounce that reached the threshold is attached.\n")
	}
	subject := fmt.Sprintf("%s's subscription disabled on %s", d.Address, ListName(l))
	return adminMail(l, "bounce-disabled", subject, b.String(), d.Report)
}

func days(d time.Duration) string {
	if h := d.Hours(); h >= 24 && int(h)%24 == 0 {
		return fmt.Sprintf("%d day(s)", int(h)/24)
	}
	return fmt.Sprintf("%g hour(s)", d.Hours())
}

// BounceUnrecognized forwards a bounce nobody could attribute (Mailman's
// "Uncaught bounce notification").
func BounceUnrecognized(l *store.List, report []byte) Mail {
	text := fmt.Sprintf("The attached message was received as a bounce by the %s mailing list,\n"+
		"but either its format was not recognised or no member address could be\n"+
		"found in it. The list sends such messages to %s\n"+
		"(forward_unrecognized_bounces_to).\n", l.Address, l.Setting("forward_unrecognized_bounces_to"))
	return adminMail(l, "bounce-unrecognized", "Uncaught bounce notification", text, report)
}

// BounceWarning tells a disabled member that their delivery is off
// (warning number n of warnings, sent interval apart), and when they
// will be removed.
func BounceWarning(l *store.List, m store.DisabledMember, n, warnings int, interval time.Duration) Mail {
	var b strings.Builder
	fmt.Fprintf(&b, "Your subscription to the %s mailing list (%s) has been disabled,\n", ListName(l), l.Address)
	fmt.Fprintf(&b, "because mail to your address bounced too often (bounce score %g).\n", m.Score)
	b.WriteString("You will receive no list mail until delivery is re-enabled.\n\n")
	fmt.Fprintf(&b, "This is warning %d of %d. ", n, warnings)
	fmt.Fprintf(&b, "%s after the last warning, your address is removed\nfrom the list.\n\n", strings.ToUpper(days(interval)[:1])+days(interval)[1:])
	fmt.Fprintf(&b, "To keep your subscription, ask the list's owners at %s\nto re-enable delivery.\n", owner(l))
	return Mail{
		From:    ListAddress(l.Address, address.Request, "", ""),
		To:      Mailbox(m.DisplayName, m.Address),
		Subject: fmt.Sprintf("Your subscription for the %s mailing list has been disabled", ListName(l)),
		Kind:    "bounce-warning", Auto: "auto-generated", ListID: l.ListID, Text: b.String(),
	}
}

// BounceRemoved is the pair of mails when bounces remove member m: the
// goodbye to m, and the owners' notice.
func BounceRemoved(l *store.List, m store.DisabledMember) (goodbye, owners Mail) {
	why := fmt.Sprintf("Mail to your address bounced too often: delivery was disabled, and\n%d warning(s) went unanswered.", m.WarningsSent)
	text := fmt.Sprintf("%s has been removed from the %s mailing list because mail to it\n"+
		"bounced (bounce score %g, %d warning(s) sent).\n", m.Address, l.Address, m.Score, m.WarningsSent)
	return Goodbye(l, m.DisplayName, m.Address, why),
		adminMail(l, "bounce-removed", fmt.Sprintf("%s unsubscribed from %s mailing list due to bounces", m.Address, ListName(l)), text, nil)
}
