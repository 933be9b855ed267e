package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Port is a TCP port number; its decoder rejects out-of-range values so the
// error carries the line of the offending key.
type Port int

// UnmarshalTOML implements toml.Unmarshaler.
func (p *Port) UnmarshalTOML(v any) error {
	n, ok := v.(int64)
	if !ok {
		return fmt.Errorf("want a port number, got %v", v)
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("port %d out of range 1-65535", n)
	}
	*p = Port(n)
	return nil
}

// Listen is a socket address in Postfix's syntax: inet:HOST:PORT or
// unix:/PATH. Using Postfix's own form lets an admin paste the same string
// into main.cf.
type Listen struct {
	Network string // "tcp" or "unix"
	Address string
}

// ParseListen parses inet:HOST:PORT or unix:/PATH.
func ParseListen(s string) (Listen, error) {
	switch {
	case strings.HasPrefix(s, "inet:"):
		addr := strings.TrimPrefix(s, "inet:")
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return Listen{}, fmt.Errorf("%q: want inet:HOST:PORT", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return Listen{}, fmt.Errorf("%q: bad port", s)
		}
		return Listen{Network: "tcp", Address: addr}, nil
	case strings.HasPrefix(s, "unix:"):
		path := strings.TrimPrefix(s, "unix:")
		if !strings.HasPrefix(path, "/") {
			return Listen{}, fmt.Errorf("%q: the path after unix: must be absolute", s)
		}
		return Listen{Network: "unix", Address: path}, nil
	}
	return Listen{}, fmt.Errorf("%q: want inet:HOST:PORT or unix:/PATH", s)
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *Listen) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*l = Listen{}
		return nil
	}
	v, err := ParseListen(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// IsZero reports whether no address is set.
func (l Listen) IsZero() bool { return l.Address == "" }

// String returns the Postfix form.
func (l Listen) String() string {
	if l.IsZero() {
		return ""
	}
	if l.Network == "unix" {
		return "unix:" + l.Address
	}
	return "inet:" + l.Address
}

// Duration accepts Go durations plus Mailman's day and week units ("5d",
// "1w"), since delivery_retry_period is written "5d" in Mailman configs.
type Duration time.Duration

// ParseDuration parses "90s", "15m", "5d", "1w", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var total time.Duration
	rest := s
	for rest != "" {
		i := strings.IndexAny(rest, "dw")
		if i < 0 {
			d, err := time.ParseDuration(rest)
			if err != nil {
				return 0, fmt.Errorf("%q: want a duration such as 30s, 15m, 2h, 5d", s)
			}
			return total + d, nil
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q: want a duration such as 30s, 15m, 2h, 5d", s)
		}
		unit := 24 * time.Hour
		if rest[i] == 'w' {
			unit *= 7
		}
		total += time.Duration(n) * unit
		rest = rest[i+1:]
	}
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	return total, nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("%q: must not be negative", b)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as a number or with a K/M/G suffix.
type Size int64

// UnmarshalTOML implements toml.Unmarshaler.
func (z *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x <= 0 {
			return fmt.Errorf("%d: must be positive", x)
		}
		*z = Size(x)
		return nil
	case string:
		s := strings.ToUpper(strings.TrimSpace(x))
		mult := int64(1)
		switch {
		case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "KB"):
			mult = 1 << 10
		case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "MB"):
			mult = 1 << 20
		case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "GB"):
			mult = 1 << 30
		}
		n, err := strconv.ParseInt(strings.TrimRight(s, "KMGB"), 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("%q: want a size such as 10485760, \"512K\" or \"10M\"", x)
		}
		*z = Size(n * mult)
		return nil
	}
	return fmt.Errorf("want a size, got %v", v)
}

// FileMode is an octal permission written as a string ("0660"), because
// TOML integers are decimal and 660 would silently mean something else.
type FileMode uint32

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *FileMode) UnmarshalText(b []byte) error {
	n, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || n > 0o777 {
		return fmt.Errorf("%q: want an octal mode such as \"0660\"", b)
	}
	*m = FileMode(n)
	return nil
}

// Secret is a string that never prints itself, so a config dump or a log
// line cannot leak a password.
type Secret string

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "********"
}

// Reveal returns the value for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }
