-- What happens to a post over max_message_size. 'refuse' (the default):
-- the milter answers 552 5.3.4 at end of message, so the sender's own
-- server tells the sender at once. 'hold': the post is accepted and held
-- for a moderator, as Mailman does. Mail that reaches the LMTP server
-- without the milter is held either way.
ALTER TABLE lists ADD COLUMN oversize_action TEXT NOT NULL DEFAULT 'refuse'
    CHECK (oversize_action IN ('refuse','hold'));
