package anchor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// Sentinel errors of VerifyReceipt and VerifyContent, one per way a receipt
// can fail.
var (
	// ErrMalformedReceipt means a receipt lacks a field or has one of the
	// wrong length or value: it cannot be checked at all.
	ErrMalformedReceipt = errors.New("anchor: malformed receipt")
	// ErrLeafTypeMismatch means a receipt's leaf type name and number
	// disagree.
	ErrLeafTypeMismatch = errors.New("anchor: leaf type name and number disagree")
	// ErrInclusion means the audit path does not lead from the leaf to the
	// root: the leaf (type or commitment), its index, the tree size, the
	// path or the root was altered.
	ErrInclusion = errors.New("anchor: inclusion proof does not verify")
	// ErrNotAnchored means the receipt is pending: no anchor covers its
	// leaf yet, so there is no proof to check. Fetch the receipt again later.
	ErrNotAnchored = errors.New("anchor: receipt not anchored yet")
	// ErrContentMismatch means the content and salt given do not produce the
	// receipt's commitment.
	ErrContentMismatch = errors.New("anchor: content does not match the commitment")
)

// Hex is a byte string written as lowercase hexadecimal in JSON and text.
type Hex []byte

// String returns h as lowercase hex.
func (h Hex) String() string { return hex.EncodeToString(h) }

// MarshalText writes h as lowercase hex.
func (h Hex) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(out, h)
	return out, nil
}

// UnmarshalText reads hex digits (either case, no 0x prefix).
func (h *Hex) UnmarshalText(text []byte) error {
	out := make([]byte, hex.DecodedLen(len(text)))
	n, err := hex.Decode(out, text)
	if err != nil {
		return fmt.Errorf("decode hex: %w", err)
	}
	*h = out[:n]
	return nil
}

