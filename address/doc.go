// Package address is postlist's single source of truth about mail addresses:
// their syntax, which list address a recipient names, the VERP return paths
// that identify a bouncing member, and confirmation tokens.
//
// The milter decides every RCPT for a list domain while the sender is still
// connected, and the LMTP server decides the same recipient again after
// Postfix has queued the message. If the two disagreed, mail accepted at SMTP
// time could be refused after queueing, and postlist would generate
// backscatter instead of letting the sender's own server bounce. Both
// therefore call [Resolver.Resolve], which is pure: it consults only the
// [Directory] it is given and performs no I/O.
//
// # Address model
//
// A list has a posting address NAME@DOMAIN and the subaddresses NAME-bounces,
// NAME-confirm, NAME-join, NAME-leave, NAME-owner and NAME-request, plus the
// aliases NAME-subscribe (= join) and NAME-unsubscribe (= leave), as in
// Mailman 3. Matching ignores case. Alias domains map to their main domain.
// Text after the first recipient delimiter ("+" by default) is an extension:
// the VERP-encoded member on -bounces, the token on -confirm, and ignored
// (but preserved) elsewhere, because Mailman accepts list+anything@.
// The subaddress word is split off at the last "-", and a list whose own name
// looks like a subaddress (a list called foo-owner) wins over that reading.
// Any other local part in a list domain does not exist, so the milter can
// refuse it with 550 5.1.1.
//
// # Syntax
//
// [Parse] and [Normalize] accept RFC 5321 mailboxes with an ASCII local part
// (dot-atom or quoted string) and a host name. They reject what postlist
// cannot handle safely end to end: address literals ([192.0.2.1]), because
// a member at a literal could not be given a valid VERP return path, and
// non-ASCII addresses, because supporting SMTPUTF8 and IDNA needs
// normalisation rules (and dependencies) that a mistake here would spread to
// every component. Domain names in punycode (xn--...) are plain ASCII and
// are accepted.
//
// [Resolver.Resolve] is deliberately more lenient than [Parse] about the
// local part (it tolerates stray dots and over-long VERP extensions) and it
// never judges addresses outside list domains, so that the milter refuses
// only what the LMTP server would refuse too, and leaves all other mail to
// Postfix. It judges a local part on its value, not its spelling: the
// milter sees the quoted form a client wrote, the LMTP server and a policy
// service the unquoted one, and both get the same answer. A value that
// would need quoting names no list and is refused as malformed.
package address
