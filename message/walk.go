package message

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"strings"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode text in any charset go-message knows
)

// Bounds on a MIME walk. Mail comes from the network and may nest parts
// without end or hold thousands of empty ones; a walk costs at most a
// glance whatever arrives. Parts beyond them are not visited.
const (
	// MaxParts bounds the entities visited, the message itself and every
	// multipart container included.
	MaxParts = 50
	// MaxDepth bounds nesting: the message is at depth 0, the parts of a
	// top-level multipart at depth 1.
	MaxDepth = 5
)

// Part is one MIME entity of a message, located in the message's bytes.
type Part struct {
	// Header holds the entity's header fields; its Body is the entity's
	// body, still transfer-encoded.
	Header *Message
	// MediaType is the lower-case media type: "text/plain" when the
	// entity has no Content-Type, "" when its Content-Type is unreadable.
	MediaType string
	// Params are the Content-Type parameters, nil when they do not parse.
	Params map[string]string
	// BadType reports a Content-Type that did not parse cleanly (the media
	// type may still be known, its parameters not).
	BadType bool
	// Depth is how deep the entity is nested, 0 for the message itself.
	Depth int
	// Start and End locate the entity's body in the walked bytes:
	// msg[Start:End], without the line break that belongs to the next
	// boundary (RFC 2046 section 5.1.1).
	Start, End int
}

// Multipart reports whether the entity is a container of other parts.
func (p Part) Multipart() bool { return strings.HasPrefix(p.MediaType, "multipart/") }

// Encoding is the entity's Content-Transfer-Encoding, lower case.
func (p Part) Encoding() string {
	return strings.ToLower(p.Header.Get("Content-Transfer-Encoding"))
}

// Text returns up to max bytes of the entity's body with its transfer
// encoding and (for text/*) charset decoded. What cannot be decoded (an
// unknown encoding or charset) comes back as written rather than not at
// all: the text is still worth reading.
func (p Part) Text(max int) string {
	var h gomessage.Header
	for _, name := range []string{"Content-Type", "Content-Transfer-Encoding"} {
		if p.Header.Has(name) {
			h.Set(name, p.Header.Get(name))
		}
	}
	e, err := gomessage.New(h, bytes.NewReader(p.Header.Body))
	if e == nil || (err != nil && !lenient(err)) {
		return string(limit(p.Header.Body, max))
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, int64(max)))
	return string(b)
}

// lenient reports the go-message errors that still come with a usable
// entity (its body undecoded).
func lenient(err error) bool {
	return gomessage.IsUnknownCharset(err) || gomessage.IsUnknownEncoding(err)
}

func limit(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// ContentType reads the Content-Type field: media type (lower case) and
// parameters, "text/plain" with no parameters when the field is missing
// or empty (RFC 2045 section 5.2). A field that does not parse gives an
// error along with what could be read: the media type alone, or nothing.
func (m *Message) ContentType() (mediaType string, params map[string]string, err error) {
	ct := m.Get("Content-Type")
	if ct == "" {
		return "text/plain", map[string]string{}, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return mt, params, fmt.Errorf("content-type %q: %w", OneLine(ct), err)
	}
	return mt, params, nil
}

// Walk returns the MIME entities of msg, depth first and in order, the
// message itself first, within MaxParts and MaxDepth. It never fails: an
// entity it cannot read further is a leaf. Only multipart bodies are
// descended into; an attached message (message/rfc822) is one leaf, since
// its parts belong to another message.
func Walk(msg []byte) []Part {
	var out []Part
	walk(msg, 0, len(msg), 0, &out)
	return out
}

func walk(msg []byte, start, end, depth int, out *[]Part) {
	if len(*out) >= MaxParts || depth > MaxDepth {
		return
	}
	h := Parse(msg[start:end])
	p := Part{Header: h, Depth: depth, Start: end - len(h.Body), End: end}
	mt, params, err := h.ContentType()
	p.MediaType, p.Params, p.BadType = mt, params, err != nil
	*out = append(*out, p)
	if boundary := p.Params["boundary"]; p.Multipart() && boundary != "" {
		for _, r := range splitParts(msg, p.Start, p.End, boundary) {
			walk(msg, r[0], r[1], depth+1, out)
		}
	}
}

// splitParts returns the [start, end) ranges of the parts of a multipart
// body: between delimiter lines, without the line break that belongs to
// the next delimiter. A last part without a close delimiter runs to the
// end of the body, as MIME readers read it.
func splitParts(msg []byte, start, end int, boundary string) [][2]int {
	delim := []byte("--" + boundary)
	var parts [][2]int
	partStart := -1
	for i := start; i < end; {
		lineEnd := end
		if j := bytes.IndexByte(msg[i:end], '\n'); j >= 0 {
			lineEnd = i + j + 1
		}
		line := bytes.TrimRight(msg[i:lineEnd], " \t\r\n")
		if bytes.HasPrefix(line, delim) {
			rest := line[len(delim):]
			if len(rest) == 0 || bytes.Equal(rest, []byte("--")) {
				if partStart >= 0 {
					parts = append(parts, [2]int{partStart, trimBreak(msg, partStart, i)})
				}
				if len(rest) == 2 {
					return parts
				}
				partStart = lineEnd
				if len(parts) >= MaxParts {
					return parts
				}
			}
		}
		i = lineEnd
	}
	if partStart >= 0 && partStart < end {
		parts = append(parts, [2]int{partStart, end})
	}
	return parts
}

// trimBreak drops the line break before a delimiter at end.
func trimBreak(msg []byte, start, end int) int {
	if end > start && msg[end-1] == '\n' {
		end--
		if end > start && msg[end-1] == '\r' {
			end--
		}
	}
	return end
}
