package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/search"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// The decision log as FHIR AuditEvents, after IHE Basic Audit Log Patterns
// (BALP): one AuditEvent per record leaf of the kinds below, id = the leaf
// index. Records name patients and resources by keyed token; an AuditEvent
// carries the token as what.identifier (RecordRefSystem) and adds the
// reference it stands for as what.reference where /v1/decisions would list
// it as "resolved". Research decisions name no patient; deidentification
// records (one per stored version) are the research copy's bookkeeping, not
// an event anyone did, and are not AuditEvents.

// auditLeafTypes are the leaf types whose records are AuditEvents.
var auditLeafTypes = []anchor.LeafType{anchor.LeafAccessDecision, anchor.LeafConsentEvent, anchor.LeafPolicyActivation, anchor.LeafErasure}

// Codes of the AuditEvent views (BALP and its terminologies).
var (
	restType         = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/audit-event-type", Code: "rest", Display: "RESTful Operation"}
	restSubtype      = "http://hl7.org/fhir/restful-interaction"
	sourceRoleID     = fhirCoding{System: "http://dicom.nema.org/resources/ontology/DCM", Code: "110153", Display: "Source Role ID"}
	destinationRole  = fhirCoding{System: "http://dicom.nema.org/resources/ontology/DCM", Code: "110152", Display: "Destination Role ID"}
	userAgentType    = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", Code: "IRCP", Display: "information recipient"}
	custodianType    = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", Code: "CST", Display: "custodian"}
	applicationSrv   = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/security-source-type", Code: "4", Display: "Application Server"}
	entityPerson     = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/audit-entity-type", Code: "1", Display: "Person"}
	entitySystemObj  = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/audit-entity-type", Code: "2", Display: "System Object"}
	rolePatient      = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/object-role", Code: "1", Display: "Patient"}
	roleDomain       = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/object-role", Code: "4", Display: "Domain Resource"}
	roleSecurityRes  = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/object-role", Code: "13", Display: "Security Resource"}
	roleQuery        = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/object-role", Code: "24", Display: "Query"}
	purposeOfUseCode = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
)

