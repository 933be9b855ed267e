package commands

import (
	"regexp"
	"strings"

	"postlist/message"
	"postlist/notice"
)

// MaxCommands is how many body lines are read as commands, after the
// Subject (Mailman's email_commands_max_lines). Blank lines do not count.
// Lines beyond it are listed in the reply as ignored, so a long letter
// sent to -request costs one short reply, not one line of output per
// line of prose.
const MaxCommands = 10

// Bounds on what the parser keeps from one message, so that a reply to a
// megabyte of text stays small.
const (
	maxIgnored = 20                  // ignored lines listed in a reply
	maxArgs    = 10                  // arguments kept per command
	maxBody    = message.MaxTextBody // bytes of body text read at all
)

// Command names, Mailman's. subscribe, unsubscribe and stop are aliases
// and parse to join, leave and end.
const (
	CmdConfirm = "confirm"
	CmdEcho    = "echo"
	CmdEnd     = "end"
	CmdHelp    = "help"
	CmdJoin    = "join"
	CmdLeave   = "leave"
)

// aliases maps every accepted command word to its command.
var aliases = map[string]string{
	"confirm":     CmdConfirm,
	"echo":        CmdEcho,
	"end":         CmdEnd,
	"stop":        CmdEnd,
	"help":        CmdHelp,
	"join":        CmdJoin,
	"subscribe":   CmdJoin,
	"leave":       CmdLeave,
	"unsubscribe": CmdLeave,
}

// Command is one command line.
type Command struct {
	// Name is the canonical command (CmdJoin for "subscribe"); "" for a
	// line that is no command.
	Name string
	// Word is the command word as written, lower-cased (for an unknown
	// command, the word Mailman would name in "No such command").
	Word string
	Args []string
	// Line is the line as written, on one line and clipped, for the
	// reply.
	Line string
	// Subject reports a command found in the Subject.
	Subject bool
}

// subjectConfirm finds "confirm TOKEN" anywhere in a Subject, which is
// how a reply to a confirmation request is recognised when the reply
// went to a plain -request or -confirm address and kept our Subject
// ("Re: ... (confirm 0123...)").
var subjectConfirm = regexp.MustCompile(`(?i)\bconfirm\s+([0-9a-f]{32})\b`)

// Parse reads commands as Mailman does: the Subject first, then up to
// MaxCommands non-blank lines of body (the decoded text of the message's
// first text/plain part). A line's first word is its command; if it is
// not one, the second word is tried, so that "Re: confirm TOKEN" and a
// quoted "> confirm TOKEN" work. Reading stops after end (or stop) and at
// a signature separator ("-- "); lines after end or beyond the limit are
// returned as ignored, the signature is dropped.
//
// A Subject that holds no command is skipped silently (it is usually
// prose such as "Question"); a body line that holds none is returned as
// an unknown command, for the reply to say so.
func Parse(subject string, body []byte) (cmds []Command, ignored []string) {
	if c, ok := parseSubject(subject); ok {
		cmds = append(cmds, c)
		if c.Name == CmdEnd {
			return cmds, nil
		}
	}
	if len(body) > maxBody {
		body = body[:int(maxBody)]
	}
	read, stopped := 0, false
	for raw := range strings.SplitSeq(string(body), "\n") {
		line := strings.TrimRight(raw, " \t\r")
		if line == "--" || line == "-- " {
			break
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if stopped || read >= MaxCommands {
			if len(ignored) < maxIgnored {
				ignored = append(ignored, notice.Clip(line))
			}
			continue
		}
		read++
		c := parseLine(line)
		cmds = append(cmds, c)
		if c.Name == CmdEnd {
			stopped = true
		}
	}
	return cmds, ignored
}

// parseSubject returns the command of a Subject, if it has one.
func parseSubject(subject string) (Command, bool) {
	line := strings.TrimSpace(message.OneLine(subject))
	if line == "" {
		return Command{}, false
	}
	if c := parseLine(line); c.Name != "" {
		c.Subject = true
		return c, true
	}
	if m := subjectConfirm.FindStringSubmatch(line); m != nil {
		return Command{Name: CmdConfirm, Word: CmdConfirm, Args: []string{strings.ToLower(m[1])}, Line: notice.Clip(line), Subject: true}, true
	}
	return Command{}, false
}

// parseLine reads one non-blank line.
func parseLine(line string) Command {
	words := strings.Fields(line)
	c := Command{Line: notice.Clip(line)}
	if len(words) == 0 {
		return c
	}
	first := strings.ToLower(words[0])
	if name, ok := aliases[first]; ok {
		c.Name, c.Word, c.Args = name, first, args(words[1:])
		return c
	}
	if len(words) > 1 {
		second := strings.ToLower(words[1])
		if name, ok := aliases[second]; ok {
			c.Name, c.Word, c.Args = name, second, args(words[2:])
			return c
		}
		c.Word = notice.Clip(second)
		return c
	}
	c.Word = notice.Clip(first)
	return c
}

func args(ws []string) []string {
	if len(ws) == 0 {
		return nil
	}
	if len(ws) > maxArgs {
		ws = ws[:maxArgs]
	}
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = notice.Clip(w)
	}
	return out
}
