// Package message is postlist's model of a mail message: the parsed
// header fields and body with a byte-exact round trip, a parse that never
// fails, header decoding and encoding, address lists, and one bounded MIME
// part walker. Every other package reads mail through it, so there is one
// answer to "what does this message say", whoever asks.
package message

import (
	"bytes"
	"strings"
)

// Message is a mail message split into header fields and body. It keeps
// every byte it was parsed from: writing an unmodified Message back gives
// the input exactly, and a modified one changes only the fields that were
// touched. That is what lets decoration leave a signed body, and unchanged
// header fields, intact.
//
// The parser is deliberately lenient: it never fails. A line that is not a
// header field ends the header block (as if the empty line were missing),
// because a list server must be able to hold and show a broken message
// rather than refuse it after the MTA was already told "250".
type Message struct {
	Fields []Field
	// Body is everything after the empty line that ends the header.
	Body []byte
	// EOL is the line ending the message uses ("\r\n" or "\n"); fields
	// added by decoration use it too, so a message never mixes the two.
	EOL string
	// sep is the empty line between header and body as it was found, or
	// empty when the message had none.
	sep []byte
}

// Field is one header field exactly as written: name, colon, value,
// continuation lines and the final line ending.
type Field struct {
	Name string
	Raw  []byte
}

// Value returns the field's unfolded value: line breaks removed (RFC 5322
// section 2.2.3), surrounding white space trimmed. Because the line breaks
// are gone, a value read here can never carry a second header line into a
// field built from it.
func (f Field) Value() string {
	i := bytes.IndexByte(f.Raw, ':')
	if i < 0 {
		return ""
	}
	v := f.Raw[i+1:]
	var b strings.Builder
	b.Grow(len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return strings.Trim(b.String(), " \t")
}

// Parse splits b into header fields and body. The Message refers to b's
// bytes, so b must not be modified afterwards.
func Parse(b []byte) *Message {
	m := &Message{EOL: detectEOL(b)}
	start := -1 // offset of the field being read, -1 before the first
	for i := 0; i < len(b); {
		end := len(b)
		if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
			end = i + j + 1
		}
		line := b[i:end]
		switch {
		case isEmptyLine(line):
			m.sep = line
			m.Body = b[end:]
			return m
		case line[0] == ' ' || line[0] == '\t':
			if start < 0 {
				// A continuation with nothing to continue: no header.
				m.Body = b[i:]
				return m
			}
			// Continuation lines follow their field directly, so the
			// field's raw bytes stay one contiguous slice of b.
			m.Fields[len(m.Fields)-1].Raw = b[start:end]
		default:
			name, ok := fieldName(line)
			if !ok {
				m.Body = b[i:]
				return m
			}
			start = i
			m.Fields = append(m.Fields, Field{Name: name, Raw: line})
		}
		i = end
	}
	return m
}

func detectEOL(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i > 0 && b[i-1] == '\r' || i < 0 {
		return "\r\n"
	}
	return "\n"
}

func isEmptyLine(line []byte) bool {
	return string(line) == "\n" || string(line) == "\r\n"
}

// fieldName returns the name of the field starting at line: printable
// ASCII up to the colon, with obsolete white space before the colon
// tolerated (RFC 5322 section 4.5).
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return "", false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return "", false
		}
	}
	return string(name), true
}

// Bytes writes the message back. An unmodified message comes out exactly
// as it was parsed.
func (m *Message) Bytes() []byte {
	var b bytes.Buffer
	b.Grow(m.headerLen() + len(m.sep) + len(m.Body))
	m.WriteFields(&b, m.Fields)
	if len(m.sep) == 0 && len(m.Body) == 0 && len(m.Fields) > 0 {
		// A message that ends inside its last field comes back as it was.
		last := m.Fields[len(m.Fields)-1].Raw
		if len(last) > 0 && last[len(last)-1] != '\n' {
			b.Truncate(b.Len() - len(m.EOL))
		}
	}
	b.Write(m.sep)
	b.Write(m.Body)
	return b.Bytes()
}

func (m *Message) headerLen() int {
	n := 0
	for _, f := range m.Fields {
		n += len(f.Raw) + len(m.EOL)
	}
	return n
}

