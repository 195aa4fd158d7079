// Package anchor defines the typed, domain-separated leaves of fhiranchor's
// append-only log and the salted commitments they carry. Leaves are queued in
// the vault in the same transaction as what they commit to; batching them
// into Merkle trees and anchoring the roots on a chain builds on this.
package anchor
