-- Schema version 1 of the fhiranchor log on PostgreSQL.
-- Applied once, in one transaction, by pgdb.Migrate (component "log"). Never
-- edit a released version: add a new migration instead. The vault shares the
-- database: every object here is prefixed log_.

-- log_nodes holds the hash of every perfect subtree of the log's tree, leaves
-- (level 0) included: proofs read at most two per level and never rehash
-- the log. Rows are written once and never change.
CREATE TABLE log_nodes (
	level smallint NOT NULL,
	idx   bigint   NOT NULL,
	hash  bytea    NOT NULL,
	PRIMARY KEY (level, idx)
);

-- log_checkpoints holds the tree heads the log committed to; rows never
-- change.
CREATE TABLE log_checkpoints (
	size bigint      PRIMARY KEY,
	root bytea       NOT NULL,
	time timestamptz NOT NULL
);

-- log_head is one row: the size of the last checkpoint. Every write locks it
-- first (SELECT ... FOR UPDATE), so writers in several processes that
-- briefly overlap (a leader that lost its lock and has not noticed yet)
-- take turns, and the second sees the first's checkpoint.
CREATE TABLE log_head (
	one  boolean PRIMARY KEY DEFAULT true CHECK (one),
	size bigint  NOT NULL
);
INSERT INTO log_head (one, size) VALUES (true, 0);

-- log_anchors holds one row per anchor sequence number. seq, tree_size, root,
-- prev_root, chain_id and contract never change; the rest follows the chain.
CREATE TABLE log_anchors (
	seq           bigint      PRIMARY KEY,
	tree_size     bigint      NOT NULL UNIQUE REFERENCES log_checkpoints (size),
	root          bytea       NOT NULL,
	prev_root     bytea       NOT NULL,
	chain_id      bigint      NOT NULL,
	contract      text        NOT NULL,
	status        text        NOT NULL CHECK (status IN ('submitted', 'anchored', 'confirmed')),
	tx_hash       bytea       NOT NULL,
	submitted     timestamptz,          -- NULL: to be sent again, or adopted from the chain
	block_number  bigint      NOT NULL, -- 0 while submitted
	block_hash    bytea,
	block_time    timestamptz,          -- NULL while submitted
	confirmations bigint      NOT NULL
);

-- The Log follows the anchors that are not confirmed yet: a short tail.
CREATE INDEX log_anchors_unconfirmed ON log_anchors (seq) WHERE status <> 'confirmed';

-- log_contract is at most one row: the address of the anchoring contract,
-- recorded by the first gateway that deployed it (Store.Contract).
CREATE TABLE log_contract (
	one      boolean     PRIMARY KEY DEFAULT true CHECK (one),
	address  text        NOT NULL CHECK (address <> ''),
	recorded timestamptz NOT NULL
);
