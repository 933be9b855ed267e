package pipeline

import (
	"strings"
	"testing"

	"postlist/message"
	"postlist/store"
)

// baseFacts is a member's ordinary post to test@lists.example.org with the
// list's default settings (Mailman's).
func baseFacts(header string) *facts {
	if header == "" {
		header = "From: alice@example.com\r\nTo: test@lists.example.org\r\nSubject: hi\r\n"
	}
	return &facts{
		List: listFacts{
			Address: "test@lists.example.org", ListID: "test.lists.example.org",
			Domains: []string{"lists.example.org", "lists.example.net"}, Delimiters: "+",
			MaxMessageKiB: 40, DefaultMemberAction: "defer", DefaultNonmemberAction: "hold",
			RequireExplicitDest: true, MaxNumRecipients: 10,
			Administrivia: true, RequestAddress: "test-request@lists.example.org",
		},
		Msg:     message.Parse([]byte(header + "\r\nbody\r\n")),
		Size:    1000,
		Senders: []string{"alice@example.com"},
		Poster:  "alice@example.com",
		Member:  &store.PostingMember{Address: "alice@example.com", Role: "member", ReceiveOwnPostings: true},
	}
}

type ruleCase struct {
	name   string
	header string // "" for the default post
	mod    func(*facts)
	action string // "" for no decision
	reason string // substring of the reason
}

func runRuleCases(t *testing.T, check func(*facts) (string, string), cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := baseFacts(tc.header)
			if tc.mod != nil {
				tc.mod(f)
			}
			action, reason := check(f)
			if action != tc.action {
				t.Errorf("action %q (reason %q), want %q", action, reason, tc.action)
			}
			if !strings.Contains(reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", reason, tc.reason)
			}
			if action != "" && reason == "" {
				t.Error("a decision without a reason")
			}
		})
	}
}

func TestRuleLoop(t *testing.T) {
	runRuleCases(t, ruleLoop, []ruleCase{
		{name: "fresh post"},
		{name: "our X-BeenThere", header: "From: a@example.com\r\nX-BeenThere: Test@Lists.Example.org\r\n",
			action: store.ActionDiscard, reason: "X-BeenThere"},
		{name: "our List-Id", header: "From: a@example.com\r\nList-Id: Test list <test.lists.example.org>\r\n",
			action: store.ActionDiscard, reason: "List-Id"},
		{name: "bare List-Id", header: "From: a@example.com\r\nList-Id: test.lists.example.org\r\n",
			action: store.ActionDiscard, reason: "List-Id"},
		{name: "another list's headers", header: "From: a@example.com\r\nX-BeenThere: other@example.com\r\nList-Id: <other.example.com>\r\n"},
		{name: "similar list id", header: "From: a@example.com\r\nList-Id: <test.lists.example.org.evil>\r\n"},
	})
}

func TestRuleBanned(t *testing.T) {
	runRuleCases(t, ruleBanned, []ruleCase{
		{name: "not banned"},
		{name: "banned", mod: func(f *facts) { f.Banned = "alice@example.com" }, action: store.ActionDiscard, reason: "alice@example.com is banned"},
	})
}

func TestRuleEmergency(t *testing.T) {
	runRuleCases(t, ruleEmergency, []ruleCase{
		{name: "normal"},
		{name: "emergency", mod: func(f *facts) { f.List.Emergency = true }, action: store.ActionHold, reason: "emergency"},
	})
}

func TestRuleApproved(t *testing.T) {
	runRuleCases(t, ruleApproved, []ruleCase{
		{name: "no password"},
		{name: "wrong password", mod: func(f *facts) { f.Approval = approval{Where: "Approved: header"} }},
		{name: "valid", mod: func(f *facts) { f.Approval = approval{Valid: true, Where: "Approved: header"} },
			action: store.ActionAccept, reason: "valid moderator password in Approved: header"},
	})
}

