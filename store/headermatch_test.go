package store

import (
	"context"
	"errors"
	"testing"
)

func TestHeaderMatches(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.CreateList(ctx, emailList); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ header, pattern, action string }{
		{"", "x", ""}, {"two words", "x", ""}, {"subject", "(", ""}, {"subject", "", ""}, {"subject", "x", "defer"},
	} {
		if _, err := s.AddHeaderMatch(ctx, emailList, bad.header, bad.pattern, bad.action); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddHeaderMatch(%q, %q, %q) = %v, want ErrInvalid", bad.header, bad.pattern, bad.action, err)
		}
	}
	if _, err := s.AddHeaderMatch(ctx, "nope@lists.example.org", "subject", "x", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown list: %v", err)
	}
	a, err := s.AddHeaderMatch(ctx, emailList, "X-Spam-Flag:", "^yes$", "")
	if err != nil || a.Header != "x-spam-flag" || a.Action != ActionHold {
		t.Fatalf("added %+v, %v", a, err)
	}
	b, err := s.AddHeaderMatch(ctx, emailList, "subject", "viagra", ActionDiscard)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.HeaderMatches(ctx, emailList)
	if err != nil || len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID || got[1].Action != ActionDiscard {
		t.Fatalf("HeaderMatches = %+v, %v", got, err)
	}
	if err := s.RemoveHeaderMatch(ctx, emailList, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveHeaderMatch(ctx, emailList, a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second removal: %v", err)
	}
	if got, _ := s.HeaderMatches(ctx, emailList); len(got) != 1 || got[0].ID != b.ID {
		t.Errorf("after removal: %+v", got)
	}
	events, err := s.EventLog(ctx, emailList, "", EventHeaderMatchAdded, EventHeaderMatchRemoved)
	if err != nil || len(events) != 3 {
		t.Errorf("events %+v, %v; want 2 added, 1 removed", events, err)
	}
}
