package access

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Kind names a record type. Every anchored record carries its kind, and each
// kind is committed under one leaf type (Kind.LeafType). Golden files in
// testdata/records pin each type's JSON: a record is anchored forever, so
// its shape never changes silently.
type Kind string

// The record kinds.
const (
	// KindAccessDecision: one read or write of one patient's data, decided.
	KindAccessDecision Kind = "access-decision"
	// KindResearchDecision: one cohort query or export over many patients,
	// decided per patient and released in aggregate.
	KindResearchDecision Kind = "research-decision"
	// KindConsentEvent: a Consent created, revised, activated, inactivated or deleted.
	KindConsentEvent Kind = "consent-event"
	// KindPolicyActivation: a policy bundle version made the deciding one.
	KindPolicyActivation Kind = "policy-activation"
	// KindErasure: a patient's data crypto-shredded.
	KindErasure Kind = "erasure"
	// KindDeidentification: a version's research copy, by hash and changes.
	KindDeidentification Kind = "deidentification"
)

// LeafType is the leaf type records of kind k are committed under.
func (k Kind) LeafType() anchor.LeafType {
	switch k {
	case KindAccessDecision, KindResearchDecision:
		return anchor.LeafAccessDecision
	case KindConsentEvent:
		return anchor.LeafConsentEvent
	case KindPolicyActivation:
		return anchor.LeafPolicyActivation
	case KindErasure:
		return anchor.LeafErasure
	case KindDeidentification:
		return anchor.LeafDeidentification
	}
	return 0
}

// Decision is the record of an access decision. It holds codes and tokens
// only: Patient and Resource are Refs, never ids.
type Decision struct {
	Kind           Kind                `json:"kind"` // KindAccessDecision
	Time           string              `json:"time"`
	Client         string              `json:"client"`
	Actor          string              `json:"actor,omitempty"`
	Organization   string              `json:"organization,omitempty"`
	Roles          []string            `json:"roles,omitempty"`
	Action         string              `json:"action"`
	Purpose        string              `json:"purpose,omitempty"`
	Patient        string              `json:"patient"`
	Resource       string              `json:"resource,omitempty"`
	Allow          bool                `json:"allow"`
	Reasons        []string            `json:"reasons"`
	Obligations    []policy.Obligation `json:"obligations,omitempty"`
	BasedOn        []policy.ConsentRef `json:"basedOn,omitempty"`
	PolicyRevision string              `json:"policyRevision"`
	PolicyVersion  int64               `json:"policyVersion"`
	BreakGlass     bool                `json:"breakGlass,omitempty"`
}

// ResearchDecision is the record of a cohort query or export. Its leaf's
// subject is ResearchSubject, so the repeat limit counts a client's
// near-identical queries from the log. It holds hashes, counts and policy
// metadata; the released answer is aggregate (suppressed cells carry no
// count), so it holds no PHI either.
type ResearchDecision struct {
	Kind           Kind            `json:"kind"` // KindResearchDecision
	Time           string          `json:"time"`
	Client         string          `json:"client"`
	Actor          string          `json:"actor,omitempty"`
	Organization   string          `json:"organization,omitempty"`
	Roles          []string        `json:"roles,omitempty"`
	Action         string          `json:"action"` // research-query or export
	Purpose        string          `json:"purpose,omitempty"`
	Query          string          `json:"query"`              // the query's fingerprint
	Shape          string          `json:"shape"`              // its shape: near-identical queries share it
	Criteria       string          `json:"criteria,omitempty"` // its canonical criteria, sealed by the research service
	Breakdown      []string        `json:"breakdown,omitempty"`
	Allow          bool            `json:"allow"`
	Reasons        []string        `json:"reasons"`
	Permitted      int             `json:"permitted"`          // patients whose consent permits this use
	Refused        int             `json:"refused"`            // patients whose consent does not
	Released       string          `json:"released,omitempty"` // SHA-256 (hex) of what was released
	Answer         json.RawMessage `json:"answer,omitempty"`   // a count or breakdown as released
	Files          []ExportFile    `json:"files,omitempty"`    // an export's files
	PolicyRevision string          `json:"policyRevision,omitempty"`
	PolicyVersion  int64           `json:"policyVersion"`
}

