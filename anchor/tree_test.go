package anchor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// The reference functions below restate RFC 6962 section 2.1 with
// crypto/sha256 alone, so the tree is checked against something that shares
// no code with it. They take leaf hashes, SHA-256(0x00 || leaf).

func refLeafHash(data []byte) []byte {
	h := sha256.Sum256(append([]byte{0x00}, data...))
	return h[:]
}

func refChildren(l, r []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0x01})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

// refSplit returns the largest power of two smaller than n (n > 1).
func refSplit(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// refRoot is MTH(D[n]).
func refRoot(hs [][]byte) []byte {
	switch len(hs) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		return hs[0]
	}
	k := refSplit(len(hs))
	return refChildren(refRoot(hs[:k]), refRoot(hs[k:]))
}

// refPath is PATH(m, D[n]).
func refPath(m int, hs [][]byte) [][]byte {
	if len(hs) <= 1 {
		return [][]byte{}
	}
	k := refSplit(len(hs))
	if m < k {
		return append(refPath(m, hs[:k]), refRoot(hs[k:]))
	}
	return append(refPath(m-k, hs[k:]), refRoot(hs[:k]))
}

// refConsistency is PROOF(m, D[n]).
func refConsistency(m int, hs [][]byte) [][]byte {
	return refSubproof(m, hs, true)
}

func refSubproof(m int, hs [][]byte, b bool) [][]byte {
	n := len(hs)
	if m == n {
		if b {
			return [][]byte{}
		}
		return [][]byte{refRoot(hs)}
	}
	k := refSplit(n)
	if m <= k {
		return append(refSubproof(m, hs[:k], b), refRoot(hs[k:]))
	}
	return append(refSubproof(m-k, hs[k:], false), refRoot(hs[:k]))
}

// RefRoot and RefPath give the external tests of this directory
// (package anchor_test) the reference root and audit path of leaf bytes.
func RefRoot(leaves [][]byte) []byte { return refRoot(refLeafHashes(leaves)) }

// RefPath is the reference audit path of leaf m among leaves.
func RefPath(m int, leaves [][]byte) [][]byte { return refPath(m, refLeafHashes(leaves)) }

func refLeafHashes(leaves [][]byte) [][]byte {
	hs := make([][]byte, len(leaves))
	for i, l := range leaves {
		hs[i] = refLeafHash(l)
	}
	return hs
}

// memNodes is a nodeReader over a map, with the Store's semantics.
type memNodes map[compact.NodeID][]byte

func (m memNodes) Nodes(_ context.Context, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, ok := m[id]
		if !ok {
			return nil, fmt.Errorf("node %v: %w", id, ErrNotFound)
		}
		out[i] = h
	}
	return out, nil
}

// grow builds a tree of n leaves in batches of random sizes, checking the
// root after each batch, and returns the leaf hashes and stored nodes.
func grow(t *testing.T, n int, rnd *rand.Rand) ([][]byte, memNodes, *tree) {
	t.Helper()
	nodes := memNodes{}
	tr, err := loadTree(t.Context(), nodes, 0)
	if err != nil {
		t.Fatal(err)
	}
	var hs [][]byte
	for len(hs) < n {
		batch := make([][]byte, min(1+rnd.IntN(9), n-len(hs)))
		for i := range batch {
			batch[i] = HashLeaf(fmt.Appendf(nil, "leaf %d", len(hs)+i))
		}
		next, added, err := tr.appended(batch)
		if err != nil {
			t.Fatal(err)
		}
		if tr.size() != uint64(len(hs)) {
			t.Fatalf("appended changed the tree it was called on: size %d, want %d", tr.size(), len(hs))
		}
		for _, nd := range added {
			if _, dup := nodes[nd.ID]; dup {
				t.Fatalf("node %v added twice", nd.ID)
			}
			nodes[nd.ID] = nd.Hash
		}
		hs = append(hs, batch...)
		tr = next
		if got, want := tr.root(), refRoot(hs); !bytes.Equal(got, want) {
			t.Fatalf("root of %d leaves = %x, want %x", len(hs), got, want)
		}
	}
	return hs, nodes, tr
}

