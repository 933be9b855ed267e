package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
)

const postsList = "test@lists.example.org"

// postsFixture makes a list with members in every delivery situation and
// one post waiting in intake.
func postsFixture(t *testing.T) (s *Store, l *List, in IntakeResult) {
	t.Helper()
	ctx := context.Background()
	s = openTest(t)
	l, err := s.CreateList(ctx, postsList)
	if err != nil {
		t.Fatal(err)
	}
	members := []NewMember{{Address: "alice@example.com"}, {Address: "Bob@Example.net"}, {Address: "carol@example.org"},
		{Address: "dave@example.org"}, {Address: "erin@example.org"}, {Address: "frank@example.org"}}
	if _, err := s.AddMembers(ctx, postsList, "member", members, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddMembers(ctx, postsList, "owner", []NewMember{{Address: "owner@example.com"}, {Address: "alice@example.com"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddMembers(ctx, postsList, "moderator", []NewMember{{Address: "mod@example.com"}, {Address: "Owner@example.com"}, {Address: "off@example.com"}}, nil); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetMember(ctx, postsList, "carol@example.org", "delivery_status", "by_user"))
	must(s.SetMember(ctx, postsList, "dave@example.org", "delivery_status", "by_moderator"))
	must(s.SetMember(ctx, postsList, "frank@example.org", "receive_own_postings", "no"))
	must(s.SetMember(ctx, postsList, "spammer@example.biz", "moderation_action", "discard"))
	_, err = s.w.Exec(`UPDATE members SET delivery_status = 'by_bounces' WHERE address = 'erin@example.org'`)
	must(err)
	_, err = s.w.Exec(`UPDATE members SET delivery_status = 'by_user' WHERE address = 'off@example.com'`)
	must(err)
	in, err = s.Intake(ctx, intakeMsg("frank@example.org", post(postsList)))
	must(err)
	return s, l, in
}

func verpOf(m string) string {
	return "test-bounces+" + strings.Replace(m, "@", "=", 1) + "@lists.example.org"
}

func TestFanOutRecipients(t *testing.T) {
	s, l, _ := postsFixture(t)
	ctx := context.Background()
	cases := []struct {
		poster string
		want   []string
	}{
		// Only enabled members: not carol (by_user), dave (by_moderator),
		// erin (by_bounces), nor owners, moderators or nonmembers.
		{"someone@example.com", []string{"alice@example.com", "Bob@Example.net", "frank@example.org"}},
		// frank opted out of his own posts, whatever the case he posts in.
		{"FRANK@example.org", []string{"alice@example.com", "Bob@Example.net"}},
		// alice did not, so she gets hers.
		{"alice@example.com", []string{"alice@example.com", "Bob@Example.net", "frank@example.org"}},
		{"", []string{"alice@example.com", "Bob@Example.net", "frank@example.org"}},
	}
	for _, tc := range cases {
		got, err := s.FanOutRecipients(ctx, l.ID, tc.poster)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("poster %q: recipients %v, want %v", tc.poster, got, tc.want)
		}
	}
}

func TestPostingMembersAndAdmins(t *testing.T) {
	s, l, _ := postsFixture(t)
	ctx := context.Background()
	got, err := s.PostingMembers(ctx, l.ID, []string{"SPAMMER@example.biz", "ALICE@example.com", "nobody@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var desc []string
	for _, m := range got {
		desc = append(desc, m.Address+"/"+m.Role+"/"+m.ModerationAction)
	}
	want := []string{"spammer@example.biz/nonmember/discard", "alice@example.com/member/", "alice@example.com/owner/"}
	slices.Sort(desc[1:])
	if !slices.Equal(desc, want) {
		t.Errorf("posting members %v, want %v", desc, want)
	}
	admins, err := s.ListAdmins(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	// owner@ is owner and moderator (spelt differently): listed once;
	// off@ has delivery off.
	if want := []string{"alice@example.com", "mod@example.com", "Owner@example.com"}; !slices.Equal(admins, want) {
		t.Errorf("admins %v, want %v", admins, want)
	}
}

func TestListDomainsAndByID(t *testing.T) {
	s, l, _ := postsFixture(t)
	ctx := context.Background()
	if err := s.AddAlias(ctx, "lists.example.net", "lists.example.org"); err != nil {
		t.Fatal(err)
	}
	ds, err := s.ListDomains(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"lists.example.org", "lists.example.net"}; !slices.Equal(ds, want) {
		t.Errorf("domains %v, want %v", ds, want)
	}
	got, err := s.ListByID(ctx, l.ID)
	if err != nil || got.Address != postsList || got.Setting("subject_prefix") != "[Test] " {
		t.Errorf("ListByID = %+v, %v", got, err)
	}
	if _, err := s.ListByID(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListByID(999): %v", err)
	}
}

func TestRecordPostAccept(t *testing.T) {
	s, l, in := postsFixture(t)
	ctx := context.Background()
	d := PostDecision{
		IntakeID: in.IntakeIDs[0], ListID: l.ID, MessageID: in.MessageID,
		Action: ActionAccept, Rule: "member-moderation", Reason: "frank@example.org is a member",
		Sender: "frank@example.org", Subject: "hi", Envelope: verpOf,
	}
	res, err := s.RecordPost(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if res.MessageID != in.MessageID || res.Deliveries != 2 || res.HeldID != 0 {
		t.Errorf("result %+v", res)
	}
	rows, err := s.r.Query(`SELECT recipient, envelope_from, state, list_id FROM deliveries WHERE message_id = ? ORDER BY recipient`, in.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var r, e, st string
		var lid int64
		if err := rows.Scan(&r, &e, &st, &lid); err != nil {
			t.Fatal(err)
		}
		if lid != l.ID || st != DeliveryQueued {
			t.Errorf("row %s: list %d state %s", r, lid, st)
		}
		got = append(got, r+" "+e)
	}
	rows.Close()
	want := []string{"Bob@Example.net test-bounces+Bob=Example.net@lists.example.org", "alice@example.com test-bounces+alice=example.com@lists.example.org"}
	if !slices.Equal(got, want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
	if ok, err := s.IsPost(ctx, in.MessageID, l.ID); !ok || err != nil {
		t.Errorf("IsPost = %v, %v", ok, err)
	}
	if ok, _ := s.IsPost(ctx, in.MessageID, l.ID+1); ok {
		t.Error("IsPost true for another list")
	}
	var state, result string
	if err := s.r.QueryRow(`SELECT state, result FROM intake WHERE id = ?`, in.IntakeIDs[0]).Scan(&state, &result); err != nil {
		t.Fatal(err)
	}
	if state != IntakeDone || result != "accept (member-moderation): frank@example.org is a member" {
		t.Errorf("intake %s %q", state, result)
	}
	if n := countEvents(t, s, EventPostAccepted); n != 1 {
		t.Errorf("%d post_accepted events", n)
	}

	// Deciding the same intake row again fails and writes nothing.
	if _, err := s.RecordPost(ctx, d); !errors.Is(err, ErrAlreadyDone) {
		t.Errorf("second RecordPost: %v", err)
	}
	if n := countRows(t, s, "deliveries"); n != 2 {
		t.Errorf("%d deliveries after a repeated decision", n)
	}
	if n := countRows(t, s, "posts"); n != 1 {
		t.Errorf("%d posts after a repeated decision", n)
	}
}

func countEvents(t *testing.T, s *Store, kind string) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM events WHERE kind = ?`, kind).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRecordPostHoldStoresCleanedCopyAndNotice(t *testing.T) {
	s, l, in := postsFixture(t)
	ctx := context.Background()
	cleaned := []byte("From: frank@example.org\r\nSubject: hi\r\n\r\nbody without password\r\n")
	notice := Notice{
		Sender: "test-bounces@lists.example.org",
		Body:   []byte("Message-ID: <notice-1@lists.example.org>\r\nSubject: held\r\n\r\nheld\r\n"),
		Recipients: []NewDelivery{
			{Recipient: "mod@example.com", EnvelopeFrom: "test-bounces@lists.example.org"},
			{Recipient: "owner@example.com", EnvelopeFrom: "test-bounces@lists.example.org"},
		},
	}
	res, err := s.RecordPost(ctx, PostDecision{
		IntakeID: in.IntakeIDs[0], ListID: l.ID, MessageID: in.MessageID, Cleaned: cleaned,
		Action: ActionHold, Rule: "emergency", Reason: "the list is in emergency moderation",
		Sender: "frank@example.org", Subject: "hi",
		Notices: func(r PostResult) []Notice {
			if r.HeldID == 0 {
				t.Error("notices built before the held row exists")
			}
			return []Notice{notice}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.MessageID == in.MessageID || res.HeldID == 0 || res.Notices != 1 || res.Deliveries != 0 {
		t.Fatalf("result %+v", res)
	}
	from, body, err := s.MessageSender(ctx, res.MessageID)
	if err != nil || string(body) != string(cleaned) || from != "frank@example.org" {
		t.Errorf("held message from %q body %q, %v", from, body, err)
	}
	h, err := s.GetHeld(ctx, res.HeldID)
	if err != nil {
		t.Fatal(err)
	}
	if h.MessageID != res.MessageID || h.State != HeldHeld || h.Reason != "emergency: the list is in emergency moderation" ||
		h.List != postsList || h.Sender != "frank@example.org" || h.Size != int64(len(cleaned)) {
		t.Errorf("held row %+v", h)
	}
	var noticeID int64
	var hdrID, sender string
	if err := s.r.QueryRow(`SELECT id, message_id, sender FROM messages WHERE message_id = '<notice-1@lists.example.org>'`).Scan(&noticeID, &hdrID, &sender); err != nil {
		t.Fatalf("notice message: %v", err)
	}
	if sender != "test-bounces@lists.example.org" {
		t.Errorf("notice envelope sender %q", sender)
	}
	var n int
	s.r.QueryRow(`SELECT count(*) FROM deliveries WHERE message_id = ?`, noticeID).Scan(&n)
	if n != 2 {
		t.Errorf("%d notice deliveries, want 2", n)
	}
	if ok, _ := s.IsPost(ctx, noticeID, l.ID); ok {
		t.Error("a notice is recorded as a post")
	}
	hs, err := s.HeldMessages(ctx, postsList)
	if err != nil || len(hs) != 1 || hs[0].ID != res.HeldID {
		t.Errorf("HeldMessages = %+v, %v", hs, err)
	}
	if hs, _ := s.HeldMessages(ctx, ""); len(hs) != 1 {
		t.Errorf("HeldMessages(all) = %+v", hs)
	}
	if _, err := s.HeldMessages(ctx, "nope@lists.example.org"); !errors.Is(err, ErrNotFound) {
		t.Errorf("HeldMessages(unknown list): %v", err)
	}
}

func TestRecordPostRejectAndDiscard(t *testing.T) {
	for _, action := range []string{ActionReject, ActionDiscard} {
		t.Run(action, func(t *testing.T) {
			s, l, in := postsFixture(t)
			res, err := s.RecordPost(context.Background(), PostDecision{
				IntakeID: in.IntakeIDs[0], ListID: l.ID, MessageID: in.MessageID,
				Action: action, Rule: "nonmember-moderation", Reason: "why", Sender: "x@example.com",
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Deliveries != 0 || res.HeldID != 0 {
				t.Errorf("result %+v", res)
			}
			if n := countRows(t, s, "deliveries") + countRows(t, s, "held") + countRows(t, s, "posts"); n != 0 {
				t.Errorf("%d rows written for %s", n, action)
			}
			if n := countEvents(t, s, "post_"+action+"ed"); n != 1 && action == ActionReject {
				t.Errorf("%d reject events", n)
			}
		})
	}
}

func TestRecordPostValidation(t *testing.T) {
	s, l, in := postsFixture(t)
	ctx := context.Background()
	bad := []PostDecision{
		{IntakeID: in.IntakeIDs[0], ListID: l.ID, MessageID: in.MessageID, Action: "maybe"},
		{IntakeID: in.IntakeIDs[0], ListID: l.ID, MessageID: in.MessageID, Action: ActionAccept},
		{IntakeID: in.IntakeIDs[0], ListID: l.ID, MessageID: in.MessageID, Action: ActionHold,
			Notices: func(PostResult) []Notice { return []Notice{{Sender: "x", Body: []byte("x")}} }},
		{IntakeID: in.IntakeIDs[0], ListID: l.ID, MessageID: in.MessageID, Action: ActionAccept,
			Envelope: func(string) string { return "a\r\nb" }},
	}
	for i, d := range bad {
		if _, err := s.RecordPost(ctx, d); err == nil {
			t.Errorf("case %d: RecordPost accepted %+v", i, d)
		}
	}
	// Nothing was written by the failed decisions: the row is still new.
	items, err := s.PendingIntake(ctx, 10, "post")
	if err != nil || len(items) != 1 {
		t.Errorf("pending intake after failed decisions: %v, %v", items, err)
	}
	if n := countRows(t, s, "held") + countRows(t, s, "deliveries"); n != 0 {
		t.Errorf("%d rows left by failed decisions", n)
	}
}

func holdFixture(t *testing.T) (*Store, *List, int64) {
	t.Helper()
	s, l, in := postsFixture(t)
	res, err := s.RecordPost(context.Background(), PostDecision{
		IntakeID: in.IntakeIDs[0], ListID: l.ID, MessageID: in.MessageID,
		Action: ActionHold, Rule: "nonmember-moderation", Reason: "not a member", Sender: "alice@example.com", Subject: "hi",
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, l, res.HeldID
}

func TestDecideHeldApprove(t *testing.T) {
	s, l, id := holdFixture(t)
	ctx := context.Background()
	res, err := s.DecideHeld(ctx, HeldDecision{HeldID: id, State: HeldApproved, By: "cli:mod", Envelope: verpOf})
	if err != nil {
		t.Fatal(err)
	}
	// alice, Bob and frank: the poster alice gets her own copy.
	if res.Deliveries != 3 || res.Held.ID != id {
		t.Errorf("result %+v", res)
	}
	h, err := s.GetHeld(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if h.State != HeldApproved || h.DecidedBy != "cli:mod" || h.DecidedAt == "" {
		t.Errorf("held row after approval %+v", h)
	}
	if ok, _ := s.IsPost(ctx, h.MessageID, l.ID); !ok {
		t.Error("approved message is not recorded as a post")
	}
	var by, rule string
	s.r.QueryRow(`SELECT accepted_by, rule FROM posts WHERE message_id = ?`, h.MessageID).Scan(&by, &rule)
	if by != "cli:mod" || rule != "moderator" {
		t.Errorf("post accepted_by %q rule %q", by, rule)
	}
	if hs, _ := s.HeldMessages(ctx, ""); len(hs) != 0 {
		t.Errorf("still listed as held: %+v", hs)
	}
	for _, st := range []string{HeldApproved, HeldRejected, HeldDiscarded} {
		_, err := s.DecideHeld(ctx, HeldDecision{HeldID: id, State: st, By: "cli:other", Envelope: verpOf})
		if !errors.Is(err, ErrAlreadyDone) || !strings.Contains(err.Error(), "approved by cli:mod") {
			t.Errorf("second decision %s: %v", st, err)
		}
	}
	if n := countRows(t, s, "deliveries"); n != 3 {
		t.Errorf("%d deliveries after repeated decisions", n)
	}
}

func TestDecideHeldRejectAndDiscard(t *testing.T) {
	ctx := context.Background()
	t.Run("reject", func(t *testing.T) {
		s, _, id := holdFixture(t)
		notice := Notice{Sender: "test-bounces@lists.example.org", Body: []byte("Subject: rejected\r\n\r\nno\r\n"),
			Recipients: []NewDelivery{{Recipient: "alice@example.com", EnvelopeFrom: "test-bounces@lists.example.org"}}}
		res, err := s.DecideHeld(ctx, HeldDecision{HeldID: id, State: HeldRejected, By: "cli:mod", Reason: "off topic", Notices: []Notice{notice}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Deliveries != 0 || res.Notices != 1 {
			t.Errorf("result %+v", res)
		}
		var detail string
		s.r.QueryRow(`SELECT detail FROM events WHERE kind = ?`, EventHeldRejected).Scan(&detail)
		if !strings.Contains(detail, "off topic") {
			t.Errorf("event detail %q", detail)
		}
		if n := countRows(t, s, "posts"); n != 0 {
			t.Errorf("%d posts after a rejection", n)
		}
	})
	t.Run("discard", func(t *testing.T) {
		s, _, id := holdFixture(t)
		if _, err := s.DecideHeld(ctx, HeldDecision{HeldID: id, State: HeldDiscarded, By: "cli:mod"}); err != nil {
			t.Fatal(err)
		}
		if h, _ := s.GetHeld(ctx, id); h.State != HeldDiscarded {
			t.Errorf("state %s", h.State)
		}
		if n := countRows(t, s, "deliveries"); n != 0 {
			t.Errorf("%d deliveries after discard", n)
		}
	})
	t.Run("errors", func(t *testing.T) {
		s, _, id := holdFixture(t)
		if _, err := s.DecideHeld(ctx, HeldDecision{HeldID: id + 100, State: HeldDiscarded}); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown id: %v", err)
		}
		if _, err := s.DecideHeld(ctx, HeldDecision{HeldID: id, State: "held"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad state: %v", err)
		}
		if _, err := s.DecideHeld(ctx, HeldDecision{HeldID: id, State: HeldApproved}); !errors.Is(err, ErrInvalid) {
			t.Errorf("approve without envelopes: %v", err)
		}
		if _, err := s.GetHeld(ctx, id+100); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetHeld unknown: %v", err)
		}
	})
}

func TestUnsubscribe(t *testing.T) {
	s, l, _ := postsFixture(t)
	ctx := context.Background()
	if ok, _ := s.IsMember(ctx, l.ID, "bob@example.net"); !ok {
		t.Fatal("bob is not a member")
	}
	removed, err := s.Unsubscribe(ctx, l.ID, "bob@example.net", "one-click unsubscribe")
	if err != nil || !removed {
		t.Fatalf("Unsubscribe = %v, %v", removed, err)
	}
	if ok, _ := s.IsMember(ctx, l.ID, "Bob@Example.net"); ok {
		t.Error("still a member")
	}
	var addr, detail string
	s.r.QueryRow(`SELECT address, detail FROM events WHERE kind = 'member_removed'`).Scan(&addr, &detail)
	if !strings.EqualFold(addr, "bob@example.net") || detail != "role=member by one-click unsubscribe" {
		t.Errorf("event %q %q", addr, detail)
	}
	removed, err = s.Unsubscribe(ctx, l.ID, "bob@example.net", "one-click unsubscribe")
	if err != nil || removed {
		t.Errorf("second Unsubscribe = %v, %v", removed, err)
	}
	// alice is also an owner; only her member row goes.
	if _, err := s.Unsubscribe(ctx, l.ID, "alice@example.com", "x"); err != nil {
		t.Fatal(err)
	}
	if admins, _ := s.ListAdmins(ctx, l.ID); !slices.Contains(admins, "alice@example.com") {
		t.Errorf("owner row removed with the member row: %v", admins)
	}
}

// TestPostNumbers: each list numbers its posts on its own, from 1, and the
// numbering goes on when the posts rows are gone (purged).
func TestPostNumbers(t *testing.T) {
	s, l, _ := postsFixture(t)
	ctx := context.Background()
	other, err := s.CreateList(ctx, "other@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	accept := func(listID int64) (msgID, seq int64) {
		t.Helper()
		msgID, err := s.StoreMessage(ctx, "frank@example.org", []byte("Subject: x\r\n\r\nx\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.tx(ctx, func(tx *sql.Tx) error {
			_, err := acceptPost(ctx, tx, s.now(), postRow{listID: listID, messageID: msgID, sender: "frank@example.org"}, verpOf)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		seq, ok, err := s.PostNumber(ctx, msgID, listID)
		if err != nil || !ok {
			t.Fatalf("PostNumber(%d, %d) = %d, %v, %v", msgID, listID, seq, ok, err)
		}
		return msgID, seq
	}
	var got []int64
	for _, id := range []int64{l.ID, l.ID, other.ID, l.ID} {
		_, seq := accept(id)
		got = append(got, seq)
	}
	if want := []int64{1, 2, 1, 3}; !slices.Equal(got, want) {
		t.Errorf("post numbers %v, want %v", got, want)
	}
	if _, err := s.w.Exec("DELETE FROM posts"); err != nil {
		t.Fatal(err)
	}
	if _, seq := accept(l.ID); seq != 4 {
		t.Errorf("after the posts rows went: number %d, want 4", seq)
	}
	if _, ok, err := s.PostNumber(ctx, 9999, l.ID); ok || err != nil {
		t.Errorf("PostNumber of no post = %v, %v", ok, err)
	}
}
