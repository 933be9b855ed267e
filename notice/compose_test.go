package notice

import (
	"strings"
	"testing"
	"time"

	"postlist/store"
)

func testList(settings map[string]string) *store.List {
	return &store.List{Address: "test@lists.example.org", ListID: "test.lists.example.org", Settings: settings}
}

// TestComposers: each notice comes from the address a reply to it must
// reach, to whom it concerns, with its kind and RFC 3834 mark, and says
// what it is about.
func TestComposers(t *testing.T) {
	l := testList(map[string]string{"display_name": "Test"})
	token := store.Token{Token: "tok123", Kind: store.TokenSubscribe, Address: "bob@example.net", DisplayName: "Bob",
		ExpiresAt: time.Date(2026, 12, 11, 4, 0, 0, 0, time.UTC)}
	member := store.DisabledMember{Address: "bob@example.net", DisplayName: "Bob", Score: 5.5, WarningsSent: 2}
	bye, owners := BounceRemoved(l, member)
	post := []byte("From: bob@example.net\r\nSubject: Hi there\r\nMessage-ID: <p1@example.net>\r\n\r\nbody\r\n")
	tests := []struct {
		name                       string
		m                          Mail
		from, to, kind, auto, list string
		says                       []string
	}{
		{"confirm", Confirm(l, token, "<q@example.net>", "+"),
			"test-confirm+tok123@lists.example.org", `"Bob" <bob@example.net>`, "confirm", "auto-replied", "test.lists.example.org",
			[]string{"request to subscribe the address", "confirm tok123", "2026-12-11 04:00 UTC", "test-request@lists.example.org"}},
		{"join state", JoinState(l, "carol@example.net", "", "carol@example.net is already a member.\n"),
			"test-request@lists.example.org", "carol@example.net", "join-state", "auto-replied", "test.lists.example.org",
			[]string{"already a member", "test-owner@lists.example.org"}},
		{"moderation request", ModerationRequest(l, store.Token{Token: "mod9", Address: "bob@example.net", Data: store.TokenSubscribe}, "+"),
			"test-confirm+mod9@lists.example.org", "test-owner@lists.example.org", "moderation-request", "auto-generated", "test.lists.example.org",
			[]string{"confirmed a request to join", "confirm mod9"}},
		{"welcome", Welcome(l, "", "bob@example.net"),
			"test-request@lists.example.org", "bob@example.net", "welcome", "auto-generated", "test.lists.example.org",
			[]string{`Welcome to the "Test" mailing list!`, "test-leave@lists.example.org"}},
		{"goodbye", Goodbye(l, "", "bob@example.net", ""),
			"test-request@lists.example.org", "bob@example.net", "goodbye", "auto-generated", "test.lists.example.org",
			[]string{"unsubscribed from the Test mailing list", "test-join@lists.example.org"}},
		{"results", ResultsMail(l, Results{Address: "bob@example.net", Subject: "help", MessageID: "<m@x>", Lines: []string{"> help"}}),
			"test-request@lists.example.org", "bob@example.net", "results", "auto-replied", "test.lists.example.org",
			[]string{"    From: n/a\n", "    Subject: help\n", "    > help\n", "- Done."}},
		{"bounce disabled", BounceDisabled(l, Disabled{Address: "bob@example.net", Score: 5, Threshold: 5, Status: "5.1.1", Diagnostic: "no such user", Warnings: 3, Interval: 7 * 24 * time.Hour}),
			"test-owner@lists.example.org", "test-owner@lists.example.org", "bounce-disabled", "auto-generated", "test.lists.example.org",
			[]string{"Last failure: 5.1.1 no such user", "warned 3 time(s), 7 day(s) apart", "delivery_status enabled"}},
		{"bounce warning", BounceWarning(l, member, 3, 3, 36*time.Hour),
			"test-request@lists.example.org", `"Bob" <bob@example.net>`, "bounce-warning", "auto-generated", "test.lists.example.org",
			[]string{"This is warning 3 of 3. 36 hour(s) after the last warning", "bounce score 5.5"}},
		{"bounce removed: goodbye", bye,
			"test-request@lists.example.org", `"Bob" <bob@example.net>`, "goodbye", "auto-generated", "test.lists.example.org",
			[]string{"2 warning(s) went unanswered"}},
		{"bounce removed: owners", owners,
			"test-owner@lists.example.org", "test-owner@lists.example.org", "bounce-removed", "auto-generated", "test.lists.example.org",
			[]string{"bounce score 5.5, 2 warning(s) sent"}},
		{"bounce unrecognized", BounceUnrecognized(l, post),
			"test-owner@lists.example.org", "test-owner@lists.example.org", "bounce-unrecognized", "auto-generated", "test.lists.example.org",
			[]string{"no member address could be"}},
		{"held", HeldMail(l, Held{ID: 7, Token: "held5", Delim: "+", Poster: "bob@example.net", Subject: "Hi", Rule: "moderation", Reason: "non-member", Post: post}),
			"test-owner@lists.example.org", "test-owner@lists.example.org", "held", "auto-generated", "",
			[]string{"Held as:  7", "Reason:   moderation: non-member", "postlist held approve 7", "To discard it by mail", "The held message is attached."}},
		{"rejected", RejectedMail(l, "bob@example.net", "no strangers", post),
			"test-owner@lists.example.org", "bob@example.net", "rejected", "auto-replied", "",
			[]string{"Subject:  Hi there", "Reason:   no strangers", "The header of your message is attached."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			if m.From != tc.from || m.To != tc.to || m.Kind != tc.kind || m.Auto != tc.auto || m.ListID != tc.list {
				t.Errorf("From %q To %q Kind %q Auto %q ListID %q", m.From, m.To, m.Kind, m.Auto, m.ListID)
			}
			for _, s := range tc.says {
				if !strings.Contains(m.Text, s) {
					t.Errorf("text lacks %q:\n%s", s, m.Text)
				}
			}
		})
	}
}

// TestPostNotices: a hold notice is answered to the post's confirm
// address and attaches the post; a reject notice answers the post and
// attaches its header only, even for an empty post.
func TestPostNotices(t *testing.T) {
	l := testList(map[string]string{"moderator_password": "x"})
	post := []byte("Subject: s\r\nMessage-ID: <p1@example.net>\r\n\r\nbody\r\n")
	h := HeldMail(l, Held{ID: 1, Token: "tk", Delim: "+", Post: post})
	if h.ReplyTo != "test-confirm+tk@lists.example.org" || string(h.Attach) != string(post) || h.HeaderOnly ||
		!strings.Contains(h.Text, "Approved: <the list's moderator password>") || !strings.Contains(h.Subject, "from an unknown sender") {
		t.Errorf("hold notice: %+v", h)
	}
	if big := HeldMail(l, Held{ID: 2, Post: make([]byte, MaxAttached+2048)}); !strings.Contains(big.Text, "is 258 KiB; its header is attached") {
		t.Errorf("big hold notice text:\n%s", big.Text)
	}
	r := RejectedMail(l, "bob@example.net", "r", post)
	if !r.HeaderOnly || r.InReplyTo != "<p1@example.net>" || r.ReplyTo != "" {
		t.Errorf("reject notice: %+v", r)
	}
	for _, m := range []Mail{HeldMail(l, Held{}), RejectedMail(l, "bob@example.net", "r", nil)} {
		if m.Attach == nil {
			t.Errorf("%s notice without an attachment for an empty post", m.Kind)
		}
	}
}
