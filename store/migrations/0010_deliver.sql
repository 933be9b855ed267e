-- Delivery queue indexes that the queries can actually use.
--
-- SQLite uses a partial index only when the query's WHERE clause contains
-- the index's WHERE terms literally. 0001's deliveries_due covered
-- state IN ('queued','deferred','sending'), which no query spells out, so
-- every claim scanned the whole table (the sent history included). These
-- two match the deliverer's queries exactly and stay small: sent and
-- failed rows, the bulk of the table, are in neither.

DROP INDEX IF EXISTS deliveries_due;

-- Rows waiting for an attempt, in the order they fall due: the claim
-- query and the "when is the next one due" query read it in order.
CREATE INDEX deliveries_due ON deliveries(next_attempt_at)
    WHERE state IN ('queued','deferred');

-- Rows claimed by a deliverer; start-up recovery finds them here.
CREATE INDEX deliveries_sending ON deliveries(state)
    WHERE state = 'sending';
