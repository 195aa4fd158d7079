package research

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/vault"
)

// The cohort index is built from the research copies: it follows the
// vault's versions in commit order (catchUp), so every gateway sharing a
// database converges on the same index and a query sees every write
// acknowledged before it.

// DefaultExportTTL is how long finished exports are kept when
// Config.ExportTTL is not set.
const DefaultExportTTL = 24 * time.Hour

// Config configures the research vertical.
type Config struct {
	// Vault holds the versions, their research copies and the decision
	// log. Required.
	Vault *vault.Sealed
	// Access decides consent per patient. Required.
	Access *access.Control
	// Log receives operational messages (opaque keys only); nil means
	// slog.Default().
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Profile is the de-identification profile; nil means deid.SafeHarbor().
	Profile *deid.Config
	// Privacy are the protections of released counts. Zero fields take
	// cohort's defaults; an empty Key derives the noise key from the
	// vault's keys.
	Privacy cohort.Privacy
	// ExportDir holds export files; "" means a new temporary directory.
	ExportDir string
	// ExportTTL is how long finished exports are kept (default
	// DefaultExportTTL).
	ExportTTL time.Duration
	// Stage, if set, runs at named stages of every export build
	// ("selected", "files", "holds"), so that a test can erase a patient at
	// a chosen moment. It runs on the build's goroutine.
	Stage func(stage string)
	// Metrics, if set, is told of every cohort query answered or refused.
	Metrics Metrics
	// IndexFile is where the cohort index's sealed snapshot is kept, so
	// that a restart loads it and replays only what was committed since,
	// instead of opening every research copy; "" keeps none (every start
	// rebuilds the index).
	IndexFile string
}

// Metrics receives counts of the cohort service's work for an operator's
// metrics. Its methods MUST return quickly and MUST be safe for concurrent
// use.
type Metrics interface {
	// Queried is called once per cohort query decided: released says
	// whether an answer was released (false: the repeat limit refused
	// it), suppressed how many of its counts (the total and the cells)
	// were suppressed.
	Queried(released bool, suppressed int)
}

// Service serves cohort questions from the index of research copies, and
// owns the de-identifier that makes them and the export runner.
type Service struct {
	vault   *vault.Sealed
	access  *access.Control
	index   atomic.Pointer[cohort.Index] // replaced once, by the snapshot loaded at start
	privacy cohort.Privacy
	deid    *Deidentifier
	exports *Exports
	// criteria seals the criteria kept in research records.
	criteria criteriaSeal
	log      *slog.Logger
	now      func() time.Time
	metrics  Metrics // nil: none

	// feed serializes catchUp; after is the Seq of the last version indexed
	// and erasedAfter that of the last erasure leaf applied.
	feed        sync.Mutex
	after       int64
	erasedAfter int64
	// patients maps each indexed patient compartment to its recordRef, the
	// name erasure leaves give it.
	patients map[string]string
	// skipped counts the research copies left out of the index because
	// they did not open or decode.
	skipped atomic.Int64

	// indexFile and snapshotKey keep the index's snapshot (snapshot.go);
	// loaded says the first catchUp has run (it loads the snapshot);
	// changed counts the versions and erasures applied since the last
	// snapshot; ready is set once the index answers for everything
	// committed before the service started.
	indexFile   string
	snapshotKey []byte
	loaded      bool
	changed     int
	erased      bool // a patient was removed since the last snapshot
	ready       atomic.Bool
	// notes are the facts the writer extracted from the copies it made,
	// by commitment, so catchUp need not open and decode them again;
	// fromNotes and fromCopies count the versions indexed either way.
	notes      *notes
	fromNotes  atomic.Int64
	fromCopies atomic.Int64

	// limits serializes the repeat-limit check with the record that counts
	// toward it, so two concurrent queries cannot both take the last slot.
	limits sync.Mutex
}

