-- Schema version 4: the de-identified copy of each version.

-- deid holds the version's de-identified copy, sealed under the same data key
-- as its ciphertext (so erasing the patient shreds it too), or X'' when the
-- version has none (tombstones, resources outside the research copy, and
-- versions stored before this migration).
ALTER TABLE versions ADD COLUMN deid BLOB NOT NULL DEFAULT X'';
