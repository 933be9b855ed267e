package milter

import (
	"context"
	"strings"
	"testing"

	"postlist/address"
	"postlist/index"
	"postlist/index/indextest"
	"postlist/store"
)

// FuzzContent: headers from the network (any name, any value, any
// number) never panic the end-of-message policy, and a refusal is always
// one of its known replies.
func FuzzContent(f *testing.F) {
	src := &indextest.Source{}
	id := src.AddList("test", "lists.example.org", "reject", 1)
	src.Members = []store.IndexMember{{ListID: id, Address: "alice@example.com"}}
	ix := index.New(src, index.Options{})
	if err := ix.Reload(context.Background()); err != nil {
		f.Fatal(err)
	}
	srv := New(Options{Index: ix, MaxMessageSize: 4096})
	for _, seed := range [][3]string{
		{"From", "Alice <alice@example.com>", "hi"},
		{"From", "=?x-unknown?q?M=F6?= <m@x>, <alice@example.com>", ""},
		{"FROM", "\"unterminated <a@b", "x"},
		{"List-Id", "Test <test.lists.example.org>", ""},
		{"List-Id", "<<>>", ""},
		{"X-BeenThere", " <test@lists.example.org> ", ""},
		{"from", "a@b <c@d> e@f", strings.Repeat("x", 5000)},
		{"", "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, name, value, body string) {
		s := &session{srv: srv}
		s.rcpts = []rcpt{{addr: "test@lists.example.org", target: address.Target{List: "test@lists.example.org", Kind: address.Post}}}
		for range 3 {
			if _, err := s.Header(name, value, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.BodyChunk([]byte(body), nil); err != nil {
			t.Fatal(err)
		}
		f := s.wouldRefuse(ix.Snapshot(), s.rcpts[0])
		if f == nil {
			return
		}
		switch f.reason {
		case ReasonLoop, ReasonTooBig, index.ReasonNonmember, index.ReasonBanned:
		default:
			t.Fatalf("unknown refusal %+v", f)
		}
		if strings.ContainsAny(f.reply.String(), "\r\n") {
			t.Fatalf("multi-line reply %q", f.reply)
		}
	})
}
