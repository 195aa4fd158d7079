package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Consent state. A patient's consent state is the set of live Consent
// resources whose patient is that patient, at their current versions. It
// is kept where the Consents are, in the vault: every Consent version carries
// a blind-index token of its patient (ConsentToken), so the state is one
// indexed lookup (Find) on committed data, the same on every gateway sharing
// the database. A revised or revoked Consent therefore changes the very next
// decision. Compiled consents are cached by id and version, which never
// change.
//
// Every change of a Consent (created, revised, activated, inactivated,
// deleted) is a consent event: a record of opaque ids committed as a
// consent-event leaf in the same transaction as the version.

// ConsentToken is the blind-index token under which a Consent is found by
// the patient it is about; the writer stores it with every Consent version.
func ConsentToken(k Tokener, patient string) []byte {
	return k.Token("consent-patient", patient)
}

// consentCacheSize bounds the compiled consents held in memory.
const consentCacheSize = 8192

type consentState struct {
	vault *vault.Sealed
	mu    sync.Mutex
	cache map[string]policy.CompiledConsent // "id/version" -> compiled
}

// Reader is the view stored state is read through when deciding: the
// committed store (Committed), or a transaction (*vault.SealedTx), so a
// write sees the consents and the Patient it is about to commit.
type Reader interface {
	Find(ctx context.Context, typ string, token []byte) ([]string, error)
	Current(ctx context.Context, typ, id string) (vault.Record, error)
	Read(ctx context.Context, typ, id string) (vault.Version, error)
}

var _ Reader = (*vault.SealedTx)(nil)

// Committed reads committed state.
type Committed struct{ Vault *vault.Sealed }

// Find is vault.Store.Find.
func (c Committed) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	return c.Vault.Store().Find(ctx, typ, token)
}

// Current is vault.Store.Current.
func (c Committed) Current(ctx context.Context, typ, id string) (vault.Record, error) {
	return c.Vault.Store().Current(ctx, typ, id)
}

// Read is vault.Sealed.Read.
func (c Committed) Read(ctx context.Context, typ, id string) (vault.Version, error) {
	return c.Vault.Read(ctx, typ, id)
}

// of returns the patient's consents, compiled.
func (c *consentState) of(ctx context.Context, r Reader, patient string) ([]policy.CompiledConsent, error) {
	out, _, err := c.versions(ctx, r, patient)
	return out, err
}

// versions returns the patient's consents, compiled, and the "id/version"
// of each, sorted: the consent state as a key that changes whenever a
// Consent of the patient is created, revised, deleted or erased.
func (c *consentState) versions(ctx context.Context, r Reader, patient string) ([]policy.CompiledConsent, []string, error) {
	ids, err := r.Find(ctx, "Consent", ConsentToken(c.vault, patient))
	if err != nil {
		return nil, nil, fmt.Errorf("find consents: %w", err)
	}
	out := make([]policy.CompiledConsent, 0, len(ids))
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		rec, err := r.Current(ctx, "Consent", id)
		if err != nil {
			return nil, nil, fmt.Errorf("read consent: %w", err)
		}
		if rec.Deleted || rec.Erased {
			continue
		}
		key := id + "/" + strconv.FormatInt(rec.Version, 10)
		c.mu.Lock()
		cc, ok := c.cache[key]
		c.mu.Unlock()
		if !ok {
			v, err := r.Read(ctx, "Consent", id)
			if errors.Is(err, vault.ErrErased) {
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("open consent: %w", err)
			}
			if v.Deleted {
				continue // deleted since Current: a concurrent write won
			}
			key = id + "/" + strconv.FormatInt(v.Version, 10)
			var tree map[string]any
			if err := json.Unmarshal(v.Body, &tree); err != nil {
				return nil, nil, fmt.Errorf("decode consent: %w", err)
			}
			// A Consent the policy cannot read is still passed on: the
			// engine denies a decision over a consent it cannot vouch for.
			if cc, err = policy.CompileConsent(tree); err != nil {
				return nil, nil, fmt.Errorf("compile consent: %w", err)
			}
			c.mu.Lock()
			if len(c.cache) >= consentCacheSize {
				clear(c.cache)
			}
			c.cache[key] = cc
			c.mu.Unlock()
		}
		out = append(out, cc)
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return out, keys, nil
}

// ConsentFacts is what an event compares between two versions of a Consent.
type ConsentFacts struct {
	patient string
	status  string
	live    bool
}

// FactsOfConsent reads the facts of a Consent version (nil or deleted: none).
func FactsOfConsent(tree map[string]any, deleted bool) ConsentFacts {
	if deleted || tree == nil {
		return ConsentFacts{}
	}
	status, _ := tree["status"].(string)
	return ConsentFacts{patient: fhir.PatientCompartment("Consent", tree), status: status, live: true}
}

// PreviousConsent reads the facts of the version a Consent write replaces.
func PreviousConsent(ctx context.Context, tx *vault.SealedTx, id string) (ConsentFacts, error) {
	tree, err := stored(ctx, tx, "Consent", id)
	if err != nil || tree == nil {
		return ConsentFacts{}, err
	}
	return FactsOfConsent(tree, false), nil
}

// RecordConsentEvents records the events of one Consent write by client:
// prev is what the version replaced, next what it is. A Consent that moves
// to another patient is deleted for one and created for the other.
func RecordConsentEvents(ctx context.Context, tx *vault.SealedTx, client string, prev, next ConsentFacts, location string, commitment []byte, at time.Time) error {
	type ev struct{ patient, event, status string }
	var evs []ev
	switch {
	case !next.live && prev.live:
		evs = append(evs, ev{prev.patient, "deleted", ""})
	case next.live && (!prev.live || prev.patient != next.patient):
		if prev.live {
			evs = append(evs, ev{prev.patient, "deleted", ""})
		}
		evs = append(evs, ev{next.patient, "created", next.status})
	case next.live && prev.status == "active" && next.status != "active":
		evs = append(evs, ev{next.patient, "inactivated", next.status})
	case next.live && prev.status != "active" && next.status == "active":
		evs = append(evs, ev{next.patient, "activated", next.status})
	case next.live:
		evs = append(evs, ev{next.patient, "revised", next.status})
	}
	for _, e := range evs {
		if e.patient == "" {
			continue // a Consent about no patient governs no one's data
		}
		patient, consent := Ref(tx, e.patient), Ref(tx, location)
		rec := ConsentEvent{Kind: KindConsentEvent, Event: e.event, Patient: patient, Consent: consent,
			Status: e.status, Commitment: commitment, Client: client, Time: at.Format(time.RFC3339Nano)}
		if _, _, err := Add(ctx, tx, KindConsentEvent, "consent-event/"+consent, patient, client, at, rec); err != nil {
			return err
		}
	}
	return nil
}
