package anchor_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/fhiranchor/fhiranchor/anchor"
)

// vectorSalt and vectorCanonical are the inputs of the worked example in
// docs/canonical-form.md: salt 0x00..0x1f, and the canonical bytes of a
// stored Observation version (fhir's TestStoredVersionExample produces them).
var (
	vectorSalt      = seq(0, anchor.SaltSize)
	vectorCanonical = []byte(`{"code":{"text":"Body weight"},"id":"obs-1","meta":{"lastUpdated":"2025-01-02T03:04:05.678901Z","versionId":"1"},"resourceType":"Observation","status":"final","subject":{"reference":"Patient/pat-1"},"valueQuantity":{"unit":"kg","value":72.50}}`)
)

func seq(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return b
}

// TestCommitVectors pins the commitment of every leaf type. These values are
// in receipts already issued and in docs/canonical-form.md: changing any of
// them (the domain string, the byte order, the hash) breaks every receipt
// ever issued. Never update them to make this test pass.
func TestCommitVectors(t *testing.T) {
	tests := []struct {
		typ  anchor.LeafType
		want string
	}{
		{anchor.LeafResourceVersion, "db5560cf575ef0d0d36e4c2c9125849c70615b2b34d714e3283a118ad74eedb9"},
		{anchor.LeafConsentEvent, "2f9ef441dbca6eb36a72111536ea2cdd1430a5c4d90fd039c8637d7c01fd730f"},
		{anchor.LeafPolicyActivation, "f73105f45e8b4047e75c4d51da93bb40fd1f0a7000718277d656939d2193768c"},
		{anchor.LeafAccessDecision, "92d5e160836b01d51f52a0bfdade8aff62a3e70dfedd66f5668ff4cb2a923014"},
		{anchor.LeafErasure, "3e7b1de17c0433fb14b500a31569a69b1d7ff5a70fdb0983e4efc15331db0732"},
		{anchor.LeafDeidentification, "c90f750b88e5bb74a5579e94634b1b457fdbd19694aadabab38a19851ce42162"},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			got := hex.EncodeToString(anchor.Commit(tt.typ, vectorSalt, vectorCanonical))
			if got != tt.want {
				t.Errorf("Commit(%v) = %s, want %s; commitments changed, every receipt would break", tt.typ, got, tt.want)
			}
		})
	}
}

