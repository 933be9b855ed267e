package cli

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"postlist/config"
	"postlist/store"
)

// queueCmd is `postlist queue`: the outgoing delivery queue. Plain `queue`
// is `queue ls`. A retry only makes rows due; the running daemon's
// deliverer notices them at its next poll (within a second).
func (a *app) queueCmd() *cobra.Command {
	var all bool
	list := func(cmd *cobra.Command, _ []string) error {
		return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
			states, err := st.QueueSummary(ctx)
			if err != nil {
				return err
			}
			msgs, err := st.QueueMessages(ctx, all)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(struct {
					States   []store.QueueState   `json:"states"`
					Messages []store.QueueMessage `json:"messages"`
				}{nonNil(states), nonNil(msgs)})
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STATE\tDELIVERIES\tMESSAGES\tOLDEST\tNEXT ATTEMPT")
			for _, s := range states {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", s.State, s.Deliveries, s.Messages, s.Oldest, queueNext(s.State, s.NextAttempt))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(msgs) == 0 {
				if all {
					fmt.Fprintln(a.stdout, "\nno deliveries")
				} else {
					fmt.Fprintln(a.stdout, "\nno message has deliveries pending")
				}
				return nil
			}
			fmt.Fprintln(a.stdout)
			tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLIST\tSENDER\tQUEUED\tSENDING\tDEFERRED\tSENT\tFAILED\tNEXT ATTEMPT\tLAST REPLY")
			for _, m := range msgs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", m.MessageID, dash(m.List), dash(m.Sender),
					m.Queued, m.Sending, m.Deferred, m.Sent, m.Failed, dash(m.NextAttempt), dash(queueClip(m.LastReply, 60)))
			}
			return tw.Flush()
		})
	}
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "show outgoing deliveries by state and by message; retry deferred ones",
		Args:  exactArgs(0),
		RunE:  list,
	}
	cmd.Flags().BoolVar(&all, "all", false, "list every message with deliveries, finished ones too")
	ls := &cobra.Command{
		Use:   "ls [--all]",
		Short: "show deliveries by state, and the messages with deliveries pending (ID is the message to retry)",
		Args:  exactArgs(0),
		RunE:  list,
	}
	ls.Flags().BoolVar(&all, "all", false, "list every message with deliveries, finished ones too")

	retry := &cobra.Command{
		Use:   "retry [ID]",
		Short: "make deferred deliveries due now: all of them, or message ID's deferred and failed ones",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id int64
			if len(args) == 1 {
				v, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil || v <= 0 {
					return usageError{fmt.Errorf("message ID %q: want the number `postlist queue` shows", args[0])}
				}
				id = v
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				n, err := st.RetryDeliveries(ctx, id)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(struct {
						MessageID int64 `json:"message_id,omitempty"`
						Retried   int64 `json:"retried"`
					}{id, n})
				}
				what := "deferred deliveries"
				if id != 0 {
					what = fmt.Sprintf("deferred or failed deliveries of message %d", id)
				}
				fmt.Fprintf(a.stdout, "%d %s queued for retry\n", n, what)
				return nil
			})
		},
	}
	cmd.AddCommand(ls, retry)
	return cmd
}

// queueNext hides next-attempt times that mean nothing for a state: a sent
// or failed row will not be attempted again.
func queueNext(state, next string) string {
	if state == store.DeliverySent || state == store.DeliveryFailed {
		return "-"
	}
	return next
}

// queueClip shortens a reply for the table; --json has it whole.
func queueClip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
