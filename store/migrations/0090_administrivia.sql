-- Mailman's administrivia check (default on): a post whose Subject or
-- first lines read like a command for the list's robot ("unsubscribe")
-- is held instead of going to every member.
ALTER TABLE lists ADD COLUMN administrivia INTEGER NOT NULL DEFAULT 1 CHECK (administrivia IN (0,1));
