-- Mailman's post_id: each list numbers the posts it distributes 1, 2,
-- 3..., for a subject_prefix holding %d ("[test %d]"). The counter has a
-- table of its own because every change to the lists table rebuilds the
-- milter's index (see the lists_au trigger), which a post must not cause,
-- and because posts rows are purged while the numbering must go on.
CREATE TABLE post_sequence (
    list_id INTEGER PRIMARY KEY REFERENCES lists(id) ON DELETE CASCADE,
    last    INTEGER NOT NULL
);

-- The list's number for the post; 0 for posts accepted before numbering.
ALTER TABLE posts ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
