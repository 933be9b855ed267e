// Package bounce processes mail to a list's -bounces address and decides,
// from it, who can no longer be reached.
//
// A bounce is attributed to a member in one of two ways:
//
//   - VERP: every post leaves with a member-specific return path,
//     NAME-bounces+alice=example.com=DAYSIG@DOMAIN, so the bounce arrives
//     at an address naming the member. DAY is when the post left and SIG
//     a short HMAC over member and day under a site secret (see
//     store.VERPSigner and address.VERPSigner.Member): the milter refuses
//     a -bounces+ address whose signature is wrong, and this package
//     checks it again, so a forged bounce can neither disable nor remove
//     anyone. A genuine address older than [mta] verp_bounce_window is
//     accepted but not scored, so a return path someone saw cannot be
//     replayed against the member for ever. Mailman's
//     unsigned form is accepted only on lists with accept_unsigned_verp
//     (bounces of mail sent before a migration from Mailman).
//   - The report: ParseDSN reads RFC 3464 delivery status notifications
//     and the common non-DSN formats (Exim, qmail, Postfix text). On a
//     list that signs its VERP addresses an unverified report to the bare
//     -bounces address is recorded but never scored.
//
// Scoring is Mailman 3's: a permanent failure adds one point, at most once
// a calendar day; the score restarts at one when the previous bounce is
// older than bounce_info_stale_after; at bounce_score_threshold delivery
// is disabled and the owners are told; the member then gets
// bounce_you_are_disabled_warnings warnings, the interval apart, and is
// removed after the last. Temporary failures (delays) and policy or
// content rejections (x.7.x, spam, DMARC...) are recorded but never
// scored: they say nothing about the mailbox. Bounces the deliverer saw in
// its own SMTP sessions (a 5xx reply) are scored the same way.
//
// Every step is an events row and every bounce a bounces row, so an admin
// can always read why a member was disabled or removed.
package bounce
