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
	// ErrCorrupt means stored data failed its authentication: it was
	// altered, moved to another row, or written under another master key.
	// Callers MUST NOT use it.
	ErrCorrupt = errors.New("vault: stored data does not authenticate")
	// ErrUnavailable means the store could not be reached or is shutting
	// down or too busy (connection refused or lost, the database restarting,
	// no connection slot): nothing was committed and the same call may
	// succeed later. Stores wrap their driver's error with it.
	ErrUnavailable = errors.New("vault: store unavailable")
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
	// Deid is the version's de-identified copy, sealed like Ciphertext under
	// the same data key (so erasure shreds it too), or empty when it has none.
	// Erase empties it.
	Deid []byte
	// Client is the OAuth client id that wrote this version, for its
	// Provenance: an opaque id, never PHI, kept beside the version and not
	// committed to (the commitment stays over the canonical bytes alone).
	// "" for versions stored before it was kept, and for a Store's own
	// writes.
	Client string
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
// interpret it; package anchor defines the types and the encoding. A leaf
// that stands for no resource version may carry the Record it commits to,
// which the Store keeps with it and lists by Subject, Actor and Type.
type Leaf struct {
	Seq  int64  // assigned by the Store on insert, strictly increasing from 1
	Type uint8  // anchor.LeafType
	Data []byte // the leaf bytes as anchor encodes them
	Ref  string // opaque reference, e.g. "Patient/123/_history/1"
	// Record is the content a leaf that stands for no resource version commits to
	// (a consent event, a policy activation, an access decision): JSON of opaque
	// ids only, never PHI. Empty for resource-version leaves.
	Record []byte
	// Salt is the commitment salt of Record (32 bytes), or empty.
	Salt []byte
	// Subject is the patient the record is about ("Patient/<id>"), or "".
	Subject string
	// Actor is the client id whose action the record describes, or "".
	Actor string
	// Time is when the record was made; a Store keeps microseconds and returns UTC. Zero for version leaves.
	Time time.Time
	// Packed is PackRecord(Record) when PackLeaf made it ahead, so that
	// the Store, which otherwise packs the record as it adds the leaf,
	// does not do it in the writer's critical section; nil otherwise.
	// Stores never return it.
	Packed []byte
}

// LeafJournal is a Store that can make leaves durable ahead of the
// transaction that adds them to the log: vault/sqlite's leaf journal, an
// append and an fdatasync where a transaction writes a page per index.
type LeafJournal interface {
	// JournalLeaves makes ls durable and returns. The Store adds them to
	// its leaves, in order, before any read of leaves and before any
	// Update that begins after it returns; their Seqs are assigned then.
	// It returns false, having done nothing, when it cannot journal: add
	// them in an Update instead.
	JournalLeaves(ctx context.Context, ls []Leaf) (bool, error)
}

// LeafFilter selects leaves that carry a Record.
type LeafFilter struct {
	Type    uint8  // leaf type; 0 means any
	Subject string // "" means any
	Actor   string // "" means any
	Before  int64  // only Seq < Before; 0 means no bound (page backwards with the last Seq seen)
	Limit   int    // at most this many; <= 0 means none
}

// ChangeFilter selects stored versions for a history listing (FHIR _history
// at type or system level).
type ChangeFilter struct {
	Type   string    // resource type; "" means every type
	Since  time.Time // only versions with LastUpdated >= Since; zero means no bound
	Before int64     // only leaf Seq < Before; 0 means no bound (page backwards with the last Seq seen)
	Limit  int       // at most this many; <= 0 means none
}

// IndexEntry is one posting of the blind index: the current live version
// whose leaf is Seq carries Token.
type IndexEntry struct {
	Token []byte
	Seq   int64
}

// TokenSet is what the blind index holds for one current live version: its
// distinct tokens, sorted, keyed by the version's leaf Seq. A Store keeps
// the set beside the postings (IndexEntry) it made them from, so that the
// postings of a version can be removed without an index by resource, and
// an audit can compare the set with the tokens it derives again and the
// postings with the sets.
type TokenSet struct {
	Seq    int64
	Tokens [][]byte
	Bad    bool // the stored row does not decode (a damaged index): Tokens is nil
}

// Response is one remembered idempotent response, as stored.
type Response struct {
	Key     []byte
	Body    []byte // as the caller stored it (Sealed seals it)
	Created time.Time
}

// WrappedKey is one stored data key, wrapped under the master key.
type WrappedKey struct {
	ID      string
	Wrapped []byte
}