func TestRuleMaxSize(t *testing.T) {
	runRuleCases(t, ruleMaxSize, []ruleCase{
		{name: "small"},
		{name: "exactly the limit", mod: func(f *facts) { f.Size = 40 * 1024 }},
		{name: "one byte over", mod: func(f *facts) { f.Size = 40*1024 + 1 }, action: store.ActionHold, reason: "41 KiB, more than the list's limit of 40 KiB"},
		{name: "no limit", mod: func(f *facts) { f.Size = 1 << 30; f.List.MaxMessageKiB = 0 }},
	})
}

func TestRuleMemberModeration(t *testing.T) {
	runRuleCases(t, ruleMemberModeration, []ruleCase{
		{name: "default defer"},
		{name: "not a member", mod: func(f *facts) { f.Member = nil }},
		{name: "list default hold", mod: func(f *facts) { f.List.DefaultMemberAction = "hold" },
			action: store.ActionHold, reason: "alice@example.com is a member; the list's default_member_action is hold"},
		{name: "own accept beats list hold", mod: func(f *facts) {
			f.List.DefaultMemberAction = "hold"
			f.Member.ModerationAction = "accept"
		}, action: store.ActionAccept, reason: "their moderation_action is accept"},
		{name: "own reject", mod: func(f *facts) { f.Member.ModerationAction = "reject" }, action: store.ActionReject},
		{name: "own discard", mod: func(f *facts) { f.Member.ModerationAction = "discard" }, action: store.ActionDiscard},
		{name: "own defer beats list hold", mod: func(f *facts) {
			f.List.DefaultMemberAction = "hold"
			f.Member.ModerationAction = "defer"
		}},
		{name: "owner", mod: func(f *facts) {
			f.Member.Role = "owner"
			f.List.DefaultMemberAction = "accept"
		}, action: store.ActionAccept, reason: "is a owner"},
	})
}

func TestRuleNonmemberModeration(t *testing.T) {
	nonmember := func(f *facts) { f.Member = nil }
	runRuleCases(t, ruleNonmemberModeration, []ruleCase{
		{name: "member"},
		{name: "list default hold", mod: nonmember, action: store.ActionHold,
			reason: "alice@example.com is not a member; the list's default_nonmember_action is hold"},
		{name: "list default reject", mod: func(f *facts) { nonmember(f); f.List.DefaultNonmemberAction = "reject" }, action: store.ActionReject},
		{name: "list default accept", mod: func(f *facts) { nonmember(f); f.List.DefaultNonmemberAction = "accept" }, action: store.ActionAccept},
		{name: "list default defer", mod: func(f *facts) { nonmember(f); f.List.DefaultNonmemberAction = "defer" }},
		{name: "own discard", mod: func(f *facts) {
			nonmember(f)
			f.Nonmember = &store.PostingMember{Address: "alice@example.com", Role: "nonmember", ModerationAction: "discard"}
		}, action: store.ActionDiscard, reason: "their moderation_action is discard"},
		{name: "own accept beats list hold", mod: func(f *facts) {
			nonmember(f)
			f.Nonmember = &store.PostingMember{Address: "bot@example.com", Role: "nonmember", ModerationAction: "accept"}
		}, action: store.ActionAccept, reason: "bot@example.com"},
		{name: "no sender", mod: func(f *facts) { nonmember(f); f.Poster = ""; f.Senders = nil },
			action: store.ActionHold, reason: "names no sender"},
	})
}

func TestRuleImplicitDestination(t *testing.T) {
	post := func(dest string) string {
		return "From: alice@example.com\r\n" + dest + "Subject: hi\r\n"
	}
	runRuleCases(t, ruleImplicitDestination, []ruleCase{
		{name: "To"},
		{name: "Cc", header: post("To: bob@example.com\r\nCc: Test List <test@lists.example.org>\r\n")},
		{name: "case and extension", header: post("To: TEST+tag@Lists.Example.ORG\r\n")},
		{name: "alias domain", header: post("To: test@lists.example.net\r\n")},
		{name: "Resent-To", header: post("To: bob@example.com\r\nResent-To: test@lists.example.org\r\n")},
		{name: "in a group", header: post("To: team: test@lists.example.org, bob@example.com;\r\n")},
		{name: "unparseable but named", header: post("To: <test@lists.example.org>>, broken\r\n")},
		{name: "Bcc only", header: post("To: undisclosed-recipients:;\r\n"), action: store.ActionHold, reason: "not in To or Cc"},
		{name: "other list", header: post("To: test-owner@lists.example.org, tests@lists.example.org\r\n"), action: store.ActionHold},
		{name: "other domain", header: post("To: test@example.org\r\n"), action: store.ActionHold},
		{name: "no To at all", header: "From: alice@example.com\r\n", action: store.ActionHold},
		{name: "switched off", header: post("To: bob@example.com\r\n"), mod: func(f *facts) { f.List.RequireExplicitDest = false }},
	})
}

