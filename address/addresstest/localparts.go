// Package addresstest holds recipient spellings that every path deciding
// a list recipient (milter, LMTP, policy service, socketmap) must answer
// alike. The resolver's unit tests and the end-to-end tests through a real
// Postfix read the same table, so a row added here is checked both ways.
package addresstest

import "strings"

// Domain is the list domain the rows address; List is its one list,
// which has the member Member.
const (
	Domain = "lists.example.org"
	List   = "test@" + Domain
	Member = "alice@example.com"
)

// Victim is the forged envelope sender: nothing may ever be mailed to it.
const Victim = "victim@victim.example"

// Class is the first digit of the SMTP reply a row expects at RCPT.
type Class int

// The reply classes a row can expect. AnyClass is for recipients that
// are not postlist's to judge (another domain): whatever Postfix answers,
// the row still checks that nothing goes back to the sender.
const (
	AnyClass Class = 0
	Accept   Class = 2
	Refuse   Class = 5
)

// LocalPart is one row.
type LocalPart struct {
	Name string
	// Wire is the local part as a client writes it in RCPT TO, which is
	// also what the milter is handed.
	Wire string
	// Value is the same local part unquoted, as Postfix keeps it
	// internally and hands it to a policy service, and as go-smtp hands
	// the LMTP server what Postfix's LMTP client quoted again.
	Value string
	// Domain is the recipient domain; "" means Domain.
	Domain string
	// Resolves says whether the resolver itself finds a list address
	// (later checks, such as VERP or token lookups, may still refuse).
	Resolves bool
	// RCPT is the reply class expected through Postfix. Postfix itself
	// refuses some spellings (quotes around part of a local part) with
	// 501 5.1.3 before postlist is asked.
	RCPT Class
	// NoSMTP marks rows the end-to-end test cannot send: a NUL byte, or
	// angle brackets, which its SMTP client refuses in an address. They
	// are unit-tested only.
	NoSMTP bool
}

// Addr is the wire form of the recipient.
func (l LocalPart) Addr() string { return l.Wire + "@" + l.domain() }

// ValueAddr is the recipient in Postfix's internal, unquoted form.
func (l LocalPart) ValueAddr() string { return l.Value + "@" + l.domain() }

func (l LocalPart) domain() string {
	if l.Domain == "" {
		return Domain
	}
	return l.Domain
}

