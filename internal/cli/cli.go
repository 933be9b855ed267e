// Package cli is the postlist command line: the admin contract of
// DESIGN.md (serve, check, lookup, domains, lists, members, …). Verb
// names, flags and --json shapes are promises to scripts; change them only
// with a migration note.
//
// Every verb exits 0 on success, 1 with a one-line reason on a runtime
// error, and 2 on a usage or configuration error (so systemd's
// RestartPreventExitStatus=2 stops restarting a daemon that cannot work).
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"postlist/address"
	"postlist/config"
	"postlist/store"
	"postlist/wire"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// usageError marks errors that should exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// app carries what every verb needs.
type app struct {
	cfgPath  string
	explicit bool
	json     bool
	stdout   io.Writer
	stderr   io.Writer
	stdin    io.Reader
	// isTerminal reports whether progress bars make sense on stderr.
	isTerminal bool
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, stdin: stdin, isTerminal: isTerminal(stderr)}
	root := a.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "postlist: %v\n", err)
	var ue usageError
	var ce *config.Error
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return ExitUsage
	}
	return ExitFailure
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "postlist",
		Short:         "mailing lists for Postfix",
		Long:          "postlist is a mailing-list server for Postfix: a milter that decides list recipients at SMTP time,\nan LMTP server that stores list mail durably, and delivery back through Postfix with VERP.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			a.explicit = cmd.Flags().Changed("config")
		},
	}
	root.PersistentFlags().StringVarP(&a.cfgPath, "config", "c", config.DefaultPath, "configuration file")
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print data as JSON")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.serveCmd(), a.checkCmd(), a.lookupCmd(), a.genaliasesCmd(),
		a.domainsCmd(), a.listsCmd(), a.membersCmd(), a.heldCmd(), a.requestsCmd(), a.queueCmd(), a.statusCmd(),
		a.eventsCmd(), a.purgeCmd(), a.versionCmd())
	return root
}

// config loads the configuration named by -c (the default path may be
// missing: the embedded defaults apply).
func (a *app) config() (*config.Config, error) {
	return config.Load(a.cfgPath, a.explicit)
}

// open loads the config and opens the database.
func (a *app) open(ctx context.Context) (*config.Config, *store.Store, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, nil, err
	}
	st, err := a.openStore(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	// `lookup` answers as the daemon's index would, window included.
	st.VERPWindow = cfg.MTA.VERPBounceWindow.D()
	return cfg, st, nil
}

// withStore runs fn with an open store and closes it.
func (a *app) withStore(cmd *cobra.Command, fn func(ctx context.Context, cfg *config.Config, st *store.Store) error) error {
	ctx := cmd.Context()
	cfg, st, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, cfg, st)
}

// system builds the same System `postlist serve` runs, on the
// configuration named by -c, without running it: what a verb queues is
// sent by the daemon's deliverer, which polls the queue. Logs are
// dropped: the verbs print their outcome and the events table records
// it.
func (a *app) system(ctx context.Context) (*wire.System, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	return wire.Build(ctx, cfg, zap.NewNop(), wire.WithOpener(a.openStore))
}

// withSystem runs fn with a System (see system) and closes its store.
func (a *app) withSystem(cmd *cobra.Command, fn func(ctx context.Context, sys *wire.System) error) error {
	ctx := cmd.Context()
	sys, err := a.system(ctx)
	if err != nil {
		return err
	}
	defer sys.Close()
	return fn(ctx, sys)
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// args enforces an exact argument count with a usage error (exit 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s: want %d argument(s), got %d (usage: %s)", cmd.CommandPath(), n, len(args), cmd.UseLine())}
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError{fmt.Errorf("%s: want at most %d argument(s), got %d (usage: %s)", cmd.CommandPath(), n, len(args), cmd.UseLine())}
		}
		return nil
	}
}

// printRows prints rows as JSON with --json ([] rather than null when
// there are none), else as a table: the header, then one line per row,
// columns separated by tabs.
func printRows[T any](a *app, rows []T, header string, line func(T) string) error {
	if a.json {
		return a.printJSON(nonNil(rows))
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, line(r))
	}
	return tw.Flush()
}

// listAndMember reads the LIST ADDR arguments of verbs about one member.
func listAndMember(args []string) (list, addr string, err error) {
	if list, err = listAddress(args[0]); err != nil {
		return "", "", err
	}
	if addr, err = address.Normalize(args[1]); err != nil {
		return "", "", usageError{err}
	}
	return list, addr, nil
}

// optionalList reads the [LIST] argument of verbs that otherwise cover
// every list: "" when it is absent.
func optionalList(args []string) (string, error) {
	if len(args) == 0 {
		return "", nil
	}
	return listAddress(args[0])
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError{fmt.Errorf("%s: want at least %d argument(s) (usage: %s)", cmd.CommandPath(), n, cmd.UseLine())}
		}
		return nil
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
