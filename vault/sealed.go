package vault

import (
	"bytes"
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Key ids of data keys: one per patient compartment, one for the rest, and
// one that seals nothing and only proves the master key (CheckMasterKey).
const (
	sharedKeyID   = "shared"
	patientKeyID  = "patient:"
	patientPrefix = "Patient/"
	checkKeyID    = "master-check"
)

// ErrWrongMasterKey means the master key does not open the keys this vault
// holds: the gateway was started with another key than the one its data
// was written with.
var ErrWrongMasterKey = errors.New("vault: the master key does not open this vault's data keys")

// CheckMasterKey proves that the keyring's master key is the one the vault
// was written with, before anything is served or written: the first call on
// an empty vault stores a check key wrapped under it, and every later call
// (from any gateway sharing the store) must unwrap it, or gets
// ErrWrongMasterKey. Without it, a gateway started with a fresh key would
// wrap new patients' keys under it, fail to read everything else, and miss
// every blind-index lookup.
func (s *Sealed) CheckMasterKey(ctx context.Context) error {
	for range 2 { // a second round after losing a race to create it
		wrapped, err := s.store.DataKey(ctx, checkKeyID)
		if err == nil {
			plain, err := s.kr.Unwrap(checkKeyID, wrapped)
			if err != nil {
				return ErrWrongMasterKey
			}
			clear(plain)
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("read the master key check: %w", err)
		}
		// A vault written before the check existed proves the key with
		// its shared data key, if it has one.
		if shared, err := s.store.DataKey(ctx, sharedKeyID); err == nil {
			plain, err := s.kr.Unwrap(sharedKeyID, shared)
			if err != nil {
				return ErrWrongMasterKey
			}
			clear(plain)
		} else if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("read the shared data key: %w", err)
		}
		_, wrapped, _ = s.kr.NewDataKey(checkKeyID)
		err = s.store.Update(ctx, func(tx Tx) error { return tx.PutDataKey(ctx, checkKeyID, wrapped) })
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return fmt.Errorf("store the master key check: %w", err)
		}
	}
	return errors.New("vault: the master key check keeps changing")
}

// keyCacheSize bounds the number of unwrapped data keys held in memory.
const keyCacheSize = 4096

// Version is one version of a resource in clear, as Sealed reads and writes
// it. Body never leaves Sealed except through these values: callers MUST NOT
// log it or put it in errors.
type Version struct {
	Type        string    // FHIR resource type, e.g. "Patient"
	ID          string    // logical id
	Version     int64     // versionId, 1 for the first version
	LastUpdated time.Time // meta.lastUpdated; stored UTC, microsecond precision
	Deleted     bool      // a deletion tombstone
	// Compartment is the patient compartment the version belongs to,
	// "Patient/123", or "" for resources outside any patient compartment. It
	// selects the data key that seals Body.
	Compartment string
	Body        []byte // canonical JSON in clear
	Salt        []byte // 32 random bytes of the commitment
	Commitment  []byte // the salted commitment of this version
	// Deid is the de-identified copy (JSON) Put seals beside Body under the
	// same data key, so it goes when the patient is erased; nil for none.
	// Reads leave it nil: the copy is for research, read with OpenCopy, and
	// a clinical read should not pay for decrypting it.
	Deid []byte
	// Client is the client id that wrote the version (Record.Client).
	Client string
	// Tokens are the blind-index tokens (see Sealed.Token) of this version.
	// Reads return none: a Store keeps tokens for lookups only.
	Tokens [][]byte
	// Leaf is the log leaf queued with this version. Reads return it with the
	// Seq the Store assigned.
	Leaf Leaf

	// Packed is Body and Deid compressed ahead of Put (Pack), or nil: Put
	// compresses them itself. Reads leave it nil.
	Packed *Packed
}

// Packed is a Version's Body and Deid as Put seals them.
type Packed struct{ Body, Deid []byte }

// Pack compresses Body and Deid ahead of SealedTx.Put, which then only seals
// them. Deflating is CPU alone, and Put runs inside the writer's
// transaction, which every write waits for: a caller packs its versions
// before, or on other cores. Body and Deid must not change after Pack.
func (v *Version) Pack() { v.Packed = &Packed{Body: pack(v.Body), Deid: pack(v.Deid)} }

