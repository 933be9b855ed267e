package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"postlist/config"
	"postlist/message"
	"postlist/store"
)

// memberBounces is `members bounces --json`: the member's record (absent
// when the address is no longer a member) and every bounce recorded.
type memberBounces struct {
	List    string `json:"list"`
	Address string `json:"address"`
	Member  bool   `json:"member"`
	*store.MemberBounce
	Bounces []store.BounceRow `json:"bounces"`
}

// memberBouncesCmd is `postlist members bounces`. It works for an address
// that is no longer a member too: "why was I removed?" is asked after
// bounce processing removed someone.
func (a *app) memberBouncesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bounces LIST ADDR",
		Short: "show a member's bounce score, delivery status and recorded bounces",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, addr, err := listAndMember(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				l, err := st.GetList(ctx, list)
				if err != nil {
					return err
				}
				out := memberBounces{List: l.Address, Address: addr, Member: true}
				rec, err := st.MemberBounceRecord(ctx, l.ID, addr)
				switch {
				case errors.Is(err, store.ErrNotFound):
					out.Member = false
				case err != nil:
					return err
				default:
					out.MemberBounce, out.Address = &rec, rec.Address
				}
				if out.Bounces, err = st.BounceRows(ctx, l.Address, addr); err != nil {
					return err
				}
				if !out.Member && len(out.Bounces) == 0 {
					return fmt.Errorf("%w: %s is not a member of %s and has no bounces recorded there", store.ErrNotFound, addr, l.Address)
				}
				out.Bounces = nonNil(out.Bounces)
				if a.json {
					return a.printJSON(out)
				}
				return a.printMemberBounces(out)
			})
		},
	}
}

func (a *app) printMemberBounces(m memberBounces) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "list\t%s\n", m.List)
	fmt.Fprintf(tw, "address\t%s\n", m.Address)
	if m.MemberBounce == nil {
		fmt.Fprintf(tw, "member\tno (removed, or never subscribed)\n")
	} else {
		fmt.Fprintf(tw, "delivery\t%s\n", m.DeliveryStatus)
		fmt.Fprintf(tw, "bounce score\t%.1f\n", m.Score)
		fmt.Fprintf(tw, "last bounce\t%s\n", dash(m.LastBounceAt))
		warned := fmt.Sprint(m.WarningsSent)
		if m.LastWarningAt != "" {
			warned += " (last " + m.LastWarningAt + ")"
		}
		fmt.Fprintf(tw, "warnings sent\t%s\n", warned)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write bounce record: %w", err)
	}
	fmt.Fprintln(a.stdout)
	if len(m.Bounces) == 0 {
		fmt.Fprintln(a.stdout, "no bounces recorded")
		return nil
	}
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED\tKIND\tSTATUS\tSCORED\tDIAGNOSTIC")
	for _, b := range m.Bounces {
		scored := "no"
		if b.Scored {
			scored = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.ReceivedAt, b.Kind, dash(b.Status), scored, dash(cell(b.Diagnostic, 70)))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write bounces: %w", err)
	}
	return nil
}

// cell fits text that came from the network (a remote diagnostic, a
// display name) into a table cell: a tab or newline in it would break
// the table's columns.
func cell(s string, n int) string { return heldClip(message.OneLine(s), n) }
