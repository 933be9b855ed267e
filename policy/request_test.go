package policy

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadRequest(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name     string
		in       string
		maxBytes int
		maxAttrs int
		want     map[string]string
		err      error
		rest     string // what must be left unread after the request
	}{
		{name: "typical", in: "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@b\nsender=\n\n",
			want: map[string]string{"request": "smtpd_access_policy", "protocol_state": "RCPT", "recipient": "a@b", "sender": ""}},
		{name: "value with equals and spaces", in: "ccert_subject=CN=a b, O=c\n\n",
			want: map[string]string{"ccert_subject": "CN=a b, O=c"}},
		{name: "CRLF tolerated", in: "recipient=a@b\r\n\r\n", want: map[string]string{"recipient": "a@b"}},
		{name: "second request stays buffered", in: "recipient=a@b\n\nrecipient=c@d\n\n",
			want: map[string]string{"recipient": "a@b"}, rest: "recipient=c@d\n\n"},
		{name: "clean EOF", in: "", err: io.EOF},
		{name: "EOF inside request", in: "recipient=a@b\n", err: io.ErrUnexpectedEOF},
		{name: "EOF inside line", in: "recipient=a", err: io.ErrUnexpectedEOF},
		{name: "lone empty line", in: "\n", err: ErrMalformed},
		{name: "no equals", in: "recipient\n\n", err: ErrMalformed},
		{name: "empty name", in: "=x\n\n", err: ErrMalformed},
		{name: "bad name", in: "rec ipient=x\n\n", err: ErrMalformed},
		{name: "duplicate", in: "recipient=a@b\nrecipient=c@d\n\n", err: ErrMalformed},
		{name: "one line too long", in: "ccert_subject=" + long + "\n\n", maxBytes: 200, err: ErrTooLong},
		{name: "request too long", in: strings.Repeat("a=1\nb=2\nc=3\n", 1) + "d=" + long[:150] + "\ne=" + long[:150] + "\n\n",
			maxBytes: 300, err: ErrTooLong},
		{name: "too many attributes", in: "a=1\nb=2\nc=3\nd=4\n\n", maxAttrs: 3, err: ErrTooMany},
		{name: "exactly at the attribute limit", in: "a=1\nb=2\nc=3\n\n", maxAttrs: 3,
			want: map[string]string{"a": "1", "b": "2", "c": "3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.maxBytes == 0 {
				tc.maxBytes = DefaultMaxRequest
			}
			if tc.maxAttrs == 0 {
				tc.maxAttrs = DefaultMaxAttrs
			}
			// A small buffer makes long lines cross ReadSlice's limit.
			r := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
			started := 0
			req, err := ReadRequest(r, tc.maxBytes, tc.maxAttrs, func() { started++ })
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if started != 1 {
				t.Errorf("started called %d times, want 1", started)
			}
			if req.Len() != len(tc.want) {
				t.Errorf("%d attributes, want %d", req.Len(), len(tc.want))
			}
			for k, v := range tc.want {
				if got, ok := req.Get(k); !ok || got != v {
					t.Errorf("%s = %q (%v), want %q", k, got, ok, v)
				}
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tc.rest {
				t.Errorf("left unread %q, want %q", rest, tc.rest)
			}
		})
	}
}
