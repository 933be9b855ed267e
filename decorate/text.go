package decorate

import (
	"bytes"
	"io"
	"mime"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode text in any charset go-message knows
)

// MaxTextBody is how many bytes of a text part TextBody reads at all.
const MaxTextBody = 64e3

// maxParts bounds the MIME walk: command mail is short, and a message of
// ten thousand empty parts must not cost more than a glance.
const maxParts = 50

// TextBody returns the decoded text of raw's first text/plain part
// (Mailman reads commands from that part only) and whether raw has other,
// non-text parts that were not read. Undecodable text is returned as
// written rather than dropped.
func TextBody(raw []byte) (text string, otherParts bool) {
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil || (err != nil && !lenient(err)) {
		return string(Parse(raw).Body), false
	}
	found, seen := false, 0
	var walk func(e *message.Entity, depth int)
	walk = func(e *message.Entity, depth int) {
		if seen++; seen > maxParts || depth > 5 {
			return
		}
		mt, _, _ := mime.ParseMediaType(e.Header.Get("Content-Type"))
		if mt == "" {
			mt = "text/plain"
		}
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if p == nil || (err != nil && !lenient(err)) {
					return
				}
				walk(p, depth+1)
			}
		}
		if mt == "text/plain" && !found {
			b, _ := io.ReadAll(io.LimitReader(e.Body, MaxTextBody))
			text, found = string(b), true
			return
		}
		if mt != "text/plain" && mt != "text/html" {
			otherParts = true
		}
	}
	walk(e, 0)
	return text, otherParts
}

// lenient reports the go-message errors that still come with a usable
// entity (its body undecoded): an unknown charset or transfer encoding
// is no reason to ignore the text.
func lenient(err error) bool {
	return message.IsUnknownCharset(err) || message.IsUnknownEncoding(err)
}
