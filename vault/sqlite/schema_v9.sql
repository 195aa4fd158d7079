-- Schema version 9: postings in three levels, merged in bulk.
--
-- A write inserts a dozen or more postings, each at a random place of the
-- postings tree (a token is an HMAC), and every commit writes each page it
-- dirtied to the WAL and fsyncs it: once the tree outgrows what one commit
-- touches, a posting costs a page write. So the inverted index is kept as a
-- small log-structured merge tree of three tables with the same rows:
-- postings_recent takes every write's postings and is small, so a commit
-- dirties few of its pages however many postings it inserts; when it holds
-- Config.MergeRows rows, one commit moves them all into postings_mid, which
-- is written a page at a time once per merge rather than once per commit;
-- when postings_mid holds 16 times that, one commit moves it into postings,
-- the big tree. A posting is in one of the tables; lookups read all three.
CREATE TABLE postings_mid (
	token BLOB    NOT NULL,
	seq   INTEGER NOT NULL,
	PRIMARY KEY (token, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE postings_recent (
	token BLOB    NOT NULL,
	seq   INTEGER NOT NULL,
	PRIMARY KEY (token, seq)
) STRICT, WITHOUT ROWID;
