-- One-click unsubscribe links name a subscription by its list and member
-- rows, so those ids must never come back either: a link from a removed
-- list (or a removed and re-added subscription) must not act on whoever
-- gets the same id later. The floors start at the largest id in use: ids
-- freed before this migration cannot be known any more, and links made
-- before it are not honoured (their tokens bind the old row id alone).
INSERT INTO id_floor (name, last) VALUES
    ('lists', (SELECT coalesce(max(id), 0) FROM lists)),
    ('members', (SELECT coalesce(max(id), 0) FROM members));

CREATE TRIGGER lists_id_floor AFTER DELETE ON lists BEGIN
    UPDATE id_floor SET last = max(last, old.id) WHERE name = 'lists';
END;
-- Also fires for the rows a list's removal deletes (ON DELETE CASCADE).
CREATE TRIGGER members_id_floor AFTER DELETE ON members BEGIN
    UPDATE id_floor SET last = max(last, old.id) WHERE name = 'members';
END;

-- VERP return paths are signed with a time stamp from now on. Those
-- signed before (no time stamp) are taken as signed at this moment: they
-- score for [mta] verp_bounce_window more, and are ignored after (see
-- store.VERPSigner).
INSERT OR IGNORE INTO site (key, value) VALUES ('verp_legacy_since', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
