package pipeline

import (
	"context"
	"strings"
	"testing"

	"postlist/message"
	"postlist/notice"
	"postlist/store"
)

// TestOwnNoticeNeverDistributed: mail postlist wrote (a confirmation
// request sent to a list address, say) is discarded with an event when
// it comes back as a post, never distributed and never answered, even
// from a member and whatever the list's actions.
func TestOwnNoticeNeverDistributed(t *testing.T) {
	tests := []struct {
		name, envSender, header string
	}{
		{"confirmation request from the commands", "test-bounces@lists.example.org", notice.Header + ": confirm"},
		{"results mail from a member's address", "alice@example.com", notice.Header + ": results"},
		{"hold notice", "test-bounces@lists.example.org", notice.Header + ": held"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.set("default_member_action", "accept")
			e.set("default_nonmember_action", "reject")
			e.post(tc.envSender, tc.header+"\n"+memberPost)
			e.run()
			if ds := e.deliveries(); len(ds) != 0 {
				t.Fatalf("own notice queued %v", ds)
			}
			if n := e.pending(); n != 0 {
				t.Errorf("%d intake rows still pending", n)
			}
			evs, err := e.st.EventLog(context.Background(), testList, "", store.EventPostDiscarded)
			if err != nil || len(evs) != 1 || !strings.Contains(evs[0].Detail, notice.Header) {
				t.Errorf("events %+v, %v", evs, err)
			}
		})
	}
}

// TestNoticesCarryTheMark: the pipeline's own notices carry the mark the
// pipeline and the email interface recognise.
func TestNoticesCarryTheMark(t *testing.T) {
	e := newEnv(t)
	e.holdStranger()
	ds := e.deliveries()
	if len(ds) == 0 {
		t.Fatal("no hold notice")
	}
	m := message.Parse([]byte(e.render(ds[0])))
	if m.Get(notice.Header) != "held" || m.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("hold notice marks: %q, %q", m.Get(notice.Header), m.Get("Auto-Submitted"))
	}
	// A notice coming back is automatic mail: the pipeline never answers it.
	if !automatic(m) {
		t.Error("a hold notice is not automatic mail to the pipeline")
	}
}

// TestRejectNoticesCapped: reject notices to a poster count against the
// poster's daily allowance; the last one says so.
func TestRejectNoticesCapped(t *testing.T) {
	tests := []struct {
		name string
		cap  int
		want []string // per post: "plain", "last", ""
	}{
		{"cap 2", 2, []string{"plain", "last", "", ""}},
		{"no cap", 0, []string{"plain", "plain", "plain", "plain"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.p.maxAuto = tc.cap
			e.set("default_nonmember_action", "reject")
			nonmember := strings.Replace(memberPost, "Alice Example <alice@example.com>", "stranger@example.com", 1)
			for i, want := range tc.want {
				e.post("stranger@example.com", nonmember)
				e.run()
				ds := e.deliveries()
				switch {
				case want == "" && len(ds) != 0:
					t.Errorf("post %d: %d notice(s), want none", i+1, len(ds))
				case want != "" && len(ds) != 1:
					t.Fatalf("post %d: %d notice(s), want one", i+1, len(ds))
				case want == "plain" && strings.Contains(e.render(ds[0]), "last automatic reply"):
					t.Errorf("post %d: early last-reply note", i+1)
				case want == "last" && !strings.Contains(e.render(ds[0]), "This is the last automatic reply to you today"):
					t.Errorf("post %d: no last-reply note:\n%s", i+1, e.render(ds[0]))
				}
			}
		})
	}
}
