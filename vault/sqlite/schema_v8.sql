-- Schema version 8: the blind index as postings and token sets.
--
-- tokens held a row per (type, token, id) and a second index by (type, id)
-- to replace a resource's tokens: two B-tree inserts of some 80 bytes per
-- token, nearly half of what a write cost and of the database's size. Every
-- commit writes each page it dirtied to the WAL, and a resource's tokens
-- land on as many pages as it has tokens, so bytes per row are bytes per
-- commit.
--
-- postings is the inverted index alone: (token, seq), seq being the leaf
-- Seq of the current live version that carries the token (the token is an
-- HMAC over the type already). versions_ident maps a Seq to its resource
-- in a few bytes per version, so that lookups by token read it rather than
-- the versions rows. token_sets keeps each current live version's
-- distinct tokens in one row keyed by its Seq (vault.EncodeTokenSet),
-- appended in Seq order: what a new version's write or an erasure reads
-- to remove the postings it replaces.
--
-- The old rows are not carried over: index_state.version is left empty,
-- and the gateway rebuilds the index from the versions (as `fhiranchor
-- reindex` does) before it serves, then records the version of the rules
-- it built it by.
DROP TABLE tokens;

CREATE TABLE postings (
	token BLOB    NOT NULL,
	seq   INTEGER NOT NULL,
	PRIMARY KEY (token, seq)
) STRICT, WITHOUT ROWID;

CREATE INDEX versions_ident ON versions (seq, type, id);

CREATE TABLE token_sets (
	seq    INTEGER PRIMARY KEY,
	tokens BLOB NOT NULL
) STRICT;

CREATE TABLE index_state (
	one     INTEGER PRIMARY KEY CHECK (one = 1),
	version TEXT NOT NULL
) STRICT;

INSERT INTO index_state (one, version) VALUES (1, '');