// New builds the research copy's engine, the cohort index and the export
// runner. The de-identification, noise and criteria keys are derived from
// the vault's keys, so every gateway sharing a master key makes the same
// pseudonyms and date shifts, and no extra secret needs distributing.
func New(cfg Config) (*Service, error) {
	v := cfg.Vault
	if v == nil || cfg.Access == nil {
		return nil, errors.New("research: Vault and Access are required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	profile := cfg.Profile
	if profile == nil {
		profile = deid.SafeHarbor()
	}
	engine, err := deid.New(profile, deid.Keys{
		DateShift:  v.Token("research-key", "date-shift"),
		CryptoHash: v.Token("research-key", "crypto-hash"),
		Encrypt:    v.Token("research-key", "encrypt"),
	})
	if err != nil {
		return nil, fmt.Errorf("de-identification profile: %w", err)
	}
	p := cfg.Privacy
	if len(p.Key) == 0 {
		p.Key = v.Token("research-key", "noise")
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("cohort privacy: %w", err)
	}
	criteria, err := newCriteriaSeal(v.Token("research-key", "cohort-criteria"))
	if err != nil {
		return nil, err
	}
	s := &Service{
		vault: v, access: cfg.Access, privacy: p, log: log, now: now, metrics: cfg.Metrics,
		criteria: criteria, indexFile: cfg.IndexFile, snapshotKey: v.Token("research-key", "cohort-index"), notes: newNotes(),
	}
	s.deid = &Deidentifier{engine: engine, profile: profile.Name, log: log, notes: s.notes}
	s.index.Store(cohort.NewIndex())
	dir := cfg.ExportDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fhiranchor-exports-"); err != nil {
			return nil, fmt.Errorf("export directory: %w", err)
		}
	}
	ttl := cfg.ExportTTL
	if ttl <= 0 {
		ttl = DefaultExportTTL
	}
	s.exports = newExports(s, dir, ttl, log, cfg.Stage)
	return s, nil
}

// Deidentifier returns the de-identifier the writer makes research copies
// with.
func (s *Service) Deidentifier() *Deidentifier { return s.deid }

// Exports returns the export runner.
func (s *Service) Exports() *Exports { return s.exports }

// Skipped returns how many research copies were left out of the index
// because they did not open or decode.
func (s *Service) Skipped() int64 { return s.skipped.Load() }

// IndexStats returns what the cohort index holds now.
func (s *Service) IndexStats() cohort.Stats { return s.idx().Stats() }

func (s *Service) idx() *cohort.Index { return s.index.Load() }

// Ready reports whether the cohort index has been loaded (from its snapshot
// or rebuilt) and caught up with what was committed before the service
// started: until then a count would wait for it.
func (s *Service) Ready() bool { return s.ready.Load() }

// catchUpBatch is how many versions catchUp reads per query to the vault.
const catchUpBatch = 512

// catchUp indexes every version committed since the last call, in commit
// order, and drops the patients erased since. It returns once the index
// reflects everything committed before it was called.
func (s *Service) catchUp(ctx context.Context) error {
	s.feed.Lock()
	defer s.feed.Unlock()
	if !s.loaded {
		if err := s.loadSnapshot(ctx); err != nil {
			return err
		}
		s.loaded = true
	}
	store := s.vault.Store()
	for {
		recs, err := store.Versions(ctx, s.after, catchUpBatch)
		if err != nil {
			return fmt.Errorf("read versions to index: %w", err)
		}
		for _, rec := range recs {
			if err := s.apply(ctx, rec); err != nil {
				return err
			}
			s.after = rec.Leaf.Seq
			s.changed++
		}
		if len(recs) < catchUpBatch {
			break
		}
	}
	return s.applyErasures(ctx)
}

