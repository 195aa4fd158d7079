// Package vault keeps PHI off the chain and encrypted at rest.
//
// Store is the storage contract that backends (vault/sqlite, later
// vault/postgres) implement and vault/vaulttest checks. Sealed sits on top of
// a Store: it seals each resource version with AES-256-GCM under a data key
// per patient compartment, wraps those keys with the master key, and derives
// the blind-index tokens used for conditional interactions. Only Sealed ever
// sees a resource in clear.
//
// The package uses the standard library only.
package vault
