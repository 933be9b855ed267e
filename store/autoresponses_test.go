package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// autoNotice is an automatic reply to rcpts with a daily cap.
func autoNotice(cap int, limited func(string, int), rcpts ...string) Notice {
	n := Notice{Sender: "test-bounces@lists.example.org", DailyCap: cap, Limited: limited,
		Body:     []byte("Message-ID: <plain@lists.example.org>\r\nSubject: results\r\n\r\nplain\r\n"),
		LastBody: []byte("Message-ID: <last@lists.example.org>\r\nSubject: results\r\n\r\nlast one today\r\n")}
	for _, r := range rcpts {
		n.Recipients = append(n.Recipients, NewDelivery{Recipient: r, EnvelopeFrom: "test-bounces@lists.example.org"})
	}
	return n
}

// finishWith finishes a fresh intake row with notices, as the email
// interface does, and returns the bodies queued to each recipient.
func finishWith(t *testing.T, s *Store, listID int64, ns ...Notice) map[string][]string {
	t.Helper()
	ctx := context.Background()
	in, err := s.Intake(ctx, &IntakeMessage{MessageID: "<m@example.com>", Sender: "bob@example.net", Body: []byte("Subject: x\r\n\r\nhelp\r\n"),
		Recipients: []IntakeRecipient{{Recipient: "test-request@lists.example.org", List: emailList, Kind: "request"}}})
	if err != nil {
		t.Fatal(err)
	}
	before := maxMessageID(t, s)
	if err := s.FinishIntake(ctx, FinishedIntake{IntakeID: in.IntakeIDs[0], ListID: listID, Result: "done", Notices: ns}); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	rows, err := s.r.Query(`SELECT d.recipient, m.body FROM deliveries d JOIN messages m ON m.id = d.message_id WHERE m.id > ? ORDER BY d.id`, before)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var r string
		var b []byte
		if err := rows.Scan(&r, &b); err != nil {
			t.Fatal(err)
		}
		out[r] = append(out[r], string(b))
	}
	return out
}

