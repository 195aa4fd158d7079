package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Access decisions. Every read of patient data, and every write for a
// patient, is decided by the policy engine over the patient's consent state
// and recorded as an access-decision leaf: who (client, the FHIR actor it
// acts as, its organization and roles), what (the resource version, or the
// patient for a write), why (the purpose of use), the outcome, the consent
// versions and the policy revision that decided. A read is decided and
// recorded before any data is returned; a write is decided inside its own
// vault transaction, so the write and the decision that allowed it commit
// together. Resources outside every patient compartment (Organization,
// Practitioner...) are governed by scopes alone: no consent speaks for them.

// purposeHeader lets a client state the purpose of one request; it
// overrides the token's purpose_of_use claim.
const purposeHeader = "x-purpose-of-use"

// accessDecider decides consent questions; *policy.Engine is one.
type accessDecider interface {
	Decide(ctx context.Context, in policy.Input) (policy.Decision, error)
}

type access struct {
	engine   accessDecider
	consents *consentState
	vault    *vault.Sealed
	log      *slog.Logger
	now      func() time.Time
	// version is the stored policy version the engine runs (see policyAdmin).
	version atomic.Int64
}

// decisionRecord is the record of an access-decision leaf. It holds codes
// and tokens only: Patient and Resource are recordRefs, never ids.
type decisionRecord struct {
	Kind           string              `json:"kind"` // "access-decision"
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

// input builds the policy input for the authenticated caller.
func (a *access) input(ctx context.Context, action, patient string, res policy.ResourceRef, at time.Time) policy.Input {
	in := policy.Input{Time: at, Action: action, Patient: patient, Resource: res}
	if p, ok := principalFrom(ctx); ok {
		in.Actor = policy.Actor{ClientID: p.ClientID, Reference: p.FHIRUser, Roles: p.Roles, Organization: p.Organization}
		in.Purpose = p.PurposeOfUse
	}
	if h := header(ctx, purposeHeader); h != "" {
		in.Purpose = h
	}
	return in
}

// decide evaluates in over the patient's consents as r sees them. It fails
// closed: a consent that cannot be compiled denies with a reason; only an
// infrastructure failure (the vault) returns an error.
func (a *access) decide(ctx context.Context, r consentReader, in policy.Input) (policy.Decision, error) {
	consents, err := a.consents.of(ctx, r, in.Patient)
	if errors.Is(err, policy.ErrInvalidConsent) {
		// No patient reference in the log: a client-chosen id can be an MRN.
		// The decision record names the patient, for those allowed to see it.
		a.log.WarnContext(ctx, "a consent cannot be compiled: access denied", slog.String("client", in.Actor.ClientID))
		return policy.Decision{Reasons: []string{"invalid consent: default deny"}}, nil
	}
	if err != nil {
		return policy.Decision{}, err
	}
	in.Compiled = consents
	d, err := a.engine.Decide(ctx, in)
	if err != nil {
		// d already denies and says why; the error is for the operator.
		a.log.ErrorContext(ctx, "policy evaluation failed: access denied", slog.String("err", err.Error()))
	}
	return d, nil
}

// record queues the decision's leaf in tx and returns its index.
func (a *access) record(ctx context.Context, tx *vault.SealedTx, in policy.Input, d policy.Decision, resource string) (uint64, error) {
	patient := recordRef(tx, in.Patient)
	rec := decisionRecord{
		Kind: "access-decision", Time: in.Time.Format(time.RFC3339Nano), Client: in.Actor.ClientID,
		Actor: recordActor(tx, in.Actor.Reference), Organization: in.Actor.Organization, Roles: in.Actor.Roles,
		Action: in.Action, Purpose: in.Purpose, Patient: patient, Resource: recordRef(tx, resource),
		Allow: d.Allow, Reasons: recordReasons(tx, d.Reasons), Obligations: d.Obligations, BasedOn: recordConsents(tx, d.BasedOn),
		PolicyRevision: d.PolicyRevision, PolicyVersion: a.version.Load(), BreakGlass: d.BreakGlass,
	}
	if rec.Reasons == nil {
		rec.Reasons = []string{}
	}
	idx, _, err := addRecord(ctx, tx, anchor.LeafAccessDecision, "access-decision", patient, in.Actor.ClientID, in.Time, rec)
	if err != nil {
		return 0, err
	}
	if d.BreakGlass {
		// Break-the-glass is allowed but must be seen: the record is
		// anchored like every decision, and the operator is told at once.
		a.log.WarnContext(ctx, "break-the-glass access", slog.String("client", in.Actor.ClientID),
			slog.Uint64("decision", idx))
	}
	return idx, nil
}

// read decides one read of a stored version and records the decision in its
// own transaction before anything is returned. It returns a 403
// OperationOutcome when the policy denies the read or the decision's
// obligations withhold this version. For a set of versions of one resource
// (history), the newest is decided and the rest are checked with withheld.
func (a *access) read(ctx context.Context, v vault.Version) (policy.Decision, error) {
	if v.Compartment == "" || v.Deleted {
		return policy.Decision{Allow: true}, nil
	}
	res, err := resourceRefOf(v)
	if err != nil {
		return policy.Decision{}, err
	}
	in := a.input(ctx, "read", v.Compartment, res, microsNow(a.now))
	d, err := a.decide(ctx, committed{a.vault}, in)
	if err != nil {
		return policy.Decision{}, err
	}
	var idx uint64
	err = a.vault.Update(ctx, func(tx *vault.SealedTx) error {
		idx, err = a.record(ctx, tx, in, d, v.Type+"/"+v.ID+"/_history/"+strconv.FormatInt(v.Version, 10))
		return err
	})
	if err != nil {
		return policy.Decision{}, fmt.Errorf("record access decision: %w", err)
	}
	if !d.Allow {
		return d, denied(d, idx)
	}
	if withheld(d, res.SecurityLabels) {
		return d, failure(http.StatusForbidden, "suppressed", "",
			"the resource carries security labels the patient's consent withholds (decision "+strconv.FormatUint(idx, 10)+")")
	}
	return d, nil
}

// denied is the OperationOutcome of a denying decision: its reasons name
// consents and provisions, never data.
func denied(d policy.Decision, idx uint64) *fhirError {
	return failure(http.StatusForbidden, "forbidden", "", "access not permitted by consent: "+
		strings.Join(d.Reasons, "; ")+" (decision "+strconv.FormatUint(idx, 10)+")")
}

// withheld reports whether a redact obligation of d covers any of labels.
// Labels are resource-level (meta.security), so redacting them withholds
// the whole version.
func withheld(d policy.Decision, labels []policy.Coding) bool {
	for _, o := range d.Obligations {
		if o.Type != "redact" {
			continue
		}
		for _, l := range o.SecurityLabels {
			if slices.Contains(labels, l) {
				return true
			}
		}
	}
	return false
}

// pendingDecision is a denying write decision to record after its
// transaction rolled back.
type pendingDecision struct {
	in policy.Input
	d  policy.Decision
}

// deniedWrite aborts an atomic write the policy denied. The transaction
// rolls back, so the denials it decided are recorded afterwards (see
// service.update): a refused write is an access decision too.
type deniedWrite struct {
	fe      *fhirError
	pending []pendingDecision
}

func (e *deniedWrite) Error() string { return e.fe.Error() }

// writes decides, once per patient compartment, whether the caller may
// write the ops' resources for that patient, and records each decision in
// tx. Denied ops fail with 403: all of them (atomic) or each on its own.
//
// Consent resources are not subject to the patient's consents: a patient's
// new or revoked directive must be recordable whatever the old one says (an
// expired opt-in would otherwise lock the patient's consent state forever).
// Scopes still govern who may write them.
func (a *access) writes(ctx context.Context, tx *vault.SealedTx, ops []*op, atomic bool, at time.Time) error {
	byPatient := map[string][]*op{}
	var order []string
	for _, o := range ops {
		if o.err != nil || o.pending == nil || o.pending.Compartment == "" || o.typ == "Consent" {
			continue
		}
		p := o.pending.Compartment
		if _, seen := byPatient[p]; !seen {
			order = append(order, p)
		}
		byPatient[p] = append(byPatient[p], o)
	}
	var refused []pendingDecision
	for _, patient := range order {
		org, err := managingOrganization(ctx, tx, patient, byPatient[patient])
		if err != nil {
			return err
		}
		in := a.input(ctx, "write", patient, policy.ResourceRef{}, at)
		in.PatientOrganization = org
		d, err := a.decide(ctx, tx, in)
		if err != nil {
			return err
		}
		if !d.Allow && atomic {
			refused = append(refused, pendingDecision{in, d})
			continue
		}
		idx, err := a.record(ctx, tx, in, d, "")
		if err != nil {
			return err
		}
		if !d.Allow {
			for _, o := range byPatient[patient] {
				fe := denied(d, idx)
				fe.issues[0].Expression = []string{o.path("")}
				o.err = fe
			}
		}
	}
	if len(refused) > 0 {
		fe := failure(http.StatusForbidden, "forbidden", "", "writing for this patient is not permitted: "+strings.Join(refused[0].d.Reasons, "; "))
		if o := byPatient[refused[0].in.Patient][0]; o.entry >= 0 {
			fe.issues[0].Expression = []string{o.path("")}
		}
		return &deniedWrite{fe: fe, pending: refused}
	}
	return nil
}

// recordRefused records the decisions of a write that was refused and
// rolled back, and returns the refusal.
func (a *access) recordRefused(ctx context.Context, dw *deniedWrite) error {
	var idx uint64
	err := a.vault.Update(ctx, func(tx *vault.SealedTx) error {
		for _, p := range dw.pending {
			var err error
			if idx, err = a.record(ctx, tx, p.in, p.d, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record refused write: %w", err)
	}
	dw.fe.issues[0].Diagnostics += " (decision " + strconv.FormatUint(idx, 10) + ")"
	return dw.fe
}

// managingOrganization finds the patient's managingOrganization reference:
// in the Patient resource this request writes, else in the stored Patient.
func managingOrganization(ctx context.Context, tx *vault.SealedTx, patient string, ops []*op) (string, error) {
	id := strings.TrimPrefix(patient, "Patient/")
	for _, o := range ops {
		if o.typ == "Patient" && o.id == id && o.res != nil {
			return orgRef(o.res.Tree), nil
		}
	}
	v, err := tx.Read(ctx, "Patient", id)
	if errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrErased) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read patient: %w", err)
	}
	if v.Deleted {
		return "", nil
	}
	var tree map[string]any
	if err := json.Unmarshal(v.Body, &tree); err != nil {
		return "", fmt.Errorf("decode patient: %w", err)
	}
	return orgRef(tree), nil
}

func orgRef(patient map[string]any) string {
	m, _ := patient["managingOrganization"].(map[string]any)
	ref, _ := m["reference"].(string)
	return ref
}

// resourceRefOf describes a version to the policy: type, id, security
// labels, codes and its clinically relevant date. No values beyond codes.
func resourceRefOf(v vault.Version) (policy.ResourceRef, error) {
	var tree map[string]any
	if err := json.Unmarshal(v.Body, &tree); err != nil {
		return policy.ResourceRef{}, fmt.Errorf("decode stored version: %w", err)
	}
	return resourceFacts(v.Type, v.ID, tree), nil
}

// codeElements are the elements whose codings Consent.provision.code
// matches: what the resource is about.
var codeElements = []string{"code", "medicationCodeableConcept", "vaccineCode", "type"}

// dateElements are tried in order for the date provision.dataPeriod is
// compared with: when the clinical fact happened, not when it was stored.
var dateElements = []struct{ name, sub string }{
	{"effectiveDateTime", ""}, {"effectivePeriod", "start"}, {"effectiveInstant", ""},
	{"onsetDateTime", ""}, {"onsetPeriod", "start"}, {"performedDateTime", ""}, {"performedPeriod", "start"},
	{"occurrenceDateTime", ""}, {"occurrencePeriod", "start"}, {"authoredOn", ""}, {"recordedDate", ""},
	{"issued", ""}, {"period", "start"}, {"billablePeriod", "start"}, {"date", ""}, {"created", ""},
}

func resourceFacts(typ, id string, tree map[string]any) policy.ResourceRef {
	r := policy.ResourceRef{Type: typ, ID: id, Reference: typ + "/" + id}
	if meta, ok := tree["meta"].(map[string]any); ok {
		r.SecurityLabels = codings(meta["security"])
	}
	for _, name := range codeElements {
		if cc, ok := tree[name].(map[string]any); ok {
			r.Codes = append(r.Codes, codings(cc["coding"])...)
		}
	}
	for _, de := range dateElements {
		var s string
		if de.sub == "" {
			s, _ = tree[de.name].(string)
		} else if m, ok := tree[de.name].(map[string]any); ok {
			s, _ = m[de.sub].(string)
		}
		if s != "" {
			r.Date = s
			break
		}
	}
	return r
}

func codings(v any) []policy.Coding {
	list, _ := v.([]any)
	var out []policy.Coding
	for _, e := range list {
		m, _ := e.(map[string]any)
		code, _ := m["code"].(string)
		if code == "" {
			continue
		}
		system, _ := m["system"].(string)
		out = append(out, policy.Coding{System: system, Code: code})
	}
	return out
}
