-- Schema version 5 of the vault on PostgreSQL: the blind index as postings
-- and token sets (as SQLite schema version 8).
--
-- tokens held a row per (type, token, id) and a second index by (type, id)
-- to replace a resource's tokens. postings is the inverted index alone:
-- (token, seq), seq being the leaf Seq of the current live version that
-- carries the token (the token is an HMAC over the type already);
-- versions_ident lets a lookup by token map Seqs to resources by an
-- index-only scan. token_sets keeps each current live version's distinct
-- tokens, sorted, in one row keyed by its Seq: what a new version's write
-- or an erasure reads to remove the postings it replaces.
--
-- The old rows are not carried over: index_state.version is left empty,
-- and the gateway rebuilds the index from the versions before it serves,
-- then records the version of the rules it built it by.
DROP TABLE tokens;

CREATE TABLE postings (
	token bytea  NOT NULL,
	seq   bigint NOT NULL,
	PRIMARY KEY (token, seq)
);

CREATE INDEX versions_ident ON versions (seq) INCLUDE (type, id);

CREATE TABLE token_sets (
	seq    bigint  PRIMARY KEY,
	tokens bytea[] NOT NULL
);

CREATE TABLE index_state (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	version text    NOT NULL
);

INSERT INTO index_state (version) VALUES ('');
