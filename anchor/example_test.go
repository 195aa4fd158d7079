package anchor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/sqlite"
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

// ExampleVerifyReceipt checks a receipt file offline: the documented example
// version is leaf 0 of a tree of 3 leaves. Whoever holds the version's
// canonical bytes and salt can also check the commitment is theirs.
func ExampleVerifyReceipt() {
	const file = `{
  "leafIndex": 0,
  "leafType": "resource-version",
  "leafTypeNumber": 1,
  "commitment": "db5560cf575ef0d0d36e4c2c9125849c70615b2b34d714e3283a118ad74eedb9",
  "status": "confirmed",
  "treeSize": 3,
  "root": "0ad57d4435d8ff2f1cd51c3de943223c47ea87649ac92f0293b8faa16d30fe49",
  "auditPath": [
    "4d8c996bebdb21d7b69631e1e4ceaf30d15ed0c9ace5629127754ba0da02d018",
    "fe8e0c9104418b0d811d466a2668860cea516afe9bdeba56e5dee040985ca9f8"
  ],
  "anchor": {
    "seq": 1,
    "chainId": 1337,
    "contract": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "txHash": "8c985b2d9224b0990ca78846b48567f739e5deb2fc2ab7f81f16fc379107e55d",
    "blockNumber": 2,
    "blockHash": "3c2001aacceab201c95baff79bd10da83adf2ee27bf846777c8b78de5eed6ea5",
    "blockTime": "2025-01-02T03:04:17Z"
  }
}`
	var r anchor.Receipt
	if err := json.Unmarshal([]byte(file), &r); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("proof:", anchor.VerifyReceipt(r))

	salt := make([]byte, anchor.SaltSize)
	for i := range salt {
		salt[i] = byte(i)
	}
	canonical := []byte(`{"code":{"text":"Body weight"},"id":"obs-1","meta":{"lastUpdated":"2025-01-02T03:04:05.678901Z","versionId":"1"},"resourceType":"Observation","status":"final","subject":{"reference":"Patient/pat-1"},"valueQuantity":{"unit":"kg","value":72.50}}`)
	fmt.Println("content:", anchor.VerifyContent(r, salt, canonical))

	r.Root[0] ^= 1 // one bit of the root
	fmt.Println("tampered:", errors.Is(anchor.VerifyReceipt(r), anchor.ErrInclusion))
	// Output:
	// proof: <nil>
	// content: <nil>
	// tampered: true
}

// ExampleLog runs a Log: leaves come from a LeafSource (in the gateway, the
// vault's queue), checkpoints go to a Store, roots to a Chain (anchor/eth;
// here the in-memory fake of this package's tests).
func ExampleLog() {
	dir, err := os.MkdirTemp("", "fhiranchor-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(dir, "log.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	// Three acknowledged leaves, at indexes 0, 1, 2.
	var leaves []anchor.Leaf
	for i, content := range []string{"a", "b", "c"} {
		c := anchor.Commit(anchor.LeafResourceVersion, make([]byte, anchor.SaltSize), []byte(content))
		leaves = append(leaves, anchor.Leaf{Index: uint64(i), Type: anchor.LeafResourceVersion, Data: anchor.LeafData(anchor.LeafResourceVersion, c)})
	}
	source := func(ctx context.Context, after uint64, limit int) ([]anchor.Leaf, error) {
		if after >= uint64(len(leaves)) {
			return nil, nil
		}
		return leaves[after:min(uint64(len(leaves)), after+uint64(limit))], nil
	}

	cfg := anchor.Config{MaxDelay: 10 * time.Millisecond, Poll: time.Millisecond}
	log, err := anchor.New(ctx, cfg, store, source, newFakeChain(), slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- log.Run(ctx) }()

	var r anchor.Receipt
	for r.Status != anchor.StatusConfirmed {
		time.Sleep(time.Millisecond)
		if r, err = log.Receipt(ctx, 1); err != nil {
			fmt.Println(err)
			return
		}
	}
	stop()
	fmt.Println("run:", <-done)
	fmt.Println("leaf", r.LeafIndex, r.LeafType, "in tree of", r.TreeSize, "anchored at seq", r.Anchor.Seq, r.Status)
	fmt.Println("verify:", anchor.VerifyReceipt(r))
	// Output:
	// run: <nil>
	// leaf 1 resource-version in tree of 3 anchored at seq 1 confirmed
	// verify: <nil>
}
