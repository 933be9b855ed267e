package socketmap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadNetstring(t *testing.T) {
	for _, c := range []struct {
		name  string
		in    string
		limit int
		want  []string // payloads read before the error
		err   error    // the error that ends the stream
	}{
		{"one", "3:abc,", 10, []string{"abc"}, io.EOF},
		{"empty payload", "0:,", 10, []string{""}, io.EOF},
		{"several", "3:abc,9:transport,0:,", 10, []string{"abc", "transport", ""}, io.EOF},
		{"payload with separators", "7:a:b,c d,", 10, []string{"a:b,c d"}, io.EOF},
		{"binary payload", "3:\x00\xff\n,", 10, []string{"\x00\xff\n"}, io.EOF},
		{"at the limit", "10:0123456789,", 10, []string{"0123456789"}, io.EOF},
		{"over the limit", "11:01234567890,", 10, nil, ErrTooLong},
		{"huge length", "99999999999:x,", 10, nil, ErrTooLong},
		{"empty stream", "", 10, nil, io.EOF},
		{"ends in length", "12", 100, nil, io.ErrUnexpectedEOF},
		{"ends in payload", "5:ab", 10, nil, io.ErrUnexpectedEOF},
		{"ends before comma", "2:ab", 10, nil, io.ErrUnexpectedEOF},
		{"no comma", "2:abc", 10, nil, ErrMalformed},
		{"empty length", ":abc,", 10, nil, ErrMalformed},
		{"letter in length", "1a:b,", 10, nil, ErrMalformed},
		{"sign", "-1:,", 10, nil, ErrMalformed},
		{"space", " 1:a,", 10, nil, ErrMalformed},
		{"leading zero", "01:a,", 10, nil, ErrMalformed},
		{"good then bad", "1:a,x", 10, []string{"a"}, ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(c.in))
			var got []string
			var err error
			for {
				var p []byte
				p, err = ReadNetstring(r, c.limit)
				if err != nil {
					break
				}
				got = append(got, string(p))
			}
			if !errors.Is(err, c.err) {
				t.Errorf("error %v, want %v", err, c.err)
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") || len(got) != len(c.want) {
				t.Errorf("payloads %q, want %q", got, c.want)
			}
		})
	}
}

func TestAppendNetstring(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "0:,"},
		{"OK lmtp:[127.0.0.1]:8024", "24:OK lmtp:[127.0.0.1]:8024,"},
		{"NOTFOUND ", "9:NOTFOUND ,"},
		{strings.Repeat("x", 100), "100:" + strings.Repeat("x", 100) + ","},
	} {
		got := AppendNetstring([]byte("prefix"), []byte(c.in))
		if string(got) != "prefix"+c.want {
			t.Errorf("AppendNetstring(%q) = %q, want %q", c.in, got, "prefix"+c.want)
		}
	}
}

// FuzzNetstring checks that the decoder never panics, never returns more
// than the limit, and that whatever it accepts is exactly the encoding of
// what it returned: no two inputs decode alike.
func FuzzNetstring(f *testing.F) {
	for _, s := range []string{"3:abc,", "0:,", "2:ab", "01:a,", "99999999999:x,", "3:abc,4:defg,"} {
		f.Add([]byte(s))
	}
	const limit = 64
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		var consumed []byte
		for {
			p, err := ReadNetstring(r, limit)
			if err != nil {
				if errors.Is(err, io.EOF) && !bytes.Equal(consumed, in) {
					t.Fatalf("clean EOF after %q of %q", consumed, in)
				}
				return
			}
			if len(p) > limit {
				t.Fatalf("payload of %d bytes over the limit %d", len(p), limit)
			}
			consumed = AppendNetstring(consumed, p)
			if !bytes.HasPrefix(in, consumed) {
				t.Fatalf("decoded %q, which encodes as %q, not a prefix of the input %q", p, consumed, in)
			}
		}
	})
}
