package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"postlist/config"
	"postlist/daemon"
	"postlist/postfix"
	"postlist/store"
)

func (a *app) serveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "run the milter, the LMTP server, delivery and the HTTP listener until SIGTERM",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			return daemon.Run(cmd.Context(), cfg, a.stderr)
		},
	}
}

func (a *app) checkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "validate the configuration and open the database; exit 0 when both are fine",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			st, err := a.openStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Check(cmd.Context()); err != nil {
				return fmt.Errorf("database %s: %w", cfg.Database.Path, err)
			}
			src := cfg.File
			if src == "" {
				src = "built-in defaults (no " + a.cfgPath + ")"
			}
			fmt.Fprintf(a.stdout, "config OK: %s\ndatabase OK: %s (schema %d)\n", src, cfg.Database.Path, store.SchemaVersion())
			return nil
		},
	}
}

func (a *app) genaliasesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "genaliases",
		Short: "write the Postfix maps postfix_lmtp, postfix_domains, postfix_policy and postfix_transport (and run postmap)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, cfg *config.Config, st *store.Store) error {
				files, err := writeMaps(ctx, cfg, st)
				for _, f := range files {
					fmt.Fprintf(a.stdout, "wrote %s\n", f)
				}
				return err
			})
		},
	}
}

// mapsChanged regenerates the Postfix maps after a list or domain change,
// as Mailman does, but only once the admin has generated them at least once
// (the map directory exists): a site using the socketmap or only the milter
// never asked for files.
func (a *app) mapsChanged(ctx context.Context, cfg *config.Config, st *store.Store) error {
	if _, err := os.Stat(cfg.Postfix.MapDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := writeMaps(ctx, cfg, st); err != nil {
		return fmt.Errorf("the change is saved, but the Postfix maps were not regenerated: %w (run postlist genaliases)", err)
	}
	return nil
}

// writeMaps regenerates the maps from the database. The state is read
// under the map directory's lock, so admin commands run in parallel (as
// scripts do) each leave maps that match the database as they found it,
// and the last one leaves every change in.
func writeMaps(ctx context.Context, cfg *config.Config, st *store.Store) ([]string, error) {
	return postfix.Regenerate(ctx, cfg.Postfix.MapDir, cfg.Postfix.PostmapCommand, func(ctx context.Context) (postfix.Maps, error) {
		lists, err := st.Lists(ctx)
		if err != nil {
			return postfix.Maps{}, fmt.Errorf("read lists for the maps: %w", err)
		}
		domains, err := st.Domains(ctx)
		if err != nil {
			return postfix.Maps{}, fmt.Errorf("read domains for the maps: %w", err)
		}
		m := postfix.Maps{
			Transport: postfix.Transport(cfg.LMTPAddr().Network, cfg.LMTPAddr().Address),
			FileType:  cfg.Postfix.TransportFileType,
			Now:       st.Now(),
		}
		for _, l := range lists {
			m.Lists = append(m.Lists, postfix.List{Name: l.Name, Domain: l.Domain})
		}
		for _, d := range domains {
			m.Domains = append(m.Domains, postfix.Domain{Name: d.Name, AliasOf: d.AliasOf})
		}
		return m, nil
	})
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, Go version and source revision",
		Args:  exactArgs(0),
		RunE: func(*cobra.Command, []string) error {
			v, rev := "(devel)", "unknown"
			goVersion := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				v = bi.Main.Version
				goVersion = bi.GoVersion
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = s.Value
					}
				}
			}
			fmt.Fprintf(a.stdout, "postlist %s (%s, revision %s, schema %d)\n", v, goVersion, rev, store.SchemaVersion())
			return nil
		},
	}
}