func TestHashLeaf(t *testing.T) {
	for _, d := range [][]byte{nil, {1}, LeafData(LeafErasure, make([]byte, 32))} {
		if got, want := HashLeaf(d), refLeafHash(d); !bytes.Equal(got, want) {
			t.Errorf("HashLeaf(%x) = %x, want %x", d, got, want)
		}
	}
}

func TestTreeRoots(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	hs, nodes, tr := grow(t, 1000, rnd)

	// Every perfect subtree is stored, and nothing else.
	want := 0
	for level := 0; 1<<level <= len(hs); level++ {
		want += len(hs) >> level
	}
	if len(nodes) != want {
		t.Errorf("%d nodes stored for %d leaves, want %d", len(nodes), len(hs), want)
	}
	// Reloading from the stored nodes gives the same tree.
	for _, size := range []uint64{0, 1, 2, 3, 7, 8, 9, 255, 256, 999, 1000} {
		got, err := loadTree(t.Context(), nodes, size)
		if err != nil {
			t.Fatalf("loadTree(%d): %v", size, err)
		}
		if r, want := got.root(), refRoot(hs[:size]); !bytes.Equal(r, want) {
			t.Errorf("root of reloaded tree of size %d = %x, want %x", size, r, want)
		}
	}
	if _, err := loadTree(t.Context(), nodes, 1001); !errors.Is(err, ErrNotFound) {
		t.Errorf("loadTree(1001) of a 1000-leaf store = %v, want ErrNotFound", err)
	}
	if tr.size() != 1000 {
		t.Errorf("size = %d", tr.size())
	}
}

func TestInclusionProofs(t *testing.T) {
	ctx := t.Context()
	hs, nodes, _ := grow(t, 300, rand.New(rand.NewPCG(3, 4)))
	check := func(index, size int) {
		t.Helper()
		got, err := inclusionProof(ctx, nodes, uint64(index), uint64(size))
		if err != nil {
			t.Fatalf("inclusionProof(%d, %d): %v", index, size, err)
		}
		if diff := cmp.Diff(refPath(index, hs[:size]), got); diff != "" {
			t.Fatalf("inclusionProof(%d, %d) (-want +got):\n%s", index, size, diff)
		}
		if err := proof.VerifyInclusion(hasher, uint64(index), uint64(size), hs[index], got, refRoot(hs[:size])); err != nil {
			t.Fatalf("VerifyInclusion(%d, %d): %v", index, size, err)
		}
	}
	for size := 1; size <= 64; size++ {
		for index := range size {
			check(index, size)
		}
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	for range 200 {
		size := 1 + rnd.IntN(len(hs))
		check(rnd.IntN(size), size)
	}
	if _, err := inclusionProof(ctx, nodes, 5, 5); err == nil {
		t.Error("inclusionProof(5, 5) = nil error")
	}
}

func TestConsistencyProofs(t *testing.T) {
	ctx := t.Context()
	hs, nodes, _ := grow(t, 300, rand.New(rand.NewPCG(7, 8)))
	check := func(m, n int) {
		t.Helper()
		got, err := consistencyProof(ctx, nodes, uint64(m), uint64(n))
		if err != nil {
			t.Fatalf("consistencyProof(%d, %d): %v", m, n, err)
		}
		if diff := cmp.Diff(refConsistency(m, hs[:n]), got); diff != "" {
			t.Fatalf("consistencyProof(%d, %d) (-want +got):\n%s", m, n, diff)
		}
		if err := proof.VerifyConsistency(hasher, uint64(m), uint64(n), got, refRoot(hs[:m]), refRoot(hs[:n])); err != nil {
			t.Fatalf("VerifyConsistency(%d, %d): %v", m, n, err)
		}
	}
	for n := 1; n <= 64; n++ {
		for m := 1; m <= n; m++ {
			check(m, n)
		}
	}
	rnd := rand.New(rand.NewPCG(9, 10))
	for range 200 {
		n := 1 + rnd.IntN(len(hs))
		check(1+rnd.IntN(n), n)
	}
	if _, err := consistencyProof(ctx, nodes, 6, 5); err == nil {
		t.Error("consistencyProof(6, 5) = nil error")
	}
}
