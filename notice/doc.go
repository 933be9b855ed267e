// Package notice composes every mail postlist writes itself: command
// results, confirmation requests, welcomes and goodbyes, moderator
// requests, hold and reject notices, and bounce notices.
//
// All of them are built here so that they carry the same marks: Header
// (X-Postlist-Notice, naming the kind, which keeps a notice that comes
// back from being distributed, answered or forwarded again),
// Auto-Submitted and Precedence: bulk (RFC 3834, so other robots leave
// them alone), a fresh Message-ID and Date, and one MIME layout. New and
// Auto wrap a Mail as a store.Notice whose envelope sender is the list's
// -bounces address, so that a notice that bounces comes back to the list
// and never to a person; Auto also counts an automatic reply against the
// recipient's daily allowance and ends the last one allowed with
// LastAutoresponseNote. Automatic says which mail must never be answered.
//
// The packages that decide to send (commands, pipeline, bounce) choose
// the recipients; the words and the headers are this package's.
package notice
