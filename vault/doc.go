// Package vault keeps PHI off the chain and encrypted at rest.
//
// Store is the storage contract that backends (vault/sqlite, later
// vault/postgres) implement and vault/vaulttest checks. Its transactions span
// the sealed resource versions with their blind-index tokens, the wrapped
// data keys, remembered idempotent responses, the queue of log leaves with
// the records of those that stand for no version (consent events, policy
// activations, access decisions: opaque ids only), and the versions of the
// policy bundle.
//
// Sealed sits on top of a Store: it seals each resource version with
// AES-256-GCM under a data key per patient compartment, wraps those keys with
// the master key, and derives the blind-index tokens used for conditional
// interactions. Only Sealed ever sees a resource in clear.
//
// The package uses the standard library only.
package vault
