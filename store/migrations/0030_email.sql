-- The email interface (-request, -join, -leave, -confirm, -owner) and
-- bounce processing (-bounces).

-- When the bounce processor applied a bounces row to the member's bounce
-- record. The deliverer writes rows for 5xx replies in its own SMTP
-- sessions without it (NULL); the bounce processor finds them through the
-- partial index below, scores them and sets it. Rows written before this
-- version stay NULL, so their failures still count once.
ALTER TABLE bounces ADD COLUMN processed_at TEXT;
CREATE INDEX bounces_unprocessed ON bounces(id) WHERE processed_at IS NULL;

-- The RFC 3463 status of the failure ("5.1.1"), '' when the report had
-- none: what admins group by when they ask why members bounce.
ALTER TABLE bounces ADD COLUMN status TEXT NOT NULL DEFAULT '';

-- Whether mail to NAME-owner reaches the moderators too, as Mailman sends
-- it to all of a list's administrators (1), or the owners only (0).
ALTER TABLE lists ADD COLUMN owner_mail_to_moderators INTEGER NOT NULL DEFAULT 1
    CHECK (owner_mail_to_moderators IN (0,1));

-- "Is a request for this address already pending?" is asked at every join
-- and leave.
CREATE INDEX tokens_address ON tokens(list_id, address, kind);

-- Subscription and unsubscription requests waiting for the person or a
-- moderator, oldest first. A moderator approves one by mailing
-- "confirm TOKEN" to NAME-request.
CREATE VIEW pending_requests AS
SELECT l.address AS list, t.kind, t.address, t.display_name,
       CASE WHEN t.kind = 'moderate' THEN 'moderator' ELSE 'subscriber' END AS waiting_for,
       t.data AS request, t.token, t.created_at, t.expires_at
FROM tokens t JOIN lists l ON l.id = t.list_id
WHERE t.kind IN ('subscribe', 'unsubscribe', 'moderate')
ORDER BY t.created_at;
