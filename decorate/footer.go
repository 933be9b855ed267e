package decorate

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"mime"
	"mime/quotedprintable"
	"postlist/message"
	"strconv"
	"strings"
)

// addFooter appends footer to the message body.
//
// A single text/plain part gets the footer appended to its text, in its
// own transfer encoding (7bit, 8bit, quoted-printable or base64, decoded
// and re-encoded), as long as the footer can be written in the part's
// charset: ASCII always can (in any ASCII-compatible charset), other text
// only in UTF-8, or in US-ASCII, which is then declared UTF-8 (a superset).
//
// A multipart/mixed message gets the footer as one more part before its
// closing boundary; its existing parts are untouched.
//
// Everything else - multipart/signed, multipart/encrypted, S/MIME,
// multipart/alternative, text/html, a footer the part's charset cannot
// carry, a body we cannot decode - is wrapped: the original body, with its
// Content-* fields, becomes the first part of a new multipart/mixed and
// the footer the second. The original part's bytes are kept exactly, so a
// signature over it still verifies and HTML is not broken by text glued
// after </html>. This differs from Mailman, which rewrites the payload of
// some of these and breaks their signatures.
func addFooter(m *message.Message, footer string) {
	mt, params, err := m.ContentType()
	if err != nil {
		wrapMixed(m, footer)
		return
	}
	switch {
	case mt == "text/plain":
		if appendText(m, params, footer) {
			return
		}
	case mt == "multipart/mixed":
		if appendPart(m, params["boundary"], footer) {
			return
		}
	}
	wrapMixed(m, footer)
}

// lines converts text to the given line ending and makes it end with one.
func lines(text, eol string) string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.TrimRight(text, "\n") + "\n"
	return strings.ReplaceAll(text, "\n", eol)
}

// asciiCompatible reports charsets in which ASCII text is written as
// ASCII bytes, so that an ASCII footer can be appended as it is.
func asciiCompatible(cs string) bool {
	for _, p := range []string{"utf-16", "utf-32", "utf-7", "ucs-", "unicode"} {
		if strings.HasPrefix(cs, p) {
			return false
		}
	}
	return true
}

func isUTF8(cs string) bool { return cs == "utf-8" || cs == "utf8" }

func isUSASCII(cs string) bool { return cs == "us-ascii" || cs == "ascii" || cs == "" }

// appendText appends the footer to a single text/plain part and reports
// whether it could.
func appendText(m *message.Message, params map[string]string, footer string) bool {
	cs := strings.ToLower(params["charset"])
	if !asciiCompatible(cs) {
		return false
	}
	relabel := false
	if !isASCII(footer) {
		switch {
		case isUTF8(cs):
		case isUSASCII(cs):
			relabel = true
		default:
			return false
		}
	}
	cte := strings.ToLower(m.Get("Content-Transfer-Encoding"))
	var body []byte
	to8bit := false
	switch cte {
	case "", "7bit", "8bit", "binary":
		body = append(withFinalEOL(m.Body, m.EOL), lines(footer, m.EOL)...)
		to8bit = !isASCII(footer) && (cte == "" || cte == "7bit")
	case "quoted-printable":
		body = withFinalEOL(m.Body, m.EOL)
		if softBreakAtEnd(body) {
			// The last line continues onto whatever follows: end it first,
			// or the footer would be glued to the last line of text.
			body = append(body, m.EOL...)
		}
		var qp bytes.Buffer
		w := quotedprintable.NewWriter(&qp)
		w.Write([]byte(lines(footer, "\r\n")))
		w.Close()
		body = append(body, fixEOL(qp.Bytes(), m.EOL)...)
	case "base64":
		dec, err := base64.StdEncoding.DecodeString(stripSpace(m.Body))
		if err != nil {
			return false
		}
		dec = append(withFinalEOL(dec, "\r\n"), lines(footer, "\r\n")...)
		body = encodeBase64(dec, m.EOL)
	default:
		return false
	}
	if relabel {
		params["charset"] = "utf-8"
		m.Set("Content-Type", mime.FormatMediaType("text/plain", params))
	}
	if to8bit {
		m.Set("Content-Transfer-Encoding", "8bit")
	}
	if relabel || to8bit {
		ensureMIME(m)
	}
	m.Body = body
	return true
}

