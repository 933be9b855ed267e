package lmtp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	msg "postlist/message"
)

// messageInfo is what intake learns from a message's header.
type messageInfo struct {
	MessageID string // the Message-ID value, "" if missing
	QueueID   string // the delivering Postfix's queue id, "" if not visible
}

// maxReason bounds the part of a parse error quoted back to the sender.
const maxReason = 120

// inspect checks that body is mail we can work with: a header section
// that parses, with at least one field. The body itself is not judged:
// MIME structure is the processing stages' business, and Postfix relays
// whatever its clients send.
func inspect(body []byte) (messageInfo, error) {
	if err := msg.CheckHeader(body); err != nil {
		return messageInfo{}, errors.New(reason(err))
	}
	m := msg.Parse(body)
	return messageInfo{
		MessageID: strings.TrimSpace(m.Get("Message-Id")),
		QueueID:   postfixQueueID(m.Get("Received")),
	}, nil
}

// reason turns a header parse error into text for the SMTP reply: the
// offending line is quoted (it helps whoever debugs the sending program),
// but clipped and reduced to printable ASCII, since replies are ASCII and
// one line.
func reason(err error) string {
	why := strings.TrimSpace(strings.TrimPrefix(err.Error(), "message: "))
	if len(why) > maxReason {
		why = why[:maxReason] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, why)
}

// postfixReceived matches the trace field Postfix's cleanup adds, e.g.
//
//	from client.example.net (client.example.net [192.0.2.7])
//		by mx.example.org (Postfix) with ESMTP id 4F1B2C3D4E
//		for <test@lists.example.org>; ...
//
// and, for locally submitted mail, "by HOST (Postfix, from userid 0) id
// ID". Queue ids are hex (short) or base-52-ish alphanumerics (long ids).
var postfixReceived = regexp.MustCompile(`\bby\s+\S+\s+\(Postfix(?:,[^)]*)?\)\s+(?:with\s+\S+\s+)?id\s+([0-9A-Za-z]+)\b`)

// postfixQueueID extracts the queue id from the topmost Received field
// (h.Get returns the topmost). Only the topmost counts: it was added by
// the Postfix delivering to us, while lower ones come from upstream
// Postfix servers and would point at the wrong log.
func postfixQueueID(received string) string {
	if m := postfixReceived.FindStringSubmatch(received); m != nil {
		return m[1]
	}
	return ""
}

// withMessageID prepends a Message-ID field to body and returns the new
// body and the id. Prepending keeps every received byte unchanged and in
// place; the line ending follows the message's own first line.
func withMessageID(body []byte, hostname string) ([]byte, string) {
	id := newMessageID(hostname)
	eol := "\r\n"
	if i := bytes.IndexByte(body, '\n'); i >= 0 && (i == 0 || body[i-1] != '\r') {
		eol = "\n"
	}
	out := make([]byte, 0, len("Message-ID: ")+len(id)+len(eol)+len(body))
	out = append(out, "Message-ID: "...)
	out = append(out, id...)
	out = append(out, eol...)
	out = append(out, body...)
	return out, id
}

// newMessageID makes a globally unique id in the style of Python's
// make_msgid, which Mailman uses: time, randomness, our host name.
func newMessageID(hostname string) string {
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "<" + strconv.FormatInt(time.Now().UnixNano(), 36) + "." + hex.EncodeToString(r[:]) + "@" + hostname + ">"
}

// readMessage reads the DATA stream. hint is the client's SIZE= value,
// used (bounded by limit) to allocate once instead of growing; the slack
// lets bytes.Buffer see EOF without doubling a nearly full buffer.
func readMessage(r io.Reader, hint, limit int64) ([]byte, error) {
	const minAlloc, slack = 16 << 10, 1 << 10
	n := min(max(hint, minAlloc), limit) + slack
	buf := bytes.NewBuffer(make([]byte, 0, n))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	return buf.Bytes(), nil
}
