package pipeline

import (
	"fmt"
	"regexp"
	"strings"

	"postlist/address"
	"postlist/message"
	"postlist/store"
)

// Verdict is what the posting rules decided about a post, and why. The
// reason is written to the intake row, the held row, the events table and
// the log, so an admin can always answer "why was this held?".
type Verdict struct {
	Action string // store.ActionAccept, ActionHold, ActionReject or ActionDiscard
	Rule   string // the rule that decided
	Reason string // in words, naming the address or value concerned
}

// listFacts are the list settings the rules read, in typed form.
type listFacts struct {
	Address string // posting address, lower-case
	ListID  string // RFC 2919 id
	// Domains are the list's domain and its aliases: mail to the list at
	// an alias domain names the list too.
	Domains                []string
	Delimiters             string // recipient delimiter characters
	Emergency              bool
	MaxMessageKiB          int64
	DefaultMemberAction    string
	DefaultNonmemberAction string
	RequireExplicitDest    bool
	MaxNumRecipients       int
	Administrivia          bool
	RequestAddress         string // NAME-request@DOMAIN, for reasons
}

// facts are what the rules look at. Everything that needs the database
// (membership, bans, the password check) is gathered before any rule
// runs, so that every rule is a small pure function with a table test.
type facts struct {
	List listFacts
	Msg  *message.Message
	// Size is the message size in bytes as received.
	Size int64
	// Senders are the From addresses, then Sender, then the envelope
	// sender, normalised and each once. Reply-To is deliberately not one:
	// anyone can write a member's address there.
	Senders []string
	// Poster is who the post is from: the first From address, else the
	// envelope sender; "" when there is neither.
	Poster string
	// Member is the first sender's member (or owner, moderator) row.
	Member *store.PostingMember
	// Nonmember is the first sender's nonmember row with an explicit
	// moderation action.
	Nonmember *store.PostingMember
	// Banned is the first sender matching one of the list's bans.
	Banned string
	// Approval is the outcome of the moderator password check.
	Approval approval
	// Text is the first text/plain part, decoded, for the administrivia
	// check.
	Text string
	// HeaderMatches are the list's header checks, compiled, in order.
	HeaderMatches []headerMatch
}

// headerMatch is a store.HeaderMatch ready to use.
type headerMatch struct {
	store.HeaderMatch
	re *regexp.Regexp
}

// rule is one named posting rule. check returns the action to take and
// the reason, or "" to let the next rule decide.
type rule struct {
	name  string
	check func(*facts) (action, reason string)
}

// rules is the posting chain, in order. The first rule with an action
// decides; a post no rule stops is accepted.
var rules = []rule{
	{"loop", ruleLoop},
	{"banned", ruleBanned},
	{"emergency", ruleEmergency},
	{"approved", ruleApproved},
	{"max-size", ruleMaxSize},
	{"member-moderation", ruleMemberModeration},
	{"header-match", ruleHeaderMatch},
	{"nonmember-moderation", ruleNonmemberModeration},
	{"administrivia", ruleAdministrivia},
	{"implicit-destination", ruleImplicitDestination},
	{"max-recipients", ruleMaxRecipients},
}

// RuleNames lists the posting rules in the order they run.
func RuleNames() []string {
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = r.name
	}
	return names
}

// evaluate runs the chain.
func evaluate(f *facts) Verdict {
	for _, r := range rules {
		if action, reason := r.check(f); action != "" {
			return Verdict{Action: action, Rule: r.name, Reason: reason}
		}
	}
	return Verdict{Action: store.ActionAccept, Rule: "default", Reason: "no rule stopped the post"}
}

// ruleLoop discards a message that already went through this list: it
// carries our X-BeenThere or our List-Id. Distributing it again would
// send every member a copy per round trip.
func ruleLoop(f *facts) (string, string) {
	for _, v := range f.Msg.Values("X-BeenThere") {
		if strings.EqualFold(strings.Trim(v, "<> \t"), f.List.Address) {
			return store.ActionDiscard, "the message already went through this list (X-BeenThere: " + f.List.Address + ")"
		}
	}
	for _, v := range f.Msg.Values("List-Id") {
		id := v
		if i := strings.LastIndexByte(v, '<'); i >= 0 {
			id = strings.TrimSuffix(strings.TrimSpace(v[i+1:]), ">")
		}
		if strings.EqualFold(strings.TrimSpace(id), f.List.ListID) {
			return store.ActionDiscard, "the message already carries this list's List-Id <" + f.List.ListID + ">"
		}
	}
	return "", ""
}

