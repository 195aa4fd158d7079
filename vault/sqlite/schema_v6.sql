-- Schema version 6: history listings by type.
--
-- versions_by_type serves Store.Changes for one type (FHIR _history at type
-- level): read backwards, its seq gives the order, the Before bound and the
-- LIMIT without a sort, and last_updated lets the Since bound be checked in
-- the index. A listing of every type reads the table itself backwards (seq
-- is its rowid).
CREATE INDEX versions_by_type ON versions (type, seq, last_updated);
