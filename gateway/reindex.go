package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/vault"
)

// ReindexStats counts what Reindex did.
type ReindexStats struct {
	Examined   int `json:"examined"`   // current live versions met (Unreadable included)
	Rewritten  int `json:"rewritten"`  // of those, the ones whose index entries differed and were replaced
	Unreadable int `json:"unreadable"` // current live versions that did not open (audit names them); left as they were
	Dropped    int `json:"dropped"`    // token sets and postings removed that belonged to no current live version
}

// reindexPage is how many version rows Reindex reads per page, and so the
// most resources one of its transactions rewrites.
const reindexPage = 500

// IndexVersion names the rules by which versionTokens derives a version's
// blind-index tokens and the vault stores them. A vault whose index was
// built by other rules (or emptied by a migration) is rebuilt when the
// gateway starts (EnsureIndex). Change it whenever the tokens change.
const IndexVersion = "postings/1 identifier/1 consent/1 search/v1 tokens/8 keys/5"

// EnsureIndex rebuilds the blind index if the vault's was built by other
// rules than IndexVersion, then records IndexVersion. The gateway runs it
// before it serves, so that no search or conditional interaction runs on
// an index that would miss resources.
func EnsureIndex(ctx context.Context, v *vault.Sealed, log *slog.Logger) error {
	have, err := v.Store().IndexVersion(ctx)
	if err != nil {
		return fmt.Errorf("ensure index: %w", err)
	}
	if have == IndexVersion {
		return nil
	}
	log.InfoContext(ctx, "rebuilding the blind index", slog.String("from", have), slog.String("to", IndexVersion))
	if _, err := Reindex(ctx, v, log); err != nil {
		return fmt.Errorf("ensure index: %w", err)
	}
	return nil
}

// Reindex rebuilds the blind index from the vault's content: for every
// current live version it derives the version's tokens again (versionTokens,
// as the write path does), compares them with the version's stored token
// set, and replaces the set and its postings where they differ; token sets
// of versions that are not current and live are dropped. Then it checks
// the postings against the sets (indexDigest); if they differ, it drops
// every posting that belongs to no current live version's set and writes
// every current live version's postings again. It is what an operator runs
// after the tokens a version carries were redefined, or after an audit
// found the index damaged; the versions, their leaves and the log are not
// touched, so nothing is anchored. It ends by recording IndexVersion.
//
// It walks Store.Versions and Store.TokenSets side by side in Seq order, a
// page at a time, so memory is bounded by a page whatever the vault's
// size, and a vault whose index is right is read and never written. The
// differing resources of a page are rewritten in one transaction with
// SetTokens, whose version check skips a resource written meanwhile: that
// write stored the tokens of its new version itself. Reindex can run while
// the gateway serves.
func Reindex(ctx context.Context, v *vault.Sealed, log *slog.Logger) (ReindexStats, error) {
	var st ReindexStats
	sets, postings := newIndexDigests()
	if err := reindexPass(ctx, v, log, &st, sets, false); err != nil {
		return st, fmt.Errorf("reindex: %w", err)
	}
	if err := v.Store().WalkPostings(ctx, postings.add); err != nil {
		return st, fmt.Errorf("reindex: postings: %w", err)
	}
	if !postings.equal(sets) {
		log.WarnContext(ctx, "reindex: postings differ from the token sets; rewriting them")
		n, err := dropStrayPostings(ctx, v)
		st.Dropped += n
		if err != nil {
			return st, fmt.Errorf("reindex: %w", err)
		}
		again := ReindexStats{}
		if err := reindexPass(ctx, v, log, &again, nil, true); err != nil {
			return st, fmt.Errorf("reindex: %w", err)
		}
		st.Rewritten = max(st.Rewritten, again.Rewritten)
	}
	if err := v.Update(ctx, func(tx *vault.SealedTx) error { return tx.SetIndexVersion(ctx, IndexVersion) }); err != nil {
		return st, fmt.Errorf("reindex: %w", err)
	}
	log.InfoContext(ctx, "reindex done", slog.Int("examined", st.Examined), slog.Int("rewritten", st.Rewritten),
		slog.Int("unreadable", st.Unreadable), slog.Int("dropped", st.Dropped))
	return st, nil
}

