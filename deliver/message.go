package deliver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"go.uber.org/zap"

	"postlist/store"
)

// Job is one SMTP transaction: a message for one or more recipients with
// one envelope sender.
type Job struct {
	MessageID    int64  // messages.id
	ListID       int64  // 0 for mail without a list
	List         string // the list's posting address, "" if none
	Recipients   []string
	EnvelopeFrom string
}

// RenderFunc builds the message a job's recipients get: decoration
// happens at send time, so nothing per member is stored. It is called once
// per transaction (for personalized lists, once per member) and should
// cache what it reads, and return the part every member gets as a Shared
// kept across calls, so its wire form is made once. An error wrapping
// ErrRecipient fails the job's rows at once; any other error (or a panic)
// defers them.
type RenderFunc func(ctx context.Context, job Job) (Message, error)

// ErrRecipient, wrapped in an error from Options.Render, says that the
// message cannot be built for this job's recipients and never will be
// (something about the member makes the decoration impossible). Their
// rows then fail at once, with an event and an unscored bounce, instead of
// being retried for the whole retry period like other render errors.
var ErrRecipient = errors.New("the message cannot be built for this recipient")

// Message is what Render returns for a transaction: its own bytes, then a
// part it shares with other transactions, such as a post's body after
// the per-member header fields. Only Own is prepared for the wire per
// transaction.
type Message struct {
	Own    []byte
	Shared *Shared // nil: the message is Own alone
}

// Bytes returns the whole message, as stored before the wire form.
func (m Message) Bytes() []byte {
	if m.Shared == nil {
		return m.Own
	}
	return append(m.Own[:len(m.Own):len(m.Own)], m.Shared.b...)
}

// Shared is a message part sent unchanged by many transactions. Its wire
// form is made once, on first use, and kept as long as the Shared is.
type Shared struct {
	b    []byte
	once sync.Once
	p    *payload
}

// NewShared wraps b, which must not change afterwards.
func NewShared(b []byte) *Shared { return &Shared{b: b} }

func (s *Shared) payload() *payload {
	s.once.Do(func() { s.p = newPayload(s.b) })
	return s.p
}

// payload prepares m for the wire. Own's line ends are handled apart
// from the shared part only when Own ends a line; otherwise the two are
// joined first, which costs a copy but stays correct.
func (m Message) payload() *payload {
	switch {
	case m.Shared == nil:
		return newPayload(m.Own)
	case len(m.Own) == 0:
		return m.Shared.payload()
	case m.Own[len(m.Own)-1] != '\n':
		return newPayload(append(append([]byte(nil), m.Own...), m.Shared.b...))
	}
	sp := m.Shared.payload()
	return &payload{
		own:      stuffLines(make([]byte, 0, len(m.Own)+len(m.Own)/64+8), m.Own),
		shared:   sp.shared,
		size:     len(m.Own) + sp.size,
		eightBit: sp.eightBit || has8Bit(m.Own),
	}
}

// payload is a message ready to send: own is the wire form of this
// transaction's part, shared that of a part many transactions send, made
// once; their concatenation ends in ".\r\n".
type payload struct {
	own, shared []byte
	size        int  // the message size, for SIZE=
	eightBit    bool // needs BODY=8BITMIME
}

func newPayload(b []byte) *payload {
	return &payload{shared: dotStuff(b), size: len(b), eightBit: has8Bit(b)}
}

// dotStuff prepares a message for DATA: CRLF line ends, a dot doubled at
// the start of a line, a final CRLF, and the terminating ".\r\n".
func dotStuff(b []byte) []byte {
	out := stuffLines(make([]byte, 0, len(b)+len(b)/64+8), b)
	return append(out, '.', '\r', '\n')
}

// stuffLines appends b to dst as DATA lines: each line, a bare CR's too,
// ends in CRLF, and one starting with a dot gets a second. A last line
// without an end gets one, so stuffLines(a)+stuffLines(b) is the same as
// stuffLines(a+b) whenever a ends in LF. It works a line at a time, as
// this runs once per member for decorated posts.
func stuffLines(dst, b []byte) []byte {
	for len(b) > 0 {
		var line []byte
		if n := bytes.IndexByte(b, '\n'); n >= 0 {
			line, b = b[:n], b[n+1:]
		} else {
			line, b = b, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		for {
			if len(line) > 0 && line[0] == '.' {
				dst = append(dst, '.')
			}
			cr := bytes.IndexByte(line, '\r')
			if cr < 0 {
				dst = append(dst, line...)
				dst = append(dst, '\r', '\n')
				break
			}
			dst = append(dst, line[:cr]...)
			dst = append(dst, '\r', '\n')
			line = line[cr+1:]
		}
	}
	return dst
}

// has8Bit reports whether b holds a byte outside ASCII, eight bytes at a
// time.
func has8Bit(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, ch := range b {
		if ch >= 0x80 {
			return true
		}
	}
	return false
}

// body returns what j's recipients get, ready to send. Decorating a
// hostile post that trips a bug must not take the daemon down at every
// restart: a panic in Render becomes an error, and the rows are deferred
// like any other local failure.
func (d *Deliverer) body(ctx context.Context, j *job) (p *payload, err error) {
	if d.o.Render != nil {
		defer func() {
			if v := recover(); v != nil {
				d.log.Error("panic while building a message", zap.Int64("msg_id", j.MessageID), zap.Any("panic", v),
					zap.ByteString("stack", debug.Stack()))
				p, err = nil, fmt.Errorf("render message %d: internal error: %v", j.MessageID, v)
			}
		}()
		m, err := d.o.Render(ctx, j.Job)
		if err != nil {
			return nil, fmt.Errorf("render message %d: %w", j.MessageID, err)
		}
		if len(m.Own) == 0 && (m.Shared == nil || len(m.Shared.b) == 0) {
			return nil, fmt.Errorf("render message %d: empty result", j.MessageID)
		}
		return m.payload(), nil
	}
	if p, err = d.bodies.get(ctx, d.st, j.MessageID); err != nil {
		return nil, fmt.Errorf("read message %d: %w", j.MessageID, err)
	}
	return p, nil
}

// bodyCache keeps recently sent stored messages, so that a fan-out to
// 100,000 members reads the body once, not once per member.
type bodyCache struct {
	mu    sync.Mutex
	m     map[int64]*bodyEntry
	order []int64
}

type bodyEntry struct {
	once sync.Once
	p    *payload
	err  error
}

const bodyCacheSize = 16

func (c *bodyCache) get(ctx context.Context, st *store.Store, id int64) (*payload, error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[int64]*bodyEntry)
	}
	e := c.m[id]
	if e == nil {
		e = &bodyEntry{}
		c.m[id] = e
		c.order = append(c.order, id)
		if len(c.order) > bodyCacheSize {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
	}
	c.mu.Unlock()
	e.once.Do(func() {
		var b []byte
		if b, e.err = st.IntakeBody(ctx, id); e.err == nil {
			e.p = newPayload(b)
		}
	})
	if e.err != nil {
		// Not cached: the next job tries again.
		c.mu.Lock()
		if c.m[id] == e {
			delete(c.m, id)
		}
		c.mu.Unlock()
	}
	return e.p, e.err
}
