package index

import (
	"context"
	"fmt"
	"hash/maphash"
	"regexp"
	"slices"
	"strings"
	"time"

	"postlist/address"
	"postlist/store"
)

// Source is where snapshots are read from; *store.Store is the real one.
// Tests and benchmarks may feed the index from memory.
type Source interface {
	ScanIndex(ctx context.Context, removedSince time.Time, v store.IndexVisitor) (int64, error)
	Generation(ctx context.Context) (int64, error)
	// Tokens change far more often than the rest (every join, every held
	// post) and have a counter of their own, so that the index can reload
	// them alone.
	TokenGeneration(ctx context.Context) (int64, error)
	ScanTokens(ctx context.Context, fn func(store.IndexToken) error) (int64, error)
}

// builder collects one scan into a Snapshot.
type builder struct {
	s       *Snapshot
	byID    map[int64]int32
	aliases []store.IndexDomain
	// pending bans, resolved once every list is known (the scan order
	// already guarantees that, but a builder should not depend on it)
	bans []store.IndexBan
	bad  []string // ban patterns that do not compile
}

func newBuilder(res address.Resolver, now func() time.Time, signer address.VERPSigner) *builder {
	return &builder{
		s: &Snapshot{
			signer:  signer,
			res:     res,
			seed:    maphash.MakeSeed(),
			now:     now,
			domains: make(map[string]string),
			lists:   make(map[string]int32),
			tokens:  make(map[string]token),
		},
		byID: make(map[int64]int32),
	}
}

func (b *builder) visitor() store.IndexVisitor {
	return store.IndexVisitor{
		Domain: func(d store.IndexDomain) error {
			name := strings.ToLower(d.Name)
			if d.AliasOf == "" {
				b.s.domains[name] = name
			} else {
				b.aliases = append(b.aliases, d)
			}
			return nil
		},
		List: func(l store.IndexList) error {
			i := int32(len(b.s.info))
			addr := strings.ToLower(l.Address)
			refuseAbove := l.MaxMessageSize * 1024
			if l.HoldOversize {
				refuseAbove = 0 // the pipeline's size rule holds it
			}
			b.s.info = append(b.s.info, listData{List: List{
				Address:            addr,
				ListID:             l.ListID,
				NonmemberAction:    l.DefaultNonmemberAction,
				MaxMessageSize:     refuseAbove,
				AcceptUnsignedVERP: l.AcceptUnsignedVERP,
			}})
			b.s.lists[addr] = i
			b.byID[l.ID] = i
			return nil
		},
		Member: func(m store.IndexMember) error {
			li, ok := b.byID[m.ListID]
			if !ok {
				return nil
			}
			f := uint64(flagPoster)
			if m.Nonmember {
				f = actionCode(m.ModerationAction) << actionShift
			}
			b.s.members = append(b.s.members, b.s.key(li, canon(m.Address))|f)
			return nil
		},
		Removed: func(r store.IndexRemoved) error {
			if li, ok := b.byID[r.ListID]; ok {
				b.s.removed = append(b.s.removed, b.s.key(li, canon(r.Address)))
			}
			return nil
		},
		Token: func(t store.IndexToken) error {
			addToken(b.s.tokens, b.byID, t)
			return nil
		},
		Ban: func(bn store.IndexBan) error {
			b.bans = append(b.bans, bn)
			return nil
		},
	}
}

// finish resolves aliases and bans and sorts the member table.
func (b *builder) finish(gen int64) *Snapshot {
	s := b.s
	s.gen = gen
	for _, a := range b.aliases {
		// Aliases of aliases are refused by the store; one level is all
		// the resolver must follow.
		if main, ok := s.domains[strings.ToLower(a.AliasOf)]; ok {
			s.domains[strings.ToLower(a.Name)] = main
		}
	}
	for _, bn := range b.bans {
		var x ban
		if strings.HasPrefix(bn.Pattern, "^") {
			re, err := regexp.Compile("(?i)" + bn.Pattern)
			if err != nil {
				b.bad = append(b.bad, bn.Pattern)
				continue
			}
			x.re = re
		} else {
			x.exact = strings.ToLower(canon(bn.Pattern))
		}
		if bn.ListID == 0 {
			s.siteBans = append(s.siteBans, x)
		} else if li, ok := b.byID[bn.ListID]; ok {
			s.info[li].bans = append(s.info[li].bans, x)
		}
	}
	slices.Sort(s.members)
	// One address can have several rows on a list (member and owner, say):
	// merge them into one entry so a lookup finds a single word.
	out := s.members[:0]
	for _, e := range s.members {
		if n := len(out); n > 0 && out[n-1]&^flagMask == e&^flagMask {
			out[n-1] |= e & flagMask
			continue
		}
		out = append(out, e)
	}
	s.members = slices.Clip(out)
	slices.Sort(s.removed)
	s.removed = slices.Compact(s.removed)
	return s
}

// build reads one snapshot from src.
func build(ctx context.Context, src Source, res address.Resolver, now func() time.Time, removedWindow time.Duration, signer address.VERPSigner) (*Snapshot, []string, error) {
	start := time.Now()
	b := newBuilder(res, now, signer)
	// Read before the scan: a token added meanwhile then shows as a newer
	// token generation, and a token reload follows.
	tokenGen, err := src.TokenGeneration(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("build index: %w", err)
	}
	gen, err := src.ScanIndex(ctx, now().Add(-removedWindow), b.visitor())
	if err != nil {
		return nil, nil, fmt.Errorf("build index: %w", err)
	}
	s := b.finish(gen)
	s.tokenGen = tokenGen
	s.listByID = b.byID
	s.loadedAt = time.Now()
	s.loadTime = s.loadedAt.Sub(start)
	return s, b.bad, nil
}

// withTokens returns a copy of cur with its tokens read again: everything
// else is shared, so a join or a held post costs a scan of the (few) live
// tokens instead of a rebuild.
func withTokens(ctx context.Context, src Source, cur *Snapshot) (*Snapshot, error) {
	tokens := make(map[string]token, len(cur.tokens)+1)
	gen, err := src.ScanTokens(ctx, func(t store.IndexToken) error {
		addToken(tokens, cur.listByID, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reload index tokens: %w", err)
	}
	next := *cur
	next.tokens, next.tokenGen = tokens, gen
	return &next, nil
}

// addToken files a live token under its list, if the list is known.
func addToken(tokens map[string]token, byID map[int64]int32, t store.IndexToken) {
	if li, ok := byID[t.ListID]; ok {
		tokens[strings.ToLower(t.Token)] = token{list: li, expires: t.ExpiresAt.UnixNano()}
	}
}
