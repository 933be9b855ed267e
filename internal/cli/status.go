package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"postlist/config"
	"postlist/store"
)

// statusCmd is `postlist status`: one screen that says whether the site is
// keeping up, for an admin before digging into `queue`, `held ls` or the
// database views. It reads the database only, so it works with the daemon
// stopped too.
func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "summarise the site: deliveries by state, held posts, bouncing members, unprocessed mail, lists and members",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				s, err := st.Status(ctx)
				if err != nil {
					return err
				}
				if a.json {
					out := *s
					out.Queue = nonNil(out.Queue)
					return a.printJSON(out)
				}
				return a.printStatus(s)
			})
		},
	}
}

func (a *app) printStatus(s *store.Status) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DELIVERIES\tCOUNT\tMESSAGES\tOLDEST\tNEXT ATTEMPT")
	if len(s.Queue) == 0 {
		fmt.Fprintln(tw, "(none)\t0\t0\t-\t-")
	}
	for _, q := range s.Queue {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", q.State, q.Deliveries, q.Messages, dash(q.Oldest), dash(queueNext(q.State, q.NextAttempt)))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	since := func(n int64, oldest string) string {
		if n == 0 || oldest == "" {
			return fmt.Sprint(n)
		}
		return fmt.Sprintf("%d (oldest %s)", n, oldest)
	}
	fmt.Fprintf(tw, "held posts\t%s\n", since(s.Held, s.OldestHeld))
	fmt.Fprintf(tw, "unprocessed mail\t%s\n", since(s.IntakePending, s.OldestIntake))
	fmt.Fprintf(tw, "bouncing members\t%d (%d disabled by bounces)\n", s.Bouncing, s.DisabledByBounces)
	fmt.Fprintf(tw, "domains\t%d\n", s.Domains)
	fmt.Fprintf(tw, "lists\t%d\n", s.Lists)
	fmt.Fprintf(tw, "members\t%d (%d receiving mail)\n", s.Members, s.Receiving)
	fmt.Fprintf(tw, "owners, moderators\t%d, %d\n", s.Owners, s.Moderators)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}
