package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"postlist/address"
	"postlist/commands"
	"postlist/config"
	"postlist/store"
	"postlist/wire"
)

// minTokenPrefix is the shortest token prefix approve and discard take:
// what `requests ls` shows, and enough that a typo hardly ever lands on
// another live request.
const minTokenPrefix = 8

// requestsCmd is `postlist requests`: subscription and unsubscription
// requests, and the moderator's decision on those a list's policy holds
// for one. Held posts' approval tokens are left to `postlist held`, which
// shows the posts themselves.
func (a *app) requestsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "requests", Short: "list pending subscription requests; approve or discard those waiting for a moderator"}

	ls := &cobra.Command{
		Use:   "ls [LIST]",
		Short: "list live requests, oldest first (all lists without LIST); held posts are under `postlist held`",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := optionalList(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, _ *config.Config, st *store.Store) error {
				if list != "" {
					if _, err := st.GetList(ctx, list); err != nil {
						return err
					}
				}
				all, err := st.PendingTokens(ctx, list)
				if err != nil {
					return err
				}
				var ts []store.Token
				for _, t := range all {
					if t.Kind != store.TokenHeld {
						ts = append(ts, t)
					}
				}
				return printRows(a, ts, "TOKEN\tLIST\tKIND\tADDRESS\tNAME\tCREATED\tEXPIRES", func(t store.Token) string {
					return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", shortToken(t.Token), t.List, requestKind(t), t.Address,
						dash(cell(t.DisplayName, 30)), store.FormatTime(t.CreatedAt), store.FormatTime(t.ExpiresAt))
				})
			})
		},
	}

	decide := func(verb, short string, approve bool) *cobra.Command {
		return &cobra.Command{
			Use:   verb + " TOKEN",
			Short: short,
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				prefix, err := tokenPrefixArg(args[0])
				if err != nil {
					return err
				}
				return a.withSystem(cmd, func(ctx context.Context, sys *wire.System) error {
					t, err := resolveToken(ctx, sys.Store, prefix)
					if err != nil {
						return err
					}
					if t.Kind == store.TokenHeld {
						return fmt.Errorf("token %s belongs to held message %s, not a membership request: use `postlist held %s %s`",
							shortToken(t.Token), t.Data, verb, t.Data)
					}
					decide := sys.Moderation.DiscardRequest
					if approve {
						decide = sys.Moderation.ApproveRequest
					}
					d, err := decide(ctx, t.Token, heldModerator())
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("request %s is no longer pending: decided or expired meanwhile", shortToken(t.Token))
					}
					if err != nil {
						return err
					}
					if a.json {
						return a.printJSON(d)
					}
					fmt.Fprintln(a.stdout, decisionText(d))
					return nil
				})
			},
		}
	}
	approve := decide("approve", "approve a confirmed request waiting for a moderator: add or remove the member, with welcome or goodbye", true)
	discard := decide("discard", "drop a request waiting for a moderator without telling anyone", false)

	cmd.AddCommand(ls, approve, discard)
	return cmd
}

// requestKind says what a request asks and whom it waits for.
func requestKind(t store.Token) string {
	if t.Kind == store.TokenModerate {
		return t.Data + " (moderator)"
	}
	return t.Kind
}

// shortToken is a token as tables show it: enough to pick it out with
// approve or discard, short enough for a table.
func shortToken(t string) string {
	if len(t) > minTokenPrefix {
		return t[:minTokenPrefix] + "…"
	}
	return t
}

// tokenPrefixArg checks a TOKEN argument. It takes the ellipsis a table
// shows, so a prefix copied with it still works.
func tokenPrefixArg(s string) (string, error) {
	p := strings.ToLower(strings.TrimSpace(s))
	p = strings.TrimSuffix(strings.TrimSuffix(p, "…"), "...")
	bad := len(p) < minTokenPrefix || len(p) > address.TokenLen
	for i := 0; i < len(p) && !bad; i++ {
		c := p[i]
		bad = !('0' <= c && c <= '9' || 'a' <= c && c <= 'f')
	}
	if bad {
		return "", usageError{fmt.Errorf("token %q: want the token, or at least its first %d hex characters, as `postlist requests ls` shows it", s, minTokenPrefix)}
	}
	return p, nil
}

// resolveToken finds the one live request whose token starts with prefix.
func resolveToken(ctx context.Context, st *store.Store, prefix string) (store.Token, error) {
	ts, err := st.LiveTokensByPrefix(ctx, prefix)
	if err != nil {
		return store.Token{}, err
	}
	switch len(ts) {
	case 0:
		return store.Token{}, fmt.Errorf("no pending request has a token starting with %s (decided, expired or mistyped; see `postlist requests ls`)", prefix)
	case 1:
		return ts[0], nil
	}
	var which []string
	for _, t := range ts {
		which = append(which, fmt.Sprintf("%s for %s on %s", t.Kind, t.Address, t.List))
	}
	return store.Token{}, fmt.Errorf("token prefix %s is ambiguous: it matches %d requests (%s); give more of the token",
		prefix, len(ts), strings.Join(which, "; "))
}

// decisionText is the one line a decision prints.
func decisionText(d commands.Decision) string {
	t := d.Request
	if !d.Approved {
		return fmt.Sprintf("discarded the %s request of %s to %s; nobody was told", d.Action, t.Address, t.List)
	}
	notice := func(what, setting string) string {
		if d.Notices > 0 {
			return what + " queued"
		}
		return "no " + what + ": " + setting + " is off"
	}
	switch {
	case d.Action == store.TokenSubscribe && d.Changed:
		return fmt.Sprintf("approved: %s joined %s (%s)", t.Address, t.List, notice("welcome", "send_welcome_message"))
	case d.Action == store.TokenSubscribe:
		return fmt.Sprintf("approved: %s already was a member of %s; the request is used up", t.Address, t.List)
	case d.Changed:
		return fmt.Sprintf("approved: %s left %s (%s)", t.Address, t.List, notice("goodbye", "send_goodbye_message"))
	default:
		return fmt.Sprintf("approved: %s no longer was a member of %s; the request is used up", t.Address, t.List)
	}
}
