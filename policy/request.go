package policy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Errors of ReadRequest. After one of them the stream cannot be trusted
// to be at a request boundary, so the connection is answered once and
// closed.
var (
	ErrTooLong    = errors.New("policy request too long")
	ErrTooMany    = errors.New("policy request has too many attributes")
	ErrMalformed  = errors.New("malformed policy request")
	errEmptyFirst = errors.New("empty line before any attribute")
)

// Request is one policy delegation request: the attributes Postfix sent,
// in order, one "name=value" line each.
type Request struct {
	attrs map[string]string
}

// Get returns an attribute's value and whether it was sent.
func (r Request) Get(name string) (string, bool) {
	v, ok := r.attrs[name]
	return v, ok
}

// Value returns an attribute's value, "" when it was not sent.
func (r Request) Value(name string) string { return r.attrs[name] }

// Len is the number of attributes.
func (r Request) Len() int { return len(r.attrs) }

// ReadRequest reads one request: name=value lines up to an empty line.
// maxBytes bounds the whole request (newlines included), maxAttrs the
// number of lines. io.EOF means the client closed the connection between
// requests, the normal end; io.ErrUnexpectedEOF one that stopped inside a
// request. started is called once the first line of a request has
// arrived, so the caller can switch from the idle timeout to the read
// timeout.
func ReadRequest(r *bufio.Reader, maxBytes, maxAttrs int, started func()) (Request, error) {
	req := Request{attrs: map[string]string{}}
	total := 0
	for first := true; ; first = false {
		line, err := readLine(r, maxBytes-total)
		total += len(line) + 1
		if err != nil {
			if errors.Is(err, io.EOF) {
				if first && line == "" {
					return Request{}, io.EOF
				}
				return Request{}, io.ErrUnexpectedEOF
			}
			return Request{}, err
		}
		if first && started != nil {
			started()
		}
		if line == "" {
			if first {
				// A lone empty line is no request; Postfix never sends
				// one, and answering it would desynchronise a client
				// that thinks it sent a request of no attributes.
				return Request{}, fmt.Errorf("%w: %w", ErrMalformed, errEmptyFirst)
			}
			return req, nil
		}
		if len(req.attrs) >= maxAttrs {
			return Request{}, fmt.Errorf("%w (limit %d)", ErrTooMany, maxAttrs)
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return Request{}, fmt.Errorf("%w: line %q has no '='", ErrMalformed, clip(line))
		}
		if !validName(name) {
			return Request{}, fmt.Errorf("%w: attribute name %q", ErrMalformed, clip(name))
		}
		if _, dup := req.attrs[name]; dup {
			// Two recipients in one request would leave us deciding one
			// and Postfix applying the answer to the other.
			return Request{}, fmt.Errorf("%w: attribute %q sent twice", ErrMalformed, name)
		}
		req.attrs[name] = value
	}
}

// readLine reads one LF-terminated line of at most limit bytes (the LF
// counted) and returns it without the LF (and without a CR before it, as
// some hand-written clients send). A line that ends at EOF is returned
// with io.EOF.
func readLine(r *bufio.Reader, limit int) (string, error) {
	if limit <= 0 {
		return "", ErrTooLong
	}
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > limit {
			return "", ErrTooLong
		}
		b = append(b, chunk...)
		switch {
		case err == nil:
			s := strings.TrimSuffix(string(b[:len(b)-1]), "\r")
			return s, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return string(b), err
		}
	}
}

// validName accepts Postfix's attribute names: lower-case letters,
// digits and underscores (ccert_subject, client_address, ...), not empty.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// clip bounds what a client sent before it is logged.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
