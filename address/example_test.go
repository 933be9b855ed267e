package address_test

import (
	"errors"
	"fmt"

	"postlist/address"
)

// dir is the smallest Directory: one list domain with one alias domain.
type dir map[string]bool

func (d dir) Domain(s string) (string, bool) {
	switch s {
	case "lists.example.org", "lists.example.net":
		return "lists.example.org", true
	}
	return "", false
}

func (d dir) HasList(addr string) bool { return d[addr] }

func ExampleResolver_Resolve() {
	lists := dir{"test@lists.example.org": true, "test-join@lists.example.org": true}
	r := address.Resolver{Delimiter: "+"}
	for _, rcpt := range []string{
		"<Test-Bounces+alice=example.com@lists.example.net>",
		"test-join@lists.example.org",
		"test-join-join@lists.example.org",
		"test-bogus@lists.example.org",
		"bob@example.com",
	} {
		t, err := r.Resolve(rcpt, lists)
		switch {
		case errors.Is(err, address.ErrNotOurs):
			fmt.Println("not ours")
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Printf("%s %s %q\n", t.List, t.Kind, t.Ext)
		}
	}
	// Output:
	// test@lists.example.org bounces "alice=example.com"
	// test-join@lists.example.org post ""
	// test-join@lists.example.org join ""
	// address "test-bogus@lists.example.org": no such list address
	// not ours
}

func ExampleVERP() {
	rp := address.VERP("test@lists.example.org", "a+b=c@Example.com", "+")
	fmt.Println(rp)
	// What the bounce processor does with the resolved extension:
	member, ok := address.DecodeVERP("a+b=c=example.com")
	fmt.Println(member, ok)
	// Output:
	// test-bounces+a+b=c=example.com@lists.example.org
	// a+b=c@example.com true
}

func ExampleParseMailbox() {
	name, addr, err := address.ParseMailbox(`"Smith, Alice" <Alice@Example.COM>`)
	fmt.Printf("%q %q %v\n", name, addr, err)
	_, _, err = address.ParseMailbox("a@b@c")
	fmt.Println(err)
	// Output:
	// "Smith, Alice" "Alice@example.com" <nil>
	// address "a@b@c": more than one @
}
