package address

import (
	"errors"
	"strings"
	"testing"
)

// testDir is a fixed Directory: lists.example.net is an alias domain of
// lists.example.org, and the list names are chosen to collide with
// subaddress words.
type testDir struct {
	domains map[string]string
	lists   map[string]bool
}

func (d testDir) Domain(s string) (string, bool) {
	c, ok := d.domains[s]
	return c, ok
}

func (d testDir) HasList(addr string) bool { return d.lists[addr] }

func newTestDir() testDir {
	d := testDir{
		domains: map[string]string{
			"lists.example.org":  "lists.example.org",
			"lists.example.net":  "lists.example.org",
			"other.example.com":  "other.example.com",
			"upper.example.test": "Upper.Example.Test", // a sloppy Directory
		},
		lists: map[string]bool{},
	}
	for _, l := range []string{"test", "test-join", "join", "-join", "foo", "foo-owner", "a.b", "x_y"} {
		d.lists[l+"@lists.example.org"] = true
	}
	d.lists["test@other.example.com"] = true
	d.lists["test@upper.example.test"] = true
	return d
}

func TestResolve(t *testing.T) {
	const org = "lists.example.org"
	tests := []struct {
		delim string
		rcpt  string
		want  Target
		err   error
	}{
		// The posting address and every subaddress.
		{rcpt: "test@lists.example.org", want: Target{"test@" + org, Post, ""}},
		{rcpt: "test-bounces@lists.example.org", want: Target{"test@" + org, Bounces, ""}},
		{rcpt: "test-confirm@lists.example.org", want: Target{"test@" + org, Confirm, ""}},
		{rcpt: "test-leave@lists.example.org", want: Target{"test@" + org, Leave, ""}},
		{rcpt: "test-owner@lists.example.org", want: Target{"test@" + org, Owner, ""}},
		{rcpt: "test-request@lists.example.org", want: Target{"test@" + org, Request, ""}},
		{rcpt: "test-subscribe@lists.example.org", want: Target{"test@" + org, Join, ""}},
		{rcpt: "test-unsubscribe@lists.example.org", want: Target{"test@" + org, Leave, ""}},
		{rcpt: "a.b-request@lists.example.org", want: Target{"a.b@" + org, Request, ""}},
		{rcpt: "x_y-owner@lists.example.org", want: Target{"x_y@" + org, Owner, ""}},
		{rcpt: "test@other.example.com", want: Target{"test@other.example.com", Post, ""}},

		// Case, brackets, whitespace, trailing dot, quoting.
		{rcpt: "TEST-Bounces@Lists.Example.ORG", want: Target{"test@" + org, Bounces, ""}},
		{rcpt: "<test-owner@lists.example.org>", want: Target{"test@" + org, Owner, ""}},
		{rcpt: " <Test@lists.example.org> ", want: Target{"test@" + org, Post, ""}},
		{rcpt: "test@lists.example.org.", want: Target{"test@" + org, Post, ""}},
		{rcpt: `"test"@lists.example.org`, want: Target{"test@" + org, Post, ""}},
		{rcpt: `te"st"@lists.example.org`, want: Target{"test@" + org, Post, ""}},
		{rcpt: `"test"-owner@lists.example.org`, want: Target{"test@" + org, Owner, ""}},
		{rcpt: `test+"x"@lists.example.org`, want: Target{"test@" + org, Post, "x"}},
		{rcpt: `"te\st"@lists.example.org`, want: Target{"test@" + org, Post, ""}},
		{rcpt: "test@upper.example.test", want: Target{"test@upper.example.test", Post, ""}},

		// Alias domains resolve to the main domain.
		{rcpt: "test@lists.example.net", want: Target{"test@" + org, Post, ""}},
		{rcpt: "Test-Join@Lists.Example.NET", want: Target{"test-join@" + org, Post, ""}},
		{rcpt: "test-bounces+a=b.c@lists.example.net", want: Target{"test@" + org, Bounces, "a=b.c"}},

		// Lists whose names look like subaddresses.
		{rcpt: "test-join@lists.example.org", want: Target{"test-join@" + org, Post, ""}},
		{rcpt: "test-join-join@lists.example.org", want: Target{"test-join@" + org, Join, ""}},
		{rcpt: "test-join-owner@lists.example.org", want: Target{"test-join@" + org, Owner, ""}},
		{rcpt: "join@lists.example.org", want: Target{"join@" + org, Post, ""}},
		{rcpt: "join-join@lists.example.org", want: Target{"join@" + org, Join, ""}},
		{rcpt: "-join@lists.example.org", want: Target{"-join@" + org, Post, ""}},
		{rcpt: "-join-leave@lists.example.org", want: Target{"-join@" + org, Leave, ""}},
		{rcpt: "foo-owner@lists.example.org", want: Target{"foo-owner@" + org, Post, ""}},
		{rcpt: "foo-owner-owner@lists.example.org", want: Target{"foo-owner@" + org, Owner, ""}},
		{rcpt: "foo-request@lists.example.org", want: Target{"foo@" + org, Request, ""}},

		// Extensions.
		{rcpt: "test+anything@lists.example.org", want: Target{"test@" + org, Post, "anything"}},
		{rcpt: "test+Foo+Bar@lists.example.org", want: Target{"test@" + org, Post, "Foo+Bar"}},
		{rcpt: "test+@lists.example.org", want: Target{"test@" + org, Post, ""}},
		{rcpt: "test-join+x@lists.example.org", want: Target{"test-join@" + org, Post, "x"}},
		{rcpt: "test-join-join+x@lists.example.org", want: Target{"test-join@" + org, Join, "x"}},
		{rcpt: "test-leave+X@lists.example.org", want: Target{"test@" + org, Leave, "X"}},
		{rcpt: "test-owner+x@lists.example.org", want: Target{"test@" + org, Owner, "x"}},
		{rcpt: "test-request+x@lists.example.org", want: Target{"test@" + org, Request, "x"}},
		{rcpt: "test-bounces+Alice=Example.COM@lists.example.org", want: Target{"test@" + org, Bounces, "Alice=Example.COM"}},
		{rcpt: "test-bounces+a+b=example.com@lists.example.org", want: Target{"test@" + org, Bounces, "a+b=example.com"}},
		{rcpt: "test-bounces+@lists.example.org", want: Target{"test@" + org, Bounces, ""}},
		{rcpt: "test-confirm+0123abcdEF@lists.example.org", want: Target{"test@" + org, Confirm, "0123abcdEF"}},
		{rcpt: "test-confirm+@lists.example.org", err: ErrNoSuchList},
		{rcpt: "test+x-owner@lists.example.org", want: Target{"test@" + org, Post, "x-owner"}},
		{rcpt: "test-bogus+x@lists.example.org", err: ErrNoSuchList},

		// Delimiter sets.
		{delim: "+-", rcpt: "test-bounces+x@lists.example.org", want: Target{"test@" + org, Bounces, "x"}},
		{delim: "-", rcpt: "test-owner+x@lists.example.org", want: Target{"test@" + org, Owner, "x"}},
		{delim: "+#", rcpt: "test#a+b@lists.example.org", want: Target{"test@" + org, Post, "a+b"}},
		{delim: "#", rcpt: "test+x@lists.example.org", err: ErrNoSuchList},
		{delim: "#", rcpt: "test-owner#x@lists.example.org", want: Target{"test@" + org, Owner, "x"}},
		{delim: "_", rcpt: "x_y@lists.example.org", err: ErrNoSuchList},

		// Nothing else exists in a list domain.
		{rcpt: "test-bogus@lists.example.org", err: ErrNoSuchList},
		{rcpt: "nope@lists.example.org", err: ErrNoSuchList},
		{rcpt: "nope-owner@lists.example.org", err: ErrNoSuchList},
		{rcpt: "-owner@lists.example.org", err: ErrNoSuchList},
		{rcpt: "test-@lists.example.org", err: ErrNoSuchList},
		{rcpt: "test-join-bogus@lists.example.org", err: ErrNoSuchList},
		{rcpt: "+test@lists.example.org", err: ErrNoSuchList},
		{rcpt: "test..x@lists.example.org", err: ErrNoSuchList},
		{rcpt: "test.@lists.example.org", err: ErrNoSuchList},
		{rcpt: "test-bogus@other.example.com", err: ErrNoSuchList},
		{rcpt: "test-join@other.example.com", want: Target{"test@other.example.com", Join, ""}},
		{rcpt: "test-subscribe+x@lists.example.org", want: Target{"test@" + org, Join, "x"}},
		{rcpt: `"test"x@lists.example.org`, err: ErrNoSuchList},
		{rcpt: `x"test"@lists.example.org`, err: ErrNoSuchList},

		// Not a list domain: never judged, whatever the local part.
		{rcpt: "test@example.com", err: ErrNotOurs},
		{rcpt: "test@sub.lists.example.org", err: ErrNotOurs},
		{rcpt: "postmaster@[127.0.0.1]", err: ErrNotOurs},
		{rcpt: "jörg@example.com", err: ErrNotOurs},
		{rcpt: "test@bücher.example", err: ErrNotOurs},
		{rcpt: "a b(c)@example.com", err: ErrNotOurs},
		{rcpt: "test@lists.example.org..", err: ErrNotOurs},
		{rcpt: "test@exa_mple.org", err: ErrNotOurs},
		{rcpt: "test\x00@example.com", err: ErrNotOurs},
		{rcpt: "test@lists.exa\rmple.org", err: ErrNotOurs},
		{rcpt: "\x7f\x01@example.com", err: ErrNotOurs},

		// Malformed.
		{rcpt: "", err: ErrMalformed},
		{rcpt: "<>", err: ErrMalformed},
		{rcpt: "test", err: ErrMalformed},
		{rcpt: "test@", err: ErrMalformed},
		{rcpt: "test@.", err: ErrMalformed},
		{rcpt: "@lists.example.org", err: ErrMalformed},
		{rcpt: `""@lists.example.org`, err: ErrMalformed},
		{rcpt: "te\r\nst@lists.example.org", err: ErrMalformed},
		{rcpt: "test\x00@lists.example.org", err: ErrMalformed},
		{rcpt: "test+\x7f@lists.example.org", err: ErrMalformed},
		{rcpt: "\"test\x01\"@lists.example.org", err: ErrMalformed},

		{rcpt: "tést@lists.example.org", err: ErrMalformed},
		{rcpt: "test+é@lists.example.org", err: ErrMalformed},
		{rcpt: "te st@lists.example.org", err: ErrMalformed},
		{rcpt: "a(b)@lists.example.org", err: ErrMalformed},
		{rcpt: "a@b@lists.example.org", err: ErrMalformed},
		{rcpt: `"test@lists.example.org`, err: ErrMalformed},
		// A value that would need quoting, however it is spelled.
		{rcpt: `"te st"@lists.example.org`, err: ErrMalformed},
		{rcpt: `"test-bounces+a b=example.com"@lists.example.org`, err: ErrMalformed},
		{rcpt: `test-bounces+a b=example.com@lists.example.org`, err: ErrMalformed},
		{rcpt: `test-bounces+"a b"=example.com@lists.example.org`, err: ErrMalformed},
		{rcpt: `test+a"b@lists.example.org`, err: ErrMalformed},
		{rcpt: `"test+a\"b"@lists.example.org`, err: ErrMalformed},
		{rcpt: `test+a\b@lists.example.org`, err: ErrMalformed},
		{rcpt: `"test+a\\b"@lists.example.org`, err: ErrMalformed},
		{rcpt: `"test+a\b"@lists.example.org`, want: Target{"test@" + org, Post, "ab"}},
		{rcpt: `test\@lists.example.org`, err: ErrMalformed},
		{rcpt: `"test\"@lists.example.org`, err: ErrMalformed},
		{rcpt: `"test+a@b"@lists.example.org`, err: ErrMalformed},
	}
	for _, tt := range tests {
		r := Resolver{Delimiter: tt.delim}
		got, err := r.Resolve(tt.rcpt, newTestDir())
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Resolve(%q, delim %q) = %+v, %v; want %v", tt.rcpt, tt.delim, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Resolve(%q, delim %q) = %+v, %v; want %+v", tt.rcpt, tt.delim, got, err, tt.want)
			continue
		}
		// The canonical address must name the same target.
		addr := r.Address(got, newTestDir())
		again, err := r.Resolve(addr, newTestDir())
		if err != nil || again != got {
			t.Errorf("Resolve(%q) = %+v, but its Address %q resolves to %+v, %v", tt.rcpt, got, addr, again, err)
		}
	}
}

