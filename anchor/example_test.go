package anchor_test

import (
	"fmt"

	"github.com/fhiranchor/fhiranchor/anchor"
)

// ExampleCommit derives the leaf of a stored resource version: the salt comes
// from NewSalt and lives only in the vault (fixed here so the output is
// stable), the content is the version's canonical bytes.
func ExampleCommit() {
	salt := make([]byte, anchor.SaltSize)
	for i := range salt {
		salt[i] = byte(i) // 0x00..0x1f
	}
	canonical := []byte(`{"code":{"text":"Body weight"},"id":"obs-1","meta":{"lastUpdated":"2025-01-02T03:04:05.678901Z","versionId":"1"},"resourceType":"Observation","status":"final","subject":{"reference":"Patient/pat-1"},"valueQuantity":{"unit":"kg","value":72.50}}`)

	c := anchor.Commit(anchor.LeafResourceVersion, salt, canonical)
	fmt.Printf("commitment %x\n", c)
	fmt.Printf("leaf       %x\n", anchor.LeafData(anchor.LeafResourceVersion, c))
	// Output:
	// commitment db5560cf575ef0d0d36e4c2c9125849c70615b2b34d714e3283a118ad74eedb9
	// leaf       01db5560cf575ef0d0d36e4c2c9125849c70615b2b34d714e3283a118ad74eedb9
}
