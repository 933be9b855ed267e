package message

import (
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// wordDecoder decodes RFC 2047 encoded words in any charset go-message
// knows, not only the UTF-8 and Latin-1 the standard library handles.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// DecodeHeader returns the text of an unstructured header value (Subject)
// with encoded words decoded; an undecodable value comes back as written.
func DecodeHeader(v string) string {
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// ParseAddressList parses an address header value (From, To, Cc),
// decoding encoded display names.
func ParseAddressList(v string) ([]*mail.Address, error) {
	p := mail.AddressParser{WordDecoder: wordDecoder}
	return p.ParseList(v)
}

// EncodePhrase renders s as an RFC 5322 phrase (a display name): as is
// when it is only atoms, quoted when it is printable ASCII, and as a
// base64 encoded word otherwise. Base64 rather than Q, because Go's Q
// encoder leaves specials such as "," and "<" unencoded, which is wrong in
// a phrase and could make a reader see a second address.
func EncodePhrase(s string) string {
	s = strings.Join(strings.FieldsFunc(s, isSpaceOrControl), " ")
	if s == "" {
		return ""
	}
	atoms, printable := true, true
	for _, r := range s {
		switch {
		case r >= 0x80:
			atoms, printable = false, false
		case r == ' ':
		case !isAtext(r):
			atoms = false
		}
	}
	switch {
	case atoms:
		return s
	case printable:
		return quoteString(s)
	}
	return mime.BEncoding.Encode("utf-8", s)
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f || 0x80 <= r && r <= 0x9f || r == utf8.RuneError
}

// isAtext is RFC 5322 atext.
func isAtext(r rune) bool {
	if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
		return true
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// FormatAddress renders a mailbox with an optional display name.
func FormatAddress(name, addr string) string {
	if p := EncodePhrase(name); p != "" {
		return p + " <" + addr + ">"
	}
	return addr
}
