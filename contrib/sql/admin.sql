-- Queries admins run with sqlite3 against postlist's database, e.g.
--   sqlite3 -header -column /var/lib/postlist/postlist.db < contrib/sql/admin.sql
-- Read-only: write through the postlist CLI.

-- Lists and their member counts.
SELECT l.address, count(m.id) AS members
FROM lists l LEFT JOIN members m ON m.list_id = l.id AND m.role = 'member'
GROUP BY l.id ORDER BY l.address;

-- What is waiting to go out.
SELECT * FROM queue_summary;

-- Messages with undelivered recipients.
SELECT * FROM queue WHERE queued + sending + deferred > 0;

-- Held for moderation.
SELECT * FROM held_messages;

-- Members who bounce.
SELECT * FROM bouncing_members;

-- Deliveries that failed, with the remote server's answer.
SELECT d.recipient, l.address AS list, d.attempts, d.last_reply, d.updated_at
FROM deliveries d JOIN lists l ON l.id = d.list_id
WHERE d.state = 'failed' ORDER BY d.updated_at DESC LIMIT 50;

-- Recent history.
SELECT at, kind, address, detail FROM events ORDER BY id DESC LIMIT 50;
