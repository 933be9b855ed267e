package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"postlist/address"
	"postlist/config"
	"postlist/store"
)

// BadLine is one line of a member file that could not be used.
type BadLine struct {
	Line   int    `json:"line"`
	Text   string `json:"text"`
	Reason string `json:"reason"`
}

// ReadMembers parses a member file: one address per line, optionally with a
// display name ("Name <addr>"); blank lines and # comments are skipped. Bad
// lines are returned with their numbers so the good ones can still be
// added, as an admin importing 100,000 addresses expects.
func ReadMembers(r io.Reader) ([]store.NewMember, []BadLine, error) {
	var good []store.NewMember
	var bad []BadLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		m, err := parseMember(text)
		if err != nil {
			bad = append(bad, BadLine{Line: n, Text: text, Reason: err.Error()})
			continue
		}
		good = append(good, m)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read line %d: %w", n+1, err)
	}
	return good, bad, nil
}

// parseMember reads one member entry ("addr" or "Name <addr>") and refuses
// an address postlist could not deliver to, with the same rule the store
// applies (address.Deliverable), so that such a line is reported with its
// number while the good ones are still added.
func parseMember(text string) (store.NewMember, error) {
	name, addr, err := address.ParseMailbox(text)
	if err != nil {
		return store.NewMember{}, err
	}
	if err := address.Deliverable(addr); err != nil {
		return store.NewMember{}, err
	}
	return store.NewMember{Address: addr, DisplayName: name}, nil
}

func (a *app) membersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "members", Short: "add, remove, list, configure and ban members; show their bounces"}

	var role, file string
	add := &cobra.Command{
		Use:   "add LIST [ADDR...] [--file F] [--role member|owner|moderator]",
		Short: "add members (or owners, moderators); --file F reads one address per line, F = - for stdin; addresses postlist cannot deliver to are refused",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := listAddress(args[0])
			if err != nil {
				return err
			}
			if !store.ValidRole(role) {
				return usageError{fmt.Errorf("--role %q: want member, owner, moderator or nonmember", role)}
			}
			var good []store.NewMember
			var bad []BadLine
			source := "argument"
			for i, arg := range args[1:] {
				m, err := parseMember(arg)
				if err != nil {
					bad = append(bad, BadLine{Line: i + 1, Text: arg, Reason: err.Error()})
					continue
				}
				good = append(good, m)
			}
			if file != "" {
				var r io.Reader = a.stdin
				source = "stdin"
				if file != "-" {
					f, err := os.Open(file)
					if err != nil {
						return fmt.Errorf("member file: %w", err)
					}
					defer f.Close()
					r = f
					source = file
				}
				g, b, err := ReadMembers(r)
				if err != nil {
					return fmt.Errorf("%s: %w", source, err)
				}
				good, bad = append(good, g...), append(bad, b...)
			}
			if len(good) == 0 && len(bad) == 0 {
				return usageError{fmt.Errorf("members add: no addresses given (arguments or --file)")}
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				var progress func(int)
				if a.isTerminal && !a.json && len(good) >= 5000 {
					bar := progressbar.NewOptions(len(good), progressbar.OptionSetWriter(a.stderr),
						progressbar.OptionSetDescription("adding"), progressbar.OptionShowCount(),
						progressbar.OptionClearOnFinish())
					progress = func(n int) { bar.Set(n) }
					defer bar.Finish()
				}
				res := store.AddResult{}
				if len(good) > 0 {
					var err error
					res, err = st.AddMembers(ctx, list, role, good, progress)
					if err != nil {
						return err
					}
				}
				if a.json {
					if err := a.printJSON(struct {
						store.AddResult
						Bad []BadLine `json:"bad,omitempty"`
					}{res, bad}); err != nil {
						return err
					}
				} else {
					for _, b := range bad {
						fmt.Fprintf(a.stderr, "%s:%d: %s\n", source, b.Line, b.Reason)
					}
					fmt.Fprintf(a.stdout, "added %d %s(s) to %s", res.Added, role, list)
					if len(res.Existing) > 0 {
						fmt.Fprintf(a.stdout, ", %d already there", len(res.Existing))
					}
					if len(bad) > 0 {
						fmt.Fprintf(a.stdout, ", %d bad line(s) skipped", len(bad))
					}
					fmt.Fprintln(a.stdout)
				}
				if len(bad) > 0 {
					return fmt.Errorf("%d bad line(s) in %s not added", len(bad), source)
				}
				return nil
			})
		},
	}
	add.Flags().StringVar(&role, "role", "member", "member, owner or moderator")
	add.Flags().StringVar(&file, "file", "", "read addresses from F (- for stdin)")

	var rmRole string
	remove := &cobra.Command{
		Use:   "remove LIST ADDR...",
		Short: "remove members",
		Args:  minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := listAddress(args[0])
			if err != nil {
				return err
			}
			addrs, err := normalizeAll(args[1:])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				missing, err := st.RemoveMembers(ctx, list, rmRole, addrs)
				if err != nil {
					return err
				}
				if len(missing) > 0 {
					return fmt.Errorf("not %s(s) of %s: %s", rmRole, list, strings.Join(missing, ", "))
				}
				return nil
			})
		},
	}
	remove.Flags().StringVar(&rmRole, "role", "member", "role to remove")

	var lsRole string
	ls := &cobra.Command{
		Use:   "ls LIST [--role R]",
		Short: "list members with delivery status and bounce score",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := listAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				ms, err := st.Members(ctx, list, lsRole)
				if err != nil {
					return err
				}
				return printRows(a, ms, "ADDRESS\tNAME\tROLE\tDELIVERY\tMODERATION\tBOUNCE SCORE", func(m store.Member) string {
					return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%.1f", m.Address, dash(m.DisplayName), m.Role,
						m.DeliveryStatus, dash(m.ModerationAction), m.BounceScore)
				})
			})
		},
	}
	ls.Flags().StringVar(&lsRole, "role", "", "only this role (member, owner, moderator, nonmember)")

	set := &cobra.Command{
		Use:   "set LIST ADDR KEY VALUE",
		Short: "change a member setting (" + strings.Join(store.MemberSettingNames(), ", ") + ")",
		Args:  exactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, addr, err := listAndMember(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				return st.SetMember(ctx, list, addr, args[2], args[3])
			})
		},
	}

	ban := &cobra.Command{
		Use:   "ban LIST ADDR",
		Short: "ban an address, or every address matching ADDR when it starts with ^ (a regular expression)",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := listAddress(args[0])
			if err != nil {
				return err
			}
			pat := args[1]
			if !strings.HasPrefix(pat, "^") {
				if pat, err = address.Normalize(pat); err != nil {
					return usageError{err}
				}
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				return st.Ban(ctx, list, pat)
			})
		},
	}
	cmd.AddCommand(add, remove, ls, set, ban, a.memberBouncesCmd())
	return cmd
}

func normalizeAll(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		a, err := address.Normalize(s)
		if err != nil {
			return nil, usageError{err}
		}
		out = append(out, a)
	}
	return out, nil
}