// Sealed is a Store plus a Keyring: the only place a resource body is in
// clear. It seals each body with AES-256-GCM under a data key per patient
// compartment (key id "patient:<id>", or "shared" outside any compartment).
// Data keys are created on first use in the transaction that first needs
// them, stored wrapped by the Keyring, and cached unwrapped in memory. The
// additional data of each body names its type, id and version, so a
// ciphertext moved to another row fails to open. A Sealed is safe for
// concurrent use.
type Sealed struct {
	store Store
	kr    *Keyring
	keys  keyCache
}

// NewSealed returns a Sealed over s whose keys derive from kr.
func NewSealed(s Store, kr *Keyring) *Sealed {
	return &Sealed{store: s, kr: kr, keys: keyCache{m: make(map[string]cachedKey)}}
}

// JournalLeaves journals ls if the Store is a LeafJournal (see there); it
// returns false, having done nothing, otherwise.
func (s *Sealed) JournalLeaves(ctx context.Context, ls []Leaf) (bool, error) {
	j, ok := s.store.(LeafJournal)
	if !ok {
		return false, nil
	}
	return j.JournalLeaves(ctx, ls)
}

// Store returns the underlying Store, for the calls that see no clear text
// (Leaves, Leaf, FindLeaves, Policy, Policies, Stats, Close).
func (s *Sealed) Store() Store { return s.store }

// Find returns the ids of the live resources of type typ whose current
// version carries token, as committed (see Store.Find).
func (s *Sealed) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	return s.store.Find(ctx, typ, token)
}

// FindAny returns the ids, ascending, of the live resources of type typ
// whose current version carries any of tokens, as committed (see
// Store.FindAny).
func (s *Sealed) FindAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error) {
	return s.store.FindAny(ctx, typ, tokens)
}

// FindAll returns the ids, ascending, of the live resources of type typ
// whose current version carries at least one token of every clause, as
// committed (see Store.FindAll).
func (s *Sealed) FindAll(ctx context.Context, typ string, clauses [][][]byte) ([]string, error) {
	return s.store.FindAll(ctx, typ, clauses)
}

// Compartment returns the current version of every resource whose current
// version is sealed under compartment's data key ("" for the shared key,
// else "Patient/<id>"), tombstones and erased versions included, ordered
// by type and id, without decrypting them (see Store.Sealed).
func (s *Sealed) Compartment(ctx context.Context, compartment string) ([]Record, error) {
	keyID, err := keyIDOf(compartment)
	if err != nil {
		return nil, fmt.Errorf("list compartment: %w", err)
	}
	return s.store.Sealed(ctx, keyID)
}

// Token returns the blind-index token of parts (see Keyring.Token).
func (s *Sealed) Token(parts ...string) []byte { return s.kr.Token(parts...) }

// Update runs fn in one Store transaction (see Store.Update): if fn returns
// an error, nothing it did is kept and that error is returned.
func (s *Sealed) Update(ctx context.Context, fn func(*SealedTx) error) error {
	var tx *SealedTx
	err := s.store.Update(ctx, func(t Tx) error {
		tx = &SealedTx{s: s, tx: t}
		return fn(tx)
	})
	if err != nil || tx == nil {
		return err
	}
	// Only now are the keys this transaction created known to be stored;
	// caching them earlier could seal later versions under a key that was
	// rolled back.
	for _, id := range tx.erased {
		s.keys.forget(id)
	}
	for id, k := range tx.keys {
		s.keys.add(id, k)
	}
	return nil
}

// Open decrypts a record read from the Store directly (an audit walks
// Store.Versions). It returns an error wrapping ErrErased for an erased
// version.
func (s *Sealed) Open(ctx context.Context, r Record) (Version, error) {
	return s.open(ctx, r, s.openStored)
}

// OpenCopy decrypts only the de-identified copy of a record read from the
// Store (Record.Deid), or returns nil when it has none. It returns an error
// wrapping ErrErased for an erased version.
func (s *Sealed) OpenCopy(ctx context.Context, r Record) ([]byte, error) {
	if r.Erased {
		return nil, fmt.Errorf("open %s version %d copy: %w", r.Type, r.Version, ErrErased)
	}
	if len(r.Deid) == 0 {
		return nil, nil
	}
	ad := append(additionalData(r.Type, r.ID, r.Version), deidAD...)
	plain, err := s.openStored(ctx, r.KeyID, r.Deid, ad)
	if err == nil {
		plain, err = unpackSealed(plain)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s version %d copy: %w", r.Type, r.Version, err)
	}
	return plain, nil
}

