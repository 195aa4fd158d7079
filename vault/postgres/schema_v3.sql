-- Schema version 3 of the fhiranchor vault on PostgreSQL: history listings
-- by type (see schema_v6.sql of the SQLite vault).
--
-- versions_by_type serves Store.Changes for one type (FHIR _history at type
-- level): read backwards, its seq gives the order, the Before bound and the
-- LIMIT without a sort, and last_updated lets the Since bound be checked in
-- the index. A listing of every type reads the primary key backwards.
CREATE INDEX versions_by_type ON versions (type, seq, last_updated);
