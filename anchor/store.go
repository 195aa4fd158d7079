package anchor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/transparency-dev/merkle/compact"
)

// Sentinel errors every Store returns (wrapped is fine; callers use errors.Is).
var (
	// ErrNotFound means a node, checkpoint, anchor or leaf does not exist.
	ErrNotFound = errors.New("anchor: not found")
	// ErrConflict means a write does not follow the state the Store holds:
	// an Append from a stale size, or an anchor that breaks the chain of
	// anchors. For a Log it means another writer touched its Store.
	ErrConflict = errors.New("anchor: conflict")
)

// Status is where an anchor, or the receipt of a leaf, stands.
type Status string

// Statuses. An anchor is submitted, anchored, then confirmed; a reorg can
// send it back to submitted. A receipt is pending until an anchor covering
// its leaf is mined, then takes that anchor's status.
const (
	// StatusPending: no anchor on chain covers the leaf yet (receipts only).
	StatusPending Status = "pending"
	// StatusSubmitted: the anchor's transaction was sent but is not, or no
	// longer, recorded by the contract (anchors only).
	StatusSubmitted Status = "submitted"
	// StatusAnchored: the contract records the anchor, with fewer than
	// Config.Confirmations confirmations.
	StatusAnchored Status = "anchored"
	// StatusConfirmed: the anchor has Config.Confirmations confirmations or
	// more; the Log stops following it.
	StatusConfirmed Status = "confirmed"
)

// Checkpoint is a tree head the log committed to: the root of its first Size
// leaves. The Log writes one per batch and anchors each, in order: the k-th
// checkpoint is anchored at sequence number k.
type Checkpoint struct {
	Size uint64    `json:"treeSize"`
	Root Hex       `json:"root"`
	Time time.Time `json:"time"` // when it was written, UTC
	// Note is the checkpoint as a C2SP signed note (checkpoint.go): origin,
	// Size and Root, signed by the log's key. The Log signs it when it
	// writes the checkpoint, and a Store keeps it as given; it is empty for
	// a log without a key, and for checkpoints written before the log
	// signed them until the Log serves them (Log.Checkpoints, Log.Receipt).
	Note string `json:"note,omitempty"`
	// Anchor is the anchor of this checkpoint, if it has one. Log.Checkpoints
	// fills it; a Store neither reads nor fills it.
	Anchor *AnchorRecord `json:"anchor,omitempty"`
}

// AnchorRecord is the log's record of one anchor: which checkpoint it
// anchors, on which chain and contract, by which transaction, and where that
// transaction was mined. Seq, TreeSize, Root, PrevRoot, ChainID and Contract
// never change once recorded; the rest follows the chain.
type AnchorRecord struct {
	Seq      uint64 `json:"seq"`
	TreeSize uint64 `json:"treeSize"`
	Root     Hex    `json:"root"`
	PrevRoot Hex    `json:"prevRoot"` // Root of anchor Seq-1; 32 zero bytes for Seq 1
	ChainID  uint64 `json:"chainId"`
	Contract string `json:"contract"`
	Status   Status `json:"status"`
	TxHash   Hex    `json:"txHash"` // the transaction sent last, or the one the contract recorded
	// Submitted is when TxHash was sent; zero when the anchor must be sent
	// again (after a reorg dropped it) or was adopted from the chain.
	Submitted     time.Time `json:"submitted,omitzero"`
	BlockNumber   uint64    `json:"blockNumber,omitempty"` // zero while submitted
	BlockHash     Hex       `json:"blockHash,omitempty"`
	BlockTime     time.Time `json:"blockTime,omitzero"`
	Confirmations uint64    `json:"confirmations,omitempty"` // as last seen
}

