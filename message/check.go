package message

import (
	"bytes"
	"errors"
	"fmt"
)

// CheckHeader is the strict reading intake applies before it accepts a
// message: a header section of RFC 5322 fields, at least one, ended by an
// empty line or the end of the message. It reads lines by the rules Parse
// reads them by, so a message it accepts is one whose every header field
// Parse sees; the one line it accepts and Parse does not take as a field
// is a field without a name (": x"), which it skips as MIME readers do.
// The error quotes the offending line or field name.
func CheckHeader(b []byte) error {
	fields := 0
	for off := 0; ; {
		m := Parse(b[off:])
		fields += len(m.Fields)
		if len(m.sep) > 0 || len(m.Body) == 0 {
			break
		}
		at := len(b) - len(m.Body)
		if at == 0 && (b[0] == ' ' || b[0] == '\t') {
			return fmt.Errorf("malformed MIME header initial line: %s", stripEOL(firstLine(b)))
		}
		kv, next := logicalLine(b, at)
		i := bytes.IndexByte(kv, ':')
		if i < 0 {
			return fmt.Errorf("malformed MIME header line: %s", kv)
		}
		if key := bytes.Trim(kv[:i], " \t"); len(key) > 0 {
			return fmt.Errorf("malformed MIME header key: %s", key)
		}
		off = next
	}
	if fields == 0 {
		return errNoFields
	}
	return nil
}

var errNoFields = errors.New("no header fields")

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1]
	}
	return b
}

func stripEOL(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	return line
}

// logicalLine returns the line at b[at:] with its continuation lines, each
// ended by CRLF whatever the message uses, and where the next line starts.
func logicalLine(b []byte, at int) (kv []byte, next int) {
	for i := at; i < len(b); {
		line := firstLine(b[i:])
		if i > at && line[0] != ' ' && line[0] != '\t' {
			return kv, i
		}
		kv = append(append(kv, stripEOL(line)...), '\r', '\n')
		i += len(line)
	}
	return kv, len(b)
}
