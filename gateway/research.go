package gateway

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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

// The research copy. Every stored version of a resource in a patient
// compartment gets a de-identified copy, made by package deid in the same
// transaction and sealed beside the version (so erasing the patient shreds
// it too). A deidentification leaf commits to the copy's hash and to the
// record of which rule changed which element, so a researcher's row can be
// tied to an anchored source version without revealing it. The cohort index
// is built from these copies: it follows the vault's versions in commit order
// (catchUp), so every gateway sharing a database converges on the same index
// and a query sees every write acknowledged before it.

// deidentifier makes the research copy of a version.
type deidentifier struct {
	engine  *deid.Engine
	profile string // the profile's name, for records
	log     *slog.Logger
}

// copyOf de-identifies tree, the version about to be stored, in the
// knowledge of its patient (subject: see writer.subjects), and returns the
// copy's canonical bytes and its record. A resource the engine cannot
// handle is stored without a copy (so it is left out of research) rather
// than refused: the clinical write must not depend on the research copy.
func (d *deidentifier) copyOf(ctx context.Context, typ string, tree map[string]any, compartment string, subject deid.Subject, at time.Time, location string, commitment []byte) ([]byte, *access.Deidentification) {
	res, err := d.engine.Apply(typ, tree, deid.Options{Patient: compartment, Now: at, Subject: subject})
	if err == nil {
		var body []byte
		if body, err = fhir.Canonical(res.Tree); err == nil {
			sum := sha256.Sum256(body)
			changes := res.Changes
			if changes == nil {
				changes = []deid.Change{}
			}
			labels := res.Labels
			if labels == nil {
				labels = []string{}
			}
			return body, &access.Deidentification{
				Kind: access.KindDeidentification, Time: at.Format(time.RFC3339Nano), Resource: location,
				Source: hex.EncodeToString(commitment), Output: hex.EncodeToString(sum[:]),
				Profile: d.profile, ProfileRevision: d.engine.Revision(), Labels: labels, Changes: changes,
			}
		}
	}
	// The error names no value (deid's errors never do), but the resource
	// type is all the operator needs to find it.
	d.log.WarnContext(ctx, "no research copy: de-identification failed", slog.String("type", typ), slog.String("err", err.Error()))
	return nil, nil
}

// research serves cohort questions from the index of research copies.
type research struct {
	vault   *vault.Sealed
	access  *access.Control
	index   *cohort.Index
	privacy cohort.Privacy
	deid    *deidentifier
	// criteria seals the criteria kept in research records.
	criteria criteriaSeal
	log      *slog.Logger
	now      func() time.Time

	// feed serializes catchUp; after is the Seq of the last version indexed
	// and erasedAfter that of the last erasure leaf applied.
	feed        sync.Mutex
	after       int64
	erasedAfter int64
	// patients maps each indexed patient compartment to its recordRef, the
	// name erasure leaves give it.
	patients map[string]string

	// limits serializes the repeat-limit check with the record that counts
	// toward it, so two concurrent queries cannot both take the last slot.
	limits sync.Mutex

	// skipped counts the research copies left out of the index because
	// they did not open or decode (see Skipped).
	skipped atomic.Int64
}

// Skipped returns how many research copies the index has left out since
// start because they did not open or decode: a metric for the operator,
// who runs `fhiranchor audit` to find them.
func (r *research) Skipped() int64 { return r.skipped.Load() }

// catchUpBatch is how many versions catchUp reads per query to the vault.
const catchUpBatch = 512

// catchUp indexes every version committed since the last call, in commit
// order, and drops the patients erased since. It returns once the index
// reflects everything committed before it was called.
func (r *research) catchUp(ctx context.Context) error {
	r.feed.Lock()
	defer r.feed.Unlock()
	store := r.vault.Store()
	for {
		recs, err := store.Versions(ctx, r.after, catchUpBatch)
		if err != nil {
			return fmt.Errorf("read versions to index: %w", err)
		}
		for _, rec := range recs {
			if err := r.apply(ctx, rec); err != nil {
				return err
			}
			r.after = rec.Leaf.Seq
		}
		if len(recs) < catchUpBatch {
			break
		}
	}
	return r.applyErasures(ctx)
}

// apply indexes one version: its copy replaces whatever the index held for
// the resource; a tombstone, an erased version or a version without a copy
// removes it.
func (r *research) apply(ctx context.Context, rec vault.Record) error {
	key := rec.Type + "/" + rec.ID
	if rec.Deleted || rec.Erased || len(rec.Deid) == 0 {
		r.index.Delete(key)
		return nil
	}
	data, err := r.vault.OpenCopy(ctx, rec)
	if errors.Is(err, vault.ErrErased) {
		r.index.Delete(key)
		return nil
	}
	var tree map[string]any
	if err == nil {
		tree, err = decodeTree(data)
	}
	if err != nil {
		// A copy that does not open or decode was altered in the vault (or
		// its data key was): it is left out and counted, and the index
		// keeps following the log, rather than every query failing on it.
		// `fhiranchor audit` names it.
		r.skipped.Add(1)
		r.log.WarnContext(ctx, "research copy skipped: it does not open", slog.String("type", rec.Type),
			slog.Int64("leaf", rec.Leaf.Seq-1))
		r.index.Delete(key)
		return nil
	}
	if c := rec.Compartment(); c != "" && r.patients[c] == "" {
		if r.patients == nil {
			r.patients = map[string]string{}
		}
		r.patients[c] = access.Ref(r.vault, c)
	}
	if err := r.index.Put(key, rec.Compartment(), rec.Type, tree); err != nil {
		// A copy the index cannot read is left out, not fatal: the index
		// must keep following the log.
		r.log.WarnContext(ctx, "research copy not indexed", slog.String("type", rec.Type), slog.String("err", err.Error()))
		r.index.Delete(key)
	}
	return nil
}