func maxMessageID(t *testing.T, s *Store) int64 {
	t.Helper()
	var id int64
	if err := s.r.QueryRow(`SELECT coalesce(max(id), 0) FROM messages`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDailyCapOfAutomaticMail(t *testing.T) {
	tests := []struct {
		name  string
		cap   int
		sends int
		// want[i] is what the i-th send queues for the address: "plain",
		// "last" or "" (nothing).
		want []string
	}{
		{"under the cap", 3, 2, []string{"plain", "plain"}},
		{"the last one says so", 3, 3, []string{"plain", "plain", "last"}},
		{"nothing after the cap", 2, 5, []string{"plain", "last", "", "", ""}},
		{"a cap of one", 1, 2, []string{"last", ""}},
		{"no cap", 0, 4, []string{"plain", "plain", "plain", "plain"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, l, _ := emailFixture(t)
			var limited []string
			for i := 0; i < tc.sends; i++ {
				got := finishWith(t, s, l.ID, autoNotice(tc.cap, func(a string, n int) { limited = append(limited, fmt.Sprintf("%s:%d", a, n)) }, "Victim@Example.org"))
				bodies := got["Victim@Example.org"]
				switch want := tc.want[i]; {
				case want == "" && len(bodies) != 0:
					t.Errorf("send %d: queued %q, want nothing", i+1, bodies)
				case want == "plain" && (len(bodies) != 1 || !strings.Contains(bodies[0], "\r\nplain")):
					t.Errorf("send %d: queued %q, want the plain body", i+1, bodies)
				case want == "last" && (len(bodies) != 1 || !strings.Contains(bodies[0], "last one today")):
					t.Errorf("send %d: queued %q, want the last body", i+1, bodies)
				}
			}
			left := 0
			for _, w := range tc.want {
				if w == "" {
					left++
				}
			}
			if len(limited) != left {
				t.Errorf("limited called for %q, want %d call(s)", limited, left)
			}
			wantEvents := 0
			if left > 0 {
				wantEvents = 1
			}
			evs := eventsOf(t, s, EventAutoresponseLimit)
			if len(evs) != wantEvents || (wantEvents == 1 && (!strings.EqualFold(evs[0].Address, "victim@example.org") || evs[0].List != emailList)) {
				t.Errorf("events %+v, want %d for the address", evs, wantEvents)
			}
			wantCount := tc.sends
			if tc.cap == 0 {
				wantCount = 0
			}
			// The count ignores case, as addresses do.
			if n, err := s.AutoresponseCount(context.Background(), "victim@example.org", s.Now()); err != nil || n != wantCount {
				t.Errorf("count %d, %v; want %d", n, err, wantCount)
			}
		})
	}
}

func TestDailyCapPerRecipientAndDay(t *testing.T) {
	s, l, clock := emailFixture(t)
	ctx := context.Background()
	// bob has had his one already; carol has not.
	finishWith(t, s, l.ID, autoNotice(1, nil, "bob@example.net"))
	got := finishWith(t, s, l.ID, autoNotice(1, nil, "bob@example.net", "carol@example.org"))
	if len(got["bob@example.net"]) != 0 || len(got["carol@example.org"]) != 1 || !strings.Contains(got["carol@example.org"][0], "last one today") {
		t.Fatalf("second notice queued %v, want only carol's last body", got)
	}
	// A new UTC day starts a new count; the purge drops the old day.
	clock.Add(24 * time.Hour)
	got = finishWith(t, s, l.ID, autoNotice(1, nil, "bob@example.net"))
	if len(got["bob@example.net"]) != 1 {
		t.Fatalf("next day: %v, want bob's notice", got)
	}
	n, err := s.PurgeAutoresponses(ctx, s.Now())
	if err != nil || n != 2 {
		t.Fatalf("purged %d, %v; want yesterday's 2 rows", n, err)
	}
	if c, _ := s.AutoresponseCount(ctx, "bob@example.net", s.Now()); c != 1 {
		t.Errorf("today's count %d after the purge, want 1", c)
	}
	if c, _ := s.AutoresponseCount(ctx, "bob@example.net", s.Now().Add(-24*time.Hour)); c != 0 {
		t.Errorf("yesterday's count %d after the purge, want 0", c)
	}
}

func TestPurgeDropsPastAutoresponseCounts(t *testing.T) {
	f := newPurgeFixture(t)
	ctx := context.Background()
	f.exec(`INSERT INTO autoresponses (address, day, count) VALUES ('a@example.com', '2026-02-27', 3), ('a@example.com', ?, 1)`, dayOf(FormatTime(f.clock.Now())))
	st, err := f.s.Purge(ctx, f.clock.Now().Add(-7*24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Autoresponses != 1 || countRows(t, f.s, "autoresponses") != 1 {
		t.Errorf("purge %+v left %d rows, want today's only", st, countRows(t, f.s, "autoresponses"))
	}
}

func TestAnsweringIntake(t *testing.T) {
	rcpt := func(kind, ext string) IntakeRecipient {
		local := "test-" + kind
		if kind == "post" {
			local = "test"
		}
		if ext != "" {
			local += "+" + ext
		}
		return IntakeRecipient{Recipient: local + "@lists.example.org", List: emailList, Kind: kind, Extension: ext}
	}
	tests := []struct {
		name string
		// copies are the LMTP transactions of one queued message
		copies [][]IntakeRecipient
		queue  string
		// want is the index (over all rows of all copies) of the
		// answering row, -1 for none
		want int
	}{
		{"one command row", [][]IntakeRecipient{{rcpt("request", "")}}, "Q1", 0},
		{"post first, command second", [][]IntakeRecipient{{rcpt("post", ""), rcpt("owner", ""), rcpt("join", "7")}}, "Q1", 2},
		{"many extensions", [][]IntakeRecipient{{rcpt("request", "1"), rcpt("request", "2"), rcpt("leave", "3")}}, "Q1", 0},
		{"later transaction of the same queued message", [][]IntakeRecipient{{rcpt("request", "1")}, {rcpt("request", "51")}}, "Q1", 0},
		{"no queue id: copies are separate messages", [][]IntakeRecipient{{rcpt("request", "1")}, {rcpt("request", "51")}}, "", 1},
		{"no command rows", [][]IntakeRecipient{{rcpt("post", ""), rcpt("owner", "")}}, "Q1", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := emailFixture(t)
			ctx := context.Background()
			var ids, msgs []int64
			for _, rc := range tc.copies {
				in, err := s.Intake(ctx, &IntakeMessage{MessageID: "<same@example.com>", Sender: "bob@example.net", QueueID: tc.queue,
					Body: []byte("Subject: x\r\n\r\nhelp\r\n"), Recipients: rc})
				if err != nil {
					t.Fatal(err)
				}
				for range rc {
					msgs = append(msgs, in.MessageID)
				}
				ids = append(ids, in.IntakeIDs...)
			}
			last := msgs[len(msgs)-1]
			got, err := s.AnsweringIntake(ctx, last)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(0)
			if tc.want >= 0 {
				want = ids[tc.want]
			}
			if got != want {
				t.Errorf("answering row of message %d: %d, want %d (rows %v)", last, got, want, ids)
			}
		})
	}
}
