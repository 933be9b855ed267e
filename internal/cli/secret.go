package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"postlist/store"
)

// findSetting looks a list setting up by name.
func findSetting(name string) (store.Setting, bool) {
	for _, s := range store.ListSettings {
		if s.Name == name {
			return s, true
		}
	}
	return store.Setting{}, false
}

// readSecret reads a secret setting's value from standard input: one
// line, its line ending dropped. On a terminal it prompts on stderr and
// does not echo, so the value is in neither ps, the shell history nor
// the scrollback.
func (a *app) readSecret(name string) (string, error) {
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(a.stderr, "%s: ", name)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fmt.Errorf("read %s from the terminal: %w", name, err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s from standard input: %w", name, err)
	}
	if line == "" {
		return "", usageError{fmt.Errorf("%s -: standard input is empty (give the value on one line; \"\" as VALUE clears it)", name)}
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}