// applyErasures drops the patients erased since the last call. An erasure
// updates versions in place, so the version feed does not show it; the
// erasure leaves do.
func (r *research) applyErasures(ctx context.Context) error {
	store := r.vault.Store()
	var fresh []vault.Leaf
	before := int64(0)
	for {
		ls, err := store.FindLeaves(ctx, vault.LeafFilter{Type: uint8(anchor.LeafErasure), Before: before, Limit: 256})
		if err != nil {
			return fmt.Errorf("read erasures: %w", err)
		}
		done := false
		for _, l := range ls {
			if l.Seq <= r.erasedAfter {
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
		for c, ref := range r.patients {
			if ref == fresh[i].Subject {
				r.index.RemovePatient(c)
				delete(r.patients, c)
			}
		}
		r.erasedAfter = fresh[i].Seq
	}
	return nil
}

// Run keeps the index warm: it follows the vault every few seconds, so a
// query rarely waits for more than the last moments of writes.
func (r *research) Run(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if err := r.catchUp(ctx); err != nil && ctx.Err() == nil {
			r.log.ErrorContext(ctx, "cohort index could not follow the vault", slog.String("err", err.Error()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// decodeTree decodes a stored copy.
func decodeTree(data []byte) (map[string]any, error) {
	v, err := fhir.Decode(data)
	if err != nil {
		return nil, err
	}
	tree, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return tree, nil
}

// Research defaults.
const (
	defaultExportTTL = 24 * time.Hour
)

// newResearch builds the research copy's engine, the cohort index and the
// export runner. The de-identification and noise keys are derived from the
// vault's keys, so every gateway sharing a master key makes the same
// pseudonyms and date shifts, and no extra secret needs distributing.
func newResearch(cfg ResearchConfig, v *vault.Sealed, ac *access.Control, log *slog.Logger) (*research, *exports, error) {
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
		return nil, nil, fmt.Errorf("de-identification profile: %w", err)
	}
	p := cfg.Privacy
	if len(p.Key) == 0 {
		p.Key = v.Token("research-key", "noise")
	}
	if err := p.Validate(); err != nil {
		return nil, nil, fmt.Errorf("cohort privacy: %w", err)
	}
	criteria, err := newCriteriaSeal(v)
	if err != nil {
		return nil, nil, err
	}
	r := &research{
		vault: v, access: ac, index: cohort.NewIndex(), privacy: p, log: log, now: time.Now,
		deid: &deidentifier{engine: engine, profile: profile.Name, log: log}, criteria: criteria,
	}
	dir := cfg.ExportDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fhiranchor-exports-"); err != nil {
			return nil, nil, fmt.Errorf("export directory: %w", err)
		}
	}
	ttl := cfg.ExportTTL
	if ttl <= 0 {
		ttl = defaultExportTTL
	}
	return r, newExports(r, dir, ttl, log), nil
}

// criteriaSeal encrypts the criteria a research record keeps for the
// overlap control. The criteria are the researcher's own words (codes,
// ranges, dates), but a code is any string, and records are anchored and
// never erased: free text must not sit there in clear, as the purpose of
// use must not. AES-256-GCM under a key derived from the master key, so
// every gateway sharing the vault opens what another sealed.
type criteriaSeal struct {
	aead cipher.AEAD
}

// criteriaAD binds a sealed value to its use.
var criteriaAD = []byte("fhiranchor cohort criteria v1")

func newCriteriaSeal(v *vault.Sealed) (criteriaSeal, error) {
	block, err := aes.NewCipher(v.Token("research-key", "cohort-criteria"))
	if err != nil {
		return criteriaSeal{}, fmt.Errorf("criteria key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return criteriaSeal{}, fmt.Errorf("criteria cipher: %w", err)
	}
	return criteriaSeal{aead: aead}, nil
}

// seal returns base64(nonce || ciphertext) of criteria.
func (c criteriaSeal) seal(criteria []byte) string {
	nonce := make([]byte, c.aead.NonceSize())
	rand.Read(nonce) // never fails
	return base64.StdEncoding.EncodeToString(c.aead.Seal(nonce, nonce, criteria, criteriaAD))
}

// open reverses seal.
func (c criteriaSeal) open(sealed string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(b) < c.aead.NonceSize() {
		return nil, errors.New("malformed sealed criteria")
	}
	n := c.aead.NonceSize()
	return c.aead.Open(nil, b[:n], b[n:], criteriaAD)
}
