package index

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"regexp"
	"slices"
	"strings"
	"time"

	"postlist/address"
	"postlist/reply"
)

// Reasons name why a decision was taken; they are the `reason` field of the
// milter's log lines, so admins may grep for them. Keep them stable.
const (
	ReasonList        = "list"         // accepted: a list address or subaddress
	ReasonVERP        = "verp_member"  // accepted: -bounces+ naming a current or recently removed member
	ReasonToken       = "token"        // accepted: -confirm+ with a live token
	ReasonNotOurs     = "not_ours"     // not a list domain: left to Postfix
	ReasonNoSuchList  = "no_such_list" // list domain, no such list or subaddress
	ReasonMalformed   = "malformed"    // list domain, unparseable local part
	ReasonBadVERP     = "bad_verp"     // -bounces+ naming nobody we know
	ReasonBadToken    = "bad_token"    // -confirm+ with an unknown or expired token
	ReasonUnavailable = "unavailable"  // the index could not be loaded
	ReasonNonmember   = "nonmember"    // non-member post to a list that rejects them
	ReasonBanned      = "banned"       // sender banned from the list
	ReasonPoster      = "poster"       // sender may post (member, owner or moderator)
	ReasonNoPolicy    = "no_policy"    // sender not refused at SMTP time; the list's own rules decide later
	// ReasonSenderUnknown: the MTA did not give the sender, so it was not
	// checked (a policy, not a decision reason).
	ReasonSenderUnknown = "sender_unknown"
)

// Decision is the answer for one recipient.
type Decision struct {
	// Target is the list address the recipient names; set whenever the
	// recipient resolved, also when it was then refused (bad VERP/token).
	Target address.Target
	// Ours reports a recipient in a list domain (or an unavailable index,
	// where every recipient must be assumed ours). Recipients that are not
	// ours are left to Postfix.
	Ours bool
	// Reply is nil to accept, else the refusal.
	Reply *reply.Reply
	// Reason is one of the Reason constants.
	Reason string
}

// Accepted reports a recipient of ours that postlist takes.
func (d Decision) Accepted() bool { return d.Ours && d.Reply == nil }

// List is what SMTP-time policy needs to know about a list.
type List struct {
	Address         string // posting address, lower-case
	ListID          string // RFC 2919 list-id ("test.lists.example.org")
	NonmemberAction string // default_nonmember_action
	// MaxMessageSize is the size in bytes above which a post is refused
	// at SMTP time; 0 when there is no limit or the list holds oversized
	// posts instead (oversize_action hold).
	MaxMessageSize int64
	// AcceptUnsignedVERP admits Mailman's unsigned -bounces+ form.
	AcceptUnsignedVERP bool
}

// Member entries are 64-bit words: the top 56 bits are a keyed hash of
// (list, lower-case address), the low 8 bits are flags. A sorted []uint64
// costs 8 bytes per member (8 MB for a million) and answers in one binary
// search without allocating; a map would cost two to four times as much.
//
// Hash collisions can make a stranger look like a member with probability
// about members/2^56 per lookup (1.4e-11 at a million), and the seed is
// random per snapshot so nobody can aim for one. Every consequence of such
// a false "member" is benign: a bounce or post reaches postlist, whose
// pipeline checks membership again against the database.
const (
	flagMask   = 0xff
	flagPoster = 1 << 0 // member, owner or moderator: may post, receives mail (VERP)
	// Bits 1-3 hold the explicit moderation action of a nonmember row.
	actionShift = 1
	actionMask  = 0x7 << actionShift
)

var actionCodes = []string{"", "accept", "hold", "reject", "discard", "defer"}

func actionCode(a string) uint64 {
	for i, s := range actionCodes {
		if s == a {
			return uint64(i)
		}
	}
	return 0
}

type ban struct {
	exact string // canonical lower-case address, when not a pattern
	re    *regexp.Regexp
}

