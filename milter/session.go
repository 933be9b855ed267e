package milter

import (
	"net/mail"
	"runtime/debug"
	"strings"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"postlist/address"
	"postlist/index"
	"postlist/metrics"
	"postlist/reply"
)

// Verdicts, the `verdict` field of the log lines.
const (
	VerdictAccept   = "accept"   // ours, and taken (Postfix is told "continue")
	VerdictReject   = "reject"   // 5xx
	VerdictTempFail = "tempfail" // 4xx
	VerdictContinue = "continue" // not ours: left to Postfix
)

// Reasons of end-of-message decisions, beside the index's.
const (
	ReasonLoop    = "loop"     // the list's own List-Id or X-BeenThere is already there
	ReasonTooBig  = "too_big"  // larger than the list's (or the site's) limit
	ReasonAccepts = "accepted" // at least one recipient takes the message
	ReasonPanic   = "internal_error"
)

// Bounds on what one message may make us keep: header values beyond these
// counts are ignored rather than grown without limit.
const (
	maxTrackedHeaders = 64
	maxRecipients     = 10000
)

// rcpt is an accepted recipient of ours.
type rcpt struct {
	addr   string
	target address.Target
}

// session is one milter connection, which Postfix keeps for one SMTP
// session: possibly several transactions, one after the other.
type session struct {
	srv    *Server
	client string

	// The transaction.
	sender      string
	senderKnown bool
	queueID     string
	rcpts       []rcpt
	foreign     bool // a recipient outside the list domains was accepted
	overflow    bool // more recipients than we track: never refuse the message

	// The content, when it was asked for.
	size      int64
	listIDs   []string
	beenThere []string
	from      []string
}

var _ gomilter.Milter = (*session)(nil)

func (s *session) resetTransaction() {
	s.sender, s.senderKnown, s.queueID = "", false, ""
	s.rcpts = s.rcpts[:0]
	s.foreign, s.overflow = false, false
	s.size = 0
	s.listIDs, s.beenThere, s.from = s.listIDs[:0], s.beenThere[:0], s.from[:0]
}

// readMacros picks up what Postfix sent since the last event: the client
// address once per connection, the sender once per transaction, and the
// queue id once Postfix has one (not before the first accepted RCPT).
func (s *session) readMacros(m gomilter.Modifier) {
	if v, ok := m.GetEx(gomilter.MacroClientAddr); ok {
		s.client = v
	}
	if v, ok := m.GetEx(gomilter.MacroMailAddr); ok {
		s.sender, s.senderKnown = v, true
	}
	if v := m.Get(gomilter.MacroQueueId); v != "" {
		s.queueID = v
	}
}

func (s *session) NewConnection(gomilter.Modifier) error {
	s.client = ""
	s.resetTransaction()
	return nil
}

// Connect only comes from an MTA that cannot skip it (see negotiate); it
// then also may not honour our macro request for {client_addr}.
func (s *session) Connect(_, _ string, _ uint16, addr string, _ gomilter.Modifier) (*gomilter.Response, error) {
	s.client = addr
	return gomilter.RespContinue, nil
}

