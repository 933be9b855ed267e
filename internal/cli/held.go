package cli

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"postlist/config"
	"postlist/pipeline"
	"postlist/store"
	"postlist/wire"
)

// heldCmd is `postlist held`: the moderation queue. Decisions made here
// are the same as the daemon's: an approved message is queued for every
// member in the same transaction that marks it approved, and the running
// daemon's deliverer picks the rows up by polling.
func (a *app) heldCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "held", Short: "list, show, approve, reject or discard posts held for moderation"}

	ls := &cobra.Command{
		Use:   "ls [LIST]",
		Short: "list held posts, oldest first (all lists without LIST)",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := optionalList(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				hs, err := st.HeldMessages(ctx, list)
				if err != nil {
					return err
				}
				return printRows(a, hs, "ID\tLIST\tFROM\tSUBJECT\tREASON\tHELD AT\tSIZE", func(h store.Held) string {
					return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%d", h.ID, h.List, dash(h.Sender),
						dash(heldClip(h.Subject, 40)), heldClip(h.Reason, 70), h.HeldAt, h.Size)
				})
			})
		},
	}

	show := &cobra.Command{
		Use:   "show ID",
		Short: "print a held post as it would be delivered before decoration (with --json: its record and text)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseHeldID(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				h, err := st.GetHeld(ctx, id)
				if err != nil {
					return err
				}
				_, body, err := st.MessageSender(ctx, h.MessageID)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(struct {
						*store.Held
						Message string `json:"message"`
					}{h, string(body)})
				}
				_, err = a.stdout.Write(body)
				return err
			})
		},
	}

	decide := func(verb, short string, do func(ctx context.Context, m *wire.Moderation, id int64, by string) (*store.Held, error)) *cobra.Command {
		return &cobra.Command{
			Use:   verb + " ID",
			Short: short,
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := parseHeldID(args[0])
				if err != nil {
					return err
				}
				return a.withSystem(cmd, func(ctx context.Context, sys *wire.System) error {
					h, err := do(ctx, sys.Moderation, id, heldModerator())
					if err != nil {
						return err
					}
					if a.json {
						return a.printJSON(h)
					}
					fmt.Fprintf(a.stdout, "%s held message %d (%s, from %s)\n", h.State, h.ID, h.List, dash(h.Sender))
					return nil
				})
			},
		}
	}

	approve := decide("approve", "send a held post to the list's members, as if the rules had accepted it",
		func(ctx context.Context, m *wire.Moderation, id int64, by string) (*store.Held, error) {
			return m.Approve(ctx, id, by)
		})
	var reason string
	reject := decide("reject", "refuse a held post and tell the poster why (--reason)",
		func(ctx context.Context, m *wire.Moderation, id int64, by string) (*store.Held, error) {
			return m.Reject(ctx, id, by, reason)
		})
	reject.Use = "reject ID [--reason R]"
	reject.Flags().StringVar(&reason, "reason", "", "reason given to the poster (default: \""+pipeline.DefaultRejectReason+"\")")
	discard := decide("discard", "drop a held post without telling anyone",
		func(ctx context.Context, m *wire.Moderation, id int64, by string) (*store.Held, error) {
			return m.Discard(ctx, id, by)
		})

	cmd.AddCommand(ls, show, approve, reject, discard)
	return cmd
}

func parseHeldID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError{fmt.Errorf("held message id %q: want a number from `postlist held ls`", s)}
	}
	return id, nil
}

// heldModerator records who decided: the Unix user running the command.
func heldModerator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	if n := os.Getenv("USER"); n != "" {
		return "cli:" + n
	}
	return "cli"
}

// heldClip shortens s to n characters for a table cell.
func heldClip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