// LocalParts is the table. Every character that is legal only inside
// quotes has a row, because each one was a way to make the milter accept
// what the LMTP server then refused.
var LocalParts = []LocalPart{
	{Name: "plain", Wire: `test`, Value: `test`, Resolves: true, RCPT: Accept},
	{Name: "needless quotes", Wire: `"test"`, Value: `test`, Resolves: true, RCPT: Accept},
	{Name: "backslash escape of a plain letter", Wire: `"te\st"`, Value: `test`, Resolves: true, RCPT: Accept},
	{Name: "quoted upper case", Wire: `"TEST"`, Value: `TEST`, Resolves: true, RCPT: Accept},
	{Name: "upper case extension", Wire: `TEST+X`, Value: `TEST+X`, Resolves: true, RCPT: Accept},
	{Name: "quoted extension with dots", Wire: `"test+a.b"`, Value: `test+a.b`, Resolves: true, RCPT: Accept},
	{Name: "extension with two dots", Wire: `"test+a..b"`, Value: `test+a..b`, Resolves: true, RCPT: Accept},
	{Name: "space in quotes", Wire: `"test+ 0"`, Value: `test+ 0`, RCPT: Refuse},
	{Name: "escaped quote", Wire: `"test+a\"b"`, Value: `test+a"b`, RCPT: Refuse},
	{Name: "escaped backslash", Wire: `"test+a\\b"`, Value: `test+a\b`, RCPT: Refuse},
	{Name: "parentheses", Wire: `"test+(x)"`, Value: `test+(x)`, RCPT: Refuse},
	{Name: "comma", Wire: `"test+a,b"`, Value: `test+a,b`, RCPT: Refuse},
	{Name: "semicolon", Wire: `"test+a;b"`, Value: `test+a;b`, RCPT: Refuse},
	{Name: "angle brackets", Wire: `"test+<x>"`, Value: `test+<x>`, RCPT: Refuse, NoSMTP: true},
	{Name: "square brackets", Wire: `"test+[x]"`, Value: `test+[x]`, RCPT: Refuse},
	{Name: "colon", Wire: `"test+a:b"`, Value: `test+a:b`, RCPT: Refuse},
	{Name: "at sign in quotes", Wire: `"test+a@victim.example"`, Value: `test+a@victim.example`, RCPT: Refuse},
	{Name: "whole address in quotes", Wire: `"test@` + Domain + `"`, Value: `test@` + Domain, RCPT: Refuse},
	{Name: "quoted list name with space", Wire: `"te st"`, Value: `te st`, RCPT: Refuse},
	{Name: "quotes in the middle", Wire: `te"st"`, Value: `test`, Resolves: true, RCPT: Refuse},
	{Name: "quoted extension only", Wire: `test+"x"`, Value: `test+x`, Resolves: true, RCPT: Refuse},
	{Name: "quoted list name, bare subaddress", Wire: `"test"-owner`, Value: `test-owner`, Resolves: true, RCPT: Refuse},
	// The milter is handed the backslash and refuses it; Postfix's own
	// parser reads \b as b, so through the policy service this is a post
	// to test, and LMTP is handed test+ab. Each path's LMTP agrees with
	// its RCPT answer, which is what keeps bounces away from the sender.
	{Name: "escape outside quotes", Wire: `test+a\b`, Value: `test+a\b`, RCPT: AnyClass},
	{Name: "empty quotes", Wire: `""`, Value: ``, RCPT: Refuse},
	{Name: "trailing dot", Wire: `test.`, Value: `test.`, RCPT: Refuse},
	{Name: "quoted trailing dot", Wire: `"test."`, Value: `test.`, RCPT: Refuse},
	{Name: "leading dot", Wire: `.test`, Value: `.test`, RCPT: Refuse},
	{Name: "double dot", Wire: `te..st`, Value: `te..st`, RCPT: Refuse},
	{Name: "percent hack in extension", Wire: `test+a%victim.example`, Value: `test+a%victim.example`, Resolves: true, RCPT: Accept},
	{Name: "percent hack", Wire: `victim%victim.example`, Value: `victim%victim.example`, RCPT: Refuse},
	{Name: "bang path in extension", Wire: `test+victim.example!victim`, Value: `test+victim.example!victim`, Resolves: true, RCPT: Accept},
	{Name: "bang path", Wire: `victim.example!victim`, Value: `victim.example!victim`, RCPT: Refuse},
	{Name: "long extension", Wire: `test+` + strings.Repeat("x", 200), Value: `test+` + strings.Repeat("x", 200), Resolves: true, RCPT: Accept},
	{Name: "quoted long extension", Wire: `"test+` + strings.Repeat("x", 200) + `"`, Value: `test+` + strings.Repeat("x", 200), Resolves: true, RCPT: Accept},
	{Name: "too long", Wire: `test+` + strings.Repeat("x", 1000), Value: `test+` + strings.Repeat("x", 1000), RCPT: Refuse},
	{Name: "quoted too long", Wire: `"test+` + strings.Repeat("x", 1000) + `"`, Value: `test+` + strings.Repeat("x", 1000), RCPT: Refuse},
	{Name: "tab in quotes", Wire: "\"test+a\tb\"", Value: "test+a\tb", RCPT: Refuse},
	{Name: "NUL in quotes", Wire: "\"test+a\x00b\"", Value: "test+a\x00b", RCPT: Refuse, NoSMTP: true},
	{Name: "UTF-8", Wire: "t\u00e9st", Value: "t\u00e9st", RCPT: Refuse},
	{Name: "quoted UTF-8", Wire: "\"test+\u00e9\"", Value: "test+\u00e9", RCPT: Refuse},
	{Name: "quoted unsigned VERP of a member", Wire: `"test-bounces+alice=example.com"`, Value: `test-bounces+alice=example.com`, Resolves: true, RCPT: Refuse},
	{Name: "VERP with a quoted space", Wire: `"test-bounces+a b=example.com"`, Value: `test-bounces+a b=example.com`, RCPT: Refuse},
	{Name: "VERP with quotes inside", Wire: `test-bounces+"a b"=example.com`, Value: `test-bounces+a b=example.com`, RCPT: Refuse},
	{Name: "VERP with a quoted at sign", Wire: `"test-bounces+a@b=example.com"`, Value: `test-bounces+a@b=example.com`, RCPT: Refuse},
	{Name: "quoted unknown confirm token", Wire: `"test-confirm+0123456789abcdef"`, Value: `test-confirm+0123456789abcdef`, Resolves: true, RCPT: Refuse},
	{Name: "confirm token with a space", Wire: `"test-confirm+0123 4567"`, Value: `test-confirm+0123 4567`, RCPT: Refuse},
	{Name: "quoted owner", Wire: `"test-owner"`, Value: `test-owner`, Resolves: true, RCPT: Accept},
	{Name: "request with a space", Wire: `"test-request+ x"`, Value: `test-request+ x`, RCPT: Refuse},
	{Name: "unknown list, quoted", Wire: `"nope"`, Value: `nope`, RCPT: Refuse},
	{Name: "trailing dot on the domain", Wire: `"test"`, Value: `test`, Domain: Domain + ".", Resolves: true, RCPT: Accept},
	{Name: "space, trailing dot on the domain", Wire: `"test+ 0"`, Value: `test+ 0`, Domain: Domain + ".", RCPT: Refuse},
	{Name: "IP literal domain", Wire: `"test+ 0"`, Value: `test+ 0`, Domain: "[127.0.0.1]", RCPT: AnyClass},
}
