package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// addRecord queues a leaf of type t that commits to rec: a consent event, a
// policy activation, an access decision or an erasure. rec is marshalled to
// JSON once; those exact bytes and their salt are kept beside the leaf, so
// the record can be handed to a verifier with its receipt. rec MUST hold
// opaque ids only (resource references, client ids, codes, hashes), never
// PHI: the record is listed to auditors and patients. subject is the
// "Patient/<id>" the record is about, or ""; actor is the client id.
// It returns the leaf's index in the log.
func addRecord(ctx context.Context, tx *vault.SealedTx, t anchor.LeafType, ref, subject, actor string, at time.Time, rec any) (uint64, []byte, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return 0, nil, fmt.Errorf("encode %s record: %w", t, err)
	}
	salt, err := anchor.NewSalt()
	if err != nil {
		return 0, nil, err
	}
	commitment := anchor.Commit(t, salt, body)
	seq, err := tx.AddLeaf(ctx, vault.Leaf{
		Type: uint8(t), Data: anchor.LeafData(t, commitment), Ref: ref,
		Record: body, Salt: salt, Subject: subject, Actor: actor, Time: at,
	})
	if err != nil {
		return 0, nil, fmt.Errorf("queue %s leaf: %w", t, err)
	}
	return uint64(seq - 1), salt, nil
}

// tokener computes keyed tokens; *vault.Sealed and *vault.SealedTx are.
type tokener interface {
	Token(parts ...string) []byte
}

// recordRef names a patient or a resource in a record: records are
// anchored, listed to auditors and patients, and never erased, while an id
// is the client's choice and can be an MRN. So a record never holds an id:
// "Patient/123" becomes "Patient/tok-<32 hex digits>", an HMAC-SHA256 under
// the vault's blind-index key (derived from the master key) in a domain of
// its own; "Observation/abc/_history/2" keeps its type and version. "" stays
// "". Auditors get tokens resolved while the resource exists (refNames).
func recordRef(k tokener, ref string) string {
	typ, rest, ok := strings.Cut(ref, "/")
	if !ok || rest == "" {
		return ""
	}
	id, history, _ := strings.Cut(rest, "/")
	out := typ + "/" + refToken(k, typ, id)
	if history != "" {
		out += "/" + history
	}
	return out
}

// recordActor names the FHIR user a client acts as in a record: a patient,
// a relative or another person (a patient's own app, a proxy) by
// recordRef, like the patients records are about; a practitioner or an
// organization as it is, so auditors see who acted.
func recordActor(k tokener, ref string) string {
	switch typ, _, _ := strings.Cut(ref, "/"); typ {
	case "Patient", "RelatedPerson", "Person":
		return recordRef(k, ref)
	}
	return ref
}

// refToken is the token that stands for typ/id in records.
func refToken(k tokener, typ, id string) string {
	return "tok-" + hex.EncodeToString(k.Token("record-ref/v1", typ, id)[:16])
}

// consentInReason is how a policy's reasons name a Consent.
var consentInReason = regexp.MustCompile(`\bConsent/[A-Za-z0-9\-.]{1,64}`)

// recordReasons rewrites the Consents a decision's reasons name into
// recordRefs, for its record.
func recordReasons(k tokener, reasons []string) []string {
	out := make([]string, len(reasons))
	for i, r := range reasons {
		out[i] = consentInReason.ReplaceAllStringFunc(r, func(ref string) string { return recordRef(k, ref) })
	}
	return out
}

// recordConsents names the Consent versions a decision was based on by
// token ("tok-…"), for its record.
func recordConsents(k tokener, refs []policy.ConsentRef) []policy.ConsentRef {
	if refs == nil {
		return nil
	}
	out := make([]policy.ConsentRef, len(refs))
	for i, c := range refs {
		out[i] = policy.ConsentRef{ID: refToken(k, "Consent", c.ID), VersionID: c.VersionID}
	}
	return out
}

// clientOf returns the authenticated client id, or "".
func clientOf(ctx context.Context) string {
	if p, ok := principalFrom(ctx); ok {
		return p.ClientID
	}
	return ""
}

// microsNow is the record time: UTC, at the microsecond precision a Store keeps.
func microsNow(now func() time.Time) time.Time {
	return now().UTC().Truncate(time.Microsecond)
}
