// Package indextest feeds an index.Index from memory, for tests that need
// states the store cannot produce yet (tokens) or sizes that would take
// minutes to write to SQLite (a million members for a benchmark).
package indextest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"postlist/store"
)

// Source is an in-memory index.Source. Its zero value is empty; change
// fields under Lock, then call Bump so a running index reloads.
type Source struct {
	sync.Mutex
	Domains []store.IndexDomain
	Lists   []store.IndexList
	Members []store.IndexMember
	Removed []store.IndexRemoved
	Tokens  []store.IndexToken
	Bans    []store.IndexBan
	// Err, when set, fails every call, as an unreadable database would.
	Err error

	gen int64
}

// Bump marks a change.
func (s *Source) Bump() {
	s.Lock()
	s.gen++
	s.Unlock()
}

// Generation implements index.Source.
func (s *Source) Generation(context.Context) (int64, error) {
	s.Lock()
	defer s.Unlock()
	if s.Err != nil {
		return 0, s.Err
	}
	return s.gen, nil
}

// TokenGeneration implements index.Source. Bump moves it together with
// the generation, so a change here always rebuilds the whole index.
func (s *Source) TokenGeneration(ctx context.Context) (int64, error) { return s.Generation(ctx) }

// ScanTokens implements index.Source.
func (s *Source) ScanTokens(_ context.Context, fn func(store.IndexToken) error) (int64, error) {
	s.Lock()
	defer s.Unlock()
	if s.Err != nil {
		return 0, s.Err
	}
	for _, x := range s.Tokens {
		if err := fn(x); err != nil {
			return 0, err
		}
	}
	return s.gen, nil
}

// ScanIndex implements index.Source. Tokens are passed whatever their
// expiry, so tests can check that the index itself refuses expired ones.
func (s *Source) ScanIndex(_ context.Context, _ time.Time, v store.IndexVisitor) (int64, error) {
	s.Lock()
	defer s.Unlock()
	if s.Err != nil {
		return 0, s.Err
	}
	for _, x := range s.Domains {
		if err := v.Domain(x); err != nil {
			return 0, err
		}
	}
	for _, x := range s.Lists {
		if err := v.List(x); err != nil {
			return 0, err
		}
	}
	for _, x := range s.Members {
		if err := v.Member(x); err != nil {
			return 0, err
		}
	}
	for _, x := range s.Removed {
		if err := v.Removed(x); err != nil {
			return 0, err
		}
	}
	for _, x := range s.Tokens {
		if err := v.Token(x); err != nil {
			return 0, err
		}
	}
	for _, x := range s.Bans {
		if err := v.Ban(x); err != nil {
			return 0, err
		}
	}
	return s.gen, nil
}

// AddList appends a list in domain (which is added if new) and returns
// its id. action is default_nonmember_action ("" means hold), maxKiB is
// max_message_size.
func (s *Source) AddList(name, domain, action string, maxKiB int64) int64 {
	s.Lock()
	defer s.Unlock()
	found := false
	for _, d := range s.Domains {
		if d.Name == domain {
			found = true
		}
	}
	if !found {
		s.Domains = append(s.Domains, store.IndexDomain{Name: domain})
	}
	if action == "" {
		action = "hold"
	}
	id := int64(len(s.Lists) + 1)
	s.Lists = append(s.Lists, store.IndexList{
		ID: id, Address: name + "@" + domain, ListID: name + "." + domain,
		DefaultNonmemberAction: action, MaxMessageSize: maxKiB,
	})
	return id
}

// Synthetic is an index.Source of generated lists and members that holds
// nothing in memory itself: list%d@lists.example.org (Lists of them,
// default_nonmember_action reject for every tenth, hold otherwise) with
// member%d@example%d.com members, Members in total spread evenly.
type Synthetic struct {
	Lists   int
	Members int
}

// ListAddr is the posting address of list i.
func (Synthetic) ListAddr(i int) string { return fmt.Sprintf("list%d@lists.example.org", i) }

// MemberAddr is the address of the j-th member of list i.
func (Synthetic) MemberAddr(i, j int) string {
	return fmt.Sprintf("member%d.%d@example%d.com", i, j, j%97)
}

// PerList is how many members list i has.
func (s Synthetic) PerList(i int) int {
	n := s.Members / s.Lists
	if i < s.Members%s.Lists {
		n++
	}
	return n
}

// Generation implements index.Source; a Synthetic source never changes.
func (Synthetic) Generation(context.Context) (int64, error) { return 1, nil }

// TokenGeneration implements index.Source: Synthetic has no tokens.
func (Synthetic) TokenGeneration(context.Context) (int64, error) { return 1, nil }

// ScanTokens implements index.Source: Synthetic has no tokens.
func (Synthetic) ScanTokens(context.Context, func(store.IndexToken) error) (int64, error) {
	return 1, nil
}

// ScanIndex implements index.Source.
func (s Synthetic) ScanIndex(_ context.Context, _ time.Time, v store.IndexVisitor) (int64, error) {
	if err := v.Domain(store.IndexDomain{Name: "lists.example.org"}); err != nil {
		return 0, err
	}
	for i := 0; i < s.Lists; i++ {
		action := "hold"
		if i%10 == 0 {
			action = "reject"
		}
		l := store.IndexList{
			ID: int64(i + 1), Address: s.ListAddr(i), ListID: fmt.Sprintf("list%d.lists.example.org", i),
			DefaultNonmemberAction: action, MaxMessageSize: 40,
		}
		if err := v.List(l); err != nil {
			return 0, err
		}
	}
	for i := 0; i < s.Lists; i++ {
		for j := range s.PerList(i) {
			if err := v.Member(store.IndexMember{ListID: int64(i + 1), Address: s.MemberAddr(i, j)}); err != nil {
				return 0, err
			}
		}
	}
	return 1, nil
}
