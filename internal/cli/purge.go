package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"postlist/config"
	"postlist/store"
)

// purgeCmd is `postlist purge`: the daemon's hourly retention purge, run
// now (to reclaim space at once, or with the daemon stopped). It is safe
// beside a running daemon: nothing with work pending is touched, and it
// writes in short transactions like the daemon's own purge.
func (a *app) purgeCmd() *cobra.Command {
	var olderThan string
	cmd := &cobra.Command{
		Use:   "purge [--older-than DURATION]",
		Short: "delete finished messages older than [database] retention, with their deliveries, and expired tokens",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			age := cfg.Database.Retention.D()
			if cmd.Flags().Changed("older-than") {
				d, err := config.ParseDuration(olderThan)
				if err != nil {
					return usageError{fmt.Errorf("--older-than: %w", err)}
				}
				if d < 0 {
					return usageError{fmt.Errorf("--older-than %q: must not be negative", olderThan)}
				}
				age = d
			} else if age == 0 {
				return usageError{errors.New("[database] retention is 0, which keeps everything; give --older-than DURATION (e.g. 30d) to purge anyway")}
			}
			ctx := cmd.Context()
			st, err := a.openStore(ctx, cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			cutoff := st.Now().Add(-age)
			stats, err := st.Purge(ctx, cutoff, store.DefaultPurgeBatch)
			// What was removed before a failure (or Ctrl-C) is gone for
			// good, so it is reported either way.
			if perr := a.printPurge(store.FormatTime(cutoff), stats); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&olderThan, "older-than", "", "purge what finished and was received longer ago than this (30d, 12h; 0 = all finished work) instead of [database] retention")
	return cmd
}

func (a *app) printPurge(cutoff string, s store.PurgeStats) error {
	if a.json {
		return a.printJSON(struct {
			OlderThan string `json:"older_than"`
			store.PurgeStats
		}{cutoff, s})
	}
	fmt.Fprintf(a.stdout, "purged what finished and was received before %s:\n", cutoff)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, r := range []struct {
		n    int64
		what string
	}{
		{s.Messages, "messages"},
		{s.Deliveries, "deliveries"},
		{s.Intake, "intake rows"},
		{s.Held, "held rows (decided)"},
		{s.Posts, "post records"},
		{s.Tokens, "expired tokens"},
		{s.Autoresponses, "past days' automatic-reply counts"},
	} {
		fmt.Fprintf(tw, "%s\t%d\n", r.what, r.n)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write purge report: %w", err)
	}
	return nil
}