// appendPart adds the footer as the last part of a multipart/mixed body
// and reports whether it found the closing boundary to do it.
func appendPart(m *message.Message, boundary, footer string) bool {
	if boundary == "" {
		return false
	}
	delim := []byte("--" + boundary + "--")
	i := bytes.LastIndex(m.Body, delim)
	// The closing delimiter starts a line, and the line break before it
	// belongs to it (RFC 2046 section 5.1.1): insert before that break.
	if i <= 0 || m.Body[i-1] != '\n' {
		return false
	}
	j := i - 1
	if j > 0 && m.Body[j-1] == '\r' {
		j--
	}
	var b bytes.Buffer
	b.Write(m.Body[:j])
	b.WriteString(m.EOL + "--" + boundary + m.EOL)
	b.WriteString(footerPart(footer, m.EOL))
	b.Write(m.Body[j:])
	m.Body = b.Bytes()
	return true
}

// wrapMixed makes the body, with its Content-* fields, the first part of
// a new multipart/mixed and the footer the second.
func wrapMixed(m *message.Message, footer string) {
	var part bytes.Buffer
	var kept []message.Field
	for _, f := range m.Fields {
		if strings.HasPrefix(strings.ToLower(f.Name), "content-") {
			m.WriteFields(&part, []message.Field{f})
		} else {
			kept = append(kept, f)
		}
	}
	m.Fields = kept
	boundary := newBoundary(m.Body)
	eol := m.EOL
	var b bytes.Buffer
	b.WriteString("--" + boundary + eol)
	b.Write(part.Bytes())
	b.WriteString(eol)
	b.Write(m.Body)
	b.WriteString(eol + "--" + boundary + eol)
	b.WriteString(footerPart(footer, eol))
	b.WriteString(eol + "--" + boundary + "--" + eol)
	ensureMIME(m)
	m.Set("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	m.Body = b.Bytes()
}

// footerPart renders the footer as a MIME part, without the line break
// that precedes the next delimiter.
func footerPart(footer, eol string) string {
	var b strings.Builder
	if isASCII(footer) {
		b.WriteString(`Content-Type: text/plain; charset="us-ascii"` + eol)
		b.WriteString("Content-Transfer-Encoding: 7bit" + eol)
		b.WriteString("Content-Disposition: inline" + eol + eol)
		b.WriteString(strings.TrimSuffix(lines(footer, eol), eol))
		return b.String()
	}
	// Quoted-printable keeps a non-ASCII footer 7-bit clean, so adding it
	// never forces an 8-bit conversion on the way out.
	b.WriteString(`Content-Type: text/plain; charset="utf-8"` + eol)
	b.WriteString("Content-Transfer-Encoding: quoted-printable" + eol)
	b.WriteString("Content-Disposition: inline" + eol + eol)
	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	w.Write([]byte(lines(footer, "\r\n")))
	w.Close()
	b.Write(bytes.TrimSuffix(fixEOL(qp.Bytes(), eol), []byte(eol)))
	return b.String()
}

// newBoundary derives a boundary from the body, so that the same post
// always decorates to the same bytes, and makes sure the body does not
// contain it.
func newBoundary(body []byte) string {
	sum := sha256.Sum256(body)
	base := "postlist-" + hex.EncodeToString(sum[:12])
	b := base
	for n := 1; bytes.Contains(body, []byte("--"+b)); n++ {
		b = base + "-" + strconv.Itoa(n)
	}
	return b
}

func ensureMIME(m *message.Message) {
	if !m.Has("MIME-Version") {
		m.Add("MIME-Version", "1.0")
	}
}

func withFinalEOL(b []byte, eol string) []byte {
	out := make([]byte, 0, len(b)+len(eol)+512)
	out = append(out, b...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, eol...)
	}
	return out
}

// softBreakAtEnd reports whether quoted-printable text ends in a soft
// line break ("=" before the final line ending).
func softBreakAtEnd(b []byte) bool {
	b = bytes.TrimRight(b, "\r\n")
	b = bytes.TrimRight(b, " \t")
	return len(b) > 0 && b[len(b)-1] == '='
}

// fixEOL rewrites CRLF line endings to eol.
func fixEOL(b []byte, eol string) []byte {
	if eol == "\r\n" {
		return b
	}
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte(eol))
}

func stripSpace(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, string(b))
}

// encodeBase64 writes b in base64 lines of 76 characters (RFC 2045).
func encodeBase64(b []byte, eol string) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	var out bytes.Buffer
	for len(enc) > 76 {
		out.WriteString(enc[:76] + eol)
		enc = enc[76:]
	}
	out.WriteString(enc + eol)
	return out.Bytes()
}
