-- Mailman's header_matches: per list, a header field, a pattern and what
-- to do with a post whose field matches (hold when not said), checked in
-- order by the posting pipeline's header-match rule.
CREATE TABLE header_matches (
    id         INTEGER PRIMARY KEY,
    list_id    INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    header     TEXT NOT NULL,   -- field name, lower-case
    pattern    TEXT NOT NULL,   -- regular expression (Go's RE2 syntax), matched regardless of case
    action     TEXT NOT NULL DEFAULT 'hold' CHECK (action IN ('accept','hold','reject','discard')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX header_matches_list ON header_matches(list_id, id);
