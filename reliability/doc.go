// Package reliability holds postlist's reliability campaigns: tests that run
// the real `postlist serve` binary behind a private real Postfix (see
// internal/testenv) and try to make it lose, duplicate or corrupt mail.
//
//   - TestCrashCampaign streams posts to lists of 1, 10 and 50 members
//     through Postfix while the daemon is killed with SIGKILL at random
//     moments and restarted, then checks that every post Postfix accepted
//     reached every member, and that each duplicate is explained by a
//     delivery in flight at a kill.
//   - TestSmartHostFaults points the daemon's smart host at a sink that
//     answers 421, 451, 452, 550 and 554 at random or drops the connection
//     mid-DATA, and checks final states, retry counts, back-off and that no
//     connection or goroutine leaks; TestSmartHostStall does the stalls
//     in process, where the timeouts can be made short.
//   - TestDatabaseReadOnly and TestDiskFull break the database under the
//     running daemon and check that mail is deferred, never refused or
//     lost, and that service resumes by itself.
//   - TestHostileInput is a table of hostile SMTP, LMTP and milter input,
//     each with the answer it must get and a health check afterwards.
//   - TestLoad runs 100 concurrent SMTP sessions through Postfix and the
//     milter and accounts for every message.
//   - FuzzMilterSession drives the milter over the real milter protocol
//     with arbitrary input.
//
// The package has no code of its own; everything is in _test.go files.
// The short variants run in `make test`; `make torture` runs the long ones
// (-torture, or POSTLIST_TORTURE_CYCLES=N for the crash campaign alone).
// docs/reliability.md says what is promised and the latest figures.
package reliability