// apply indexes one version: its copy replaces whatever the index held for
// the resource; a tombstone, an erased version or a version without a copy
// removes it. A copy that does not open or decode is skipped (and the
// resource removed, so no older copy stands in for it), logged and
// counted: the index must keep following the log. Only the end of ctx
// stops it.
func (s *Service) apply(ctx context.Context, rec vault.Record) error {
	key := rec.Type + "/" + rec.ID
	if rec.Deleted || rec.Erased || len(rec.Deid) == 0 {
		s.idx().Delete(key)
		return nil
	}
	s.notePatient(rec.Compartment())
	if e, ok := s.notes.take(rec.Commitment); ok {
		// The writer extracted the facts from this very copy.
		s.fromNotes.Add(1)
		if err := s.idx().PutEntry(key, rec.Compartment(), e); err != nil {
			s.log.WarnContext(ctx, "research copy not indexed", slog.String("type", rec.Type), slog.String("err", err.Error()))
			s.idx().Delete(key)
		}
		return nil
	}
	s.fromCopies.Add(1)
	data, err := s.vault.OpenCopy(ctx, rec)
	if errors.Is(err, vault.ErrErased) {
		s.idx().Delete(key)
		return nil
	}
	var tree map[string]any
	if err == nil {
		tree, err = fhir.DecodeObject(data)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("open research copy: %w", ctx.Err())
		}
		s.skip(ctx, key, rec)
		return nil
	}
	if err := s.idx().Put(key, rec.Compartment(), rec.Type, tree); err != nil {
		// A copy the index cannot read is left out, not fatal: the index
		// must keep following the log.
		s.log.WarnContext(ctx, "research copy not indexed", slog.String("type", rec.Type), slog.String("err", err.Error()))
		s.idx().Delete(key)
	}
	return nil
}

// notePatient remembers the recordRef of an indexed patient compartment,
// the name erasure leaves give it.
func (s *Service) notePatient(c string) {
	if c != "" && s.patients[c] == "" {
		if s.patients == nil {
			s.patients = map[string]string{}
		}
		s.patients[c] = access.Ref(s.vault, c)
	}
}

// skip leaves a version's copy out of the index. The log names the
// resource type and the version's leaf only: the error of a copy that
// does not decode could quote it.
func (s *Service) skip(ctx context.Context, key string, rec vault.Record) {
	s.idx().Delete(key)
	s.skipped.Add(1)
	s.log.WarnContext(ctx, "research copy skipped: it does not open or decode",
		slog.String("type", rec.Type), slog.Int64("leaf", rec.Leaf.Seq-1)) // the leaf index, as receipts and audit name it
}

// applyErasures drops the patients erased since the last call. An erasure
// updates versions in place, so the version feed does not show it; the
// erasure leaves do.
func (s *Service) applyErasures(ctx context.Context) error {
	store := s.vault.Store()
	var fresh []vault.Leaf
	before := int64(0)
	for {
		ls, err := store.FindLeaves(ctx, vault.LeafFilter{Type: uint8(anchor.LeafErasure), Before: before, Limit: 256})
		if err != nil {
			return fmt.Errorf("read erasures: %w", err)
		}
		done := false
		for _, l := range ls {
			if l.Seq <= s.erasedAfter {
				done = true
				break
			}
			fresh = append(fresh, l)
		}
		if done || len(ls) < 256 {
			break
		}
		before = ls[len(ls)-1].Seq
	}
	for i := len(fresh) - 1; i >= 0; i-- {
		// Erasure leaves name the patient by recordRef; erasures are rare,
		// so a scan of the indexed patients finds it.
		for c, ref := range s.patients {
			if ref == fresh[i].Subject {
				s.idx().RemovePatient(c)
				delete(s.patients, c)
				s.erased = true
			}
		}
		s.erasedAfter = fresh[i].Seq
		s.changed++
	}
	return nil
}

// snapshotEvery is how often Run considers writing a snapshot, and
// snapshotMin the changes (versions and erasures applied) that make it
// worth writing: a tenth of the index, and at least this many.
const (
	snapshotEvery = time.Minute
	snapshotMin   = 10_000
)

