// Package testenv starts the real servers that postlist's tests talk to: a
// private Postfix instance on loopback, an in-process SMTP sink standing in
// for "the internet", a small SMTP client that records every reply, and the
// postlist binary itself.
//
// postlist is glue between Postfix and a mailing-list store: its policy
// service (or its optional milter) answers Postfix's RCPT questions, its LMTP server receives what Postfix
// queued, and its outgoing mail goes back through Postfix. Most of the bugs
// worth catching live in that interplay (reply codes Postfix really sends,
// how it batches and retries, what the milter really sees), so tests run
// against a real Postfix rather than a mock. Every helper here registers
// its own cleanup with testing.TB and allocates its own ports and
// directories, so tests may use t.Parallel freely.
//
// A typical end-to-end test:
//
//	sink := testenv.StartSink(t)
//	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
//		Sink:        sink,
//		Milter:      "inet:" + milterAddr,
//		ListDomains: []string{"lists.example.org"},
//		LMTP:        "inet:" + lmtpAddr,
//	})
//	res := testenv.SendMail(t, pf.SMTPAddr, "alice@example.com",
//		[]string{"test@lists.example.org"}, msg)
//	if res.Rcpt[0].Code != 250 { ... }
//	sink.WaitFor(t, 1, 10*time.Second)
//
// Tests that wait for something to happen poll with WaitFor, WaitForWhy
// or Eventually rather than a loop of their own, so that every wait backs
// off the same way and says what it waited for when it gives up. Below
// this package, storetest opens throwaway stores and stack runs the whole
// mail path of `postlist serve` in front of a private Postfix.
//
// The documented hookup is tested as written: Hookup reads
// contrib/postfix/main.cf and master.cf, changes only ports and paths, and
// its result goes into PostfixOptions.MainCF and MasterCF.
//
// Postfix must be installed (tests fail, not skip, without it) and the tests
// must run as root, because a Postfix instance needs root to start.
package testenv
