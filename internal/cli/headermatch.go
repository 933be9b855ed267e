package cli

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"postlist/config"
	"postlist/store"
)

// headerMatchCmd is `postlist lists header-match`: a list's header checks
// (Mailman's header_matches), applied in order by the posting rules.
func (a *app) headerMatchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "header-match", Short: "list, add or remove a list's header checks (hold, reject, discard or accept posts by a header field)"}

	ls := &cobra.Command{
		Use:   "ls LIST",
		Short: "show a list's header checks in the order they apply",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := listAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				if _, err := st.GetList(ctx, list); err != nil {
					return err
				}
				hms, err := st.HeaderMatches(ctx, list)
				if err != nil {
					return err
				}
				return printRows(a, hms, "ID\tHEADER\tPATTERN\tACTION", func(h store.HeaderMatch) string {
					return fmt.Sprintf("%d\t%s\t%s\t%s", h.ID, h.Header, cell(h.Pattern, 60), h.Action)
				})
			})
		},
	}

	var action string
	add := &cobra.Command{
		Use:   "add LIST HEADER PATTERN [--action hold|reject|discard|accept]",
		Short: "add a check: a post whose HEADER matches PATTERN (a regular expression, any case) gets the action (default hold)",
		Args:  exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := listAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				h, err := st.AddHeaderMatch(ctx, list, args[1], args[2], action)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(h)
				}
				fmt.Fprintf(a.stdout, "added header check %d to %s: %s matching %q -> %s\n", h.ID, h.List, h.Header, h.Pattern, h.Action)
				return nil
			})
		},
	}
	add.Flags().StringVar(&action, "action", "hold", "what happens to a matching post: hold, reject, discard or accept")

	rm := &cobra.Command{
		Use:   "rm LIST ID",
		Short: "remove a header check",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := listAddress(args[0])
			if err != nil {
				return err
			}
			id, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || id <= 0 {
				return usageError{fmt.Errorf("header check id %q: want a number from `postlist lists header-match ls`", args[1])}
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				if err := st.RemoveHeaderMatch(ctx, list, id); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "removed header check %d from %s\n", id, list)
				return nil
			})
		},
	}
	cmd.AddCommand(ls, add, rm)
	return cmd
}
