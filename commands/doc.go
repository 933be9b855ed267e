// Package commands is postlist's email interface: what people send to a
// list's robot addresses, and what the list answers.
//
//	NAME-request                 commands in the Subject and body: join, leave,
//	                             confirm TOKEN, help, echo, end; one reply
//	NAME-join, NAME-subscribe    join the sender (a confirmation request goes out)
//	NAME-leave, NAME-unsubscribe leave (at once, or after confirmation)
//	NAME-confirm+TOKEN           complete the request TOKEN stands for
//	NAME-owner                   forwarded unchanged to the owners (and moderators)
//
// The behaviour is Mailman 3's (runners/command.py, commands/eml_*.py): the
// same commands and aliases, the Subject read first, at most MaxCommands
// body lines, the same results layout, and no results mail for the
// implicit commands of -join, -leave and -confirm unless something needs
// saying. A subscription or unsubscription is a tokens row until it is
// confirmed: 128 random bits, single use, valid for three days by default;
// under a moderate policy the confirmed request becomes a new token that a
// moderator confirms in turn.
//
// Nothing here answers a robot. Mail that is automatic by RFC 3834's rules
// (null sender, Auto-Submitted, Precedence bulk/junk/list, list mail, robot
// addresses) is recorded and dropped without any action, so no loop with
// an autoresponder can start and a vacation reply cannot confirm a
// subscription.
//
// Nor does one message make many answers: only its first command
// recipient is processed (store.AnsweringIntake), it may name one
// address=, what concerns that address goes to it alone (the requester
// reads the same whatever its state), no address of the site is answered
// or subscribed, and the automatic mail one address gets is capped per
// day (Options.MaxAutoresponsesPerDay, via store.Notice.DailyCap).
//
// Every reply, confirmation request, welcome and goodbye is stored and
// queued through the deliveries table like a post, with the list's
// -bounces address as envelope sender, in the same transaction that
// records what the message did (see store.FinishIntake and
// store.CompleteToken). Package notice writes them.
package commands
