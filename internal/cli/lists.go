package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"postlist/address"
	"postlist/config"
	"postlist/store"
)

// listAddress validates a LIST argument: the posting address, normalised.
func listAddress(s string) (string, error) {
	a, err := address.Normalize(s)
	if err != nil {
		return "", usageError{fmt.Errorf("list %q: %w", s, err)}
	}
	return strings.ToLower(a), nil
}

func domainName(s string) (string, error) {
	a, err := address.Normalize("x@" + s)
	if err != nil {
		return "", usageError{fmt.Errorf("domain %q: %w", s, err)}
	}
	_, d, _ := strings.Cut(a, "@")
	return d, nil
}

func (a *app) domainsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "domains", Short: "manage list domains"}
	var alias string
	add := &cobra.Command{
		Use:   "add DOMAIN [--alias ALIAS]",
		Short: "register a list domain, optionally with an alias domain that resolves to it",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := domainName(args[0])
			if err != nil {
				return err
			}
			var al string
			if alias != "" {
				if al, err = domainName(alias); err != nil {
					return err
				}
			}
			return a.withStore(cmd, func(ctx context.Context, cfg *config.Config, st *store.Store) error {
				if err := st.AddDomain(ctx, d); err != nil {
					return err
				}
				if al != "" {
					if err := st.AddAlias(ctx, al, d); err != nil {
						return err
					}
				}
				return a.mapsChanged(ctx, cfg, st)
			})
		},
	}
	add.Flags().StringVar(&alias, "alias", "", "alias domain whose mail goes to DOMAIN's lists")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "list domains",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				ds, err := st.Domains(ctx)
				if err != nil {
					return err
				}
				return printRows(a, ds, "DOMAIN\tALIAS OF\tLISTS", func(d store.Domain) string {
					return fmt.Sprintf("%s\t%s\t%d", d.Name, dash(d.AliasOf), d.Lists)
				})
			})
		},
	}
	cmd.AddCommand(add, ls)
	return cmd
}

func (a *app) listsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lists", Short: "create, remove, show and configure lists"}
	create := &cobra.Command{
		Use:   "create LIST",
		Short: "create a list (LIST is the posting address, e.g. test@lists.example.org)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := listAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, cfg *config.Config, st *store.Store) error {
				name, _ := address.ListName(addr)
				if err := (address.Resolver{Delimiter: cfg.MTA.VERPDelimiter}).CheckListName(name); err != nil {
					return usageError{err}
				}
				l, err := st.CreateList(ctx, addr)
				if err != nil {
					return err
				}
				if err := a.mapsChanged(ctx, cfg, st); err != nil {
					return err
				}
				if a.json {
					return a.printJSON(publicList(l))
				}
				fmt.Fprintf(a.stdout, "created %s (list-id %s)\n", l.Address, l.ListID)
				return nil
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove LIST",
		Short: "remove a list with its members, held messages and pending deliveries",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := listAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, cfg *config.Config, st *store.Store) error {
				if err := st.RemoveList(ctx, addr); err != nil {
					return err
				}
				return a.mapsChanged(ctx, cfg, st)
			})
		},
	}
	show := &cobra.Command{
		Use:   "show LIST",
		Short: "show a list's settings and counts",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := listAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				l, err := st.GetList(ctx, addr)
				if err != nil {
					return err
				}
				pl := publicList(l)
				if a.json {
					return a.printJSON(pl)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "address\t%s\n", pl.Address)
				fmt.Fprintf(tw, "list_id\t%s\n", pl.ListID)
				fmt.Fprintf(tw, "created_at\t%s\n", pl.CreatedAt)
				fmt.Fprintf(tw, "members\t%d\n", pl.Members)
				fmt.Fprintf(tw, "owners\t%d\n", pl.Owners)
				fmt.Fprintf(tw, "held\t%d\n", pl.Held)
				for _, s := range store.ListSettings {
					fmt.Fprintf(tw, "%s\t%s\n", s.Name, showValue(s, pl.Settings[s.Name]))
				}
				return tw.Flush()
			})
		},
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "list every list with member and held counts",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				ls, err := st.Lists(ctx)
				if err != nil {
					return err
				}
				if a.json {
					out := make([]*store.List, 0, len(ls))
					for _, l := range ls {
						pl := publicList(l)
						pl.Settings = nil
						out = append(out, pl)
					}
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "LIST\tMEMBERS\tOWNERS\tHELD\tNONMEMBER ACTION")
				for _, l := range ls {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", l.Address, l.Members, l.Owners, l.Held, l.Setting("default_nonmember_action"))
				}
				return tw.Flush()
			})
		},
	}
	set := &cobra.Command{
		Use:   "set LIST KEY VALUE",
		Short: "change a list setting (Mailman 3 names: default_nonmember_action, subject_prefix, emergency, …)",
		Long: "Change a list setting. A VALUE of - for a secret setting (moderator_password) reads it from\n" +
			"standard input, one line, so that it does not show in ps or the shell history. Settings:\n" + settingsHelp(),
		Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := listAddress(args[0])
			if err != nil {
				return err
			}
			value := args[2]
			if s, ok := findSetting(args[1]); ok && s.Secret && value == "-" {
				if value, err = a.readSecret(s.Name); err != nil {
					return err
				}
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				return st.SetListSetting(ctx, addr, args[1], value)
			})
		},
	}
	cmd.AddCommand(create, remove, show, ls, set, a.headerMatchCmd())
	return cmd
}

// publicList hides secret settings; the caller's copy keeps them.
func publicList(l *store.List) *store.List {
	c := *l
	c.Settings = make(map[string]string, len(l.Settings))
	for _, s := range store.ListSettings {
		v := l.Settings[s.Name]
		if s.Secret && v != "" {
			v = "(set)"
		}
		c.Settings[s.Name] = v
	}
	return &c
}

func showValue(s store.Setting, v string) string {
	if s.Secret {
		// Only whether it is set: the stored form is a hash, and even
		// that is not for printing.
		if v == "" {
			return "(not set)"
		}
		return "set"
	}
	switch s.Kind {
	case store.KindBool:
		if v == "1" {
			return "yes"
		}
		return "no"
	case store.KindString:
		if v == "" {
			return "-"
		}
		return fmt.Sprintf("%q", v)
	}
	return v
}

func settingsHelp() string {
	names := make([]string, 0, len(store.ListSettings))
	for _, s := range store.ListSettings {
		line := "  " + s.Name + ": " + s.Help
		if len(s.Values) > 0 {
			line += " (" + strings.Join(s.Values, ", ") + ")"
		}
		names = append(names, line)
	}
	sort.Strings(names)
	return strings.Join(names, "\n")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nonNil makes empty results print as [] rather than null in JSON.
func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
