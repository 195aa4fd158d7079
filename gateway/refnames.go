package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/vault"
)

// refNames resolves the recordRefs of records ("Patient/tok-…") back to the
// references they stand for, for the callers allowed to read the record,
// while the resource is in the vault and not erased: once a patient is
// erased, their records name no one. It learns the tokens by following the
// resource-version leaves of the log (their refs are "Type/id/_history/n"),
// so every gateway sharing a database resolves alike. It keeps only each
// token's first leaf (about 40 bytes a resource) and reads the id back from
// that leaf when asked.
type refNames struct {
	vault *vault.Sealed

	mu     sync.Mutex
	after  int64              // the Seq of the last leaf read
	leafOf map[[16]byte]int64 // token -> Seq of the first version leaf of its resource
}

// leavesBatch is how many leaves catchUp reads per query.
const leavesBatch = 4096

// resolve returns the reference of each ref it can resolve; the others are
// left out.
func (n *refNames) resolve(ctx context.Context, refs []string) (map[string]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.catchUp(ctx); err != nil {
		return nil, err
	}
	out := map[string]string{}
	store := n.vault.Store()
	for _, ref := range refs {
		typ, rest, ok := strings.Cut(ref, "/")
		if !ok {
			continue
		}
		tok, _, _ := strings.Cut(rest, "/") // "Type/tok/_history/n": the resource
		key, ok := tokenKey(tok)
		if !ok {
			continue
		}
		seq, ok := n.leafOf[key]
		if !ok {
			continue
		}
		l, err := store.Leaf(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("resolve a record's reference: %w", err)
		}
		ltyp, lrest, _ := strings.Cut(l.Ref, "/")
		id, _, _ := strings.Cut(lrest, "/")
		if ltyp != typ {
			continue // a token of another type: not this reference
		}
		rec, err := store.Current(ctx, typ, id)
		if errors.Is(err, vault.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("resolve a record's reference: %w", err)
		}
		if rec.Erased {
			continue
		}
		out[typ+"/"+tok] = typ + "/" + id
	}
	return out, nil
}

// tokenKey decodes the "tok-<32 hex>" of a recordRef.
func tokenKey(tok string) (key [16]byte, ok bool) {
	h, found := strings.CutPrefix(tok, "tok-")
	if !found || len(h) != 32 {
		return key, false
	}
	if _, err := hex.Decode(key[:], []byte(h)); err != nil {
		return key, false
	}
	return key, true
}

func (n *refNames) catchUp(ctx context.Context) error {
	if n.leafOf == nil {
		n.leafOf = map[[16]byte]int64{}
	}
	for {
		ls, err := n.vault.Store().Leaves(ctx, n.after, leavesBatch)
		if err != nil {
			return fmt.Errorf("read leaves to resolve references: %w", err)
		}
		for _, l := range ls {
			n.after = l.Seq
			if l.Type != uint8(anchor.LeafResourceVersion) {
				continue
			}
			typ, rest, ok := strings.Cut(l.Ref, "/")
			if !ok {
				continue
			}
			id, _, _ := strings.Cut(rest, "/")
			if key, ok := tokenKey(access.RefToken(n.vault, typ, id)); ok {
				if _, seen := n.leafOf[key]; !seen {
					n.leafOf[key] = l.Seq
				}
			}
		}
		if len(ls) < leavesBatch {
			return nil
		}
	}
}
