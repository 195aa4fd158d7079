-- Schema version 1 of the fhiranchor vault on PostgreSQL: the end state of
-- the SQLite schema (versions 1 to 4) in one migration. Applied once, in one
-- transaction, by pgdb.Migrate as component "vault". Never edit a released
-- version: add a new migration instead.
--
-- Tables of the anchor log, which may share the database, are prefixed log_;
-- schema_versions belongs to pgdb.

-- seq_lock is one row whose lock every transaction that queues a leaf or
-- stores a policy version takes (SELECT ... FOR UPDATE) before its first such
-- write and holds until it commits or rolls back. Such writers therefore
-- queue one after another, from their first leaf to their commit, and the
-- next Seq (or policy version) is the largest committed one plus one, read
-- after the lock: numbers commit in order and without gaps, and a
-- rolled-back transaction uses none up. A reader tailing the leaves never
-- sees Seq k+1 committed while k is not. (A sequence would hand out numbers
-- that commit out of order and leave gaps on rollback, so such a reader
-- could skip one for ever.)
CREATE TABLE seq_lock (
	one boolean PRIMARY KEY DEFAULT true CHECK (one)
);
INSERT INTO seq_lock DEFAULT VALUES;

-- leaves is the anchoring queue, in Seq order from 1 (see seq_lock).
CREATE TABLE leaves (
	seq  bigint   PRIMARY KEY,
	type smallint NOT NULL,
	data bytea    NOT NULL,
	ref  text     NOT NULL
);

-- versions holds one row per resource version, keyed by the Seq of its leaf.
-- The unique index serves the version lookups and, read backwards, the
-- latest version of a resource.
--
-- ciphertext and deid are random bytes: STORAGE EXTERNAL spares PostgreSQL
-- trying to compress them, and toast_tuple_target keeps a version of a few
-- kilobytes in the row rather than in the TOAST table.
--
-- An erasure overwrites ciphertext, salt and deid with empty values; under
-- MVCC the old row versions (and their TOAST chunks) stay in the data files
-- as dead tuples until VACUUM reclaims them, so operators run VACUUM after an
-- erasure (autovacuum does, eventually).
CREATE TABLE versions (
	seq          bigint      PRIMARY KEY REFERENCES leaves (seq),
	type         text        NOT NULL,
	id           text        NOT NULL,
	version      bigint      NOT NULL,
	last_updated timestamptz NOT NULL, -- microseconds, as Record.LastUpdated
	deleted      boolean     NOT NULL,
	erased       boolean     NOT NULL DEFAULT false,
	key_id       text        NOT NULL,
	ciphertext   bytea       NOT NULL,
	salt         bytea       NOT NULL,
	commitment   bytea       NOT NULL,
	deid         bytea       NOT NULL DEFAULT '',
	UNIQUE (type, id, version)
) WITH (toast_tuple_target = 8160);

ALTER TABLE versions ALTER COLUMN ciphertext SET STORAGE EXTERNAL;
ALTER TABLE versions ALTER COLUMN deid SET STORAGE EXTERNAL;

CREATE INDEX versions_by_key ON versions (key_id);

-- tokens holds the blind-index tokens of current, live versions only.
CREATE TABLE tokens (
	type  text  NOT NULL,
	token bytea NOT NULL,
	id    text  NOT NULL,
	PRIMARY KEY (type, token, id)
);

CREATE INDEX tokens_by_id ON tokens (type, id);

CREATE TABLE data_keys (
	key_id  text  PRIMARY KEY,
	wrapped bytea NOT NULL
);

CREATE TABLE responses (
	key     bytea       PRIMARY KEY,
	body    bytea       NOT NULL,
	created timestamptz NOT NULL
);

-- leaf_records holds what a leaf that stands for no resource version commits
-- to (a consent event, a policy activation, an access decision): one row per
-- leaf with a record, keyed by its Seq. Records hold opaque ids only, so an
-- erasure leaves them alone. type repeats leaves.type so that one index
-- serves a listing by type. The indexes, read backwards, list newest first.
CREATE TABLE leaf_records (
	seq     bigint      PRIMARY KEY REFERENCES leaves (seq),
	type    smallint    NOT NULL,
	record  bytea       NOT NULL,
	salt    bytea       NOT NULL,
	subject text        NOT NULL, -- "Patient/<id>" or ''
	actor   text        NOT NULL, -- client id or ''
	time    timestamptz NOT NULL
);

CREATE INDEX leaf_records_by_subject ON leaf_records (subject, seq);
CREATE INDEX leaf_records_by_actor ON leaf_records (actor, seq);
CREATE INDEX leaf_records_by_type ON leaf_records (type, seq);

-- policies holds every version of the policy bundle, numbered 1, 2, 3...
-- under seq_lock.
CREATE TABLE policies (
	version  bigint      PRIMARY KEY,
	revision text        NOT NULL UNIQUE,
	bundle   bytea       NOT NULL,
	created  timestamptz NOT NULL,
	author   text        NOT NULL
);
