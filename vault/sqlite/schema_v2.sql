-- Schema version 2: crypto-shredding. An erased version keeps its row, its
-- commitment and its leaf; its ciphertext and salt are overwritten with
-- empty blobs (secure_delete zeroes the old bytes) and erased is set.
ALTER TABLE versions ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;

CREATE INDEX versions_by_key ON versions (key_id);
