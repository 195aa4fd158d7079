// Package access decides who may read and write a patient's data and
// records every decision: the consent state kept in the vault, the policy
// engine that is active (swapped with its version as one value), decisions
// on stored state, and the record types that are anchored forever.
//
// It knows no transport. The gateway builds a Caller once per request (from
// the verified token and the purpose header), asks Read or Writes for a
// verdict, and turns a refusal into an OperationOutcome. A refused write is
// a verdict, not an error: its decision is recorded in the same transaction,
// which commits with nothing else in it.
//
// Records (record.go) hold codes and tokens only, never an id a client chose
// or any PHI: they are listed to auditors and patients and never erased.
package access