// WriteFields writes fs, ending a last field that lacked a line ending
// (the message ended inside its header) so that nothing written after it
// becomes part of its value.
func (m *Message) WriteFields(b *bytes.Buffer, fs []Field) {
	for _, f := range fs {
		b.Write(f.Raw)
		if len(f.Raw) > 0 && f.Raw[len(f.Raw)-1] != '\n' {
			b.WriteString(m.EOL)
		}
	}
}

// Header returns the header block as written, without the empty line.
func (m *Message) Header() []byte {
	var b bytes.Buffer
	m.WriteFields(&b, m.Fields)
	return b.Bytes()
}

// Get returns the value of the first field called name (case-insensitive),
// or "".
func (m *Message) Get(name string) string {
	for _, f := range m.Fields {
		if strings.EqualFold(f.Name, name) {
			return f.Value()
		}
	}
	return ""
}

// Has reports whether a field called name exists.
func (m *Message) Has(name string) bool {
	for _, f := range m.Fields {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Values returns the values of every field called name, in order.
func (m *Message) Values(name string) []string {
	var vs []string
	for _, f := range m.Fields {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value())
		}
	}
	return vs
}

// Del removes every field called name and reports how many there were.
func (m *Message) Del(name string) int {
	return m.DelFunc(func(n string) bool { return strings.EqualFold(n, name) })
}

// DelFunc removes every field whose name drop reports true.
func (m *Message) DelFunc(drop func(name string) bool) int {
	kept := m.Fields[:0:0]
	n := 0
	for _, f := range m.Fields {
		if drop(f.Name) {
			n++
			continue
		}
		kept = append(kept, f)
	}
	m.Fields = kept
	return n
}

// Set replaces the first field called name with name: value, in place,
// and removes any others; without one, it appends the field.
func (m *Message) Set(name, value string) {
	f := m.field(name, value)
	for i := range m.Fields {
		if strings.EqualFold(m.Fields[i].Name, name) {
			m.Fields[i] = f
			rest := m.Fields[i+1:]
			m.Fields = m.Fields[:i+1]
			for _, g := range rest {
				if !strings.EqualFold(g.Name, name) {
					m.Fields = append(m.Fields, g)
				}
			}
			return
		}
	}
	m.Fields = append(m.Fields, f)
}

// Add appends name: value at the end of the header.
func (m *Message) Add(name, value string) {
	m.Fields = append(m.Fields, m.field(name, value))
}

func (m *Message) field(name, value string) Field {
	return Field{Name: name, Raw: []byte(FormatField(name, value, m.EOL))}
}

// Separator returns the empty line to write between header and body: the
// original one, or a new one when the message had none, since decorated
// output must always have one.
func (m *Message) Separator() []byte {
	if len(m.sep) > 0 {
		return m.sep
	}
	return []byte(m.EOL)
}

// maxLine is RFC 5322's recommended line length; fields we build are
// folded to stay within it where white space allows.
const maxLine = 78

// FormatField renders a header field from a name and an unfolded value,
// folding at spaces so lines stay within 78 characters where possible.
// Control characters in value (CR and LF above all) become spaces: a value
// that came from the network can never start a header line of its own.
func FormatField(name, value, eol string) string {
	value = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, value)
	value = strings.Trim(value, " ")
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(":")
	if value == "" {
		b.WriteString(eol)
		return b.String()
	}
	b.WriteByte(' ')
	lineLen := len(name) + 2
	for i, seg := range segments(value) {
		// Folding inserts a line break before a space, which unfolding
		// removes again: the value is kept exactly, spaces included.
		if i > 0 && lineLen+len(seg) > maxLine {
			b.WriteString(eol)
			lineLen = 0
		}
		b.WriteString(seg)
		lineLen += len(seg)
	}
	b.WriteString(eol)
	return b.String()
}

// segments splits s before each run of spaces: "a  b c" gives "a", "  b",
// " c".
func segments(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' && s[i-1] != ' ' {
			out = append(out, s[start:i])
			start = i
		}
	}
	return append(out, s[start:])
}

// OneLine keeps text that came from the network (a display name, a
// subject, a remote server's diagnostic) on one printable line: control
// characters, C1 controls and Unicode line and paragraph separators become
// word breaks, and runs of white space collapse to one space. Notices,
// replies and logs use it so such text can never start a line of its own.
func OneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029'
	}), " ")
}