// Run loads the index (from its snapshot, replaying what was committed
// since) and keeps it warm until ctx ends: it follows the vault every few
// seconds, so a query rarely waits for more than the last moments of
// writes, and writes a snapshot now and then and on the way out.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	lastSave := time.Now()
	for {
		if err := s.catchUp(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "cohort index could not follow the vault", slog.String("err", err.Error()))
		} else if err == nil && !s.ready.Load() {
			s.ready.Store(true)
			s.log.InfoContext(ctx, "cohort index ready", slog.Int("resources", s.idx().Stats().Resources))
		}
		s.notes.age()
		if s.shouldSave(time.Since(lastSave)) {
			s.saveSnapshot(ctx)
			lastSave = time.Now()
		}
		select {
		case <-ctx.Done():
			s.saveSnapshot(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
		}
	}
}

// shouldSave says whether enough has changed since the last snapshot.
func (s *Service) shouldSave(since time.Duration) bool {
	s.feed.Lock()
	defer s.feed.Unlock()
	if s.indexFile == "" || !s.loaded || s.changed == 0 {
		return false
	}
	if s.erased {
		// An erased patient's facts must not outlive the erasure in the
		// snapshot: rewrite it at once.
		return true
	}
	big := s.changed >= max(snapshotMin, s.idx().Stats().Resources/10)
	return big && since >= snapshotEvery || s.changed >= 4*max(snapshotMin, s.idx().Stats().Resources/10)
}

// saveSnapshot writes the index's snapshot if anything changed since the
// last one. A failure is logged: the snapshot only saves time at start.
func (s *Service) saveSnapshot(ctx context.Context) {
	s.feed.Lock()
	defer s.feed.Unlock()
	if s.indexFile == "" || !s.loaded || s.changed == 0 {
		return
	}
	leaf, ok, err := s.leafHash(ctx, s.after)
	if err == nil && !ok {
		err = errors.New("the leaf of the last version indexed is missing")
	}
	var size int64
	if err == nil {
		size, err = writeSnapshot(s.indexFile, s.snapshotKey, snapshotHeader{after: s.after, erasedAfter: s.erasedAfter, leaf: leaf}, s.idx())
	}
	if err != nil {
		s.log.WarnContext(ctx, "cohort index snapshot not written", slog.String("err", err.Error()))
		return
	}
	s.changed, s.erased = 0, false
	s.log.InfoContext(ctx, "cohort index snapshot written", slog.Int64("bytes", size), slog.Int64("after", s.after))
}

// loadSnapshot replaces the empty index with the snapshot's, if there is a
// usable one; the caller holds feed and replays from s.after.
func (s *Service) loadSnapshot(ctx context.Context) error {
	if s.indexFile == "" {
		return nil
	}
	start := time.Now()
	h, ix, err := readSnapshot(s.indexFile, s.snapshotKey)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		var ok bool
		var leaf [32]byte
		if leaf, ok, err = s.leafHash(ctx, h.after); err != nil {
			return err // the vault, not the snapshot: try again later
		}
		if !ok || leaf != h.leaf {
			err = fmt.Errorf("%w: it is not of this vault's log", errSnapshot)
		}
	}
	if err != nil {
		// Not trusted: rebuild from the copies; the next snapshot replaces it.
		s.log.WarnContext(ctx, "cohort index snapshot not used; rebuilding the index", slog.String("err", err.Error()))
		s.changed = 1
		return nil
	}
	s.index.Store(ix)
	s.after, s.erasedAfter = h.after, h.erasedAfter
	ix.Patients(s.notePatient)
	s.log.InfoContext(ctx, "cohort index snapshot loaded", slog.Int("resources", ix.Stats().Resources),
		slog.Int64("after", h.after), slog.Duration("took", time.Since(start)))
	return nil
}
