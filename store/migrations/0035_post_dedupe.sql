-- Finding an earlier post of the same queued message (store.EarlierPost):
-- Postfix hands one queued message to the LMTP server in several
-- transactions when it has more recipients than
-- lmtp_destination_recipient_limit (50), and again when it never read our
-- 250; each arrives as a messages row of its own with the same Postfix
-- queue id and Message-ID. Partial: mail without a visible queue id is
-- never matched.
CREATE INDEX messages_queue ON messages(queue_id, message_id) WHERE queue_id <> '';