func TestRuleMaxRecipients(t *testing.T) {
	many := func(n int) string {
		var as []string
		for i := range n {
			as = append(as, "u"+string(rune('a'+i))+"@example.com")
		}
		return "From: alice@example.com\r\nTo: test@lists.example.org, " + strings.Join(as[:n/2], ", ") + "\r\nCc: " + strings.Join(as[n/2:], ", ") + "\r\n"
	}
	runRuleCases(t, ruleMaxRecipients, []ruleCase{
		{name: "one"},
		{name: "nine", header: many(8)},
		{name: "ten", header: many(9), action: store.ActionHold, reason: "10 recipients in To and Cc, the list's limit is 10"},
		{name: "no limit", header: many(20), mod: func(f *facts) { f.List.MaxNumRecipients = 0 }},
		{name: "unparseable counted by commas", header: "To: a@x, b@y, c@z, <<<\r\n", mod: func(f *facts) { f.List.MaxNumRecipients = 4 },
			action: store.ActionHold},
	})
}

func TestRuleAdministrivia(t *testing.T) {
	text := func(s string) func(*facts) {
		return func(f *facts) { f.Text = s }
	}
	runRuleCases(t, ruleAdministrivia, []ruleCase{
		{name: "ordinary post", mod: text("Hello everybody,\nsee you tomorrow.\n")},
		{name: "unsubscribe in the subject", header: "From: a@example.com\r\nSubject: unsubscribe\r\n",
			action: store.ActionHold, reason: `("unsubscribe"); commands go to test-request@lists.example.org`},
		{name: "encoded subject", header: "From: a@example.com\r\nSubject: =?utf-8?q?UNSUBSCRIBE?=\r\n", action: store.ActionHold},
		{name: "subscribe with an address", mod: text("\n\nsubscribe bob@example.com\n"), action: store.ActionHold, reason: "subscribe bob@example.com"},
		{name: "too many arguments is prose", mod: text("Unsubscribe me from this list right now please\n")},
		{name: "help takes no argument", mod: text("help me with this\n")},
		{name: "help alone", mod: text("help\n"), action: store.ActionHold},
		{name: "tenth non-blank line counts", mod: text(strings.Repeat("line\n\n", 9) + "leave\n"), action: store.ActionHold},
		{name: "eleventh does not", mod: text(strings.Repeat("line\n", 10) + "leave\n")},
		{name: "switched off", header: "From: a@example.com\r\nSubject: unsubscribe\r\n",
			mod: func(f *facts) { f.List.Administrivia = false }},
	})
}

func TestRuleHeaderMatch(t *testing.T) {
	checks := func(hms ...store.HeaderMatch) func(*facts) {
		return func(f *facts) {
			for _, hm := range hms {
				re, err := store.CompileHeaderPattern(hm.Pattern)
				if err != nil {
					t.Fatal(err)
				}
				f.HeaderMatches = append(f.HeaderMatches, headerMatch{hm, re})
			}
		}
	}
	spam := store.HeaderMatch{ID: 1, Header: "x-spam-flag", Pattern: "^yes$", Action: store.ActionHold}
	pills := store.HeaderMatch{ID: 2, Header: "subject", Pattern: "cheap pills", Action: store.ActionDiscard}
	runRuleCases(t, ruleHeaderMatch, []ruleCase{
		{name: "no checks"},
		{name: "no match", mod: checks(spam, pills)},
		{name: "field matches, any case", header: "From: a@example.com\r\nX-Spam-Flag: YES\r\n", mod: checks(spam, pills),
			action: store.ActionHold, reason: `header check #1: x-spam-flag matches "^yes$"`},
		{name: "encoded subject is decoded", header: "From: a@example.com\r\nSubject: =?utf-8?q?Cheap_Pills?=\r\n", mod: checks(spam, pills),
			action: store.ActionDiscard, reason: "#2"},
		{name: "first matching check decides", header: "From: a@example.com\r\nX-Spam-Flag: yes\r\nSubject: cheap pills\r\n",
			mod: checks(pills, spam), action: store.ActionDiscard},
	})
}