// Store persists the state of a Log: the perfect-subtree hashes of its tree,
// its checkpoints and its anchors. anchor/sqlite implements it; anchortest
// is the conformance suite every implementation MUST pass.
//
// A Store MUST make every write atomic and durable before it returns nil,
// MUST be safe for concurrent use (one writer, the Log's Run, and any number
// of readers), and reads MUST see only committed writes. A Store keeps
// hashes, sizes and chain positions only: there is no PHI to log, and it
// MUST NOT log more than that.
type Store interface {
	// Append stores nodes and checkpoint cp in one transaction. from is the
	// size of the last checkpoint as the caller knows it (0 when there is
	// none); Append MUST return ErrConflict, storing nothing, if it is not
	// the size of the Store's last checkpoint, if cp.Size <= from, or if a
	// node ID is already stored. Nodes are the perfect subtrees completed by
	// the leaves [from, cp.Size). cp.Note is stored as it is (empty for
	// none) and read back unchanged by Checkpoints and LastCheckpoint.
	Append(ctx context.Context, from uint64, nodes []Node, cp Checkpoint) error
	// Nodes returns the hashes of the nodes ids, in order, or ErrNotFound if
	// one is not stored.
	Nodes(ctx context.Context, ids []compact.NodeID) ([][]byte, error)
	// Checkpoints returns up to limit checkpoints with Size > after, by
	// Size; none if limit <= 0.
	Checkpoints(ctx context.Context, after uint64, limit int) ([]Checkpoint, error)
	// LastCheckpoint returns the largest checkpoint, or ErrNotFound.
	LastCheckpoint(ctx context.Context) (Checkpoint, error)
	// PutAnchor records anchor a, or updates the record at a.Seq. It MUST
	// return ErrConflict, changing nothing, if a.TreeSize is not a stored
	// checkpoint or a.Root is not that checkpoint's root; if a.Seq > 1 and
	// there is no anchor at a.Seq-1, or a.PrevRoot is not its root, or
	// a.TreeSize is not larger than its size; if a.Seq is 1 and a.PrevRoot
	// is not 32 zero bytes; if another anchor has a.TreeSize; or if a.Seq is
	// recorded with another TreeSize, Root, PrevRoot, ChainID or Contract.
	PutAnchor(ctx context.Context, a AnchorRecord) error
	// Anchors returns up to limit anchors with Seq > after, by Seq; none if
	// limit <= 0.
	Anchors(ctx context.Context, after uint64, limit int) ([]AnchorRecord, error)
	// LastAnchor returns the anchor with the largest Seq, or ErrNotFound.
	LastAnchor(ctx context.Context) (AnchorRecord, error)
	// Unconfirmed returns every anchor whose Status is not StatusConfirmed,
	// by Seq.
	Unconfirmed(ctx context.Context) ([]AnchorRecord, error)
	// AnchorCovering returns the anchor with the smallest TreeSize > index,
	// the first that covers leaf index, or ErrNotFound.
	AnchorCovering(ctx context.Context, index uint64) (AnchorRecord, error)
	// Close releases the Store.
	Close() error
}

// The checks below are what every Store's PutAnchor and Append share;
// backends call them with the rows they read inside their transaction.

// CheckAnchorRecord checks what PutAnchor can check of a without the Store:
// a known status, Seq from 1, 32-byte root, previous root and transaction
// hash, and numbers that fit a signed 64-bit column.
func CheckAnchorRecord(a AnchorRecord) error {
	switch a.Status {
	case StatusSubmitted, StatusAnchored, StatusConfirmed:
	default:
		return fmt.Errorf("status %q", a.Status)
	}
	switch {
	case a.Seq == 0:
		return errors.New("seq is 0")
	case len(a.Root) != sha256.Size || len(a.PrevRoot) != sha256.Size || len(a.TxHash) != sha256.Size:
		return errors.New("root, previous root and transaction hash must be 32 bytes")
	}
	for _, v := range []struct {
		what string
		n    uint64
	}{{"seq", a.Seq}, {"tree size", a.TreeSize}, {"chain id", a.ChainID}, {"block number", a.BlockNumber}, {"confirmations", a.Confirmations}} {
		if err := FitsInt64(v.what, v.n); err != nil {
			return err
		}
	}
	return nil
}

// CheckAnchorUpdate returns ErrConflict if a, an update of the recorded
// anchor old (same Seq), changes what never changes: its checkpoint, roots,
// chain or contract.
func CheckAnchorUpdate(old, a AnchorRecord) error {
	if old.TreeSize != a.TreeSize || !bytes.Equal(old.Root, a.Root) || !bytes.Equal(old.PrevRoot, a.PrevRoot) ||
		old.ChainID != a.ChainID || old.Contract != a.Contract {
		return fmt.Errorf("%w: anchor %d is recorded for another checkpoint or chain", ErrConflict, a.Seq)
	}
	return nil
}

// CheckAnchorNext returns ErrConflict unless a, a new anchor, follows the
// recorded anchor prev (Seq a.Seq-1): it names prev's root and covers more
// leaves. For the first anchor prev is nil and a must name 32 zero bytes.
func CheckAnchorNext(prev *AnchorRecord, a AnchorRecord) error {
	if a.Seq == 1 {
		if !bytes.Equal(a.PrevRoot, make([]byte, sha256.Size)) {
			return fmt.Errorf("%w: anchor 1 names a previous root", ErrConflict)
		}
		return nil
	}
	switch {
	case prev == nil:
		return fmt.Errorf("%w: no anchor %d before anchor %d", ErrConflict, a.Seq-1, a.Seq)
	case !bytes.Equal(prev.Root, a.PrevRoot):
		return fmt.Errorf("%w: previous root is not that of anchor %d", ErrConflict, prev.Seq)
	case a.TreeSize <= prev.TreeSize:
		return fmt.Errorf("%w: tree size %d does not grow anchor %d's %d", ErrConflict, a.TreeSize, prev.Seq, prev.TreeSize)
	}
	return nil
}

// FitsInt64 reports an error if n does not fit a signed 64-bit column, as
// SQL databases store integers.
func FitsInt64(what string, n uint64) error {
	if n > math.MaxInt64 {
		return fmt.Errorf("%s %d is too large", what, n)
	}
	return nil
}