// ExportFile is one NDJSON file of an export, as its record and manifest name it.
type ExportFile struct {
	Type   string `json:"type"`
	URL    string `json:"url,omitempty"` // in the manifest only
	Count  int    `json:"count"`
	SHA256 string `json:"sha256"`
}

// ResearchSubject is the leaf subject of every research decision, so the
// log lists research releases without reading past clinical decisions.
const ResearchSubject = "cohort"

// ConsentEvent is the record of a change of a Consent.
type ConsentEvent struct {
	Kind    Kind   `json:"kind"`    // KindConsentEvent
	Event   string `json:"event"`   // created, revised, activated, inactivated, deleted
	Patient string `json:"patient"` // a Ref
	// Consent is the version the event made current, as a Ref:
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

// PolicyActivation is the record of a policy version made the deciding one.
type PolicyActivation struct {
	Kind     Kind   `json:"kind"` // KindPolicyActivation
	Version  int64  `json:"version"`
	Revision string `json:"revision"` // the bundle's digest
	Previous int64  `json:"previous,omitempty"`
	Rollback bool   `json:"rollback,omitempty"`
	Client   string `json:"client"`
	Time     string `json:"time"`
}

// Erasure is the record of a patient's data crypto-shredded. Records made
// before it had a kind have the same fields without "kind".
type Erasure struct {
	Kind     Kind   `json:"kind"`     // KindErasure
	Erased   string `json:"erased"`   // the compartment, as a Ref: "Patient/tok-…"
	ErasedAt string `json:"erasedAt"` // FHIR instant
	Versions int64  `json:"versions"` // how many versions were shredded
	Client   string `json:"client,omitempty"`
}

// Deidentification is the record of a version's research copy. It holds
// element paths, rule ids and hashes only, never a value.
type Deidentification struct {
	Kind            Kind     `json:"kind"` // KindDeidentification
	Time            string   `json:"time"`
	Resource        string   `json:"resource"` // the source version as a Ref, "Type/<token>/_history/n"
	Source          string   `json:"source"`   // the source version's commitment (hex): its leaf is type 1 || this
	Output          string   `json:"output"`   // SHA-256 (hex) of the copy's canonical bytes
	Profile         string   `json:"profile"`
	ProfileRevision string   `json:"profileRevision"`
	Labels          []string `json:"labels"`
	// Rules names which rule changed which elements, and how: one entry per
	// rule and method, in the compact form records are written in (absent
	// when the copy changed nothing).
	Rules []DeidRule `json:"rules,omitempty"`
	// Changes is the form records made before Rules have: one entry per
	// changed element, its path starting with the resource type. Nothing
	// writes it any more; it is read so those records still decode.
	Changes []deid.Change `json:"changes,omitempty"`
}

// DeidRule is what one de-identification rule changed with one method.
// Paths are relative to the resource, without its type: "name[0].given",
// "extension[2].valueAddress.city" ("" is the resource itself).
type DeidRule struct {
	Rule   string   `json:"rule"`
	Method string   `json:"method"`
	Paths  []string `json:"paths"`
}

// DeidRules groups a copy's changes by rule and method, for a record. The
// rules are sorted by rule then method, and each rule's paths in order, so
// the same changes make the same record whatever order the walk found them
// in.
func DeidRules(typ string, changes []deid.Change) []DeidRule {
	if len(changes) == 0 {
		return nil
	}
	sorted := slices.Clone(changes)
	slices.SortFunc(sorted, func(a, b deid.Change) int {
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		if c := strings.Compare(a.Method, b.Method); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	var out []DeidRule
	for _, c := range sorted {
		p := c.Path
		if rest, ok := strings.CutPrefix(p, typ); ok && (rest == "" || rest[0] == '.') {
			p = strings.TrimPrefix(rest, ".")
		}
		if n := len(out); n > 0 && out[n-1].Rule == c.Rule && out[n-1].Method == c.Method {
			out[n-1].Paths = append(out[n-1].Paths, p)
			continue
		}
		out = append(out, DeidRule{Rule: c.Rule, Method: c.Method, Paths: []string{p}})
	}
	return out
}

// Add queues a leaf of kind k that commits to rec: rec is marshalled to
// JSON once; those exact bytes and their salt are kept beside the leaf, so
// the record can be handed to a verifier with its receipt. rec MUST hold
// opaque ids only (Refs, client ids, codes, hashes), never PHI: the record
// is listed to auditors and patients. subject is the Ref of the patient the
// record is about ("" for none); actor is the client id. It returns the
// leaf's index in the log and the salt.
func Add(ctx context.Context, tx *vault.SealedTx, k Kind, ref, subject, actor string, at time.Time, rec any) (uint64, []byte, error) {
	e, err := NewEntry(k, ref, subject, actor, at, rec)
	if err != nil {
		return 0, nil, err
	}
	idx, err := e.Add(ctx, tx)
	return idx, e.leaf.Salt, err
}

// Entry is a record made ready to be added as a leaf: marshalled, salted,
// committed to and packed. Making one needs no transaction, so a caller
// makes it on its own goroutine and leaves the writer, which every write
// and every read's decision waits for, only the rows to insert.
type Entry struct {
	kind Kind
	leaf vault.Leaf
}

// NewEntry makes the leaf Add would queue, with the same arguments.
func NewEntry(k Kind, ref, subject, actor string, at time.Time, rec any) (Entry, error) {
	t := k.LeafType()
	if t == 0 {
		return Entry{}, fmt.Errorf("record of unknown kind %q", k)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return Entry{}, fmt.Errorf("encode %s record: %w", k, err)
	}
	salt, err := anchor.NewSalt()
	if err != nil {
		return Entry{}, err
	}
	commitment := anchor.Commit(t, salt, body)
	l := vault.Leaf{
		Type: uint8(t), Data: anchor.LeafData(t, commitment), Ref: ref,
		Record: body, Salt: salt, Subject: subject, Actor: actor, Time: at,
	}
	vault.PackLeaf(&l)
	return Entry{kind: k, leaf: l}, nil
}

// Add queues the entry's leaf in tx and returns its index in the log.
func (e Entry) Add(ctx context.Context, tx *vault.SealedTx) (uint64, error) {
	seq, err := tx.AddLeaf(ctx, e.leaf)
	if err != nil {
		return 0, fmt.Errorf("queue %s leaf: %w", e.kind, err)
	}
	return uint64(seq - 1), nil
}

// Tokener computes keyed tokens; *vault.Sealed and *vault.SealedTx are.
type Tokener interface {
	Token(parts ...string) []byte
}

// Ref names a patient or a resource in a record: records are anchored,
// listed to auditors and patients, and never erased, while an id is the
// client's choice and can be an MRN. So a record never holds an id:
// "Patient/123" becomes "Patient/tok-<32 hex digits>", an HMAC-SHA256 under
// the vault's blind-index key (derived from the master key) in a domain of
// its own; "Observation/abc/_history/2" keeps its type and version. A bare
// resource type ("Observation", what a search decided) stays as it is; ""
// and anything else without an id stay "".
func Ref(k Tokener, ref string) string {
	typ, rest, ok := strings.Cut(ref, "/")
	if !ok && bareType.MatchString(ref) {
		return ref
	}
	if !ok || rest == "" {
		return ""
	}
	id, history, _ := strings.Cut(rest, "/")
	out := typ + "/" + RefToken(k, typ, id)
	if history != "" {
		out += "/" + history
	}
	return out
}

// ActorRef names the FHIR user a client acts as in a record: a patient, a
// relative or another person (a patient's own app, a proxy) by Ref, like
// the patients records are about; a practitioner or an organization as it
// is, so auditors see who acted.
func ActorRef(k Tokener, ref string) string {
	switch typ, _, _ := strings.Cut(ref, "/"); typ {
	case "Patient", "RelatedPerson", "Person":
		return Ref(k, ref)
	}
	return ref
}

// RefToken is the token that stands for typ/id in records.
func RefToken(k Tokener, typ, id string) string {
	return "tok-" + hex.EncodeToString(k.Token("record-ref/v1", typ, id)[:16])
}

// bareType is a FHIR resource type name alone.
var bareType = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)

// consentInReason is how a policy's reasons name a Consent.
var consentInReason = regexp.MustCompile(`\bConsent/[A-Za-z0-9\-.]{1,64}`)

// Reasons rewrites the Consents a decision's reasons name into Refs.
func Reasons(k Tokener, reasons []string) []string {
	out := make([]string, len(reasons))
	for i, r := range reasons {
		out[i] = consentInReason.ReplaceAllStringFunc(r, func(ref string) string { return Ref(k, ref) })
	}
	return out
}

// Consents names the Consent versions a decision was based on by token.
func Consents(k Tokener, refs []policy.ConsentRef) []policy.ConsentRef {
	if refs == nil {
		return nil
	}
	out := make([]policy.ConsentRef, len(refs))
	for i, c := range refs {
		out[i] = policy.ConsentRef{ID: RefToken(k, "Consent", c.ID), VersionID: c.VersionID}
	}
	return out
}

// Now is the record time: UTC, at the microsecond precision a Store keeps.
func Now(now func() time.Time) time.Time {
	return now().UTC().Truncate(time.Microsecond)
}

// Decode reads an anchored record strictly: its kind decides its type, and
// a field that type does not have is an error, so a record of a shape no
// kind describes cannot pass for one. Records made before kinds were one
// vocabulary decode too: an erasure without "kind", and a research decision
// that called itself "access-decision" (it has a "query").
func Decode(record []byte) (Kind, any, error) {
	if kind, rec, ok := decodeKindFirst(record); ok {
		return kind, rec, nil
	}
	return decodeTwice(record)
}

// decodeKindFirst decodes a record the way the gateway writes them, its
// "kind" first, in one pass, and reports whether it could. What it
// decodes, decodeTwice decodes the same (FuzzDecode holds it to that): the
// kind it reads first is the type's, no member the type lacks (a legacy
// "query" among them), nothing after the object, and no later "kind"
// member that would have decided otherwise. Anything else, decodeTwice
// decides.
func decodeKindFirst(record []byte) (Kind, any, bool) {
	rest, ok := bytes.CutPrefix(record, []byte(`{"kind":"`))
	if !ok {
		return "", nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return "", nil, false
	}
	kind := Kind(rest[:end])
	rec, decided := newRecord(kind)
	if rec == nil {
		return "", nil, false
	}
	// encoding/json/v2's decoder (go-json-experiment) is about three times
	// as fast as encoding/json's and stricter: members match their names
	// exactly, a name repeated, invalid UTF-8 or anything after the value
	// is an error. Whatever it rejects that encoding/json would accept,
	// decodeTwice decides as before.
	if err := jsonv2.Unmarshal(record, rec, jsonv2.RejectUnknownMembers(true)); err != nil {
		return "", nil, false
	}
	if *decided != kind {
		return "", nil, false
	}
	return kind, rec, true
}

// newRecord returns a new record of kind's type and its Kind field, nil
// for an unknown kind.
func newRecord(kind Kind) (any, *Kind) {
	switch kind {
	case KindAccessDecision:
		r := &Decision{}
		return r, &r.Kind
	case KindResearchDecision:
		r := &ResearchDecision{}
		return r, &r.Kind
	case KindConsentEvent:
		r := &ConsentEvent{}
		return r, &r.Kind
	case KindPolicyActivation:
		r := &PolicyActivation{}
		return r, &r.Kind
	case KindErasure:
		r := &Erasure{}
		return r, &r.Kind
	case KindDeidentification:
		r := &Deidentification{}
		return r, &r.Kind
	}
	return nil, nil
}

// decodeTwice is Decode for any record: one pass for the kind, a second,
// strict, for the type the kind decides.
func decodeTwice(record []byte) (Kind, any, error) {
	var head struct {
		Kind  Kind            `json:"kind"`
		Query json.RawMessage `json:"query"`
	}
	if err := json.Unmarshal(record, &head); err != nil {
		return "", nil, fmt.Errorf("decode record: %w", err)
	}
	kind := head.Kind
	switch {
	case kind == "":
		kind = KindErasure
	case kind == KindAccessDecision && head.Query != nil:
		kind = KindResearchDecision
	}
	rec, _ := newRecord(kind)
	if rec == nil {
		return "", nil, fmt.Errorf("decode record: unknown kind %q", kind)
	}
	dec := json.NewDecoder(bytes.NewReader(record))
	dec.DisallowUnknownFields()
	if err := dec.Decode(rec); err != nil {
		return "", nil, fmt.Errorf("decode %s record: %w", kind, err)
	}
	return kind, rec, nil
}