// TestChainOrder checks that rules run in the documented order: the first
// rule that decides wins.
func TestChainOrder(t *testing.T) {
	want := []string{"loop", "banned", "emergency", "approved", "max-size", "member-moderation",
		"header-match", "nonmember-moderation", "administrivia", "implicit-destination", "max-recipients"}
	if got := RuleNames(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("rules %v, want %v", got, want)
	}
	cases := []struct {
		name   string
		mod    func(*facts)
		header string
		rule   string
		action string
	}{
		{name: "member post accepted", rule: "default", action: store.ActionAccept},
		{name: "loop beats approval", header: "From: a@example.com\r\nTo: test@lists.example.org\r\nX-BeenThere: test@lists.example.org\r\n",
			mod: func(f *facts) { f.Approval.Valid = true }, rule: "loop", action: store.ActionDiscard},
		{name: "emergency beats approval", mod: func(f *facts) { f.List.Emergency = true; f.Approval.Valid = true },
			rule: "emergency", action: store.ActionHold},
		{name: "approval beats size and non-membership", mod: func(f *facts) {
			f.Approval.Valid = true
			f.Size = 1 << 20
			f.Member = nil
		}, rule: "approved", action: store.ActionAccept},
		{name: "size beats member accept", mod: func(f *facts) { f.Size = 1 << 20; f.Member.ModerationAction = "accept" },
			rule: "max-size", action: store.ActionHold},
		{name: "member accept skips destination checks", header: "From: a@example.com\r\nTo: x@example.com\r\n",
			mod: func(f *facts) { f.Member.ModerationAction = "accept" }, rule: "member-moderation", action: store.ActionAccept},
		{name: "member defer reaches destination check", header: "From: a@example.com\r\nTo: x@example.com\r\n",
			rule: "implicit-destination", action: store.ActionHold},
		{name: "administrivia before destination check", header: "From: a@example.com\r\nTo: x@example.com\r\nSubject: help\r\n",
			rule: "administrivia", action: store.ActionHold},
		{name: "nonmember held before destination check", header: "From: a@example.com\r\nTo: x@example.com\r\n",
			mod: func(f *facts) { f.Member = nil }, rule: "nonmember-moderation", action: store.ActionHold},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := baseFacts(tc.header)
			if tc.mod != nil {
				tc.mod(f)
			}
			v := evaluate(f)
			if v.Rule != tc.rule || v.Action != tc.action || v.Reason == "" {
				t.Errorf("verdict %+v, want rule %s action %s", v, tc.rule, tc.action)
			}
		})
	}
}

func TestSenders(t *testing.T) {
	cases := []struct {
		header, env string
		all         []string
		poster      string
	}{
		{"From: Alice <alice@Example.COM>\r\n", "bounce@example.com", []string{"alice@example.com", "bounce@example.com"}, "alice@example.com"},
		{"From: a@x.org, b@y.org\r\nSender: s@z.org\r\n", "a@X.org", []string{"a@x.org", "b@y.org", "s@z.org"}, "a@x.org"},
		{"From: not an address\r\n", "env@example.com", []string{"env@example.com"}, "env@example.com"},
		{"Subject: none\r\n", "", nil, ""},
		{"From: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\r\nReply-To: member@example.com\r\n", "", []string{"j@example.de"}, "j@example.de"},
	}
	for _, tc := range cases {
		all, poster := senders(message.Parse([]byte(tc.header+"\r\n")), tc.env)
		if strings.Join(all, ",") != strings.Join(tc.all, ",") || poster != tc.poster {
			t.Errorf("senders(%q, %q) = %v, %q; want %v, %q", tc.header, tc.env, all, poster, tc.all, tc.poster)
		}
	}
}