func (b ban) match(addr string) bool {
	if b.re != nil {
		return b.re.MatchString(addr)
	}
	return b.exact == addr
}

type listData struct {
	List
	bans []ban
}

type token struct {
	list    int32
	expires int64 // Unix nanoseconds
}

// Snapshot is an immutable picture of the database, the unit the index
// swaps atomically. All methods are safe for concurrent use. A nil
// *Snapshot means "not loaded": its methods answer 451 for every recipient
// rather than guess.
type Snapshot struct {
	gen      int64
	tokenGen int64           // the token generation tokens was read at
	listByID map[int64]int32 // list id -> index into info, for token reloads
	loadedAt time.Time
	loadTime time.Duration
	res      address.Resolver
	seed     maphash.Seed
	now      func() time.Time
	signer   address.VERPSigner

	domains  map[string]string // lower-case name -> canonical (main) domain
	lists    map[string]int32  // posting address -> index into info
	info     []listData
	members  []uint64 // sorted; see flagMask
	removed  []uint64 // sorted hashes, flags zero
	tokens   map[string]token
	siteBans []ban
}

// Stats describes a snapshot, for logs, metrics and benchmarks.
type Stats struct {
	Generation int64
	LoadedAt   time.Time
	LoadTime   time.Duration
	Domains    int
	Lists      int
	Members    int // distinct (list, address) pairs
	Removed    int
	Tokens     int
	Bans       int
}

// Stats returns counts; a nil snapshot has none.
func (s *Snapshot) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	st := Stats{
		Generation: s.gen, LoadedAt: s.loadedAt, LoadTime: s.loadTime,
		Domains: len(s.domains), Lists: len(s.info), Members: len(s.members),
		Removed: len(s.removed), Tokens: len(s.tokens), Bans: len(s.siteBans),
	}
	for i := range s.info {
		st.Bans += len(s.info[i].bans)
	}
	return st
}

// Generation is the store generation this snapshot was built from.
func (s *Snapshot) Generation() int64 {
	if s == nil {
		return -1
	}
	return s.gen
}

// Domain implements address.Directory.
func (s *Snapshot) Domain(d string) (string, bool) {
	c, ok := s.domains[d]
	return c, ok
}

// HasList implements address.Directory.
func (s *Snapshot) HasList(addr string) bool {
	_, ok := s.lists[addr]
	return ok
}

// List returns the SMTP-time settings of the list with posting address
// addr (lower-case, as in address.Target.List).
func (s *Snapshot) List(addr string) (List, bool) {
	if s == nil {
		return List{}, false
	}
	i, ok := s.lists[addr]
	if !ok {
		return List{}, false
	}
	return s.info[i].List, true
}

// clipAddr bounds addresses echoed in replies: an SMTP reply line has
// room for about 500 octets, and the recipient came from the network.
func clipAddr(a string) string {
	const max = 300
	if len(a) > max {
		return a[:max] + "..."
	}
	return a
}

func refuse(r reply.Reply, reason string, t address.Target) Decision {
	return Decision{Target: t, Ours: true, Reply: &r, Reason: reason}
}

