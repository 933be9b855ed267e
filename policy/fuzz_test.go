package policy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// FuzzReadRequest feeds arbitrary bytes to the parser and every request
// it accepts to the decision: nothing may panic, the bounds must hold,
// and every answer must be one line Postfix understands: DUNNO or a 4xx
// or 5xx reply with an enhanced code.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=alice@example.com\nrecipient=test@lists.example.org\nsize=100\n\n",
		"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=\nrecipient=nope@lists.example.org\n\n",
		"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=x@elsewhere.example\n\n",
		"request=smtpd_access_policy\nprotocol_state=DATA\nrecipient=\n\n",
		"recipient\n\n", "\n", "a=1\na=2\n\n",
	} {
		f.Add([]byte(s))
	}
	s := New(Options{Index: loaded(f, source()), Log: zap.NewNop(), MaxMessageSize: 1 << 20})
	const maxBytes, maxAttrs = 512, 8
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), 64)
		for {
			req, err := ReadRequest(r, maxBytes, maxAttrs, nil)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrTooLong) &&
					!errors.Is(err, ErrTooMany) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if req.Len() > maxAttrs {
				t.Fatalf("%d attributes, limit %d", req.Len(), maxAttrs)
			}
			a := s.Answer(req)
			if strings.ContainsAny(a.Action, "\r\n") {
				t.Fatalf("answer %q spans lines", a.Action)
			}
			if a.Action == actionDUNNO {
				continue
			}
			if len(a.Action) < 10 || (a.Action[0] != '4' && a.Action[0] != '5') || a.Action[3] != ' ' ||
				a.Action[4] != a.Action[0] || a.Action[5] != '.' {
				t.Fatalf("answer %q is neither DUNNO nor a reply with an enhanced code", a.Action)
			}
		}
	})
}