// Policy is one stored version of a policy bundle.
type Policy struct {
	Version  int64     // assigned by PutPolicy: 1, 2, 3...
	Revision string    // the bundle's digest as package policy computes it (hex)
	Bundle   []byte    // the bundle's files, encoded by the caller; opaque to the Store
	Created  time.Time // microseconds, UTC
	Author   string    // client id that stored it
}

// Stats counts what a Store holds. Tests use it to prove that rejected input
// changed nothing; operators see it on /readyz.
type Stats struct {
	Versions  int64 // resource versions, tombstones included
	Leaves    int64 // leaves queued or anchored
	DataKeys  int64
	Responses int64 // idempotent responses remembered
	Policies  int64 // policy bundle versions
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
	// Currents is Current of each of ids (of type typ) in one query, or in
	// a few: what a search reads of its candidates. Ids without a version
	// are left out; the order is the backend's.
	Currents(ctx context.Context, typ string, ids []string) ([]Record, error)
	// IDs returns up to limit ids, ascending, of the resources of type typ
	// that have a version stored, live, deleted or erased alike: the
	// candidates of a search no index key narrows, which it reads and
	// matches one by one anyway.
	IDs(ctx context.Context, typ string, limit int) ([]string, error)
	// Version returns one version of a resource.
	Version(ctx context.Context, typ, id string, version int64) (Record, error)
	// History returns every version of a resource, newest first, or
	// ErrNotFound if it has none.
	History(ctx context.Context, typ, id string) ([]Record, error)
	// DataKey returns a wrapped data key.
	DataKey(ctx context.Context, keyID string) ([]byte, error)
	// Versions returns up to limit versions of any resource whose leaf Seq
	// is > after, in Seq order, without Tokens: what an audit walks. It
	// MUST return every stored version row, also one whose leaf is missing
	// (Leaf then holds the row's Seq only), so that an audit sees it.
	Versions(ctx context.Context, after int64, limit int) ([]Record, error)
	// Records returns up to limit stored leaf records with Seq > after, in
	// Seq order, as stored beside their leaves: Seq, Type (as the record row
	// repeats it), Record, Salt, Subject, Actor and Time; no Data or Ref. It
	// MUST return every record row, also one whose leaf is missing: what an
	// audit walks.
	Records(ctx context.Context, after int64, limit int) ([]Leaf, error)
	// IndexEntries returns up to limit postings of the blind index after
	// the given one (the zero IndexEntry for the first page), ordered by
	// Token and Seq in the Store's order: what a reindex walks to drop
	// stray postings.
	IndexEntries(ctx context.Context, after IndexEntry, limit int) ([]IndexEntry, error)
	// WalkPostings calls fn with every posting of the blind index as of one
	// snapshot, in the Store's storage order, not IndexEntries' (a posting
	// stored twice, in a damaged table, is passed twice): what an audit
	// digests, with no row materialized per posting. token is valid only
	// during the call.
	WalkPostings(ctx context.Context, fn func(token []byte, seq int64)) error
	// TokenSets returns up to limit token sets with Seq > after, in Seq
	// order: what an audit and a reindex walk.
	TokenSets(ctx context.Context, after int64, limit int) ([]TokenSet, error)
	// IndexVersion returns the version of the rules the blind index was
	// built by, as SetIndexVersion last stored it, or "" when it was never
	// set (a new vault, or one whose index a migration emptied).
	IndexVersion(ctx context.Context) (string, error)
	// Responses returns up to limit remembered responses whose key sorts
	// after the given one (nil for the first page), in key order.
	Responses(ctx context.Context, after []byte, limit int) ([]Response, error)
	// Response is Tx.Response on committed state: the remembered response
	// body of an idempotency key, or ErrNotFound. It lets a retry be
	// answered without waiting for a write transaction.
	Response(ctx context.Context, key []byte) ([]byte, error)
	// DataKeys returns up to limit wrapped data keys whose id sorts after
	// the given one ("" for the first page), in the Store's order of ids.
	DataKeys(ctx context.Context, after string, limit int) ([]WrappedKey, error)
	// Leaves returns up to limit queued leaves with Seq > after, in Seq order;
	// none if limit <= 0. It is the anchoring path and MAY return the leaves
	// with Seq, Type, Data and Ref only; Leaf and FindLeaves return the rest.
	Leaves(ctx context.Context, after int64, limit int) ([]Leaf, error)
	// Leaf returns one leaf, with its Record, Salt, Subject, Actor and Time
	// if it carries a record, or ErrNotFound.
	Leaf(ctx context.Context, seq int64) (Leaf, error)
	// FindLeaves returns the leaves that carry a Record and match f, newest
	// first (descending Seq). Implementations MUST index the filters, so
	// that listing one patient's or one client's records does not scan
	// every leaf.
	FindLeaves(ctx context.Context, f LeafFilter) ([]Leaf, error)
	// Find is Tx.Find on committed state: the ids of the live resources of
	// type typ whose current version carries token, in no particular order.
	Find(ctx context.Context, typ string, token []byte) ([]string, error)
	// FindAny is Tx.FindAny on committed state.
	FindAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error)
	// FindAll returns the distinct ids, in ascending order, of the live
	// resources of type typ whose current version carries, for each of
	// clauses, at least one of its tokens: a conjunction of FindAny. None
	// for no clauses; a clause without tokens matches nothing.
	// Implementations SHOULD intersect the postings where they are stored,
	// driven by the clause with the fewest, so that a selective clause
	// (one patient's) narrows a common one (a code every patient has)
	// without reading all of it.
	FindAll(ctx context.Context, typ string, clauses [][][]byte) ([]string, error)
	// Sealed returns the current version of every resource whose current
	// version is sealed under the data key keyID (tombstones and erased
	// versions included), ordered by Type and ID, in one query: a patient
	// compartment's records. Implementations MUST index the key, so that
	// listing one compartment does not scan every version.
	Sealed(ctx context.Context, keyID string) ([]Record, error)
	// Changes returns the versions of any resource (of f.Type, if set) that
	// match f, newest first (descending leaf Seq), tombstones and erased
	// versions included, without Tokens. Implementations MUST index the
	// type filter, so that listing one type's history does not scan every
	// version.
	Changes(ctx context.Context, f ChangeFilter) ([]Record, error)
	// Policy returns one version of the policy bundle, or ErrNotFound.
	Policy(ctx context.Context, version int64) (Policy, error)
	// Policies returns every stored policy version, newest first, without
	// their Bundles.
	Policies(ctx context.Context) ([]Policy, error)
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
	// FindAny returns the distinct ids, in ascending order, of the live
	// resources of type typ whose current version carries any of tokens, in
	// one query; none for no tokens.
	FindAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error)
	// SetTokens replaces the blind-index tokens of the current version of a
	// resource, which must be version and live: it returns ErrConflict if
	// version is not the current version or is a tombstone or erased, and
	// ErrNotFound if the resource has no version. It is how an index is
	// rebuilt after the tokens a version carries were redefined.
	SetTokens(ctx context.Context, typ, id string, version int64, tokens [][]byte) error
	// DropTokens removes one posting the index must not hold: one whose
	// Seq is not a current live version, or whose version's token set
	// lacks the token. It returns ErrConflict, removing nothing, if the
	// posting belongs.
	DropTokens(ctx context.Context, e IndexEntry) error
	// DropTokenSet removes the token set at seq, and the postings of its
	// tokens at seq, unless seq is the current live version of its
	// resource (ErrConflict, removing nothing).
	DropTokenSet(ctx context.Context, seq int64) error
	// SetIndexVersion records the version of the rules the blind index is
	// now built by (see Store.IndexVersion).
	SetIndexVersion(ctx context.Context, version string) error
	// Put stores a new version and its leaf. It returns ErrConflict if that
	// version of the resource is already stored (a backend that sends
	// writes with the transaction's next statement may report it from that
	// call, or from Update, instead; the transaction then cannot commit). A version newer than the
	// current one becomes current and replaces its tokens: the token set of
	// the previous current version and its postings are removed, and the
	// new version's distinct tokens are stored as its set and postings. A version's leaf
	// carries no Record, Salt, Subject, Actor or Time; Put refuses one that
	// does. After Put returns
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
	// AddLeaf queues a leaf that stands for no resource version (an erasure,
	// a consent event, a policy activation, an access decision) and returns
	// its Seq. It ignores l.Seq. A leaf with a non-empty Record is stored
	// with its Record, Salt, Subject, Actor and Time, for Leaf and
	// FindLeaves; a leaf without one MUST NOT set the others.
	AddLeaf(ctx context.Context, l Leaf) (int64, error)
	// PutPolicy stores a version of the policy bundle and returns its
	// Version, the next of a gapless sequence from 1 (p.Version is ignored; a
	// rolled-back PutPolicy uses up no version). It returns ErrConflict if a
	// version with p.Revision is already stored, leaving the transaction as
	// it was.
	PutPolicy(ctx context.Context, p Policy) (int64, error)
	// Erase crypto-shreds everything sealed under a data key: the wrapped
	// key, and the ciphertext, salt and tokens of every version it sealed,
	// are destroyed (overwritten, not merely unlinked); the versions, their
	// commitments and leaves stay, marked Erased. Leaf records stay too:
	// they hold opaque ids only. It returns how many versions it erased, or
	// ErrNotFound when the key does not exist.
	Erase(ctx context.Context, keyID string) (int64, error)
}