// Decide resolves one recipient as the milter answers it. It never blocks
// and never touches the disk.
func (s *Snapshot) Decide(rcpt string) Decision {
	if s == nil {
		return refuse(reply.TempFail(), ReasonUnavailable, address.Target{})
	}
	t, err := s.res.Resolve(rcpt, s)
	switch {
	case err == nil:
	case errors.Is(err, address.ErrNotOurs):
		return Decision{Reason: ReasonNotOurs}
	case errors.Is(err, address.ErrNoSuchList):
		return refuse(reply.NoSuchList(clipAddr(strings.TrimSpace(rcpt))), ReasonNoSuchList, address.Target{})
	default:
		// The resolver reports some syntax errors before it has looked
		// at the domain; only a list domain's addresses are ours to judge.
		if !s.inListDomain(rcpt) {
			return Decision{Reason: ReasonNotOurs}
		}
		why := "unparseable address"
		var se *address.SyntaxError
		if errors.As(err, &se) {
			why = se.Reason
		}
		return refuse(reply.Malformed(clipAddr(strings.TrimSpace(rcpt)), why), ReasonMalformed, address.Target{})
	}
	switch {
	case t.Kind == address.Bounces && t.Ext != "":
		if s.verpMember(t) {
			return Decision{Target: t, Ours: true, Reason: ReasonVERP}
		}
		return refuse(reply.BadVERP(clipAddr(strings.TrimSpace(rcpt))), ReasonBadVERP, t)
	case t.Kind == address.Confirm && t.Ext != "":
		if s.liveToken(t.List, t.Ext) {
			return Decision{Target: t, Ours: true, Reason: ReasonToken}
		}
		return refuse(reply.BadToken(clipAddr(strings.TrimSpace(rcpt))), ReasonBadToken, t)
	}
	return Decision{Target: t, Ours: true, Reason: ReasonList}
}

// DecideRcpt is the whole RCPT-stage decision, Decide followed by the
// sender check of a post, shared by the milter, the policy service and
// `postlist lookup` so that all three answer alike. senderKnown false
// means the MTA did not say who the sender is: refusing on a guess could
// drop a member's post, so the pipeline decides later. policy is the
// sender check's reason for an accepted post ("sender_unknown" when it
// was skipped), "" otherwise.
func (s *Snapshot) DecideRcpt(rcpt, sender string, senderKnown bool) (d Decision, policy string) {
	d = s.Decide(rcpt)
	if !d.Accepted() || d.Target.Kind != address.Post {
		return d, ""
	}
	if !senderKnown {
		return d, ReasonSenderUnknown
	}
	r, reason := s.CheckSender(d.Target.List, sender)
	if r != nil {
		d.Reply, d.Reason = r, reason
		return d, ""
	}
	return d, reason
}

func (s *Snapshot) inListDomain(rcpt string) bool {
	r := strings.TrimSpace(rcpt)
	r = strings.TrimSuffix(strings.TrimPrefix(r, "<"), ">")
	at := strings.LastIndexByte(r, '@')
	if at < 0 {
		return false
	}
	_, ok := s.domains[strings.ToLower(strings.TrimSuffix(strings.TrimSpace(r[at+1:]), "."))]
	return ok
}

// verpMember reports whether a -bounces+ extension names a current or
// recently removed member (any role but nonmember: those receive no list
// mail, so they cannot bounce it). Both forms are read: member=domain and
// the signed member=domain=STAMPSIG, whose signature is checked here (see
// address.VERPSigner.Member).
func (s *Snapshot) verpMember(t address.Target) bool {
	li, ok := s.lists[t.List]
	if !ok {
		return false
	}
	if len(s.signer.Key) > 0 {
		// Signed VERP: the signature must check (the unsigned form only
		// where the list accepts it), so a forged bounce is refused here,
		// before it is queued. A genuine return path older than the
		// bounce window is taken whoever it names now: refusing it would
		// only make the reporting MTA bounce a bounce, and the bounce
		// processor ignores it.
		m, st := s.signer.Member(t.List, t.Ext, s.info[li].AcceptUnsignedVERP, s.now())
		return st == address.VERPExpired || st.Accepted() && s.receives(li, m)
	}
	if m, ok := address.DecodeVERP(t.Ext); ok && s.receives(li, m) {
		return true
	}
	if i := strings.LastIndexByte(t.Ext, '='); i > 0 {
		if m, ok := address.DecodeVERP(t.Ext[:i]); ok && s.receives(li, m) {
			return true
		}
	}
	return false
}

func (s *Snapshot) receives(li int32, addr string) bool {
	k := s.key(li, canon(addr))
	if f, ok := s.memberFlags(k); ok && f&flagPoster != 0 {
		return true
	}
	_, found := slices.BinarySearch(s.removed, k)
	return found
}

