package research

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
)

// The research copy. Every stored version of a resource in a patient
// compartment gets a de-identified copy, made by package deid in the same
// transaction and sealed beside the version (so erasing the patient shreds
// it too). A deidentification leaf commits to the copy's hash and to the
// record of which rule changed which element, so a researcher's row can be
// tied to an anchored source version without revealing it.

// Deidentifier makes the research copy of a version.
type Deidentifier struct {
	engine  *deid.Engine
	profile string // the profile's name, for records
	log     *slog.Logger
	notes   *notes // nil: none kept
}

// Copy de-identifies tree, the version of a typ resource about to be
// stored in compartment, in the knowledge of its patient (subject), and
// returns the copy's canonical bytes and its record; at is the version's
// time, location the recordRef of the version and commitment the version's
// commitment. A resource the engine cannot handle is stored without a copy
// (nil, nil: it is left out of research) rather than refused: the clinical
// write must not depend on the research copy.
func (d *Deidentifier) Copy(ctx context.Context, typ string, tree map[string]any, compartment string, subject deid.Subject, at time.Time, location string, commitment []byte) ([]byte, *access.Deidentification) {
	res, err := d.engine.Apply(typ, tree, deid.Options{Patient: compartment, Now: at, Subject: subject})
	if err == nil {
		var body []byte
		if body, err = fhir.Canonical(res.Tree); err == nil {
			if d.notes != nil {
				if e, err := cohort.Extract(typ, res.Tree); err == nil {
					d.notes.put(commitment, e)
				}
			}
			sum := sha256.Sum256(body)
			labels := res.Labels
			if labels == nil {
				labels = []string{}
			}
			return body, &access.Deidentification{
				Kind: access.KindDeidentification, Time: at.Format(time.RFC3339Nano), Resource: location,
				Source: hex.EncodeToString(commitment), Output: hex.EncodeToString(sum[:]),
				Profile: d.profile, ProfileRevision: d.engine.Revision(), Labels: labels, Rules: access.DeidRules(typ, res.Changes),
			}
		}
	}
	// The error names no value (deid's errors never do), but the resource
	// type is all the operator needs to find it.
	d.log.WarnContext(ctx, "no research copy: de-identification failed", slog.String("type", typ), slog.String("err", err.Error()))
	return nil, nil
}

// notes hand the cohort index the facts the writer extracted from each copy
// it made, by the version's commitment (unique per version: it is salted),
// so that the index, which follows the vault in commit order, need not
// open and decode the copy again. A note whose version never commits (a
// rolled-back transaction) is dropped after two rounds of the index's
// catch-up; a version whose note is missing or dropped is read from the
// vault as before. Notes are bounded: beyond maxNotes new ones are not kept.
type notes struct {
	mu   sync.Mutex
	cur  map[string]cohort.Entry
	prev map[string]cohort.Entry
}

const maxNotes = 1 << 17

func newNotes() *notes {
	return &notes{cur: map[string]cohort.Entry{}, prev: map[string]cohort.Entry{}}
}

func (n *notes) put(commitment []byte, e cohort.Entry) {
	if len(commitment) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.cur)+len(n.prev) < maxNotes {
		n.cur[string(commitment)] = e
	}
}

// take returns and forgets the note of a commitment.
func (n *notes) take(commitment []byte) (cohort.Entry, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := string(commitment)
	if e, ok := n.cur[k]; ok {
		delete(n.cur, k)
		return e, true
	}
	e, ok := n.prev[k]
	delete(n.prev, k)
	return e, ok
}

// age drops the notes older than the previous round.
func (n *notes) age() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.prev, n.cur = n.cur, map[string]cohort.Entry{}
}
