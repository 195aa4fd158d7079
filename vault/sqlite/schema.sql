-- Schema version 1 of the fhiranchor vault on SQLite.
-- Applied once, in one transaction, by migrate in sqlite.go. Never edit a
-- released version: add a new migration instead.

-- leaves is the anchoring queue. AUTOINCREMENT keeps Seq strictly increasing
-- and never reused, even after rows are deleted; a rolled-back insert does
-- not consume a Seq.
CREATE TABLE leaves (
	seq  INTEGER PRIMARY KEY AUTOINCREMENT,
	type INTEGER NOT NULL,
	data BLOB    NOT NULL,
	ref  TEXT    NOT NULL
) STRICT;

-- versions holds one row per resource version, keyed by the Seq of its leaf
-- so that inserts append to the table b-tree. The unique index serves the
-- version lookups and, read backwards, the latest version of a resource.
CREATE TABLE versions (
	seq          INTEGER PRIMARY KEY REFERENCES leaves (seq),
	type         TEXT    NOT NULL,
	id           TEXT    NOT NULL,
	version      INTEGER NOT NULL,
	last_updated INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
	deleted      INTEGER NOT NULL,
	key_id       TEXT    NOT NULL,
	ciphertext   BLOB    NOT NULL,
	salt         BLOB    NOT NULL,
	commitment   BLOB    NOT NULL,
	UNIQUE (type, id, version)
) STRICT;

-- tokens holds the blind-index tokens of current, live versions only.
CREATE TABLE tokens (
	type  TEXT NOT NULL,
	token BLOB NOT NULL,
	id    TEXT NOT NULL,
	PRIMARY KEY (type, token, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX tokens_by_id ON tokens (type, id);

CREATE TABLE data_keys (
	key_id  TEXT PRIMARY KEY,
	wrapped BLOB NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE responses (
	key     BLOB PRIMARY KEY,
	body    BLOB    NOT NULL,
	created INTEGER NOT NULL -- microseconds since the Unix epoch, UTC
) STRICT;
