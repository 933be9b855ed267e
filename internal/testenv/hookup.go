package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The addresses and paths the contrib/postfix snippets are written for;
// Hookup replaces each of them.
const (
	contribMapDir   = "/var/lib/postlist/data"
	contribPolicy   = "127.0.0.1:8027"
	contribReinject = "127.0.0.1:10025"
)

// HookupFiles are contrib/postfix/main.cf and master.cf as read from the
// repository, with ports and paths changed for a private instance: the
// PostfixOptions MainCF and MasterCF of a test of the hookup as
// documented.
type HookupFiles struct {
	MainCF, MasterCF string
}

// Hookup reads contrib/postfix/main.cf and master.cf and points them at
// mapDir (where `postlist genaliases` writes), policy (the daemon's
// policy_listen, host:port) and reinject (host:port of the re-injection
// listener master.cf defines). Nothing else is changed, so a test using
// them breaks when the snippets do; a snippet that no longer names one of
// the replaced values is an error, not a silent pass.
func Hookup(mapDir, policy, reinject string) (HookupFiles, error) {
	root, err := ModuleRoot()
	if err != nil {
		return HookupFiles{}, err
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, "contrib", "postfix", name))
		if err != nil {
			return "", fmt.Errorf("contrib snippet: %w", err)
		}
		return string(b), nil
	}
	mainCF, err := read("main.cf")
	if err != nil {
		return HookupFiles{}, err
	}
	masterCF, err := read("master.cf")
	if err != nil {
		return HookupFiles{}, err
	}
	for _, r := range []struct {
		text           *string
		file, old, new string
	}{
		{&mainCF, "main.cf", contribMapDir, mapDir},
		{&mainCF, "main.cf", contribPolicy, policy},
		{&masterCF, "master.cf", contribReinject, reinject},
	} {
		if !strings.Contains(*r.text, r.old) {
			return HookupFiles{}, fmt.Errorf("contrib/postfix/%s no longer names %s", r.file, r.old)
		}
		*r.text = strings.ReplaceAll(*r.text, r.old, r.new)
	}
	return HookupFiles{MainCF: mainCF, MasterCF: masterCF}, nil
}
