package anchor

import (
	"context"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// hasher is the log's RFC 6962 hasher: SHA-256, 0x00 before a leaf, 0x01
// before two children.
var hasher = rfc6962.DefaultHasher

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

// HashLeaf returns the hash of leaf bytes in the log's tree, the RFC 6962
// leaf hash SHA-256(0x00 || data). For a fhiranchor leaf, data is
// LeafData(type, commitment).
func HashLeaf(data []byte) []byte {
	return hasher.HashLeaf(data)
}

// Node is the hash of a perfect subtree of the log's tree: a leaf hash at
// level 0, or the hash of 2^level leaves. The hash of a perfect subtree never
// changes as the log grows, so a Store keeps each one once and proofs read
// them instead of rehashing the log.
type Node struct {
	ID   compact.NodeID
	Hash []byte
}

// nodeReader reads stored node hashes; Store is one.
type nodeReader interface {
	Nodes(ctx context.Context, ids []compact.NodeID) ([][]byte, error)
}

// tree is the right edge of the log's tree: the compact range [0, size),
// enough to append leaves and compute the root without reading any other
// node.
type tree struct {
	rng *compact.Range
}

// loadTree reads the compact range of a tree of the given size.
func loadTree(ctx context.Context, nr nodeReader, size uint64) (*tree, error) {
	ids := compact.RangeNodes(0, size, nil)
	hashes := [][]byte{}
	if len(ids) > 0 {
		var err error
		if hashes, err = nr.Nodes(ctx, ids); err != nil {
			return nil, fmt.Errorf("read tree of size %d: %w", size, err)
		}
	}
	rng, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("read tree of size %d: %w", size, err)
	}
	return &tree{rng: rng}, nil
}

func (t *tree) size() uint64 { return t.rng.End() }

// root returns the RFC 6962 root hash; that of the empty tree is SHA-256("").
func (t *tree) root() []byte {
	if t.size() == 0 {
		return hasher.EmptyRoot()
	}
	root, err := t.rng.GetRootHash(nil)
	if err != nil { // only when the range does not start at 0, which loadTree rules out
		panic(fmt.Sprintf("anchor: root of compact range: %v", err))
	}
	return root
}

// appended returns the tree grown by leaf hashes and the nodes the growth
// completed (the leaves and every perfect subtree they close), leaving t
// unchanged so that a failed write of the nodes changes nothing.
func (t *tree) appended(leafHashes [][]byte) (*tree, []Node, error) {
	rng, err := rangeFactory.NewRange(0, t.size(), slices.Clone(t.rng.Hashes()))
	if err != nil {
		return nil, nil, fmt.Errorf("copy tree: %w", err)
	}
	nodes := make([]Node, 0, 2*len(leafHashes))
	visit := func(id compact.NodeID, hash []byte) {
		nodes = append(nodes, Node{ID: id, Hash: hash})
	}
	for _, h := range leafHashes {
		if err := rng.Append(h, visit); err != nil {
			return nil, nil, fmt.Errorf("append leaf %d: %w", rng.End(), err)
		}
	}
	return &tree{rng: rng}, nodes, nil
}

// inclusionProof returns the RFC 6962 audit path of leaf index in the tree of
// the given size, built from stored nodes.
func inclusionProof(ctx context.Context, nr nodeReader, index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return rehash(ctx, nr, nodes)
}

// consistencyProof returns the RFC 6962 consistency proof between two tree
// sizes, built from stored nodes.
func consistencyProof(ctx context.Context, nr nodeReader, size1, size2 uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return rehash(ctx, nr, nodes)
}

func rehash(ctx context.Context, nr nodeReader, nodes proof.Nodes) ([][]byte, error) {
	if len(nodes.IDs) == 0 {
		return [][]byte{}, nil
	}
	hashes, err := nr.Nodes(ctx, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}
