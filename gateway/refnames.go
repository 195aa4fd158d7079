package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/vault"
)

// refNames resolves the recordRefs of records ("Patient/tok-…") back to the
// references they stand for, for the callers allowed to read the record,
// while the resource is in the vault and not erased: once a patient is
// erased, their records name no one. It learns the names by following the
// resource-version leaves of the log (their refs are "Type/id/_history/n"),
// so every gateway sharing a database resolves alike.
type refNames struct {
	vault *vault.Sealed

	mu    sync.Mutex
	after int64             // the Seq of the last leaf read
	names map[string]string // "Type/tok-…" -> "Type/id"
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
	for _, ref := range refs {
		typ, tok, ok := strings.Cut(ref, "/")
		if !ok {
			continue
		}
		tok, _, _ = strings.Cut(tok, "/") // "Type/tok/_history/n": the resource
		name, ok := n.names[typ+"/"+tok]
		if !ok {
			continue
		}
		rec, err := n.vault.Store().Current(ctx, typ, strings.TrimPrefix(name, typ+"/"))
		if errors.Is(err, vault.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("resolve a record's reference: %w", err)
		}
		if rec.Erased {
			continue
		}
		out[typ+"/"+tok] = name
	}
	return out, nil
}

func (n *refNames) catchUp(ctx context.Context) error {
	if n.names == nil {
		n.names = map[string]string{}
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
			n.names[typ+"/"+refToken(n.vault, typ, id)] = typ + "/" + id
		}
		if len(ls) < leavesBatch {
			return nil
		}
	}
}
