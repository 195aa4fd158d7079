-- Schema version 1 of the fhiranchor log on SQLite.
-- Applied once, in one transaction, by migrate in sqlite.go. Never edit a
-- released version: add a new migration instead.

-- nodes holds the hash of every perfect subtree of the log's tree, leaves
-- (level 0) included: proofs read at most two per level and never rehash
-- the log. Rows are written once and never change.
CREATE TABLE nodes (
	level INTEGER NOT NULL,
	idx   INTEGER NOT NULL,
	hash  BLOB    NOT NULL,
	PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

-- checkpoints holds the tree heads the log committed to; rows never change.
CREATE TABLE checkpoints (
	size INTEGER PRIMARY KEY,
	root BLOB    NOT NULL,
	time INTEGER NOT NULL -- microseconds since the Unix epoch, UTC
) STRICT;

-- anchors holds one row per anchor sequence number. seq, tree_size, root,
-- prev_root, chain_id and contract never change; the rest follows the chain.
CREATE TABLE anchors (
	seq           INTEGER PRIMARY KEY,
	tree_size     INTEGER NOT NULL UNIQUE REFERENCES checkpoints (size),
	root          BLOB    NOT NULL,
	prev_root     BLOB    NOT NULL,
	chain_id      INTEGER NOT NULL,
	contract      TEXT    NOT NULL,
	status        TEXT    NOT NULL CHECK (status IN ('submitted', 'anchored', 'confirmed')),
	tx_hash       BLOB    NOT NULL,
	submitted     INTEGER,          -- microseconds since the Unix epoch; NULL: to be sent again, or adopted
	block_number  INTEGER NOT NULL, -- 0 while submitted
	block_hash    BLOB,
	block_time    INTEGER,          -- microseconds since the Unix epoch; NULL while submitted
	confirmations INTEGER NOT NULL
) STRICT;

-- The Log follows the anchors that are not confirmed yet: a short tail.
CREATE INDEX anchors_unconfirmed ON anchors (seq) WHERE status <> 'confirmed';
