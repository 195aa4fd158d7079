-- Schema version 10: the recent level of the postings moves to memory.
--
-- postings_recent held the postings of the latest writes, inserted one by
-- one in the writer's transaction: a B-tree insert per posting, repeating
-- what the token set written beside it already says. The Store now keeps
-- the postings of the token sets above index_state.merged in memory,
-- rebuilt from those sets when it opens, and writes them to postings_mid
-- in bulk when it moves merged (vault/sqlite/recent.go). index_state.gen
-- counts the commits that changed that level, so that a reader can read
-- the tables and the memory as of one commit.
--
-- What postings_recent held moves to postings_mid, and every token set
-- stored so far is at or below the watermark.
ALTER TABLE index_state ADD COLUMN merged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE index_state ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;

INSERT OR IGNORE INTO postings_mid (token, seq) SELECT token, seq FROM postings_recent ORDER BY token, seq;
DROP TABLE postings_recent;

UPDATE index_state SET merged = (SELECT coalesce(max(seq), 0) FROM token_sets);
