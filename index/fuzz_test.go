package index_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"postlist/index"
	"postlist/index/indextest"
	"postlist/reply"
	"postlist/store"
)

// FuzzDecide: whatever a remote client puts in RCPT TO or MAIL FROM, a
// decision comes back without a panic, and any refusal is a well-formed
// one-line SMTP reply short enough for the wire.
func FuzzDecide(f *testing.F) {
	src := &indextest.Source{}
	id := src.AddList("test", "lists.example.org", "reject", 40)
	src.AddList("foo-owner", "lists.example.org", "", 0)
	src.Domains = append(src.Domains, store.IndexDomain{Name: "alias.example.org", AliasOf: "lists.example.org"})
	src.Members = []store.IndexMember{{ListID: id, Address: "alice@example.com"}, {ListID: id, Address: `"a b"@example.com`}}
	src.Tokens = []store.IndexToken{{ListID: id, Token: "0123456789abcdef0123456789abcdef", ExpiresAt: time.Now().Add(time.Hour)}}
	src.Bans = []store.IndexBan{{ListID: id, Pattern: `^.*@spam\.example$`}}
	ix := index.New(src, index.Options{})
	if err := ix.Reload(context.Background()); err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][2]string{
		{"test@lists.example.org", "alice@example.com"},
		{"<TEST-bounces+alice=example.com@Lists.Example.Org>", ""},
		{"test-bounces+alice=example.com=abcdefgh@lists.example.org", "x@spam.example"},
		{"test-confirm+0123456789abcdef0123456789abcdef@alias.example.org", "<>"},
		{`"test"@lists.example.org`, `"a b"@example.com`},
		{"foo-owner-owner@lists.example.org.", "a@b"},
		{"te\x00st@lists.example.org", "\r\n"},
		{strings.Repeat("a", 2000) + "@lists.example.org", strings.Repeat("b", 2000)},
		{`"test+ 0"@lists.example.org`, "victim@victim.example"},
		{`"test-bounces+a b=example.com"@lists.example.org`, ""},
		{`"TEST-confirm+0123456789abcdef0123456789abcdef"@alias.example.org`, ""},
		{"@", "@"},
		{"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	snap := ix.Snapshot()
	f.Fuzz(func(t *testing.T, rcpt, sender string) {
		d := snap.Decide(rcpt)
		check(t, d.Reply)
		if d.Accepted() {
			r, _ := snap.CheckSender(d.Target.List, sender)
			check(t, r)
		}
		if d.Reply == nil && d.Ours && d.Target.List == "" {
			t.Fatalf("accepted %q without a list", rcpt)
		}
		// The milter passes the quoted spelling, the LMTP server and a
		// policy service the bare value: the decision must not differ.
		if value, ok := bareValue(rcpt); ok {
			v := snap.Decide(value)
			if v.Ours != d.Ours || v.Reason != d.Reason || v.Target != d.Target || (v.Reply == nil) != (d.Reply == nil) ||
				v.Reply != nil && (v.Reply.Code != d.Reply.Code || v.Reply.Enhanced != d.Reply.Enhanced) {
				t.Fatalf("Decide(%q) = %+v but Decide(%q) = %+v", rcpt, d, value, v)
			}
		}
	})
}

func check(t *testing.T, r *reply.Reply) {
	t.Helper()
	if r == nil {
		return
	}
	s := r.String()
	if strings.ContainsAny(s, "\r\n") || len(s) > 512 || !(strings.HasPrefix(s, "4") || strings.HasPrefix(s, "5")) {
		t.Fatalf("bad reply %q", s)
	}
}

// bareValue returns rcpt with a local part that is one quoted string
// replaced by its value, as Postfix's internal form and go-smtp have it.
// A value holding a quote is left out: its bare form can also be read as
// quoting (see address.Resolver.Resolve).
func bareValue(rcpt string) (string, bool) {
	s := strings.TrimSpace(rcpt)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	at := strings.LastIndexByte(s, '@')
	if at < 2 || s[0] != '"' || s[at-1] != '"' {
		return "", false
	}
	var b strings.Builder
	q := s[1 : at-1]
	for i := 0; i < len(q); i++ {
		switch c := q[i]; c {
		case '"':
			return "", false
		case '\\':
			i++
			if i == len(q) || q[i] == '"' {
				return "", false
			}
			b.WriteByte(q[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String() + s[at:], true
}