// Read returns the current version of a resource, a tombstone included (with
// Deleted set), or an error wrapping ErrNotFound.
func (s *Sealed) Read(ctx context.Context, typ, id string) (Version, error) {
	r, err := s.store.Current(ctx, typ, id)
	if err != nil {
		return Version{}, fmt.Errorf("read %s: %w", typ, err)
	}
	return s.open(ctx, r, s.openStored)
}

// VRead returns one version of a resource, or an error wrapping ErrNotFound.
func (s *Sealed) VRead(ctx context.Context, typ, id string, version int64) (Version, error) {
	r, err := s.store.Version(ctx, typ, id, version)
	if err != nil {
		return Version{}, fmt.Errorf("read %s version %d: %w", typ, version, err)
	}
	return s.open(ctx, r, s.openStored)
}

// History returns every version of a resource, newest first, or an error
// wrapping ErrNotFound.
func (s *Sealed) History(ctx context.Context, typ, id string) ([]Version, error) {
	rs, err := s.store.History(ctx, typ, id)
	if err != nil {
		return nil, fmt.Errorf("read %s history: %w", typ, err)
	}
	vs := make([]Version, 0, len(rs))
	for _, r := range rs {
		v, err := s.open(ctx, r, s.openStored)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// storeKey returns the data key keyID from the cache or, failing that, from
// the Store, and caches it: outside a transaction the Store holds committed
// keys only.
func (s *Sealed) storeKey(ctx context.Context, keyID string) (cipher.AEAD, error) {
	if k, ok := s.keys.get(keyID); ok {
		return k.a, nil
	}
	wrapped, err := s.store.DataKey(ctx, keyID)
	if err != nil {
		return nil, fmt.Errorf("get data key: %w", err)
	}
	a, err := s.unwrap(keyID, wrapped)
	if err != nil {
		return nil, err
	}
	s.keys.add(keyID, cachedKey{a: a, wrapped: wrapped})
	return a, nil
}

// openStored opens ciphertext sealed under data key keyID, taking the key
// from the cache or the Store. A cached key can be stale when another
// process sharing the Store erased it and a new key was made under the same
// id: if the cached key fails, it is dropped and the Store's is tried once.
func (s *Sealed) openStored(ctx context.Context, keyID string, ciphertext, ad []byte) ([]byte, error) {
	a, err := s.storeKey(ctx, keyID)
	if err != nil {
		return nil, err
	}
	plain, err := a.Open(nil, nil, ciphertext, ad)
	if err != nil && s.keys.drop(keyID) {
		if a, err = s.storeKey(ctx, keyID); err != nil {
			return nil, err
		}
		plain, err = a.Open(nil, nil, ciphertext, ad)
	}
	return plain, err
}

func (s *Sealed) unwrap(keyID string, wrapped []byte) (cipher.AEAD, error) {
	plain, err := s.kr.Unwrap(keyID, wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	a, err := newAEAD(plain)
	if err != nil {
		return nil, fmt.Errorf("new data key cipher: %w", err)
	}
	return a, nil
}

// open decrypts r with the data key that getKey returns for r.KeyID.
func (s *Sealed) open(ctx context.Context, r Record, openWith func(ctx context.Context, keyID string, ciphertext, ad []byte) ([]byte, error)) (Version, error) {
	if r.Erased {
		return Version{}, fmt.Errorf("open %s version %d: %w", r.Type, r.Version, ErrErased)
	}
	compartment, err := compartmentOf(r.KeyID)
	if err != nil {
		return Version{}, fmt.Errorf("open %s version %d: %w", r.Type, r.Version, err)
	}
	body, err := openWith(ctx, r.KeyID, r.Ciphertext, additionalData(r.Type, r.ID, r.Version))
	if err == nil {
		body, err = unpackSealed(body)
	}
	if err != nil {
		return Version{}, fmt.Errorf("open %s version %d: %w", r.Type, r.Version, err)
	}
	return Version{
		Type:        r.Type,
		ID:          r.ID,
		Version:     r.Version,
		LastUpdated: r.LastUpdated,
		Deleted:     r.Deleted,
		Compartment: compartment,
		Body:        body,
		Salt:        r.Salt,
		Commitment:  r.Commitment,
		Tokens:      r.Tokens,
		Leaf:        r.Leaf,
		Client:      r.Client,
	}, nil
}

// SealedTx is the view of one Sealed transaction. It is valid only until the
// fn passed to Sealed.Update returns, and is not safe for concurrent use.
type SealedTx struct {
	s  *Sealed
	tx Tx
	// keys holds the data keys this transaction created or read; Sealed
	// caches them once the transaction has committed.
	keys map[string]cachedKey
	// erased lists the data keys this transaction destroyed.
	erased []string
}

// Token is Sealed.Token, for code that holds only the transaction.
func (t *SealedTx) Token(parts ...string) []byte { return t.s.Token(parts...) }

// AddLeaf queues a leaf that stands for no resource version (see Tx.AddLeaf).
func (t *SealedTx) AddLeaf(ctx context.Context, l Leaf) (int64, error) {
	return t.tx.AddLeaf(ctx, l)
}

// PutPolicy stores the next version of the policy bundle and returns its
// version (see Tx.PutPolicy).
func (t *SealedTx) PutPolicy(ctx context.Context, p Policy) (int64, error) {
	return t.tx.PutPolicy(ctx, p)
}

// Erase crypto-shreds a patient compartment ("Patient/<id>"): its data key,
// and the ciphertexts, salts and tokens of every version sealed under it
// (see Tx.Erase). Reads of those versions then fail with ErrErased.
func (t *SealedTx) Erase(ctx context.Context, compartment string) (int64, error) {
	if compartment == "" {
		return 0, errors.New("erase: the shared key cannot be erased")
	}
	keyID, err := keyIDOf(compartment)
	if err != nil {
		return 0, fmt.Errorf("erase: %w", err)
	}
	n, err := t.tx.Erase(ctx, keyID)
	if err != nil {
		return 0, err
	}
	delete(t.keys, keyID)
	t.erased = append(t.erased, keyID)
	return n, nil
}

// Current returns the latest stored version of a resource, tombstones
// included, still sealed: enough to learn its version number and whether it
// is deleted without decrypting it. It returns an error wrapping ErrNotFound
// if the resource has no version.
func (t *SealedTx) Current(ctx context.Context, typ, id string) (Record, error) {
	return t.tx.Current(ctx, typ, id)
}

// Read returns the latest version of a resource in clear, as seen by this
// transaction.
func (t *SealedTx) Read(ctx context.Context, typ, id string) (Version, error) {
	r, err := t.tx.Current(ctx, typ, id)
	if err != nil {
		return Version{}, fmt.Errorf("read %s: %w", typ, err)
	}
	return t.s.open(ctx, r, t.openKey)
}

// Find returns the ids of the live resources of type typ whose current
// version carries token (see Tx.Find).
func (t *SealedTx) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	return t.tx.Find(ctx, typ, token)
}

// FindAny returns the ids, ascending, of the live resources of type typ
// whose current version carries any of tokens (see Tx.FindAny).
func (t *SealedTx) FindAny(ctx context.Context, typ string, tokens [][]byte) ([]string, error) {
	return t.tx.FindAny(ctx, typ, tokens)
}

// SetTokens replaces the blind-index tokens of the current live version of
// a resource (see Tx.SetTokens).
func (t *SealedTx) SetTokens(ctx context.Context, typ, id string, version int64, tokens [][]byte) error {
	return t.tx.SetTokens(ctx, typ, id, version, tokens)
}

// DropTokens removes a posting of the blind index that does not belong
// (see Tx.DropTokens).
func (t *SealedTx) DropTokens(ctx context.Context, e IndexEntry) error {
	return t.tx.DropTokens(ctx, e)
}

// DropTokenSet removes a token set that belongs to no current live
// version, and its postings (see Tx.DropTokenSet).
func (t *SealedTx) DropTokenSet(ctx context.Context, seq int64) error {
	return t.tx.DropTokenSet(ctx, seq)
}

// SetIndexVersion records the version of the rules the blind index is
// built by (see Tx.SetIndexVersion).
func (t *SealedTx) SetIndexVersion(ctx context.Context, version string) error {
	return t.tx.SetIndexVersion(ctx, version)
}

// Response returns the response remembered for an idempotency key (see
// Tx.Response), opened. A stored response that does not open (altered,
// moved from another key, or stored unsealed) is an error wrapping
// ErrCorrupt: it is never replayed, and the request is not applied again
// either, since its first application may have been acknowledged.
func (t *SealedTx) Response(ctx context.Context, key []byte) ([]byte, error) {
	sealed, err := t.tx.Response(ctx, key)
	if err != nil {
		return nil, err
	}
	return t.s.OpenResponse(key, sealed)
}

// Response returns the committed response remembered for an idempotency
// key (see Store.Response), opened; like SealedTx.Response, one that does
// not open is an error wrapping ErrCorrupt.
func (s *Sealed) Response(ctx context.Context, key []byte) ([]byte, error) {
	sealed, err := s.store.Response(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.OpenResponse(key, sealed)
}

// PutResponse seals the response body for an idempotency key under a key
// derived from the master key, bound to the idempotency key, and remembers
// it (see Tx.PutResponse). The body is compressed first, as version bodies
// are (see pack): a transaction's response repeats one entry shape per
// resource and compresses to a small fraction.
func (t *SealedTx) PutResponse(ctx context.Context, key, body []byte) error {
	return t.tx.PutResponse(ctx, key, t.s.kr.sealResponse(key, pack(body)))
}

// OpenResponse opens a remembered response as the Store holds it (see
// Store.Responses), or returns an error wrapping ErrCorrupt. A response
// sealed before responses were packed (plain JSON) opens as it is.
func (s *Sealed) OpenResponse(key, sealed []byte) ([]byte, error) {
	body, err := s.kr.openResponse(key, sealed)
	if err == nil {
		body, err = unpackSealed(body)
	}
	if err != nil {
		return nil, fmt.Errorf("open remembered response: %w", ErrCorrupt)
	}
	return body, nil
}

// CheckDataKey reports whether a stored data key unwraps under the master
// key (an audit walks Store.DataKeys); an error wraps ErrCorrupt.
func (s *Sealed) CheckDataKey(k WrappedKey) error {
	plain, err := s.kr.Unwrap(k.ID, k.Wrapped)
	if err != nil {
		return fmt.Errorf("check data key: %w", ErrCorrupt)
	}
	clear(plain)
	return nil
}

// Put seals v.Body under the data key of v.Compartment, creating that key if
// it does not exist yet, and stores the version and its leaf (see Tx.Put).
// It returns an error wrapping ErrConflict if the version is already stored
// or if a concurrent transaction created the same data key; the caller may
// retry the whole Update. As with Tx.Put, after an error the transaction
// should be abandoned.
func (t *SealedTx) Put(ctx context.Context, v Version) error {
	if v.Type == "" || v.ID == "" || v.Version < 1 {
		return fmt.Errorf("put %s version %d: missing type, id or version", v.Type, v.Version)
	}
	keyID, err := keyIDOf(v.Compartment)
	if err != nil {
		return fmt.Errorf("put %s version %d: %w", v.Type, v.Version, err)
	}
	a, err := t.dataKey(ctx, keyID)
	if err != nil {
		return fmt.Errorf("put %s version %d: %w", v.Type, v.Version, err)
	}
	p := v.Packed
	if p == nil {
		p = &Packed{Body: pack(v.Body), Deid: pack(v.Deid)}
	}
	ad := additionalData(v.Type, v.ID, v.Version)
	ct := a.Seal(nil, nil, p.Body, ad)
	var deid []byte
	if len(v.Deid) > 0 {
		deid = a.Seal(nil, nil, p.Deid, append(ad, deidAD...))
	}
	err = t.tx.Put(ctx, Record{
		Type:        v.Type,
		ID:          v.ID,
		Version:     v.Version,
		LastUpdated: v.LastUpdated,
		Deleted:     v.Deleted,
		KeyID:       keyID,
		Ciphertext:  ct,
		Salt:        v.Salt,
		Commitment:  v.Commitment,
		Deid:        deid,
		Tokens:      v.Tokens,
		Leaf:        v.Leaf,
		Client:      v.Client,
	})
	if err != nil {
		return fmt.Errorf("put %s version %d: %w", v.Type, v.Version, err)
	}
	return nil
}

// dataKey returns the data key keyID as this transaction sees it, creating
// and storing it if the Store has none.
func (t *SealedTx) dataKey(ctx context.Context, keyID string) (cipher.AEAD, error) {
	if k, ok := t.keys[keyID]; ok {
		return k.a, nil
	}
	// Once per transaction the Store is asked, even when the key is cached:
	// another process sharing the Store may have erased it since, and a
	// version sealed under a shredded key would be lost on arrival.
	wrapped, err := t.tx.DataKey(ctx, keyID)
	var a cipher.AEAD
	switch {
	case err == nil:
		if k, ok := t.s.keys.get(keyID); ok && bytes.Equal(k.wrapped, wrapped) {
			a = k.a
		} else if a, err = t.s.unwrap(keyID, wrapped); err != nil {
			return nil, err
		}
	case errors.Is(err, ErrNotFound):
		t.s.keys.drop(keyID)
		var plain []byte
		plain, wrapped, err = t.s.kr.NewDataKey(keyID)
		if err != nil {
			return nil, fmt.Errorf("new data key: %w", err)
		}
		a, err = newAEAD(plain)
		clear(plain)
		if err != nil {
			return nil, fmt.Errorf("new data key cipher: %w", err)
		}
		if err := t.tx.PutDataKey(ctx, keyID, wrapped); err != nil {
			return nil, fmt.Errorf("put data key: %w", err)
		}
	default:
		return nil, fmt.Errorf("get data key: %w", err)
	}
	if t.keys == nil {
		t.keys = make(map[string]cachedKey)
	}
	t.keys[keyID] = cachedKey{a: a, wrapped: wrapped}
	return a, nil
}

// openKey opens ciphertext with a data key as this transaction sees it.
func (t *SealedTx) openKey(ctx context.Context, keyID string, ciphertext, ad []byte) ([]byte, error) {
	a, err := t.dataKey(ctx, keyID)
	if err != nil {
		return nil, err
	}
	return a.Open(nil, nil, ciphertext, ad)
}

// deidAD extends a version's additional data for its de-identified copy, so
// the copy and the body cannot be swapped.
var deidAD = []byte("|deid")

// additionalData binds a sealed body to its row.
func additionalData(typ, id string, version int64) []byte {
	b := make([]byte, 0, len("fhiranchor/v1|")+len(typ)+len(id)+24)
	b = append(b, "fhiranchor/v1|"...)
	b = append(b, typ...)
	b = append(b, '|')
	b = append(b, id...)
	b = append(b, '|')
	return strconv.AppendInt(b, version, 10)
}

// keyIDOf maps a compartment to the id of its data key.
func keyIDOf(compartment string) (string, error) {
	if compartment == "" {
		return sharedKeyID, nil
	}
	id, ok := strings.CutPrefix(compartment, patientPrefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", errors.New(`compartment is neither "" nor "Patient/<id>"`)
	}
	return patientKeyID + id, nil
}

// Compartment returns the patient compartment ("Patient/<id>", or "" for
// the shared key) whose data key sealed r.
func (r Record) Compartment() string {
	c, _ := compartmentOf(r.KeyID)
	return c
}

// compartmentOf is the inverse of keyIDOf.
func compartmentOf(keyID string) (string, error) {
	if keyID == sharedKeyID {
		return "", nil
	}
	if id, ok := strings.CutPrefix(keyID, patientKeyID); ok && id != "" {
		return patientPrefix + id, nil
	}
	return "", errors.New("unknown data key id")
}

// keyCache holds unwrapped data keys. It is bounded: when full, adding a key
// evicts an arbitrary one, which is then unwrapped again on its next use.
type keyCache struct {
	mu     sync.Mutex
	m      map[string]cachedKey
	erased map[string]bool // never cached again: a reader racing an erasure must not resurrect the key
}

// cachedKey is an unwrapped data key and the wrapped form it came from: a
// writer compares that with the Store's, because another process sharing
// the Store may have erased the key, or erased it and made a new one under
// the same id.
type cachedKey struct {
	a       cipher.AEAD
	wrapped []byte
}

// forget drops an erased key and keeps it from being cached again.
func (c *keyCache) forget(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, keyID)
	if c.erased == nil {
		c.erased = map[string]bool{}
	}
	c.erased[keyID] = true
}

func (c *keyCache) get(keyID string) (cachedKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.m[keyID]
	return k, ok
}

// drop removes a key that may be stale, and reports whether it was cached.
func (c *keyCache) drop(keyID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[keyID]
	delete(c.m, keyID)
	return ok
}

func (c *keyCache) add(keyID string, k cachedKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.erased[keyID] {
		return
	}
	if _, ok := c.m[keyID]; !ok && len(c.m) >= keyCacheSize {
		for k := range c.m { // map order is unspecified: a cheap random eviction
			delete(c.m, k)
			break
		}
	}
	c.m[keyID] = k
}
