-- Tokens come and go with every join, leave and held post. A change to
-- them used to move the generation and so rebuild the whole index (a
-- third of a second at a million members). They now move a counter of
-- their own, and the index then reloads only its token map.
ALTER TABLE generation ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;
DROP TRIGGER tokens_ai;
DROP TRIGGER tokens_ad;
CREATE TRIGGER tokens_ai AFTER INSERT ON tokens BEGIN UPDATE generation SET tokens = tokens + 1; END;
CREATE TRIGGER tokens_ad AFTER DELETE ON tokens BEGIN UPDATE generation SET tokens = tokens + 1; END;
