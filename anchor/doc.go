// Package anchor is fhiranchor's append-only, anchored Merkle log.
//
// Leaves are typed and domain-separated (leaf.go): the type byte followed by
// a salted commitment, queued in the vault in the same transaction as what
// they commit to. The vault gives each leaf its position (Seq - 1) when it is
// acknowledged, so a crash, a chain outage or a reorg can delay a leaf but
// never move it or log it twice.
//
// A Log (log.go) reads those leaves through a LeafSource into an RFC 6962
// tree (tree.go, on transparency-dev/merkle), writes a Checkpoint per batch
// (batch.go: MaxLeaves or MaxDelay), and anchors each checkpoint on a Chain
// (chain.go; anchor/eth implements it) as Anchor{Seq, Root, TreeSize,
// PrevRoot}: the k-th checkpoint at sequence number k, each naming the root
// before it. Its state lives in a Store (store.go; anchor/sqlite implements
// it, anchortest checks implementations), which keeps every perfect-subtree
// hash so that inclusion and consistency proofs read O(log n) nodes.
//
// With a signing key (Config.SigningKey) the Log signs each checkpoint when
// it writes it, as a C2SP tlog-checkpoint in a signed note (checkpoint.go,
// on golang.org/x/mod/sumdb/note), and the Store keeps the note with it.
//
// A Receipt (receipt.go) carries a leaf's audit path to an anchored root,
// where that root is anchored and the signed checkpoint of its tree;
// VerifyReceipt checks the proof offline, VerifyReceiptSigned checks it
// against the log's verifier key too, and VerifyContent checks the
// commitment against the content and its salt.
// Nothing here holds or logs PHI: only commitments, hashes, sizes and chain
// positions.
package anchor
