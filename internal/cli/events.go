package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"postlist/address"
	"postlist/config"
	"postlist/store"
)

// eventsCmd is `postlist events`: the events log, the first place to
// look when someone asks why they were removed, disabled or never
// subscribed.
func (a *app) eventsCmd() *cobra.Command {
	var addr string
	var kinds []string
	var limit int
	cmd := &cobra.Command{
		Use:   "events [LIST] [--address A] [--kind K]... [--limit N]",
		Short: "show the events log, newest first (all lists without LIST)",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := store.EventQuery{Limit: limit}
			if len(args) == 1 {
				var err error
				if q.List, err = listAddress(args[0]); err != nil {
					return err
				}
			}
			if addr != "" {
				n, err := address.Normalize(addr)
				if err != nil {
					return usageError{fmt.Errorf("--address %q: %w", addr, err)}
				}
				q.Address = n
			}
			for _, k := range kinds {
				if k = strings.TrimSpace(k); k != "" {
					q.Kinds = append(q.Kinds, k)
				}
			}
			if limit < 0 {
				return usageError{fmt.Errorf("--limit %d: want 0 (no limit) or more", limit)}
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				if q.List != "" {
					if _, err := st.GetList(ctx, q.List); err != nil {
						return err
					}
				}
				evs, err := st.RecentEvents(ctx, q)
				if err != nil {
					return err
				}
				return printRows(a, evs, "AT\tLIST\tADDRESS\tKIND\tDETAIL", func(e store.Event) string {
					return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", e.At, dash(e.List), dash(e.Address), e.Kind, dash(cell(e.Detail, 90)))
				})
			})
		},
	}
	cmd.Flags().StringVar(&addr, "address", "", "only events about this address")
	cmd.Flags().StringSliceVar(&kinds, "kind", nil, "only events of this kind (repeat, or separate with commas)")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most N events; 0 for all")
	return cmd
}
