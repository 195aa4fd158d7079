package anchor

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// LeafType says what a leaf commits to. Its value is part of both the
// commitment and the leaf bytes, so a leaf of one type can never verify as
// another. Values are fixed forever: receipts carry them.
type LeafType uint8

// Leaf types.
const (
	LeafResourceVersion  LeafType = 1 // one stored version of a FHIR resource (deletions included)
	LeafConsentEvent     LeafType = 2 // a Consent created, revised, inactivated or deleted
	LeafPolicyActivation LeafType = 3 // a policy bundle version activated
	LeafAccessDecision   LeafType = 4 // one access decision
	LeafErasure          LeafType = 5 // a patient's data crypto-shredded
	LeafDeidentification LeafType = 6 // a version's de-identified copy: its hash and which rule changed which element
)

func (t LeafType) String() string {
	switch t {
	case LeafResourceVersion:
		return "resource-version"
	case LeafConsentEvent:
		return "consent-event"
	case LeafPolicyActivation:
		return "policy-activation"
	case LeafAccessDecision:
		return "access-decision"
	case LeafErasure:
		return "erasure"
	case LeafDeidentification:
		return "deidentification"
	}
	return fmt.Sprintf("leaf-type-%d", uint8(t))
}

// SaltSize is the length of a commitment salt.
const SaltSize = 32

// commitDomain prefixes every commitment so its hashes cannot collide with
// any other SHA-256 use, here or elsewhere.
const commitDomain = "fhiranchor/v1/commitment\x00"

// NewSalt returns SaltSize random bytes.
func NewSalt() ([]byte, error) {
	salt := make([]byte, SaltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("read salt: %w", err)
	}
	return salt, nil
}

// Commit returns the salted commitment of canonical bytes:
//
//	SHA-256("fhiranchor/v1/commitment" || 0x00 || type || salt || canonical)
//
// The salt, kept only in the vault, makes the commitment useless for
// guessing the content (a birth date or a name) by brute force.
func Commit(t LeafType, salt, canonical []byte) []byte {
	h := sha256.New()
	h.Write([]byte(commitDomain))
	h.Write([]byte{byte(t)})
	h.Write(salt)
	h.Write(canonical)
	return h.Sum(nil)
}

// LeafData returns the bytes of a log leaf: the type followed by the
// 32-byte commitment. The Merkle tree hashes these bytes as an RFC 6962 leaf.
func LeafData(t LeafType, commitment []byte) []byte {
	out := make([]byte, 0, 1+len(commitment))
	out = append(out, byte(t))
	return append(out, commitment...)
}
