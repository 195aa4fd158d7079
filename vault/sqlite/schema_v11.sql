-- Schema version 11: the leaf journal's watermark.
--
-- Leaves can be made durable in the Store's leaf journal (journal.go), two
-- files beside the database, before a transaction adds them to leaves: a
-- read's access decision is then an append and an fdatasync instead of a
-- commit of six b-tree pages. Every leaf journalled carries a journal
-- number, increasing by one per leaf; the transaction that moves leaves
-- from the journal into leaves sets folded to the last number it moved, so
-- that a leaf found in the journal again after a crash is moved only if it
-- is above it: exactly once.
CREATE TABLE journal_state (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	folded INTEGER NOT NULL
) STRICT;

INSERT INTO journal_state (id, folded) VALUES (1, 0);
