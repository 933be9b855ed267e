package address

// Deliverable reports whether postlist can deliver to addr through Postfix,
// and if not, why, in a *SyntaxError (so errors.Is(err, ErrMalformed)). It
// is the one rule for every address that receives list mail: the store
// applies it when a member is added (by the CLI, a bulk file or an email
// join) and the deliverer applies it again to every row before it speaks
// SMTP, so an address stored before the rule existed fails alone.
//
// addr must be exactly what goes between the brackets of RCPT TO:<...>,
// as stored: no surrounding whitespace or angle brackets. What it refuses:
//
//   - anything Parse refuses: control characters, CR and LF (which would
//     inject SMTP commands), 8-bit characters (postlist does not speak
//     SMTPUTF8, and a Postfix without smtputf8_enable would refuse them),
//     address literals such as [192.0.2.1], more than 64 octets of local
//     part or 254 of address (RFC 5321's path limit of 256 with the
//     brackets), and bad domain names;
//   - a local part that needs quoting, such as "a>b" or "john smith". The
//     member's VERP return path list-bounces+LOCAL=DOMAIN=SIG@ would have to
//     be quoted as a whole, and the resolver refuses list-domain local parts
//     that need quoting, so the member's bounces would be refused at RCPT
//     time and could never be counted. A dot-atom local part always gives a
//     dot-atom VERP local part: the list name, "=", the domain's letters,
//     digits, hyphens and dots, and the base32 signature are all atext.
//
// The VERP local part is longer than RFC 5321's 64 octets whenever the
// member's address is long; Postfix accepts that (it bounds only the whole
// command line, by line_length_limit, 2048 by default) and the resolver
// reads recipients of up to 1000 octets, more than a 254-octet member makes.
func Deliverable(addr string) error {
	a, err := Parse(addr)
	if err != nil {
		return err
	}
	if !isDotAtom(a.Local) {
		return syntaxErr(addr, "a local part that needs quotes cannot be delivered to: "+
			"its VERP return path would need quoting too, and bounces to such an address are refused")
	}
	return nil
}
