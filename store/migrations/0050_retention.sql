-- Retention: store.Purge deletes finished messages once they are older
-- than [database] retention, with their deliveries, intake, held and posts
-- rows.
--
-- Finding the old messages by received_at: without an index every purge
-- would read the whole messages table, and received_at sits after the
-- body, so each row's overflow pages too. Messages are written once per
-- accepted message, never per recipient, so the index costs intake little.
CREATE INDEX messages_received ON messages(received_at);

-- Deleting a messages row makes SQLite look up its children for the
-- foreign key actions (cascade, SET NULL). Without these indexes each
-- delete would scan held, bounces (which is kept forever and keeps
-- growing) and posts in full while holding the only writer.
CREATE INDEX held_message ON held(message_id);
CREATE INDEX bounces_message ON bounces(message_id);
CREATE INDEX posts_original ON posts(original_id);
