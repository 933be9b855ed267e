package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"postlist/address"
	"postlist/decorate"
	"postlist/deliver"
	"postlist/store"
)

// Render builds the bytes a delivery job's recipients receive. A message
// that list job.ListID accepted as a post (it has a posts row) is
// decorated with that list's headers, prefix and footer; anything else -
// notices, mail without a list - is sent as stored.
//
// On a personalized list (verp yes) a job has one recipient, whose
// List-Unsubscribe then carries their own one-click URL. A bulk job (one
// message for many members) gets mailto links only, since the URL names
// one member.
//
// The decorated post is prepared once per (message, list) and cached
// briefly, so rendering for each of ten thousand members costs a copy,
// not a parse: the cache keeps the last posts for cacheTTL, which also
// bounds how long an edited list setting takes to show in a fan-out
// already under way.
//
// Every member's copy ends in the same bytes, which go to the deliverer as
// one Shared per cached post, so their wire form is made once per post and
// only a member's own header fields are prepared per member.
func (p *Pipeline) Render(ctx context.Context, job deliver.Job) (deliver.Message, error) {
	e, err := p.cache.get(ctx, job.MessageID, job.ListID, p.prepare)
	if err != nil {
		return deliver.Message{}, fmt.Errorf("render message %d for list %d: %w", job.MessageID, job.ListID, err)
	}
	if e.prepared == nil {
		return deliver.Message{Shared: e.whole}, nil
	}
	var r decorate.Recipient
	if e.verp && len(job.Recipients) == 1 {
		rcpt := job.Recipients[0]
		r.Address = rcpt
		// The link needs no lookup: it is checked against the
		// subscription when it is used.
		r.UnsubscribeURL = p.UnsubscribeURL(e.listID, rcpt, p.st.Now())
	}
	return deliver.Message{Own: e.prepared.Own(r), Shared: e.tail}, nil
}

// prepare loads a message and, for a post, decorates it.
func (p *Pipeline) prepare(ctx context.Context, messageID, listID int64) (*renderEntry, error) {
	_, body, err := p.st.MessageSender(ctx, messageID)
	if err != nil {
		return nil, err
	}
	isPost, number := false, int64(0)
	if listID != 0 {
		if number, isPost, err = p.st.PostNumber(ctx, messageID, listID); err != nil {
			return nil, err
		}
	}
	if !isPost {
		return &renderEntry{whole: deliver.NewShared(body)}, nil
	}
	l, err := p.st.ListByID(ctx, listID)
	if err != nil {
		return nil, err
	}
	facts, err := p.decorateFacts(ctx, l)
	if err != nil {
		return nil, err
	}
	facts.PostNumber = number
	prep, err := decorate.Prepare(body, facts)
	if err != nil {
		return nil, err
	}
	return &renderEntry{
		prepared: prep, verp: l.Bool("verp"), listID: l.ListID,
		tail: deliver.NewShared(prep.Tail()),
	}, nil
}

// decorateFacts turns list settings into decoration input.
func (p *Pipeline) decorateFacts(ctx context.Context, l *store.List) (decorate.List, error) {
	d := decorate.List{
		Address:             strings.ToLower(l.Address),
		ListID:              l.ListID,
		DisplayName:         l.Setting("display_name"),
		Description:         l.Setting("description"),
		SubjectPrefix:       l.Setting("subject_prefix"),
		Footer:              l.Setting("footer"),
		ArchiveURL:          l.Setting("archive_url"),
		ReplyGoesToList:     l.Setting("reply_goes_to_list"),
		ReplyToAddress:      l.Setting("reply_to_address"),
		DMARCMitigateAction: l.Setting("dmarc_mitigate_action"),
		Personalize:         l.Setting("personalize"),
	}
	// A neighbouring list called NAME-join (NAME-leave) owns that address;
	// the -subscribe (-unsubscribe) alias is then the one that reaches
	// this list's robot (see address.Resolver.Address).
	name, domain := address.ListName(l.Address)
	for _, a := range []struct {
		word, alias string
		field       *string
	}{{"join", "subscribe", &d.JoinAddress}, {"leave", "unsubscribe", &d.LeaveAddress}} {
		other := name + "-" + a.word + "@" + domain
		if _, err := p.st.GetList(ctx, other); err == nil {
			*a.field = name + "-" + a.alias + "@" + domain
		}
	}
	return d, nil
}

// cacheTTL is how long a prepared post is reused.
const cacheTTL = time.Minute

// cacheSize bounds the prepared posts kept; a fan-out renders one post at
// a time per list, so a few suffice.
const cacheSize = 16

type renderKey struct{ message, list int64 }

type renderEntry struct {
	once     sync.Once
	err      error
	created  time.Time
	prepared *decorate.Prepared // nil: send as stored
	whole    *deliver.Shared    // the message as stored (not prepared only)
	tail     *deliver.Shared    // what follows a member's own fields (prepared only)
	verp     bool
	listID   string // RFC 2919 List-Id, for one-click links
}

type renderCache struct {
	mu      sync.Mutex
	entries map[renderKey]*renderEntry
}

func (c *renderCache) init() { c.entries = make(map[renderKey]*renderEntry) }

// get returns the entry for (message, list), building it with load once
// even when many deliveries ask at the same time. A failed build is not
// kept, so the next call tries again.
func (c *renderCache) get(ctx context.Context, message, list int64,
	load func(context.Context, int64, int64) (*renderEntry, error)) (*renderEntry, error) {
	k := renderKey{message, list}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[k]
	if !ok || now.Sub(e.created) > cacheTTL {
		e = &renderEntry{created: now}
		c.entries[k] = e
		if len(c.entries) > cacheSize {
			c.evict(now)
		}
	}
	c.mu.Unlock()
	e.once.Do(func() {
		built, err := load(ctx, message, list)
		if err != nil {
			e.err = err
			return
		}
		e.prepared, e.whole, e.tail, e.verp, e.listID = built.prepared, built.whole, built.tail, built.verp, built.listID
	})
	if e.err != nil {
		c.mu.Lock()
		if c.entries[k] == e {
			delete(c.entries, k)
		}
		c.mu.Unlock()
		return nil, e.err
	}
	return e, nil
}

// evict drops expired entries, then the oldest ones, down to cacheSize.
// c.mu is held.
func (c *renderCache) evict(now time.Time) {
	for k, e := range c.entries {
		if now.Sub(e.created) > cacheTTL {
			delete(c.entries, k)
		}
	}
	for len(c.entries) > cacheSize {
		var oldest renderKey
		var at time.Time
		for k, e := range c.entries {
			if at.IsZero() || e.created.Before(at) {
				oldest, at = k, e.created
			}
		}
		delete(c.entries, oldest)
	}
}
