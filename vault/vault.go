package vault

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors every Store returns (wrapped is fine; callers use errors.Is).
var (
	// ErrNotFound means the resource, version, key or response does not exist.
	ErrNotFound = errors.New("vault: not found")
	// ErrConflict means a write collided with existing state, such as a
	// version that is already stored. The caller may retry the transaction.
	ErrConflict = errors.New("vault: conflict")
	// ErrErased means the version's content was crypto-shredded: its
	// ciphertext, salt and data key are gone; its commitment and leaf stay.
	ErrErased = errors.New("vault: content erased")
)

// Record is one stored version of a resource as a Store holds it: the body is
// already sealed, so a Store never sees PHI in clear.
type Record struct {
	Type        string    // FHIR resource type, e.g. "Patient"
	ID          string    // logical id
	Version     int64     // versionId, 1 for the first version
	LastUpdated time.Time // meta.lastUpdated; a Store keeps microseconds (truncating finer digits) and returns UTC
	Deleted     bool      // a deletion tombstone: Ciphertext holds the sealed tombstone body
	Erased      bool      // crypto-shredded: Ciphertext and Salt are empty, the data key is gone
	KeyID       string    // the data key that sealed Ciphertext (see Sealed)
	Ciphertext  []byte    // nonce || AES-256-GCM(canonical JSON)
	Salt        []byte    // 32 random bytes of the commitment; never leaves the vault
	Commitment  []byte    // the salted commitment of this version (32 bytes)
	// Tokens are blind-index entries (HMACs, never clear values) by which
	// conditional interactions find this resource. They replace the tokens of
	// the previous version; a tombstone carries none (a Store ignores any).
	// A Store keeps the tokens of current versions only, for Find; reads
	// return Records without Tokens.
	Tokens [][]byte
	// Leaf is the typed log leaf for this version, queued for anchoring in the
	// same transaction that stores the version. Put ignores Leaf.Seq; reads
	// return the leaf with the Seq the Store assigned.
	Leaf Leaf
}

// Leaf is a typed log leaf waiting to be anchored. The Store does not
// interpret it; package anchor defines the types and the encoding.
type Leaf struct {
	Seq  int64  // assigned by the Store on insert, strictly increasing from 1
	Type uint8  // anchor.LeafType
	Data []byte // the leaf bytes as anchor encodes them
	Ref  string // opaque reference, e.g. "Patient/123/_history/1"
}

// Stats counts what a Store holds. Tests use it to prove that rejected input
// changed nothing; operators see it on /readyz.
type Stats struct {
	Versions  int64 // resource versions, tombstones included
	Leaves    int64 // leaves queued or anchored
	DataKeys  int64
	Responses int64 // idempotent responses remembered
}

// Store is the storage contract of the vault. Implementations MUST make each
// Update atomic and durable before it returns nil (an acknowledged write
// survives a crash), MUST serialise Updates that touch the same resource, and
// MUST be safe for concurrent use. Reads outside Update see only committed
// state. A Store never logs record contents.
type Store interface {
	// Update runs fn in one transaction and commits it if fn returns nil. If
	// fn returns an error, nothing fn did is kept and that error is returned.
	Update(ctx context.Context, fn func(Tx) error) error
	// Current returns the latest version of a resource, tombstones included.
	Current(ctx context.Context, typ, id string) (Record, error)
	// Version returns one version of a resource.
	Version(ctx context.Context, typ, id string, version int64) (Record, error)
	// History returns every version of a resource, newest first, or
	// ErrNotFound if it has none.
	History(ctx context.Context, typ, id string) ([]Record, error)
	// DataKey returns a wrapped data key.
	DataKey(ctx context.Context, keyID string) ([]byte, error)
	// Versions returns up to limit versions of any resource whose leaf Seq
	// is > after, in Seq order, without Tokens: what an audit walks.
	Versions(ctx context.Context, after int64, limit int) ([]Record, error)
	// Leaves returns up to limit queued leaves with Seq > after, in Seq order;
	// none if limit <= 0.
	Leaves(ctx context.Context, after int64, limit int) ([]Leaf, error)
	// Stats counts what the store holds.
	Stats(ctx context.Context) (Stats, error)
	// Close releases the store.
	Close() error
}

// Tx is the view of one Store transaction.
type Tx interface {
	// Current returns the latest version of a resource, tombstones included,
	// or ErrNotFound.
	Current(ctx context.Context, typ, id string) (Record, error)
	// Find returns the ids of the live (not deleted) resources of type typ
	// whose current version carries token, in no particular order.
	Find(ctx context.Context, typ string, token []byte) ([]string, error)
	// Put stores a new version and its leaf. It returns ErrConflict if that
	// version of the resource is already stored. A version newer than the
	// current one becomes current and replaces its tokens. After Put returns
	// an error the caller SHOULD abandon the transaction (return an error
	// from fn): some backends cannot continue a transaction after a failed
	// statement.
	Put(ctx context.Context, r Record) error
	// DataKey returns a wrapped data key or ErrNotFound.
	DataKey(ctx context.Context, keyID string) ([]byte, error)
	// PutDataKey stores a wrapped data key; ErrConflict if keyID exists.
	PutDataKey(ctx context.Context, keyID string, wrapped []byte) error
	// Response returns a remembered response body for an idempotency key, or
	// ErrNotFound.
	Response(ctx context.Context, key []byte) ([]byte, error)
	// PutResponse remembers the response body for an idempotency key;
	// ErrConflict if the key already has one, so that of two concurrent
	// requests with one key only the first is applied.
	PutResponse(ctx context.Context, key, body []byte) error
	// AddLeaf queues a leaf that stands for no resource version (an erasure;
	// later consent events and decisions) and returns its Seq.
	AddLeaf(ctx context.Context, l Leaf) (int64, error)
	// Erase crypto-shreds everything sealed under a data key: the wrapped
	// key, and the ciphertext, salt and tokens of every version it sealed,
	// are destroyed (overwritten, not merely unlinked); the versions, their
	// commitments and leaves stay, marked Erased. It returns how many
	// versions it erased, or ErrNotFound when the key does not exist.
	Erase(ctx context.Context, keyID string) (int64, error)
}
