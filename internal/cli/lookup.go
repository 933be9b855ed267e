package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"postlist/config"
	"postlist/index"
	"postlist/milter"
	"postlist/store"
)

func (a *app) lookupCmd() *cobra.Command {
	var sender string
	cmd := &cobra.Command{
		Use:   "lookup ADDRESS [--sender ADDR]",
		Short: "print what the milter would answer at RCPT for ADDRESS (in the spirit of postmap -q)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd, func(ctx context.Context, cfg *config.Config, st *store.Store) error {
				ix, err := index.Load(ctx, st, cfg.MTA.VERPDelimiter, zap.NewNop())
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(milter.Lookup(ix, args[0], sender))
				}
				fmt.Fprintln(a.stdout, milter.Explain(ix, args[0], sender))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&sender, "sender", "", "envelope sender, for the non-member policy")
	return cmd
}