func TestResolveErrorsNameTheAddress(t *testing.T) {
	dir := newTestDir()
	for rcpt, want := range map[string]string{
		"test-bogus@lists.example.org": `address "test-bogus@lists.example.org": no such list address`,
		"test@example.com":             `address "test@example.com": domain "example.com": not a list domain`,
		"test":                         `address "test": missing @`,
		"te st@lists.example.org":      `address "te st@lists.example.org": local part "te st" has ' ', which would need quoting; no list address does`,
		`"te st"@lists.example.org`:    `address "\"te st\"@lists.example.org": local part "te st" has ' ', which would need quoting; no list address does`,
		"te\nst@lists.example.org":     `address "te\nst@lists.example.org": control character '\n'`,
	} {
		_, err := Resolver{}.Resolve(rcpt, dir)
		if err == nil || err.Error() != want {
			t.Errorf("Resolve(%q) error = %v, want %q", rcpt, err, want)
		}
	}
}

func TestResolveLengthLimit(t *testing.T) {
	dir := newTestDir()
	const suffix = "@lists.example.org"
	pad := func(total int) string { return "test+" + strings.Repeat("x", total-len("test+")-len(suffix)) + suffix }

	if got, err := (Resolver{}).Resolve(pad(1000), dir); err != nil || got.Kind != Post {
		t.Errorf("1000 octets: %+v, %v", got, err)
	}
	if _, err := (Resolver{}).Resolve("<"+pad(1000)+">", dir); err != nil {
		t.Errorf("1000 octets in brackets: %v", err)
	}
	if _, err := (Resolver{}).Resolve(pad(1001), dir); !errors.Is(err, ErrMalformed) {
		t.Errorf("1001 octets: %v, want ErrMalformed", err)
	}
	// Not ours even when long, as long as it is within the limit.
	if _, err := (Resolver{}).Resolve(strings.Repeat("x", 980)+"@example.com", dir); !errors.Is(err, ErrNotOurs) {
		t.Errorf("long foreign address: %v, want ErrNotOurs", err)
	}
	// 999 octets that need quoting in canonical form are too long, so that
	// Target.Address always resolves.
	long := "test+a.." + strings.Repeat("x", 999-len("test+a..")-len(suffix)) + suffix
	if _, err := (Resolver{}).Resolve(long, dir); !errors.Is(err, ErrMalformed) {
		t.Errorf("999 octets needing quotes: %v, want ErrMalformed", err)
	}
	// Alias domains may be shorter than the canonical one.
	if _, err := (Resolver{}).Resolve("test+"+strings.Repeat("x", 1000-len("test+")-len("@lists.example.net"))+"@lists.example.net", dir); err != nil {
		t.Errorf("1000 octets via an alias domain of the same length: %v", err)
	}
}