func (s *session) Helo(string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

// RcptTo decides one recipient. rcptTo is the address as the client wrote
// it, quoting included; the resolver decides on the local part's value, so
// the LMTP server, which sees it unquoted, agrees. A good recipient gets
// "continue", never "accept": accept would tell Postfix to stop asking us
// about this transaction, and the next RCPT (perhaps unknown@) would go
// unchecked.
func (s *session) RcptTo(rcptTo, _ string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.recoverTo(&resp, rcptTo)
	s.readMacros(m)
	d, policy := decide(s.srv.ix.Snapshot(), rcptTo, s.sender, s.senderKnown)
	if !d.Ours {
		s.foreign = true
		metrics.MilterDecision(metrics.StageRcpt, VerdictContinue, d.Reason)
		if ce := s.srv.log.Check(zap.DebugLevel, "rcpt decision"); ce != nil {
			ce.Write(s.fields(rcptTo, d.Target.List, VerdictContinue, d.Reason)...)
		}
		return gomilter.RespContinue, nil
	}
	if d.Reply != nil {
		metrics.MilterDecision(metrics.StageRcpt, verdictOf(*d.Reply), d.Reason)
		s.logReply("rcpt decision", rcptTo, d.Target.List, d.Reason, *d.Reply)
		return respond(*d.Reply), nil
	}
	fields := s.fields(rcptTo, d.Target.List, VerdictAccept, d.Reason)
	fields = append(fields, zap.String("kind", string(d.Target.Kind)))
	if policy != "" {
		fields = append(fields, zap.String("policy", policy))
	}
	s.srv.log.Info("rcpt decision", fields...)
	metrics.MilterDecision(metrics.StageRcpt, VerdictAccept, d.Reason)
	if len(s.rcpts) < maxRecipients {
		s.rcpts = append(s.rcpts, rcpt{addr: rcptTo, target: d.Target})
	} else {
		s.overflow = true
	}
	return gomilter.RespContinue, nil
}

// decide is the whole RCPT decision, shared with Lookup so that
// `postlist lookup` prints exactly what the milter answers (and with the
// policy service, through index).
func decide(snap *index.Snapshot, rcptTo, sender string, senderKnown bool) (index.Decision, string) {
	return snap.DecideRcpt(rcptTo, sender, senderKnown)
}

// needContent reports whether end-of-message checks could refuse this
// transaction: only when every recipient is ours (a recipient elsewhere
// always takes the message) and there is a limit or a post to check.
func (s *session) needContent() bool {
	if s.foreign || s.overflow || len(s.rcpts) == 0 {
		return false
	}
	if s.srv.maxSize > 0 {
		return true
	}
	for _, r := range s.rcpts {
		if r.target.Kind == address.Post {
			return true
		}
	}
	return false
}

// Data is the last point before Postfix streams the message. When nothing
// at end of message could refuse it, "accept" here ends our part in this
// transaction (all recipients are known by now, so accepting stops no
// check) and saves Postfix sending us the content.
func (s *session) Data(m gomilter.Modifier) (*gomilter.Response, error) {
	s.readMacros(m)
	if s.needContent() {
		return gomilter.RespContinue, nil
	}
	return gomilter.RespAccept, nil
}

func (s *session) Header(name, value string, _ gomilter.Modifier) (*gomilter.Response, error) {
	// The size as the LMTP server will count it: "Name:" value CRLF, with
	// folded lines joined by LF by Postfix.
	s.size += int64(len(name) + 1 + len(value) + 2 + strings.Count(value, "\n"))
	switch {
	case strings.EqualFold(name, "List-Id"):
		s.listIDs = appendBounded(s.listIDs, listID(value))
	case strings.EqualFold(name, "X-BeenThere"):
		s.beenThere = appendBounded(s.beenThere, strings.ToLower(strings.Trim(strings.TrimSpace(value), "<>")))
	case strings.EqualFold(name, "From"):
		for _, a := range fromAddresses(value) {
			s.from = appendBounded(s.from, a)
		}
	}
	return gomilter.RespContinue, nil
}

func (s *session) Headers(gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, _ gomilter.Modifier) (*gomilter.Response, error) {
	s.size += int64(len(chunk))
	return gomilter.RespContinue, nil
}

// EndOfMessage refuses the message only if every recipient would refuse
// it; the first recipient's refusal is the reply.
func (s *session) EndOfMessage(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.resetTransaction()
	defer s.recoverTo(&resp, "")
	s.readMacros(m)
	s.size += 2 // the empty line ending the header is not a header event
	if !s.needContent() {
		return gomilter.RespAccept, nil
	}
	snap := s.srv.ix.Snapshot()
	var first *refusal
	for _, r := range s.rcpts {
		f := s.wouldRefuse(snap, r)
		if f == nil {
			fields := s.fields(r.addr, r.target.List, VerdictAccept, ReasonAccepts)
			fields = append(fields, zap.Int64("size", s.size), zap.Int("rcpts", len(s.rcpts)))
			s.srv.log.Info("message decision", fields...)
			metrics.MilterDecision(metrics.StageMessage, VerdictAccept, ReasonAccepts)
			return gomilter.RespAccept, nil
		}
		if first == nil {
			first = f
		}
	}
	fields := s.fields(first.rcpt, first.list, verdictOf(first.reply), first.reason)
	fields = append(fields, zap.String("reply", address.RedactText(first.reply.String(), "")), zap.Int64("size", s.size), zap.Int("rcpts", len(s.rcpts)))
	s.srv.log.Info("message decision", fields...)
	metrics.MilterDecision(metrics.StageMessage, verdictOf(first.reply), first.reason)
	return respond(first.reply), nil
}

type refusal struct {
	rcpt, list, reason string
	reply              reply.Reply
}

// wouldRefuse applies the end-of-message policy for one recipient. Only
// posts are judged against the list's settings; mail for -bounces,
// -owner, -request and the rest must reach postlist whatever it carries
// (a bounce quotes the message it bounces), so only the site-wide size
// limit, which the LMTP server would apply anyway, refuses it.
func (s *session) wouldRefuse(snap *index.Snapshot, r rcpt) *refusal {
	if s.srv.maxSize > 0 && s.size > s.srv.maxSize {
		return &refusal{r.addr, r.target.List, ReasonTooBig, reply.TooBig(s.srv.maxSize)}
	}
	if r.target.Kind != address.Post {
		return nil
	}
	l, ok := snap.List(r.target.List)
	if !ok {
		// Removed since RCPT: the LMTP server will say so.
		return nil
	}
	for _, id := range s.listIDs {
		if id == strings.ToLower(l.ListID) {
			return &refusal{r.addr, l.Address, ReasonLoop, reply.Loop(l.Address)}
		}
	}
	for _, a := range s.beenThere {
		if a == l.Address {
			return &refusal{r.addr, l.Address, ReasonLoop, reply.Loop(l.Address)}
		}
	}
	if l.MaxMessageSize > 0 && s.size > l.MaxMessageSize {
		return &refusal{r.addr, l.Address, ReasonTooBig, reply.TooBig(l.MaxMessageSize)}
	}
	// Any header From address that may post is enough, as in Mailman,
	// where one member among the senders passes the non-member rule.
	var refused *refusal
	for _, from := range s.from {
		rp, reason := snap.CheckSender(l.Address, from)
		if rp == nil {
			return nil
		}
		if refused == nil {
			refused = &refusal{r.addr, l.Address, reason, *rp}
		}
	}
	return refused
}

func (s *session) Abort(gomilter.Modifier) error {
	s.resetTransaction()
	return nil
}

func (s *session) Unknown(string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) Cleanup(gomilter.Modifier) {}

// recoverTo turns a bug in a decision into a temporary failure for this
// command: Postfix then retries later instead of losing the connection
// (and the sender retries, rather than getting a bounce).
func (s *session) recoverTo(resp **gomilter.Response, rcptTo string) {
	if v := recover(); v != nil {
		s.srv.log.Error("milter decision failed", zap.String("rcpt", address.Redact(rcptTo, "")), zap.String("queue_id", s.queueID),
			zap.String("reason", ReasonPanic), zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
		if rcptTo != "" {
			metrics.MilterDecision(metrics.StageRcpt, VerdictTempFail, ReasonPanic)
		} else {
			metrics.MilterDecision(metrics.StageMessage, VerdictTempFail, ReasonPanic)
		}
		*resp = respond(reply.TempFail())
	}
}

func (s *session) fields(rcptTo, list, verdict, reason string) []zap.Field {
	f := make([]zap.Field, 0, 10)
	if s.queueID != "" {
		f = append(f, zap.String("queue_id", s.queueID))
	}
	f = append(f, zap.String("client", s.client), zap.String("sender", address.Redact(senderForLog(s.sender, s.senderKnown), "")),
		zap.String("rcpt", address.Redact(rcptTo, "")))
	if list != "" {
		f = append(f, zap.String("list", list))
	}
	return append(f, zap.String("verdict", verdict), zap.String("reason", reason))
}

func (s *session) logReply(msg, rcptTo, list, reason string, r reply.Reply) {
	fields := s.fields(rcptTo, list, verdictOf(r), reason)
	s.srv.log.Info(msg, append(fields, zap.String("reply", address.RedactText(r.String(), "")))...)
}

func senderForLog(sender string, known bool) string {
	switch {
	case !known:
		return ""
	case sender == "":
		return "<>"
	}
	return sender
}

func verdictOf(r reply.Reply) string {
	if r.Temporary() {
		return VerdictTempFail
	}
	return VerdictReject
}

// respond converts a reply for go-milter. go-milter refuses only codes
// outside 4xx/5xx or texts of megabytes, which our replies never are; the
// fallback keeps the refusal (with Postfix's generic text) all the same.
func respond(r reply.Reply) *gomilter.Response {
	resp, err := gomilter.RejectWithCodeAndReason(uint16(r.Code), r.EnhancedText())
	if err == nil {
		return resp
	}
	if r.Temporary() {
		return gomilter.RespTempFail
	}
	return gomilter.RespReject
}

func appendBounded(xs []string, x string) []string {
	if x == "" || len(xs) >= maxTrackedHeaders {
		return xs
	}
	return append(xs, x)
}

// listID extracts the identifier of a List-Id header (RFC 2919: an
// optional phrase, then the id in angle brackets).
func listID(v string) string {
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.ToLower(strings.TrimSpace(v[i+1 : i+j]))
		}
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// fromAddresses returns the addresses of a From header. When the header
// does not parse (an unknown charset in a display name, say) the
// addresses in angle brackets are taken, so a decoration cannot hide the
// sender from the non-member check.
func fromAddresses(v string) []string {
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	rest := v
	for {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			break
		}
		if a := strings.TrimSpace(rest[i+1 : i+j]); strings.Contains(a, "@") {
			out = append(out, a)
		}
		rest = rest[i+j+1:]
	}
	if len(out) == 0 {
		if a := strings.TrimSpace(v); strings.Contains(a, "@") && !strings.ContainsAny(a, " \t\"(") {
			out = append(out, a)
		}
	}
	return out
}