type auditEvent struct {
	ResourceType   string          `json:"resourceType"`
	ID             string          `json:"id"`
	Extension      []fhirExtension `json:"extension"`
	Type           fhirCoding      `json:"type"`
	Subtype        []fhirCoding    `json:"subtype,omitempty"`
	Action         string          `json:"action,omitempty"`
	Recorded       string          `json:"recorded"`
	Outcome        string          `json:"outcome"`
	OutcomeDesc    string          `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []fhirConcept   `json:"purposeOfEvent,omitempty"`
	Agent          []auditAgent    `json:"agent"`
	Source         auditSource     `json:"source"`
	Entity         []auditEntity   `json:"entity,omitempty"`
}

type auditAgent struct {
	Type      *fhirConcept   `json:"type,omitempty"`
	Role      []fhirConcept  `json:"role,omitempty"`
	Who       *fhirReference `json:"who,omitempty"`
	Requestor bool           `json:"requestor"`
	Policy    []string       `json:"policy,omitempty"`
}

type auditSource struct {
	Observer fhirReference `json:"observer"`
	Type     []fhirCoding  `json:"type"`
}

type auditEntity struct {
	What        *fhirReference `json:"what,omitempty"`
	Type        *fhirCoding    `json:"type,omitempty"`
	Role        *fhirCoding    `json:"role,omitempty"`
	Description string         `json:"description,omitempty"`
	Detail      []auditDetail  `json:"detail,omitempty"`
}

type auditDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

// Outcomes: success, and a request the policy refused (BALP has no code of
// its own for a denial; 4 "minor failure" is the one an access control
// refusal usually gets: the request was well formed and answered).
const (
	outcomeSuccess = "0"
	outcomeDenied  = "4"
)

// renderAuditEvent renders record leaf l as an AuditEvent. root is the
// server root of receipt URLs; resolved maps record refs ("Type/tok-…") to
// the references the caller may see. ok is false for a leaf that is not an
// AuditEvent.
func renderAuditEvent(root string, l vault.Leaf, resolved map[string]string) (ev *auditEvent, ok bool, err error) {
	if len(l.Record) == 0 || !slices.Contains(auditLeafTypes, anchor.LeafType(l.Type)) {
		return nil, false, nil
	}
	kind, rec, err := access.Decode(l.Record)
	if err != nil {
		return nil, false, fmt.Errorf("render record leaf %d: %w", l.Seq-1, err)
	}
	index := uint64(l.Seq - 1)
	ev = &auditEvent{
		ResourceType: "AuditEvent", ID: strconv.FormatUint(index, 10),
		Extension: leafExtensions(root, index, string(kind), anchor.Commit(anchor.LeafType(l.Type), l.Salt, l.Record)),
		Recorded:  l.Time.UTC().Format(fhir.InstantLayout),
		Outcome:   outcomeSuccess,
		Source:    auditSource{Observer: gatewayRef, Type: []fhirCoding{applicationSrv}},
	}
	ref := func(r string) *fhirReference { return recordReference(r, resolved) }
	client := func(id string, requestor bool) auditAgent {
		a := auditAgent{Type: &fhirConcept{Coding: []fhirCoding{sourceRoleID}}, Requestor: requestor}
		if id != "" {
			a.Who = &fhirReference{Identifier: &fhirIdentifier{System: ClientSystem, Value: id}}
		} else {
			a.Who = &fhirReference{Display: "unknown client"}
		}
		return a
	}
	server := auditAgent{Type: &fhirConcept{Coding: []fhirCoding{destinationRole}}, Who: &gatewayRef, Requestor: false}
	patient := func(r string) auditEntity {
		return auditEntity{What: ref(r), Type: &entityPerson, Role: &rolePatient}
	}
	policyEntity := func(version int64, revision string, details ...auditDetail) auditEntity {
		d := []auditDetail{{Type: "policyVersion", ValueString: strconv.FormatInt(version, 10)}}
		if revision != "" {
			d = append(d, auditDetail{Type: "policyRevision", ValueString: revision})
		}
		return auditEntity{What: &fhirReference{Identifier: &fhirIdentifier{System: PolicySystem, Value: strconv.FormatInt(version, 10)}},
			Type: &entitySystemObj, Role: &roleSecurityRes, Description: "consent policy bundle", Detail: append(d, details...)}
	}
	purpose := func(p string) {
		if p != "" {
			ev.PurposeOfEvent = []fhirConcept{{Coding: []fhirCoding{{System: purposeOfUseCode, Code: p}}}}
		}
	}
	outcome := func(allow bool, reasons []string) {
		if !allow {
			ev.Outcome = outcomeDenied
		}
		ev.OutcomeDesc = strings.Join(reasons, "; ")
	}
	roles := func(rs []string) []fhirConcept {
		var out []fhirConcept
		for _, r := range rs {
			out = append(out, fhirConcept{Text: r})
		}
		return out
	}

	switch r := rec.(type) {
	case *access.Decision:
		typ, _, _ := strings.Cut(r.Resource, "/")
		switch {
		case r.Action == "read" && strings.Contains(r.Resource, "/"):
			ev.Type, ev.Subtype, ev.Action = restType, []fhirCoding{{System: restSubtype, Code: "read"}}, "R"
		case r.Action == "read":
			ev.Type, ev.Subtype, ev.Action = restType, []fhirCoding{{System: restSubtype, Code: "search-type"}}, "E"
		default:
			// A write is decided for the patient before the version exists:
			// the record does not say create, update or delete.
			ev.Type, ev.Subtype = restType, []fhirCoding{{System: RecordEventSystem, Code: r.Action}}
		}
		outcome(r.Allow, r.Reasons)
		purpose(r.Purpose)
		requestor := client(r.Client, r.Actor == "")
		requestor.Role = roles(r.Roles)
		requestor.Policy = policyURIs(r.PolicyRevision, r.BasedOn)
		ev.Agent = append(ev.Agent, requestor)
		if r.Actor != "" {
			ev.Agent = append(ev.Agent, auditAgent{Type: &fhirConcept{Coding: []fhirCoding{userAgentType}}, Who: ref(r.Actor), Requestor: true})
		}
		if r.Organization != "" {
			ev.Agent = append(ev.Agent, auditAgent{Type: &fhirConcept{Text: "organization"}, Who: ref(r.Organization), Requestor: false})
		}
		ev.Agent = append(ev.Agent, server)
		if r.Patient != "" {
			ev.Entity = append(ev.Entity, patient(r.Patient))
		}
		switch {
		case strings.Contains(r.Resource, "/"):
			ev.Entity = append(ev.Entity, auditEntity{What: ref(r.Resource), Type: &entitySystemObj, Role: &roleDomain})
		case r.Resource != "":
			ev.Entity = append(ev.Entity, auditEntity{What: &fhirReference{Type: typ}, Type: &entitySystemObj, Role: &roleQuery,
				Description: "search of " + typ})
		}
		for _, c := range r.BasedOn {
			ev.Entity = append(ev.Entity, auditEntity{What: ref("Consent/" + c.ID + "/_history/" + c.VersionID),
				Type: &entitySystemObj, Role: &roleSecurityRes, Description: "consent"})
		}
		var extra []auditDetail
		if r.BreakGlass {
			extra = append(extra, auditDetail{Type: "breakGlass", ValueString: "true"})
		}
		for _, o := range r.Obligations {
			b, err := json.Marshal(o)
			if err != nil {
				return nil, false, fmt.Errorf("render record leaf %d: %w", index, err)
			}
			extra = append(extra, auditDetail{Type: "obligation", ValueString: string(b)})
		}
		ev.Entity = append(ev.Entity, policyEntity(r.PolicyVersion, r.PolicyRevision, extra...))
	case *access.ResearchDecision:
		ev.Type, ev.Subtype, ev.Action = fhirCoding{System: RecordKindSystem, Code: string(kind)},
			[]fhirCoding{{System: RecordEventSystem, Code: r.Action}}, "E"
		outcome(r.Allow, r.Reasons)
		purpose(r.Purpose)
		requestor := client(r.Client, r.Actor == "")
		requestor.Role = roles(r.Roles)
		if r.PolicyRevision != "" {
			requestor.Policy = policyURIs(r.PolicyRevision, nil)
		}
		ev.Agent = append(ev.Agent, requestor)
		if r.Actor != "" {
			ev.Agent = append(ev.Agent, auditAgent{Type: &fhirConcept{Coding: []fhirCoding{userAgentType}}, Who: ref(r.Actor), Requestor: true})
		}
		ev.Agent = append(ev.Agent, server)
		d := []auditDetail{{Type: "shape", ValueString: r.Shape},
			{Type: "permitted", ValueString: strconv.Itoa(r.Permitted)}, {Type: "refused", ValueString: strconv.Itoa(r.Refused)}}
		if r.Released != "" {
			d = append(d, auditDetail{Type: "released", ValueString: r.Released})
		}
		for _, f := range r.Files {
			d = append(d, auditDetail{Type: "file", ValueString: f.Type + " " + strconv.Itoa(f.Count) + " sha256:" + f.SHA256})
		}
		ev.Entity = append(ev.Entity, auditEntity{What: &fhirReference{Identifier: &fhirIdentifier{System: RecordEventSystem + "/query", Value: r.Query}},
			Type: &entitySystemObj, Role: &roleQuery, Description: "cohort " + r.Action, Detail: d})
		ev.Entity = append(ev.Entity, policyEntity(r.PolicyVersion, r.PolicyRevision))
	case *access.ConsentEvent:
		ev.Type, ev.Subtype = fhirCoding{System: RecordKindSystem, Code: string(kind)}, []fhirCoding{{System: RecordEventSystem, Code: r.Event}}
		switch r.Event {
		case "created":
			ev.Action = "C"
		case "deleted":
			ev.Action = "D"
		default:
			ev.Action = "U"
		}
		ev.Agent = []auditAgent{client(r.Client, true), server}
		ev.Entity = append(ev.Entity, patient(r.Patient))
		d := []auditDetail{{Type: "commitment", ValueString: r.Commitment.String()}}
		if r.Status != "" {
			d = append(d, auditDetail{Type: "status", ValueString: r.Status})
		}
		ev.Entity = append(ev.Entity, auditEntity{What: ref(r.Consent), Type: &entitySystemObj, Role: &roleSecurityRes,
			Description: "consent", Detail: d})
	case *access.PolicyActivation:
		event := "activation"
		if r.Rollback {
			event = "rollback"
		}
		ev.Type, ev.Subtype, ev.Action = fhirCoding{System: RecordKindSystem, Code: string(kind)}, []fhirCoding{{System: RecordEventSystem, Code: event}}, "E"
		ev.Agent = []auditAgent{client(r.Client, true), server}
		var d []auditDetail
		if r.Previous != 0 {
			d = append(d, auditDetail{Type: "previousVersion", ValueString: strconv.FormatInt(r.Previous, 10)})
		}
		ev.Entity = append(ev.Entity, policyEntity(r.Version, r.Revision, d...))
	case *access.Erasure:
		ev.Type, ev.Subtype, ev.Action = fhirCoding{System: RecordKindSystem, Code: string(access.KindErasure)}, []fhirCoding{{System: RecordEventSystem, Code: "erasure"}}, "D"
		ev.Agent = []auditAgent{client(r.Client, true), server}
		e := patient(r.Erased)
		e.Detail = []auditDetail{{Type: "versionsErased", ValueString: strconv.FormatInt(r.Versions, 10)}}
		ev.Entity = append(ev.Entity, e)
	default:
		return nil, false, nil
	}
	return ev, true, nil
}

// policyURIs are the policies an access decision was made under, as
// AuditEvent.agent.policy: the policy bundle's revision and the Consent
// versions that decided.
func policyURIs(revision string, consents []policy.ConsentRef) []string {
	var out []string
	if revision != "" {
		out = append(out, "urn:fhiranchor:policy:"+revision)
	}
	for _, c := range consents {
		out = append(out, "urn:fhiranchor:consent:"+c.ID+":"+c.VersionID)
	}
	return out
}

// recordReference renders a record's name for a patient, an actor or a
// resource: a Ref ("Type/tok-…[/_history/n]") as its token, and the
// reference it stands for where resolved has it; anything else (a
// practitioner, an organization) as it is.
func recordReference(r string, resolved map[string]string) *fhirReference {
	typ, rest, ok := strings.Cut(r, "/")
	if !ok || !strings.HasPrefix(rest, "tok-") {
		return &fhirReference{Reference: r}
	}
	tok, history, _ := strings.Cut(rest, "/")
	out := &fhirReference{Type: typ, Identifier: &fhirIdentifier{System: RecordRefSystem, Value: r}}
	if name, ok := resolved[typ+"/"+tok]; ok {
		out.Reference = name
		if history != "" {
			out.Reference += "/" + history
		}
	}
	return out
}

// readAuditEvent is GET AuditEvent/[n].
func (s *service) readAuditEvent(ctx context.Context, id string) ([]byte, error) {
	notFound := failure(http.StatusNotFound, "not-found", "", "no such AuditEvent")
	seq, ok := leafID(id)
	if !ok {
		return nil, notFound
	}
	l, err := s.vault.Store().Leaf(ctx, seq)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("read record leaf: %w", err)
	}
	if len(l.Record) == 0 || !slices.Contains(auditLeafTypes, anchor.LeafType(l.Type)) {
		return nil, notFound
	}
	if err := mayReadRecord(ctx, s.vault, l); err != nil {
		return nil, err
	}
	resolved, err := s.names.resolve(ctx, recordRefs(l))
	if err != nil {
		return nil, err
	}
	ev, _, err := renderAuditEvent(s.apiRoot(ctx), l, resolved)
	if err != nil {
		return nil, err
	}
	setResponse(ctx, http.StatusOK, "last-modified", l.Time.UTC().Format(http.TimeFormat))
	return json.Marshal(ev)
}

// maxAuditScan bounds the leaves one AuditEvent search reads; a page the
// filters leave short then ends with a next link.
const maxAuditScan = 20000

// searchAuditEvents is GET AuditEvent?params. patient and agent (a client
// id) select leaves in the store, as /v1/decisions does; every other
// parameter of AuditEvent is matched on the rendered AuditEvent.
func (s *service) searchAuditEvents(ctx context.Context, params url.Values, strict bool) ([]byte, error) {
	count, err := derivedCount(params)
	if err != nil {
		return nil, err
	}
	before, err := derivedCursor(params)
	if err != nil {
		return nil, err
	}
	rest := url.Values{}
	f := vault.LeafFilter{Before: before}
	var patient string
	for k, vs := range params {
		switch k {
		case "_count", "_cursor", "_format", "_pretty":
		case "patient":
			if len(vs) != 1 || strings.Contains(vs[0], ",") {
				return nil, failure(http.StatusBadRequest, "not-supported", "", "AuditEvent search takes one patient")
			}
			if patient, err = normPatient(vs[0]); err != nil {
				return nil, err
			}
		case "agent":
			if len(vs) == 1 && !strings.ContainsAny(vs[0], "/,|") {
				f.Actor = vs[0] // a client id
				continue
			}
			rest[k] = vs // a reference: matched on agent.who
		default:
			rest[k] = vs
		}
	}
	if patient, err = recordsScope(ctx, patient); err != nil {
		return nil, err
	}
	if patient != "" {
		f.Subject = access.Ref(s.vault, patient)
	}
	q, err := search.Parse("AuditEvent", rest, strict)
	if err != nil {
		return nil, queryError(err)
	}
	if len(q.Include) > 0 || len(q.RevInclude) > 0 || len(q.Sort) > 0 || q.Summary != "" || len(q.Elements) > 0 {
		return nil, failure(http.StatusBadRequest, "not-supported", "", "AuditEvent search supports no _include, _revinclude, _sort, _summary or _elements; it lists newest first")
	}
	root := s.apiRoot(ctx)
	var ids []string
	var page []json.RawMessage
	next := ""
	scanned := 0
	batch := max(count, 100)
	for count > 0 {
		ls, err := s.auditLeaves(ctx, f, batch)
		if err != nil {
			return nil, err
		}
		resolved, err := s.names.resolve(ctx, recordRefs(ls...))
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			f.Before = l.Seq
			scanned++
			ev, ok, err := renderAuditEvent(root, l, resolved)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			body, err := json.Marshal(ev)
			if err != nil {
				return nil, err
			}
			if len(q.Clauses) > 0 {
				tree, err := decodeStored(body)
				if err != nil {
					return nil, err
				}
				values, _ := search.Extract("AuditEvent", tree)
				if slices.ContainsFunc(q.Clauses, func(c search.Clause) bool { return !c.Match(values) }) {
					continue
				}
			}
			ids, page = append(ids, ev.ID), append(page, body)
			if len(page) == count {
				break
			}
		}
		if len(page) == count || scanned >= maxAuditScan {
			next = strconv.FormatInt(f.Before, 10)
			break
		}
		if len(ls) < batch {
			break
		}
	}
	setResponse(ctx, http.StatusOK)
	return derivedSet(s.base(ctx), "AuditEvent", params, ids, page, next)
}

// auditLeaves returns the n newest record leaves of the audited types
// that f selects (f.Type and f.Limit aside), newest first.
func (s *service) auditLeaves(ctx context.Context, f vault.LeafFilter, n int) ([]vault.Leaf, error) {
	var all []vault.Leaf
	for _, t := range auditLeafTypes {
		f.Type, f.Limit = uint8(t), n
		ls, err := s.vault.Store().FindLeaves(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("list records: %w", err)
		}
		all = append(all, ls...)
	}
	slices.SortFunc(all, func(a, b vault.Leaf) int { return int(b.Seq - a.Seq) })
	if len(all) > n {
		all = all[:n]
	}
	return all, nil
}
