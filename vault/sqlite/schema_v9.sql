-- Schema version 9: recent postings, merged into postings in bulk.
--
-- A write inserts a dozen or more postings, each at a random place of the
-- postings tree (a token is an HMAC), and every commit writes each page it
-- dirtied to the WAL and fsyncs it: once the tree outgrows what one commit
-- touches, a posting costs a page write. postings_recent is the same
-- inverted index for the latest writes only: small, so a commit dirties
-- few of its pages however many postings it inserts. When it holds enough
-- rows (Config.MergeRows) one commit moves them all into postings, which
-- then pays one write of each page it dirties per merge instead of per
-- commit. A posting is in one of the two tables; lookups read both.
CREATE TABLE postings_recent (
	token BLOB    NOT NULL,
	seq   INTEGER NOT NULL,
	PRIMARY KEY (token, seq)
) STRICT, WITHOUT ROWID;
