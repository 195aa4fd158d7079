-- Schema version 4 of the fhiranchor vault on PostgreSQL: the client that
-- wrote each version (see schema_v7.sql of the SQLite vault).
ALTER TABLE versions ADD COLUMN client text NOT NULL DEFAULT '';