// Receipt proves that a leaf is in the log and, once anchored, that a chain
// records the root of a tree containing it. It is the file `fhiranchor
// verify` reads and what GET /v1/receipts returns; it holds hashes, sizes
// and chain positions only, never PHI.
//
// A pending receipt has no TreeSize, Root, AuditPath or Anchor. An anchored
// or confirmed one proves inclusion in the tree of the first anchored
// checkpoint that covers the leaf, which never changes for a leaf: later
// anchors extend that tree, and Log.Consistency proves they do.
type Receipt struct {
	LeafIndex      uint64 `json:"leafIndex"`
	LeafType       string `json:"leafType"`       // LeafType.String(), e.g. "resource-version"
	LeafTypeNumber uint8  `json:"leafTypeNumber"` // the type byte of the leaf
	Commitment     Hex    `json:"commitment"`
	Status         Status `json:"status"` // pending, anchored or confirmed
	// Erased says the content behind the commitment was crypto-shredded: the
	// receipt still proves the leaf was logged, but no one can show what it
	// committed to. The gateway sets it; the Log does not know.
	Erased    bool           `json:"erased,omitempty"`
	TreeSize  uint64         `json:"treeSize,omitempty"`
	Root      Hex            `json:"root,omitempty"`
	AuditPath []Hex          `json:"auditPath,omitzero"` // [] for a tree of one leaf
	Anchor    *ReceiptAnchor `json:"anchor,omitempty"`
	// Checkpoint is the signed checkpoint of TreeSize (a C2SP signed note,
	// checkpoint.go): the log's signature on TreeSize and Root, so that
	// VerifyReceiptSigned checks the receipt against the log's published
	// key with no chain and no trust in whoever handed the receipt out.
	// Empty while pending, or if the log has no signing key.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// ReceiptAnchor says where the root of a receipt is anchored.
type ReceiptAnchor struct {
	Seq         uint64    `json:"seq"`
	ChainID     uint64    `json:"chainId"`
	Contract    string    `json:"contract"` // 0x-prefixed, EIP-55 checksummed
	TxHash      Hex       `json:"txHash"`
	BlockNumber uint64    `json:"blockNumber"`
	BlockHash   Hex       `json:"blockHash"`
	BlockTime   time.Time `json:"blockTime"`
}

// leafType returns the receipt's leaf type, checking that its name and
// number agree.
func (r Receipt) leafType() (LeafType, error) {
	t := LeafType(r.LeafTypeNumber)
	if t.String() != r.LeafType {
		return 0, fmt.Errorf("%w: %q is not type %d", ErrLeafTypeMismatch, r.LeafType, r.LeafTypeNumber)
	}
	return t, nil
}

// VerifyReceipt checks a receipt offline: its leaf type name and number
// agree, and the RFC 6962 audit path leads from the leaf
// LeafData(type, commitment) at LeafIndex to Root in a tree of TreeSize
// leaves. It returns nil for a verified anchored or confirmed receipt,
// ErrNotAnchored for a pending one, and otherwise an error wrapping
// ErrMalformedReceipt, ErrLeafTypeMismatch or ErrInclusion.
//
// It does not ask the chain whether Root is anchored at Anchor.Seq; that
// takes an RPC endpoint (`fhiranchor verify --rpc`), which MUST compare both
// Root and TreeSize with the contract's anchor: an inclusion proof binds the
// root but not always the tree size (the audit path of leaf 6 has the same
// shape in every tree of 9 to 16 leaves). It does not check the
// content behind the commitment; VerifyContent does, for whoever holds the
// content and its salt.
func VerifyReceipt(r Receipt) error {
	typ, err := r.leafType()
	if err != nil {
		return err
	}
	if len(r.Commitment) != sha256.Size {
		return fmt.Errorf("%w: commitment is %d bytes, want %d", ErrMalformedReceipt, len(r.Commitment), sha256.Size)
	}
	switch r.Status {
	case StatusPending:
		return ErrNotAnchored
	case StatusAnchored, StatusConfirmed:
	default:
		return fmt.Errorf("%w: status %q", ErrMalformedReceipt, r.Status)
	}
	switch {
	case r.Anchor == nil:
		return fmt.Errorf("%w: %s receipt without anchor", ErrMalformedReceipt, r.Status)
	case r.LeafIndex >= r.TreeSize:
		return fmt.Errorf("%w: leaf index %d not in a tree of size %d", ErrMalformedReceipt, r.LeafIndex, r.TreeSize)
	case len(r.Root) != sha256.Size:
		return fmt.Errorf("%w: root is %d bytes, want %d", ErrMalformedReceipt, len(r.Root), sha256.Size)
	}
	path := make([][]byte, len(r.AuditPath))
	for i, h := range r.AuditPath {
		if len(h) != sha256.Size {
			return fmt.Errorf("%w: audit path hash %d is %d bytes, want %d", ErrMalformedReceipt, i, len(h), sha256.Size)
		}
		path[i] = h
	}
	leaf := HashLeaf(LeafData(typ, r.Commitment))
	if err := proof.VerifyInclusion(hasher, r.LeafIndex, r.TreeSize, leaf, path, r.Root); err != nil {
		return fmt.Errorf("%w: leaf %d in tree of size %d: %w", ErrInclusion, r.LeafIndex, r.TreeSize, err)
	}
	return nil
}

// VerifyContent checks that canonical bytes and their salt produce the
// receipt's commitment: Commit(type, salt, canonical). It returns an error
// wrapping ErrContentMismatch if they do not (a salt must be SaltSize
// bytes), ErrLeafTypeMismatch or ErrMalformedReceipt. Pair it with
// VerifyReceipt, which checks the commitment is in the log.
func VerifyContent(r Receipt, salt, canonical []byte) error {
	typ, err := r.leafType()
	if err != nil {
		return err
	}
	if len(r.Commitment) != sha256.Size {
		return fmt.Errorf("%w: commitment is %d bytes, want %d", ErrMalformedReceipt, len(r.Commitment), sha256.Size)
	}
	if len(salt) != SaltSize {
		return fmt.Errorf("%w: salt is %d bytes, want %d", ErrContentMismatch, len(salt), SaltSize)
	}
	if !bytes.Equal(Commit(typ, salt, canonical), r.Commitment) {
		return ErrContentMismatch
	}
	return nil
}

// VerifyReceiptSigned checks a receipt offline against the log's key: the
// receipt's signed checkpoint verifies with one of verifiers (the log's
// published verifier keys, several across a key rotation), commits to the
// receipt's TreeSize and Root, and VerifyReceipt's checks hold, the
// inclusion proof among them. Then the root is one the log signed, not
// merely one the server sent, and no chain access is needed.
//
// It returns ErrNotAnchored for a pending receipt, and otherwise an error
// wrapping ErrUnsignedReceipt (no checkpoint), ErrMalformedCheckpoint,
// ErrCheckpointSignature (altered, or signed by no key given),
// ErrCheckpointMismatch (the receipt's tree size or root is not the
// signed one), or one of VerifyReceipt's.
func VerifyReceiptSigned(r Receipt, verifiers ...note.Verifier) error {
	if r.Status == StatusPending {
		return VerifyReceipt(r)
	}
	if r.Checkpoint == "" {
		return ErrUnsignedReceipt
	}
	cp, err := VerifyCheckpoint([]byte(r.Checkpoint), verifiers...)
	if err != nil {
		return err
	}
	switch {
	case cp.Size != r.TreeSize:
		return fmt.Errorf("%w: the checkpoint signs tree size %d, the receipt says %d", ErrCheckpointMismatch, cp.Size, r.TreeSize)
	case !bytes.Equal(cp.Root, r.Root):
		return fmt.Errorf("%w: the checkpoint signs root %s, the receipt says %s", ErrCheckpointMismatch, cp.Root, r.Root)
	}
	return VerifyReceipt(r)
}