// ruleBanned discards posts from banned addresses, as Mailman does: a
// notice would only tell the banned sender to try another address.
func ruleBanned(f *facts) (string, string) {
	if f.Banned != "" {
		return store.ActionDiscard, f.Banned + " is banned from this list"
	}
	return "", ""
}

// ruleEmergency holds every post while the list is in emergency
// moderation. It runs before the password check: in an emergency nothing
// goes out that a moderator has not seen.
func ruleEmergency(f *facts) (string, string) {
	if f.List.Emergency {
		return store.ActionHold, "the list is in emergency moderation"
	}
	return "", ""
}

// ruleApproved accepts a post carrying the list's moderator password in
// an Approved: (or Approve:) header or as the first line of its text.
// The password itself never appears in a reason or a log line.
func ruleApproved(f *facts) (string, string) {
	if f.Approval.Valid {
		return store.ActionAccept, "valid moderator password in " + f.Approval.Where
	}
	return "", ""
}

// ruleMaxSize holds posts over max_message_size (KiB; 0 means no limit).
func ruleMaxSize(f *facts) (string, string) {
	limit := f.List.MaxMessageKiB
	if limit > 0 && f.Size > limit*1024 {
		return store.ActionHold, fmt.Sprintf("the message is %d KiB, more than the list's limit of %d KiB", (f.Size+1023)/1024, limit)
	}
	return "", ""
}

// actionOf returns a moderation action and where it came from: the row's
// own, else the list default.
func actionOf(own, listDefault, defaultName string) (action, source string) {
	if own != "" {
		return own, "their moderation_action"
	}
	return listDefault, "the list's " + defaultName
}

// ruleMemberModeration applies a member's moderation action (or the
// list's default_member_action, "defer" by default: go on to the next
// rules). Owners and moderators count as members here: their posts are
// not the outsiders' posts the nonmember rule is for.
func ruleMemberModeration(f *facts) (string, string) {
	m := f.Member
	if m == nil {
		return "", ""
	}
	action, source := actionOf(m.ModerationAction, f.List.DefaultMemberAction, "default_member_action")
	if !isAction(action) {
		return "", ""
	}
	return action, fmt.Sprintf("%s is a %s; %s is %s", m.Address, m.Role, source, action)
}

// ruleNonmemberModeration applies to posts from non-members: their own
// nonmember row's action, else default_nonmember_action ("hold" by
// default).
func ruleNonmemberModeration(f *facts) (string, string) {
	if f.Member != nil {
		return "", ""
	}
	who := f.Poster
	own := ""
	if f.Nonmember != nil {
		who, own = f.Nonmember.Address, f.Nonmember.ModerationAction
	}
	action, source := actionOf(own, f.List.DefaultNonmemberAction, "default_nonmember_action")
	if !isAction(action) {
		return "", ""
	}
	if who == "" {
		return action, fmt.Sprintf("the message names no sender; %s is %s", source, action)
	}
	return action, fmt.Sprintf("%s is not a member; %s is %s", who, source, action)
}

func isAction(a string) bool {
	switch a {
	case store.ActionAccept, store.ActionHold, store.ActionReject, store.ActionDiscard:
		return true
	}
	return false // "defer", or an unknown word: let the next rule decide
}

// ruleImplicitDestination holds posts that do not name the list in To or
// Cc (Resent-To and Resent-Cc count too), when the list requires an
// explicit destination: mail that reached the list through a Bcc or an
// alias is a typical sign of spam.
func ruleImplicitDestination(f *facts) (string, string) {
	if !f.List.RequireExplicitDest || explicitlyAddressed(f) {
		return "", ""
	}
	return store.ActionHold, "the list's address " + f.List.Address + " is not in To or Cc"
}

