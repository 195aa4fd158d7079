-- Schema version 5: remembered responses are sealed.
--
-- Sealed.PutResponse now seals each remembered idempotent response
-- (AES-256-GCM under a key derived from the master key, bound to its
-- idempotency key) and Sealed.Response refuses one that does not open. The
-- responses stored before were plain JSON that nothing could check, so they
-- are dropped: a client retrying, after the upgrade, a request first sent
-- before it gets the request applied again rather than the first answer.
DELETE FROM responses;
