package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Consent state. A patient's consent state is the set of live Consent
// resources whose patient is that patient, at their current versions. It
// is kept where the Consents are, in the vault: every Consent version carries
// a blind-index token of its patient, so the state is one indexed lookup
// (Find) on committed data, the same on every gateway sharing the database.
// A revised or revoked Consent therefore changes the very next decision.
// Compiled consents are cached by id and version, which never change.
//
// Every change of a Consent (created, revised, activated, inactivated,
// deleted) is a consent event: a record of opaque ids committed as a
// consent-event leaf in the same transaction as the version.

// consentToken is the blind-index token under which a Consent is found by
// the patient it is about.
func consentToken(v *vault.Sealed, patient string) []byte {
	return v.Token("consent-patient", patient)
}

// consentCacheSize bounds the compiled consents held in memory.
const consentCacheSize = 8192

type consentState struct {
	vault *vault.Sealed
	mu    sync.Mutex
	cache map[string]policy.CompiledConsent // "id/version" -> compiled
}

func newConsentState(v *vault.Sealed) *consentState {
	return &consentState{vault: v, cache: map[string]policy.CompiledConsent{}}
}

// consentReader is the view consents are read through: the committed store,
// or a transaction (so a write sees the consents it is about to commit).
type consentReader interface {
	Find(ctx context.Context, typ string, token []byte) ([]string, error)
	Current(ctx context.Context, typ, id string) (vault.Record, error)
	Read(ctx context.Context, typ, id string) (vault.Version, error)
}

var _ consentReader = (*vault.SealedTx)(nil)

// committed reads consents from committed state.
type committed struct{ s *vault.Sealed }

func (c committed) Find(ctx context.Context, typ string, token []byte) ([]string, error) {
	return c.s.Store().Find(ctx, typ, token)
}
func (c committed) Current(ctx context.Context, typ, id string) (vault.Record, error) {
	return c.s.Store().Current(ctx, typ, id)
}
func (c committed) Read(ctx context.Context, typ, id string) (vault.Version, error) {
	return c.s.Read(ctx, typ, id)
}

// of returns the patient's consents, compiled, with their references.
func (c *consentState) of(ctx context.Context, r consentReader, patient string) ([]policy.CompiledConsent, error) {
	ids, err := r.Find(ctx, "Consent", consentToken(c.vault, patient))
	if err != nil {
		return nil, fmt.Errorf("find consents: %w", err)
	}
	out := make([]policy.CompiledConsent, 0, len(ids))
	for _, id := range ids {
		rec, err := r.Current(ctx, "Consent", id)
		if err != nil {
			return nil, fmt.Errorf("read consent: %w", err)
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
				return nil, fmt.Errorf("open consent: %w", err)
			}
			if v.Deleted {
				continue // deleted since Current: a concurrent write won
			}
			key = id + "/" + strconv.FormatInt(v.Version, 10)
			var tree map[string]any
			if err := json.Unmarshal(v.Body, &tree); err != nil {
				return nil, fmt.Errorf("decode consent: %w", err)
			}
			// A Consent the policy cannot read is still passed on: the
			// engine denies a decision over a consent it cannot vouch for.
			if cc, err = policy.CompileConsent(tree); err != nil {
				return nil, fmt.Errorf("compile consent: %w", err)
			}
			c.mu.Lock()
			if len(c.cache) >= consentCacheSize {
				clear(c.cache)
			}
			c.cache[key] = cc
			c.mu.Unlock()
		}
		out = append(out, cc)
	}
	return out, nil
}

// consentEvent is the record of a consent-event leaf.
type consentEvent struct {
	Kind    string `json:"kind"`    // "consent-event"
	Event   string `json:"event"`   // created, revised, activated, inactivated, deleted
	Patient string `json:"patient"` // a recordRef
	// Consent is the version the event made current, as a recordRef:
	// "Consent/<token>/_history/<n>".
	Consent string `json:"consent"`
	// Status is the Consent's status after the event ("" when deleted).
	Status string `json:"status,omitempty"`
	// Commitment is the resource-version commitment of that version, which
	// binds this event to the Consent's content without repeating it.
	Commitment anchor.Hex `json:"commitment"`
	Client     string     `json:"client"`
	Time       string     `json:"time"`
}

// consentFacts is what an event compares between two versions of a Consent.
type consentFacts struct {
	patient string
	status  string
	live    bool
}

func factsOfConsent(tree map[string]any, deleted bool) consentFacts {
	if deleted || tree == nil {
		return consentFacts{}
	}
	status, _ := tree["status"].(string)
	return consentFacts{patient: fhir.PatientCompartment("Consent", tree), status: status, live: true}
}

// previousConsent reads the facts of the version a Consent write replaces.
func previousConsent(ctx context.Context, tx *vault.SealedTx, id string) (consentFacts, error) {
	v, err := tx.Read(ctx, "Consent", id)
	if errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrErased) {
		return consentFacts{}, nil
	}
	if err != nil {
		return consentFacts{}, fmt.Errorf("read previous consent: %w", err)
	}
	if v.Deleted {
		return consentFacts{}, nil
	}
	var tree map[string]any
	if err := json.Unmarshal(v.Body, &tree); err != nil {
		return consentFacts{}, fmt.Errorf("decode previous consent: %w", err)
	}
	return factsOfConsent(tree, false), nil
}

// consentEvents records the events of one Consent write: prev is what the
// version replaced, next what it is. A Consent that moves to another patient
// is deleted for one and created for the other.
func consentEvents(ctx context.Context, tx *vault.SealedTx, prev, next consentFacts, location string, commitment []byte, at time.Time) error {
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
	client := clientOf(ctx)
	for _, e := range evs {
		if e.patient == "" {
			continue // a Consent about no patient governs no one's data
		}
		patient, consent := recordRef(tx, e.patient), recordRef(tx, location)
		rec := consentEvent{Kind: "consent-event", Event: e.event, Patient: patient, Consent: consent,
			Status: e.status, Commitment: commitment, Client: client, Time: at.Format(time.RFC3339Nano)}
		if _, _, err := addRecord(ctx, tx, anchor.LeafConsentEvent, "consent-event/"+consent, patient, client, at, rec); err != nil {
			return err
		}
	}
	return nil
}
