package commands_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"postlist/commands"
)

// FuzzParse: whatever arrives at -request, the parser ends, keeps within
// its bounds, and returns only known commands (or unknown words) on one
// printable line each, so a reply built from its output cannot grow
// without end or carry control characters. Seeds are in
// testdata/fuzz/FuzzParse and run with every go test.
func FuzzParse(f *testing.F) {
	f.Add("subscribe", []byte("help\n"))
	f.Add("Re: confirm 0123456789abcdef0123456789abcdef", []byte("> confirm 0123456789abcdef0123456789abcdef\n"))
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		cmds, ignored := commands.Parse(subject, body)
		if len(cmds) > commands.MaxCommands+1 {
			t.Fatalf("%d commands", len(cmds))
		}
		if len(ignored) > 20 {
			t.Fatalf("%d ignored lines", len(ignored))
		}
		known := map[string]bool{"": true, commands.CmdConfirm: true, commands.CmdEcho: true, commands.CmdEnd: true,
			commands.CmdHelp: true, commands.CmdJoin: true, commands.CmdLeave: true}
		check := func(what, s string) {
			if len(s) > 210 {
				t.Fatalf("%s of %d bytes", what, len(s))
			}
			if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("%s %q has control characters", what, s)
			}
			if utf8.ValidString(subject) && utf8.Valid(body) && !utf8.ValidString(s) {
				t.Fatalf("%s %q: valid input gave invalid UTF-8", what, s)
			}
		}
		for i, c := range cmds {
			if !known[c.Name] {
				t.Fatalf("unknown command name %q", c.Name)
			}
			if c.Subject && i != 0 {
				t.Fatalf("subject command at position %d", i)
			}
			if c.Name == commands.CmdEnd && i != len(cmds)-1 {
				t.Fatal("commands after end")
			}
			check("line", c.Line)
			check("word", c.Word)
			if len(c.Args) > 10 {
				t.Fatalf("%d args", len(c.Args))
			}
			for _, a := range c.Args {
				check("argument", a)
			}
		}
		for _, l := range ignored {
			check("ignored line", l)
		}
	})
}
