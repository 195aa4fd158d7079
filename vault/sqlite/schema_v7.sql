-- Schema version 7: the client that wrote each version.
--
-- client is the OAuth client id of the request that stored the version (an
-- opaque id, never PHI), for the version's derived Provenance. It is not
-- part of the version's commitment, which stays over the canonical bytes
-- alone. Versions stored before this migration have ''.
ALTER TABLE versions ADD COLUMN client TEXT NOT NULL DEFAULT '';
