-- Posts: which stored messages a list accepted for distribution.
--
-- A messages row is what came in (or, when the posting rules removed an
-- Approved: password from it, the cleaned copy). A posts row says "list L
-- distributes message M": delivery renders a message with the list's
-- decoration (List-* headers, subject prefix, footer) exactly when such a
-- row exists, and sends anything else (notices to moderators and posters,
-- later owner mail) as stored. It is also the record of what each list
-- distributed, who let it through and why.

CREATE TABLE posts (
    id          INTEGER PRIMARY KEY,
    list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    message_id  INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE, -- what members get
    original_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,         -- what came in, when it differs
    sender      TEXT NOT NULL DEFAULT '',    -- the poster (From:, else the envelope sender)
    subject     TEXT NOT NULL DEFAULT '',
    rule        TEXT NOT NULL DEFAULT '',    -- the posting rule that decided, or 'moderator'
    reason      TEXT NOT NULL DEFAULT '',
    accepted_by TEXT NOT NULL DEFAULT '',    -- '' for the rules, else who approved it
    recipients  INTEGER NOT NULL DEFAULT 0,  -- deliveries queued at fan-out
    accepted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (message_id, list_id)
);
CREATE INDEX posts_list ON posts(list_id, accepted_at);

-- What each list distributed, newest first.
CREATE VIEW recent_posts AS
SELECT p.id, l.address AS list, p.sender, p.subject, p.rule, p.accepted_by,
       p.recipients, p.accepted_at, m.size
FROM posts p JOIN lists l ON l.id = p.list_id JOIN messages m ON m.id = p.message_id
ORDER BY p.accepted_at DESC;
