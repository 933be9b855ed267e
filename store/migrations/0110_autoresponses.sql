-- Mailman's max_autoresponses_per_day: how many automatic mails (command
-- results, confirmation requests, notices to posters) postlist composed
-- for an address on a UTC day, counted in the transaction that queues
-- them, so that a flood of forged requests costs a victim a few mails a
-- day at most, across restarts. Rows of past days are deleted by the
-- hourly purge.
CREATE TABLE autoresponses (
    address TEXT NOT NULL COLLATE NOCASE,
    day     TEXT NOT NULL,              -- UTC date, 2026-12-08
    count   INTEGER NOT NULL DEFAULT 0, -- automatic mails asked for that day, sent or not
    PRIMARY KEY (address, day)
) WITHOUT ROWID;
CREATE INDEX autoresponses_day ON autoresponses(day);
