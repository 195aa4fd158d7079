package research

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
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