// reindexPass walks the versions and the token sets once, rewriting the
// sets that differ from the derived tokens (every set if force) and
// dropping the sets of versions that are not current and live. It adds to
// digest, if not nil, the postings the index must hold.
func reindexPass(ctx context.Context, v *vault.Sealed, log *slog.Logger, st *ReindexStats, digest *indexDigest, force bool) error {
	store := v.Store()
	setCursor := &tokenSetCursor{store: store}
	for after := int64(0); ; {
		page, err := store.Versions(ctx, after, reindexPage)
		if err != nil {
			return err
		}
		end := int64(math.MaxInt64) // the last page takes every set left
		if len(page) == reindexPage {
			end = page[len(page)-1].Leaf.Seq
		}
		stored, err := setCursor.upTo(ctx, end)
		if err != nil {
			return err
		}
		var stale []reindexEntry
		for _, r := range page {
			set, hasSet := stored[r.Leaf.Seq]
			e, ok, err := reindexCheck(ctx, v, r, set)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, errUnreadable) {
					delete(stored, r.Leaf.Seq) // its set stays as it is
					st.Examined++
					st.Unreadable++
					if digest != nil && hasSet && !set.Bad {
						digest.addSet(set.Tokens, r.Leaf.Seq)
					}
					log.WarnContext(ctx, "reindex: version does not open; run audit",
						slog.String("type", r.Type), slog.Int64("leaf_seq", r.Leaf.Seq))
					continue
				}
				return err
			}
			if !ok {
				continue // a set it has is dropped below
			}
			delete(stored, r.Leaf.Seq)
			st.Examined++
			if digest != nil {
				digest.addSet(e.want, r.Leaf.Seq)
			}
			if e.stale || force {
				stale = append(stale, e)
			}
		}
		n, err := reindexWrite(ctx, v, stale)
		st.Rewritten += n
		if err != nil {
			return err
		}
		// What is left belongs to no current live version.
		n, err = dropTokenSets(ctx, v, stored)
		st.Dropped += n
		if err != nil {
			return err
		}
		if len(page) < reindexPage {
			return nil
		}
		after = page[len(page)-1].Leaf.Seq
	}
}

// tokenSetCursor reads the token sets in Seq order alongside the versions.
type tokenSetCursor struct {
	store vault.Store
	after int64
	ahead []vault.TokenSet // read, with Seq beyond the last upTo
	done  bool
}

// upTo returns the sets with Seq in (the previous end, end], by Seq.
func (c *tokenSetCursor) upTo(ctx context.Context, end int64) (map[int64]vault.TokenSet, error) {
	out := map[int64]vault.TokenSet{}
	for {
		for len(c.ahead) > 0 && c.ahead[0].Seq <= end {
			out[c.ahead[0].Seq] = c.ahead[0]
			c.ahead = c.ahead[1:]
		}
		if len(c.ahead) > 0 || c.done {
			return out, nil
		}
		page, err := c.store.TokenSets(ctx, c.after, reindexPage)
		if err != nil {
			return nil, err
		}
		if len(page) < reindexPage {
			c.done = true
		}
		if len(page) > 0 {
			c.after = page[len(page)-1].Seq
		}
		c.ahead = page
	}
}

// reindexEntry is a resource whose index entries are to be replaced.
type reindexEntry struct {
	typ, id string
	version int64
	want    [][]byte // what the index must hold, sorted and distinct
	stale   bool     // the stored set differs
}

// errUnreadable marks a current live version that does not open.
var errUnreadable = errors.New("version does not open")

// reindexCheck reports whether r is the current live version of its
// resource and, if so, returns the tokens it must have and whether its
// stored set (the zero TokenSet for none) differs.
func reindexCheck(ctx context.Context, v *vault.Sealed, r vault.Record, stored vault.TokenSet) (reindexEntry, bool, error) {
	if r.Deleted || r.Erased {
		return reindexEntry{}, false, nil
	}
	cur, err := v.Store().Current(ctx, r.Type, r.ID)
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
	want := vault.SortTokens(versionTokens(v, r.Type, tree))
	e := reindexEntry{typ: r.Type, id: r.ID, version: r.Version, want: want}
	e.stale = stored.Bad || !slices.EqualFunc(stored.Tokens, want, bytes.Equal)
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
			err := tx.SetTokens(ctx, e.typ, e.id, e.version, e.want)
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

// dropTokenSets removes sets that belong to no current live version, in
// one transaction, and returns how many it removed.
func dropTokenSets(ctx context.Context, v *vault.Sealed, sets map[int64]vault.TokenSet) (int, error) {
	seqs := slices.Collect(maps.Keys(sets))
	return dropEach(ctx, v, len(seqs), func(tx *vault.SealedTx, i int) error { return tx.DropTokenSet(ctx, seqs[i]) })
}

// dropEach runs drop on each of n entries in one transaction and returns
// how many it removed; one that belongs (ErrConflict) is left and not
// counted.
func dropEach(ctx context.Context, v *vault.Sealed, n int, drop func(tx *vault.SealedTx, i int) error) (int, error) {
	if n == 0 {
		return 0, nil
	}
	var dropped int
	err := v.Update(ctx, func(tx *vault.SealedTx) error {
		dropped = 0
		for i := range n {
			err := drop(tx, i)
			switch {
			case errors.Is(err, vault.ErrConflict):
				continue
			case err != nil:
				return err
			}
			dropped++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return dropped, nil
}

// dropStrayPostings walks the postings and removes each one that does not
// belong to its current live version's set (DropTokens refuses one that
// does), a page per transaction, and returns how many it removed.
func dropStrayPostings(ctx context.Context, v *vault.Sealed) (int, error) {
	store := v.Store()
	var dropped int
	for after := (vault.IndexEntry{}); ; {
		es, err := store.IndexEntries(ctx, after, auditPage)
		if err != nil {
			return dropped, err
		}
		n, err := dropEach(ctx, v, len(es), func(tx *vault.SealedTx, i int) error { return tx.DropTokens(ctx, es[i]) })
		dropped += n
		if err != nil {
			return dropped, err
		}
		if len(es) < auditPage {
			return dropped, nil
		}
		after = es[len(es)-1]
	}
}
