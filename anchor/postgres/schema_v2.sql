-- Schema version 2 of the fhiranchor log on PostgreSQL: signed checkpoints.
-- Applied once, in one transaction, by pgdb.Migrate (component "log"). Never
-- edit a released version: add a new migration instead.

-- note is the checkpoint as a signed note (c2sp.org/tlog-checkpoint, signed
-- by the log's key when the checkpoint was written); NULL for checkpoints
-- written before the log signed them, which the Log signs when it serves
-- them. Like the rest of the row, it never changes once written.
ALTER TABLE log_checkpoints ADD COLUMN note text;
