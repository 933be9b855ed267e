package commands_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"postlist/commands"
)

const tok = "0123456789abcdef0123456789abcdef"

// cmd renders a parsed command for comparison: "name arg arg" or
// "?word" for a line that is no command; "S:" marks the Subject.
func cmd(c commands.Command) string {
	s := c.Name
	if s == "" {
		s = "?" + c.Word
	}
	if len(c.Args) > 0 {
		s += " " + strings.Join(c.Args, " ")
	}
	if c.Subject {
		s = "S:" + s
	}
	return s
}

func TestParse(t *testing.T) {
	many := strings.Repeat("help\n", commands.MaxCommands+3)
	cases := []struct {
		name, subject, body string
		want, ignored       []string
	}{
		{name: "subject command", subject: "subscribe", want: []string{"S:join"}},
		{name: "aliases", body: "subscribe\nunsubscribe\nstop\n", want: []string{"join", "leave", "end"}},
		{name: "case and spaces", body: "  JOIN   address=Bob@Example.NET \r\n", want: []string{"join address=Bob@Example.NET"}},
		{name: "reply subject", subject: "Re: confirm " + tok, want: []string{"S:confirm " + tok}},
		{name: "token kept in a reply subject", subject: "Re: Your confirmation is needed to join the test@lists.example.org mailing list (confirm " + strings.ToUpper(tok) + ")",
			want: []string{"S:confirm " + tok}},
		{name: "prose subject skipped", subject: "Question about the list", body: "help", want: []string{"help"}},
		{name: "quoted reply line", body: "> confirm " + tok + "\n", want: []string{"confirm " + tok}},
		{name: "unknown word named", body: "hello\nplease unsubscribe me\nwhat is this\n", want: []string{"?hello", "leave me", "?is"}},
		{name: "blank lines do not count", body: "\n\n\nhelp\n\n", want: []string{"help"}},
		{name: "signature stops", body: "help\n-- \nJohn\nleave\n", want: []string{"help"}},
		{name: "end stops, rest ignored", body: "help\nend\njoin\nleave\n", want: []string{"help", "end"}, ignored: []string{"join", "leave"}},
		{name: "subject end stops everything", subject: "end", body: "join", want: []string{"S:end"}},
		{name: "line limit", body: many, want: slices.Repeat([]string{"help"}, commands.MaxCommands), ignored: []string{"help", "help", "help"}},
		{name: "control characters", body: "echo a\x00b\x1bc\n", want: []string{"echo a b c"}},
		{name: "empty", want: nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmds, ignored := commands.Parse(c.subject, []byte(c.body))
			var got []string
			for _, x := range cmds {
				got = append(got, cmd(x))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("commands %q, want %q", got, c.want)
			}
			if !slices.Equal(ignored, c.ignored) {
				t.Errorf("ignored %q, want %q", ignored, c.ignored)
			}
		})
	}
}

func TestParseBoundsOutput(t *testing.T) {
	long := strings.Repeat("x", 5000)
	body := fmt.Sprintf("echo %s %s\n", long, strings.Repeat("a ", 100)) + strings.Repeat(long+"\n", 200)
	cmds, ignored := commands.Parse(strings.Repeat("subscribe ", 1000), []byte(body))
	if len(cmds) > commands.MaxCommands+1 {
		t.Errorf("%d commands", len(cmds))
	}
	if len(ignored) > 20 {
		t.Errorf("%d ignored lines kept", len(ignored))
	}
	for _, c := range cmds {
		if len(c.Line) > 210 || len(c.Args) > 10 {
			t.Errorf("command kept %d bytes and %d args", len(c.Line), len(c.Args))
		}
		for _, a := range c.Args {
			if len(a) > 210 {
				t.Errorf("argument of %d bytes", len(a))
			}
		}
	}
}