func (s *Snapshot) liveToken(list, tok string) bool {
	tok = strings.ToLower(tok)
	if !address.ValidToken(tok) {
		return false
	}
	t, ok := s.tokens[tok]
	if !ok {
		return false
	}
	li, ok := s.lists[list]
	return ok && li == t.list && s.now().UnixNano() < t.expires
}

// CheckSender decides whether sender may post to list at SMTP time. It
// refuses only what the list's settings refuse outright: a banned sender,
// or a non-member when the non-member action (the address's own, else the
// list's default_nonmember_action) is reject. Everything else (hold,
// moderation, emergency) is for the pipeline after queueing. sender "" is
// the null sender, a non-member of every list. The reason is one of
// ReasonPoster, ReasonNoPolicy, ReasonBanned, ReasonNonmember.
func (s *Snapshot) CheckSender(list, sender string) (*reply.Reply, string) {
	if s == nil {
		r := reply.TempFail()
		return &r, ReasonUnavailable
	}
	li, ok := s.lists[list]
	if !ok {
		// Gone between RCPT and now; the pipeline will find out.
		return nil, ReasonNoPolicy
	}
	c := canon(sender)
	if c != "" && s.banned(li, c) {
		r := reply.Banned(list, clipAddr(sender))
		return &r, ReasonBanned
	}
	flags, _ := s.memberFlags(s.key(li, c))
	if flags&flagPoster != 0 {
		return nil, ReasonPoster
	}
	action := actionCodes[(flags&actionMask)>>actionShift]
	if action == "" {
		action = s.info[li].NonmemberAction
	}
	if action == "reject" {
		r := reply.NonMemberRejected(list, clipAddr(sender))
		return &r, ReasonNonmember
	}
	return nil, ReasonNoPolicy
}

// IsMember reports whether addr is a member, owner or moderator of list.
func (s *Snapshot) IsMember(list, addr string) bool {
	if s == nil {
		return false
	}
	li, ok := s.lists[list]
	if !ok {
		return false
	}
	f, ok := s.memberFlags(s.key(li, canon(addr)))
	return ok && f&flagPoster != 0
}

func (s *Snapshot) banned(li int32, addr string) bool {
	lower := strings.ToLower(addr)
	for _, b := range s.info[li].bans {
		if b.match(lower) {
			return true
		}
	}
	for _, b := range s.siteBans {
		if b.match(lower) {
			return true
		}
	}
	return false
}

// memberFlags finds the entry for key k (flags bits zero).
func (s *Snapshot) memberFlags(k uint64) (uint64, bool) {
	i, _ := slices.BinarySearch(s.members, k)
	if i < len(s.members) && s.members[i]&^flagMask == k {
		return s.members[i] & flagMask, true
	}
	return 0, false
}

// key hashes (list, lower-case addr) with the flag bits cleared. The
// address is lower-cased into a stack buffer: this runs for every RCPT
// and must not allocate.
func (s *Snapshot) key(li int32, addr string) uint64 {
	var buf [256]byte
	var b []byte
	if 4+len(addr) <= len(buf) {
		b = buf[:0]
	} else {
		b = make([]byte, 0, 4+len(addr))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(li))
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return maphash.Bytes(s.seed, b) &^ flagMask
}

// canon brings an address to the form members are keyed by: no angle
// brackets, no quoting (Postfix hands the milter `"a b"@x` as `a b@x`, the
// store keeps the quoted form; both must meet). Case is folded by key.
func canon(a string) string {
	a = strings.TrimSpace(a)
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		a = strings.TrimSpace(a[1 : len(a)-1])
	}
	if strings.IndexByte(a, '"') >= 0 {
		if p, err := address.Parse(a); err == nil {
			return p.Local + "@" + p.Domain
		}
	}
	return a
}