func TestTargetAddress(t *testing.T) {
	tests := []struct {
		t     Target
		delim string
		want  string
	}{
		{Target{"test@lists.example.org", Post, ""}, "", "test@lists.example.org"},
		{Target{"test@lists.example.org", Bounces, ""}, "", "test-bounces@lists.example.org"},
		{Target{"test@lists.example.org", Join, ""}, "+", "test-join@lists.example.org"},
		{Target{"test@lists.example.org", Confirm, "abc"}, "", "test-confirm+abc@lists.example.org"},
		{Target{"test@lists.example.org", Bounces, "a=b.c"}, "-+", "test-bounces+a=b.c@lists.example.org"},
		{Target{"test@lists.example.org", Bounces, "a=b.c"}, "#+", "test-bounces#a=b.c@lists.example.org"},
		{Target{"test@lists.example.org", Post, "a b"}, "", `"test+a b"@lists.example.org`},
		{Target{"test@lists.example.org", "", ""}, "", "test@lists.example.org"},
	}
	for _, tt := range tests {
		if got := tt.t.Address(tt.delim); got != tt.want {
			t.Errorf("%+v.Address(%q) = %q, want %q", tt.t, tt.delim, got, tt.want)
		}
	}
}

func TestResolverAddress(t *testing.T) {
	dir := newTestDir()
	tests := []struct {
		t    Target
		want string
	}{
		// A list test-join exists, so test's join address is -subscribe.
		{Target{"test@lists.example.org", Join, ""}, "test-subscribe@lists.example.org"},
		{Target{"test@lists.example.org", Join, "x"}, "test-subscribe+x@lists.example.org"},
		{Target{"test@lists.example.org", Leave, ""}, "test-leave@lists.example.org"},
		{Target{"test-join@lists.example.org", Join, ""}, "test-join-join@lists.example.org"},
		{Target{"test@lists.example.org", Owner, ""}, "test-owner@lists.example.org"},
		{Target{"test@lists.example.org", Post, "x"}, "test+x@lists.example.org"},
	}
	for _, tt := range tests {
		if got := (Resolver{}).Address(tt.t, dir); got != tt.want {
			t.Errorf("Address(%+v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestListName(t *testing.T) {
	tests := []struct{ in, name, domain string }{
		{"test@lists.example.org", "test", "lists.example.org"},
		{"Test@Lists.Example.ORG", "test", "lists.example.org"},
		{"foo-owner@x", "foo-owner", "x"},
		{"test", "test", ""},
	}
	for _, tt := range tests {
		if n, d := ListName(tt.in); n != tt.name || d != tt.domain {
			t.Errorf("ListName(%q) = %q, %q; want %q, %q", tt.in, n, d, tt.name, tt.domain)
		}
	}
}

func TestCheckListName(t *testing.T) {
	tests := []struct {
		delim, name, err string
	}{
		{name: "test"},
		{name: "test-join"},
		{name: "-join"},
		{name: "a.b_c-d0"},
		{name: strings.Repeat("a", 52)},
		{name: "", err: "empty"},
		{name: strings.Repeat("a", 53), err: "53 octets, more than 52"},
		{name: "Test", err: `character 'T' not allowed`},
		{name: "a+b", err: `character '+' not allowed`},
		{name: "a b", err: "not allowed"},
		{name: ".a", err: "starts with a dot"},
		{name: "a..b", err: "consecutive dots"},
		{delim: "+_", name: "a_b", err: "recipient delimiter"},
		{delim: "+.", name: "a.b", err: "recipient delimiter"},
		{delim: "+@", name: "a.b"},
		{delim: "-", name: "a-b"},
	}
	for _, tt := range tests {
		err := Resolver{Delimiter: tt.delim}.CheckListName(tt.name)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("CheckListName(%q, delim %q): %v", tt.name, tt.delim, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("CheckListName(%q, delim %q) = %v, want error containing %q", tt.name, tt.delim, err, tt.err)
		}
	}
}

func TestCheckDelimiter(t *testing.T) {
	for d, ok := range map[string]bool{"": true, "+": true, "+#": true, "=": true, ".": true, "-": false, "+-": false, "@": false, " ": false, "+\x00": false, "é": false, "x": false, "+0": false} {
		if err := CheckDelimiter(d); (err == nil) != ok {
			t.Errorf("CheckDelimiter(%q) = %v, want ok=%v", d, err, ok)
		}
	}
}
