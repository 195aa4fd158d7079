package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/vault"
)

// ReindexStats counts what Reindex did.
type ReindexStats struct {
	Examined   int `json:"examined"`   // current live versions met (Unreadable included)
	Rewritten  int `json:"rewritten"`  // of those, the ones whose index entries differed and were replaced
	Unreadable int `json:"unreadable"` // current live versions that did not open (audit names them); left as they were
	Dropped    int `json:"dropped"`    // resources not live (deleted, erased, or without versions) whose index entries were removed
}

// reindexPage is how many version rows Reindex reads per page, and so the
// most resources one of its transactions rewrites.
const reindexPage = 500

// Reindex rebuilds the blind index from the vault's content: for every
// current live version it derives the version's tokens again (versionTokens,
// as the write path does), compares them with the index, and replaces the
// index entries of each resource where they differ. It is what an operator
// runs after the tokens a version carries were redefined (new search keys),
// or after an audit found the index damaged; the versions, their leaves and
// the log are not touched, so nothing is anchored.
//
// Then it walks the index itself and drops the entries of every resource
// that is not live (deleted, erased, or without versions), which the first
// walk cannot meet.
//
// It walks Store.Versions in Seq order, a page at a time, and keeps no
// state between pages: each resource's current version is met exactly once
// on that walk (the row whose Seq is the resource's current one). A
// resource's stored tokens are read with Store.IndexEntries starting at the
// resource, so memory is bounded by a page whatever the vault's size, and a
// vault whose index is right is read and never written. The differing
// resources of a page are rewritten in one transaction with SetTokens, whose
// version check skips a resource written meanwhile: that write stored the
// tokens of its new version itself. Reindex can run while the gateway
// serves.
func Reindex(ctx context.Context, v *vault.Sealed, log *slog.Logger) (ReindexStats, error) {
	var st ReindexStats
	store := v.Store()
	for after := int64(0); ; {
		page, err := store.Versions(ctx, after, reindexPage)
		if err != nil {
			return st, fmt.Errorf("reindex: %w", err)
		}
		var stale []reindexEntry
		for _, r := range page {
			e, ok, err := reindexCheck(ctx, v, r)
			if err != nil {
				if ctx.Err() != nil {
					return st, fmt.Errorf("reindex: %w", ctx.Err())
				}
				if errors.Is(err, errUnreadable) {
					st.Examined++
					st.Unreadable++
					log.WarnContext(ctx, "reindex: version does not open; run audit",
						slog.String("type", r.Type), slog.Int64("leaf_seq", r.Leaf.Seq))
					continue
				}
				return st, fmt.Errorf("reindex: %w", err)
			}
			if !ok {
				continue
			}
			st.Examined++
			if e.stale {
				stale = append(stale, e)
			}
		}
		n, err := reindexWrite(ctx, v, stale)
		st.Rewritten += n
		if err != nil {
			return st, fmt.Errorf("reindex: %w", err)
		}
		if len(page) < reindexPage {
			break
		}
		after = page[len(page)-1].Leaf.Seq
	}
	n, err := reindexDrop(ctx, v)
	st.Dropped = n
	if err != nil {
		return st, fmt.Errorf("reindex: %w", err)
	}
	log.InfoContext(ctx, "reindex done", slog.Int("examined", st.Examined), slog.Int("rewritten", st.Rewritten),
		slog.Int("unreadable", st.Unreadable), slog.Int("dropped", st.Dropped))
	return st, nil
}

// reindexEntry is a resource whose index entries are to be replaced.
type reindexEntry struct {
	typ, id string
	version int64
	tokens  [][]byte // what the index must hold
	stale   bool     // the index holds other tokens
}

// errUnreadable marks a current live version that does not open.
var errUnreadable = errors.New("version does not open")

// reindexCheck reports whether r is the current live version of its
// resource and, if so, returns its tokens when the index holds others.
func reindexCheck(ctx context.Context, v *vault.Sealed, r vault.Record) (reindexEntry, bool, error) {
	if r.Deleted || r.Erased {
		return reindexEntry{}, false, nil
	}
	store := v.Store()
	cur, err := store.Current(ctx, r.Type, r.ID)
	if err != nil {
		return reindexEntry{}, false, err
	}
	if cur.Leaf.Seq != r.Leaf.Seq || cur.Deleted || cur.Erased {
		return reindexEntry{}, false, nil // not current: its resource's current row is met elsewhere
	}
	ver, err := v.Open(ctx, r)
	if err != nil {
		return reindexEntry{}, false, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	tree, err := fhir.DecodeObject(ver.Body)
	if err != nil {
		return reindexEntry{}, false, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	wantSet := tokenSet(versionTokens(v, r.Type, tree))
	// The index entries of the resource, from its first one: every token
	// sorts after the empty one.
	es, err := store.IndexEntries(ctx, vault.IndexEntry{Type: r.Type, ID: r.ID}, len(wantSet)+1)
	if err != nil {
		return reindexEntry{}, false, err
	}
	have := make([]string, 0, len(es))
	for _, e := range es {
		if e.Type == r.Type && e.ID == r.ID {
			have = append(have, string(e.Token))
		}
	}
	slices.Sort(have)
	e := reindexEntry{typ: r.Type, id: r.ID, version: r.Version, stale: !slices.Equal(have, wantSet)}
	if e.stale {
		e.tokens = make([][]byte, len(wantSet))
		for i, t := range wantSet {
			e.tokens[i] = []byte(t)
		}
	}
	return e, true, nil
}

// reindexWrite replaces the index entries of es in one transaction and
// returns how many it replaced. A resource written since it was read is
// skipped (ErrConflict): its new version brought its own tokens.
func reindexWrite(ctx context.Context, v *vault.Sealed, es []reindexEntry) (int, error) {
	if len(es) == 0 {
		return 0, nil
	}
	var n int
	err := v.Update(ctx, func(tx *vault.SealedTx) error {
		n = 0
		for _, e := range es {
			err := tx.SetTokens(ctx, e.typ, e.id, e.version, e.tokens)
			switch {
			case errors.Is(err, vault.ErrConflict), errors.Is(err, vault.ErrNotFound):
				continue
			case err != nil:
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// reindexDrop walks the blind index and removes the entries of resources
// that are not live, a page of resources per transaction, and returns how
// many resources it cleared.
func reindexDrop(ctx context.Context, v *vault.Sealed) (int, error) {
	store := v.Store()
	var dropped int
	var last vault.IndexEntry // the last resource checked
	for after := (vault.IndexEntry{}); ; {
		es, err := store.IndexEntries(ctx, after, auditPage)
		if err != nil {
			return dropped, err
		}
		var dead []vault.IndexEntry
		for _, e := range es {
			if e.Type == last.Type && e.ID == last.ID {
				continue
			}
			last = e
			cur, err := store.Current(ctx, e.Type, e.ID)
			switch {
			case errors.Is(err, vault.ErrNotFound):
			case err != nil:
				return dropped, err
			case !cur.Deleted && !cur.Erased:
				continue
			}
			dead = append(dead, e)
		}
		if len(dead) > 0 {
			err := v.Update(ctx, func(tx *vault.SealedTx) error {
				for _, e := range dead {
					// ErrConflict: brought back to life meanwhile, with
					// the tokens of its new version.
					if err := tx.DropTokens(ctx, e.Type, e.ID); err != nil && !errors.Is(err, vault.ErrConflict) {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return dropped, err
			}
			dropped += len(dead)
		}
		if len(es) < auditPage {
			return dropped, nil
		}
		after = es[len(es)-1]
	}
}