// explicitlyAddressed reports whether a destination field names the list:
// its name (with any +extension) at its domain or an alias domain.
func explicitlyAddressed(f *facts) bool {
	name, _ := address.ListName(f.List.Address)
	for _, field := range []string{"To", "Cc", "Resent-To", "Resent-Cc"} {
		for _, v := range f.Msg.Values(field) {
			as, err := message.ParseAddressList(v)
			if err != nil {
				// An unparseable field still names the list if the
				// address is written in it.
				if strings.Contains(strings.ToLower(v), f.List.Address) {
					return true
				}
				continue
			}
			for _, a := range as {
				local, domain := address.ListName(a.Address)
				if i := strings.IndexAny(local, f.List.Delimiters); i >= 0 {
					local = local[:i]
				}
				if local != name {
					continue
				}
				for _, d := range f.List.Domains {
					if domain == strings.ToLower(d) {
						return true
					}
				}
			}
		}
	}
	return false
}

// ruleMaxRecipients holds posts addressed to max_num_recipients or more
// addresses in To and Cc (0 means no limit), Mailman's guard against
// spam sent to many lists at once.
func ruleMaxRecipients(f *facts) (string, string) {
	limit := f.List.MaxNumRecipients
	if limit <= 0 {
		return "", ""
	}
	n := countRecipients(f.Msg)
	if n >= limit {
		return store.ActionHold, fmt.Sprintf("the message has %d recipients in To and Cc, the list's limit is %d", n, limit)
	}
	return "", ""
}

func countRecipients(m *message.Message) int {
	n := 0
	for _, field := range []string{"To", "Cc"} {
		for _, v := range m.Values(field) {
			if as, err := message.ParseAddressList(v); err == nil {
				n += len(as)
			} else if strings.TrimSpace(v) != "" {
				// Unparseable: count the comma-separated pieces, so that a
				// malformed header cannot hide a long recipient list.
				n += strings.Count(v, ",") + 1
			}
		}
	}
	return n
}

// commandArgs are the email commands whose appearance in a post makes it
// administrivia, with the argument counts that make a line one (Mailman's
// table, plus join and leave, postlist's own words for the same).
var commandArgs = map[string][2]int{
	"confirm": {1, 1}, "help": {0, 0}, "info": {0, 0}, "lists": {0, 0}, "options": {0, 0},
	"password": {2, 2}, "remove": {0, 0}, "set": {3, 3}, "subscribe": {0, 3}, "unsubscribe": {0, 1},
	"who": {0, 2}, "join": {0, 3}, "leave": {0, 1},
}

// administriviaLines is how many non-blank lines of the text are read, as
// in Mailman.
const administriviaLines = 10

// ruleAdministrivia holds a post whose Subject, or one of the first lines
// of its text, reads like a command for the list's robot: "unsubscribe"
// sent to the whole list by mistake, which every member would otherwise
// receive.
func ruleAdministrivia(f *facts) (string, string) {
	if !f.List.Administrivia {
		return "", ""
	}
	lines := []string{message.DecodeHeader(f.Msg.Get("Subject"))}
	n := 0
	for line := range strings.SplitSeq(f.Text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if n++; n > administriviaLines {
			break
		}
		lines = append(lines, line)
	}
	for _, line := range lines {
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		cmd := strings.ToLower(words[0])
		if limits, ok := commandArgs[cmd]; ok && len(words)-1 >= limits[0] && len(words)-1 <= limits[1] {
			return store.ActionHold, fmt.Sprintf("the message reads like a command for the list's robot (%q); commands go to %s",
				message.OneLine(strings.TrimSpace(line)), f.List.RequestAddress)
		}
	}
	return "", ""
}

// ruleHeaderMatch applies the list's header checks (Mailman's
// header_matches) in order: the first whose field matches decides. It
// runs after member-moderation, as in Mailman, so a member whose posts are
// accepted outright is not checked, and before the non-member rule, so a
// check can catch spam from anyone else.
func ruleHeaderMatch(f *facts) (string, string) {
	for _, hm := range f.HeaderMatches {
		for _, v := range f.Msg.Values(hm.Header) {
			if hm.re.MatchString(message.DecodeHeader(v)) {
				return hm.Action, fmt.Sprintf("header check #%d: %s matches %q", hm.ID, hm.Header, hm.Pattern)
			}
		}
	}
	return "", ""
}
