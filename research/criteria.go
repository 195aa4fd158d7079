package research

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// criteriaSeal encrypts the criteria a research record keeps for the
// overlap control. The criteria are the researcher's own words (codes,
// ranges, dates), but a code is any string, and records are anchored and
// never erased: free text must not sit there in clear, as the purpose of
// use must not. AES-256-GCM under a key derived from the master key, so
// every gateway sharing the vault opens what another sealed.
type criteriaSeal struct {
	aead cipher.AEAD
}

// criteriaAD binds a sealed value to its use.
var criteriaAD = []byte("fhiranchor cohort criteria v1")

// newCriteriaSeal builds the seal from a 32-byte key (the vault's
// "research-key"/"cohort-criteria" token).
func newCriteriaSeal(key []byte) (criteriaSeal, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return criteriaSeal{}, fmt.Errorf("criteria key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return criteriaSeal{}, fmt.Errorf("criteria cipher: %w", err)
	}
	return criteriaSeal{aead: aead}, nil
}

// seal returns base64(nonce || ciphertext) of criteria.
func (c criteriaSeal) seal(criteria []byte) string {
	nonce := make([]byte, c.aead.NonceSize())
	rand.Read(nonce) // never fails
	return base64.StdEncoding.EncodeToString(c.aead.Seal(nonce, nonce, criteria, criteriaAD))
}

// open reverses seal.
func (c criteriaSeal) open(sealed string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(b) < c.aead.NonceSize() {
		return nil, errors.New("malformed sealed criteria")
	}
	n := c.aead.NonceSize()
	return c.aead.Open(nil, b[:n], b[n:], criteriaAD)
}
