-- Ids are never handed out twice. SQLite numbers a new row one above the
-- largest rowid in its table, so once the newest rows were deleted (by
-- the retention purge, or held posts with their list) their ids would
-- come back: a moderator acting on "held #12" from an old notice, or a
-- cache keyed by message id, would meet a different message. The highest
-- id ever deleted is kept here, and new messages, intake and held rows
-- are numbered above it (see store.nextID).
CREATE TABLE id_floor (
    name TEXT PRIMARY KEY,
    last INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO id_floor (name, last) VALUES ('messages', 0), ('intake', 0), ('held', 0);

CREATE TRIGGER messages_id_floor AFTER DELETE ON messages BEGIN
    UPDATE id_floor SET last = max(last, old.id) WHERE name = 'messages';
END;
CREATE TRIGGER intake_id_floor AFTER DELETE ON intake BEGIN
    UPDATE id_floor SET last = max(last, old.id) WHERE name = 'intake';
END;
CREATE TRIGGER held_id_floor AFTER DELETE ON held BEGIN
    UPDATE id_floor SET last = max(last, old.id) WHERE name = 'held';
END;
