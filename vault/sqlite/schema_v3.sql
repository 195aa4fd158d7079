-- Schema version 3: leaf records and policy bundle versions.

-- leaf_records holds what a leaf that stands for no resource version commits
-- to (a consent event, a policy activation, an access decision): one row per
-- leaf with a record, keyed by its Seq. Records hold opaque ids only, so an
-- erasure leaves them alone. type repeats leaves.type so that one index
-- serves a listing by type. The indexes, read backwards, list newest first.
CREATE TABLE leaf_records (
	seq     INTEGER PRIMARY KEY REFERENCES leaves (seq),
	type    INTEGER NOT NULL,
	record  BLOB    NOT NULL,
	salt    BLOB    NOT NULL,
	subject TEXT    NOT NULL, -- "Patient/<id>" or ''
	actor   TEXT    NOT NULL, -- client id or ''
	time    INTEGER NOT NULL  -- microseconds since the Unix epoch, UTC
) STRICT;

CREATE INDEX leaf_records_by_subject ON leaf_records (subject, seq);
CREATE INDEX leaf_records_by_actor ON leaf_records (actor, seq);
CREATE INDEX leaf_records_by_type ON leaf_records (type, seq);

-- policies holds every version of the policy bundle. version is assigned
-- max+1 inside the writing transaction (no AUTOINCREMENT), so versions are
-- gapless: a rolled-back insert uses none up.
CREATE TABLE policies (
	version  INTEGER PRIMARY KEY,
	revision TEXT    NOT NULL UNIQUE,
	bundle   BLOB    NOT NULL,
	created  INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
	author   TEXT    NOT NULL
) STRICT;
