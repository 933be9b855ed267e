package socketmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Netstring errors. ErrTooLong and ErrMalformed leave the stream at an
// unknown position: the connection cannot be used further.
var (
	ErrTooLong   = errors.New("netstring longer than allowed")
	ErrMalformed = errors.New("malformed netstring")
)

// maxLengthDigits bounds the length prefix; ten digits cover any limit an
// int can express here without overflowing.
const maxLengthDigits = 10

// ReadNetstring reads one netstring ("LEN:DATA,", D. J. Bernstein's
// format, which Postfix's socketmap speaks) from r and returns DATA.
// Payloads longer than limit are refused with ErrTooLong before anything
// of them is read or allocated, so a peer cannot make us buffer more than
// limit bytes. The length must be plain decimal without leading zeros, as
// the format requires; anything else is ErrMalformed. A stream that ends
// cleanly before the first byte returns io.EOF, one that ends inside a
// netstring io.ErrUnexpectedEOF.
func ReadNetstring(r *bufio.Reader, limit int) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && digits > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: byte %q in the length", ErrMalformed, c)
		}
		if digits == 1 && n == 0 {
			return nil, fmt.Errorf("%w: length with a leading zero", ErrMalformed)
		}
		digits++
		if digits > maxLengthDigits {
			return nil, fmt.Errorf("%w: length has more than %d digits", ErrTooLong, maxLengthDigits)
		}
		n = n*10 + int(c-'0')
	}
	if digits == 0 {
		return nil, fmt.Errorf("%w: empty length", ErrMalformed)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLong, n, limit)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	c, err := r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if c != ',' {
		return nil, fmt.Errorf("%w: %q instead of the closing comma", ErrMalformed, c)
	}
	return data, nil
}

// AppendNetstring appends data to dst as a netstring.
func AppendNetstring(dst, data []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	dst = append(dst, ':')
	dst = append(dst, data...)
	return append(dst, ',')
}