// TestCommitOtherVectors pins edge inputs: another salt, empty content.
func TestCommitOtherVectors(t *testing.T) {
	tests := []struct {
		name      string
		salt      []byte
		canonical []byte
		want      string
	}{
		{"salt 0x01..0x20", seq(1, anchor.SaltSize), vectorCanonical, "134dd65e94066cbe17340d19429552ec75e3acd7ee4853788f05587f4c2d9d08"},
		{"empty content", vectorSalt, nil, "7d553e1a85890aaf000610fc88c03b7b7e1d0a852b311a2a9461e714493d4d3a"},
		// The deletion of the example version (fhir's TestTombstoneCanonical).
		{"tombstone", vectorSalt, []byte(`{"deleted":true,"id":"obs-1","meta":{"lastUpdated":"2025-01-02T23:00:00.000000Z","versionId":"2"},"resourceType":"Observation"}`), "681f9a4ba84ba45fe417ebdde6854d17cd6f1e7a418d2342f22c7a914d11c6e7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hex.EncodeToString(anchor.Commit(anchor.LeafResourceVersion, tt.salt, tt.canonical))
			if got != tt.want {
				t.Errorf("Commit = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestCommitFormula restates the documented formula with a literal domain
// string, so a change to the constant in leaf.go cannot go unnoticed.
func TestCommitFormula(t *testing.T) {
	const domain = "fhiranchor/v1/commitment\x00" // 25 bytes, NUL-terminated
	if len(domain) != 25 {
		t.Fatalf("domain is %d bytes", len(domain))
	}
	for typ := anchor.LeafType(0); typ < 8; typ++ {
		h := sha256.New()
		h.Write([]byte(domain))
		h.Write([]byte{byte(typ)})
		h.Write(vectorSalt)
		h.Write(vectorCanonical)
		want := h.Sum(nil)
		if got := anchor.Commit(typ, vectorSalt, vectorCanonical); !bytes.Equal(got, want) {
			t.Errorf("Commit(%v) = %x, want SHA-256(domain||type||salt||canonical) = %x", typ, got, want)
		}
	}
	// The canonical bytes are never hashed bare: a bare SHA-256 of PHI could
	// be brute-forced (DESIGN.md invariant 2).
	bare := sha256.Sum256(vectorCanonical)
	if bytes.Equal(anchor.Commit(anchor.LeafResourceVersion, vectorSalt, vectorCanonical), bare[:]) {
		t.Error("commitment equals the bare hash of the content")
	}
}

func TestLeafData(t *testing.T) {
	c := anchor.Commit(anchor.LeafConsentEvent, vectorSalt, vectorCanonical)
	got := anchor.LeafData(anchor.LeafConsentEvent, c)
	want, err := hex.DecodeString("02" + "2f9ef441dbca6eb36a72111536ea2cdd1430a5c4d90fd039c8637d7c01fd730f")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("LeafData = %x, want %x", got, want)
	}
	if len(got) != 1+sha256.Size {
		t.Errorf("len(LeafData) = %d, want %d", len(got), 1+sha256.Size)
	}
	// The RFC 6962 leaf hash of the documented example leaf,
	// SHA-256(0x00 || 0x01 || commitment), as docs/canonical-form.md gives it.
	leaf := anchor.LeafData(anchor.LeafResourceVersion, anchor.Commit(anchor.LeafResourceVersion, vectorSalt, vectorCanonical))
	if h := sha256.Sum256(append([]byte{0x00}, leaf...)); hex.EncodeToString(h[:]) != "a544e8abcb6b64c5a2e8c7edc585393dc7a7173ad40bed43d77f4d80a24acb0d" {
		t.Errorf("RFC 6962 leaf hash = %x", h)
	}
	// LeafData copies: later changes to the commitment do not reach the leaf.
	c[0] ^= 0xff
	if got[1] == c[0] {
		t.Error("LeafData aliases the commitment slice")
	}
}

// TestDomainSeparation: the same salt and content under two leaf types give
// different commitments and different leaves (DESIGN.md invariant 3).
func TestDomainSeparation(t *testing.T) {
	types := []anchor.LeafType{
		anchor.LeafResourceVersion,
		anchor.LeafConsentEvent,
		anchor.LeafPolicyActivation,
		anchor.LeafAccessDecision,
		anchor.LeafErasure,
		anchor.LeafDeidentification,
	}
	commits := map[string]anchor.LeafType{}
	leaves := map[string]anchor.LeafType{}
	for _, typ := range types {
		c := anchor.Commit(typ, vectorSalt, vectorCanonical)
		if prev, dup := commits[string(c)]; dup {
			t.Errorf("%v and %v commit to the same %x", prev, typ, c)
		}
		commits[string(c)] = typ
		l := anchor.LeafData(typ, c)
		if prev, dup := leaves[string(l)]; dup {
			t.Errorf("%v and %v give the same leaf %x", prev, typ, l)
		}
		leaves[string(l)] = typ
	}
	// A leaf re-labelled with another type does not verify: its commitment
	// is not that type's commitment of the same content.
	c := anchor.Commit(anchor.LeafAccessDecision, vectorSalt, vectorCanonical)
	if bytes.Equal(c, anchor.Commit(anchor.LeafResourceVersion, vectorSalt, vectorCanonical)) {
		t.Error("an access-decision commitment verifies as a resource version")
	}
}

func TestSaltSeparation(t *testing.T) {
	a := anchor.Commit(anchor.LeafResourceVersion, seq(0, anchor.SaltSize), vectorCanonical)
	b := anchor.Commit(anchor.LeafResourceVersion, seq(1, anchor.SaltSize), vectorCanonical)
	if bytes.Equal(a, b) {
		t.Errorf("two salts give the same commitment %x", a)
	}
	other := bytes.Clone(vectorCanonical)
	other[len(other)-3] = '1' // 72.50 -> 72.51
	if bytes.Equal(a, anchor.Commit(anchor.LeafResourceVersion, seq(0, anchor.SaltSize), other)) {
		t.Error("two contents give the same commitment")
	}
}

func TestNewSalt(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s, err := anchor.NewSalt()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != anchor.SaltSize {
			t.Fatalf("len(NewSalt()) = %d, want %d", len(s), anchor.SaltSize)
		}
		if seen[string(s)] {
			t.Fatalf("NewSalt repeated %x", s)
		}
		seen[string(s)] = true
	}
	if anchor.SaltSize != 32 {
		t.Errorf("SaltSize = %d; the commitment format fixes it at 32", anchor.SaltSize)
	}
}

func TestLeafTypeString(t *testing.T) {
	tests := []struct {
		typ  anchor.LeafType
		want string
	}{
		{anchor.LeafResourceVersion, "resource-version"},
		{anchor.LeafConsentEvent, "consent-event"},
		{anchor.LeafPolicyActivation, "policy-activation"},
		{anchor.LeafAccessDecision, "access-decision"},
		{anchor.LeafErasure, "erasure"},
		{anchor.LeafDeidentification, "deidentification"},
		{0, "leaf-type-0"},
		{7, "leaf-type-7"},
		{255, "leaf-type-255"},
	}
	for _, tt := range tests {
		if got := tt.typ.String(); got != tt.want {
			t.Errorf("LeafType(%d).String() = %q, want %q", uint8(tt.typ), got, tt.want)
		}
	}
}

// TestLeafTypeValues pins the numbers: they are inside every commitment and
// every leaf, so they can never be renumbered.
func TestLeafTypeValues(t *testing.T) {
	tests := []struct {
		typ  anchor.LeafType
		want uint8
	}{
		{anchor.LeafResourceVersion, 1},
		{anchor.LeafConsentEvent, 2},
		{anchor.LeafPolicyActivation, 3},
		{anchor.LeafAccessDecision, 4},
		{anchor.LeafErasure, 5},
		{anchor.LeafDeidentification, 6},
	}
	for _, tt := range tests {
		if uint8(tt.typ) != tt.want {
			t.Errorf("%v = %d, want %d", tt.typ, uint8(tt.typ), tt.want)
		}
	}
}
