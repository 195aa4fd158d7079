-- Schema version 8: the blind index as postings and token sets.
--
-- tokens held a row per (type, token, id) and a second index by (type, id)
-- to replace a resource's tokens: two B-tree inserts of some 70 bytes per
-- token, nearly half of what a write cost and of the database's size.
-- postings is the inverted index alone, keyed by token first (the token is
-- an HMAC over the type already, so lookups need no type prefix); token_sets
-- keeps each current live version's distinct tokens in one row keyed by its
-- leaf Seq (vault.EncodeTokenSet), appended in Seq order, which is what a
-- new version's write or an erasure reads to remove the postings it
-- replaces.
--
-- The old rows are not carried over: index_state.version is left empty,
-- and the gateway rebuilds the index from the versions (as `fhiranchor
-- reindex` does) before it reports ready, then records the version of the
-- rules it built it by.
DROP TABLE tokens;

CREATE TABLE postings (
	token BLOB NOT NULL,
	type  TEXT NOT NULL,
	id    TEXT NOT NULL,
	PRIMARY KEY (token, type, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE token_sets (
	seq    INTEGER PRIMARY KEY,
	tokens BLOB NOT NULL
) STRICT;

CREATE TABLE index_state (
	one     INTEGER PRIMARY KEY CHECK (one = 1),
	version TEXT NOT NULL
) STRICT;

INSERT INTO index_state (one, version) VALUES (1, '');
