package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/api/httpbody"
)

// Derived resources: AuditEvent and Provenance are also FHIR views of the
// log, rendered on each request from anchored leaves and never stored.
//
//   - AuditEvent/[n] is the record leaf n (an access decision, a research
//     decision, a consent event, a policy activation or an erasure), for the
//     callers /v1/decisions admits: auditors any, a patient those about them.
//   - Provenance/[n] is the resource-version leaf n, for the callers who may
//     read that version, and auditors.
//
// Clients may still store AuditEvents and Provenances of their own (HL7
// examples, Synthea and US Core clients send them in transactions). The
// two never mix, by a rule a client cannot get around:
//
//   - an id of digits only is the log's: a write that would store an
//     AuditEvent or Provenance under one (PUT, conditional update-as-create,
//     a Bundle entry, a DELETE) is refused with 405; server-assigned ids are
//     UUIDs. Read of a digits-only id answers from the log, of any other id
//     from the vault (with that type's scopes and consent, as any resource).
//   - a stored one must not carry the log-leaf or receipt extension (422),
//     so only the log's carry them.
//   - type search (GET AuditEvent?…, GET Provenance?…) answers from the log
//     only; system search, compartment search and _include/_revinclude
//     refuse these types, so the two never appear in one result.

// derivedTypes are the resource types the gateway derives from its log.
var derivedTypes = map[string]bool{"AuditEvent": true, "Provenance": true}

// isLogID reports whether id is in the log's id space: digits only.
func isLogID(id string) bool {
	if id == "" {
		return false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// derivedID refuses a write of a derived type under an id of the log's.
func derivedID(typ, id string) error {
	if isLogID(id) {
		return failure(http.StatusMethodNotAllowed, "not-supported", "",
			typ+" ids of digits only are the anchored log's: they cannot be written")
	}
	return nil
}

// derivedBody refuses a stored AuditEvent or Provenance that carries the
// extensions only the log's carry.
func derivedBody(typ string, tree map[string]any) error {
	exts, _ := tree["extension"].([]any)
	for _, e := range exts {
		m, _ := e.(map[string]any)
		if u, _ := m["url"].(string); u == LogLeafExtension || u == ReceiptExtension {
			return failure(http.StatusUnprocessableEntity, "business-rule", typ+".extension",
				"only the anchored log's "+typ+" resources carry the log-leaf and receipt extensions")
		}
	}
	return nil
}

// errDerivedHistory refuses the interactions a log view does not have.
func errDerivedHistory(typ string) *fhirError {
	return failure(http.StatusBadRequest, "not-supported", "",
		typ+"/[digits] is derived from the anchored log: read only, no versions or history")
}

// Extensions and systems of the derived views.
const (
	// LogLeafExtension is a complex extension naming the log leaf a
	// derived resource stands for: "index" (unsignedInt), "kind" (code) and
	// "commitment" (the leaf's salted commitment, hex).
	LogLeafExtension = "https://fhiranchor.dev/fhir/StructureDefinition/log-leaf"
	// ClientSystem is the identifier system of OAuth client ids.
	ClientSystem = "https://fhiranchor.dev/fhir/sid/client"
	// RecordRefSystem is the identifier system of the keyed tokens records
	// name patients and resources by ("Patient/tok-…").
	RecordRefSystem = "https://fhiranchor.dev/fhir/sid/record-ref"
	// PolicySystem is the identifier system of policy bundle versions.
	PolicySystem = "https://fhiranchor.dev/fhir/sid/policy-version"
	// RecordKindSystem is the code system of record kinds (access.Kind),
	// the AuditEvent.type of records that are not REST interactions.
	RecordKindSystem = "https://fhiranchor.dev/fhir/CodeSystem/record-kind"
	// RecordEventSystem is the code system of AuditEvent.subtype for
	// those records: consent events, activations, research actions, writes.
	RecordEventSystem = "https://fhiranchor.dev/fhir/CodeSystem/record-event"
)

// fhirCoding and the types below render derived resources with a fixed
// field order.
type fhirCoding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

type fhirConcept struct {
	Coding []fhirCoding `json:"coding,omitempty"`
	Text   string       `json:"text,omitempty"`
}

type fhirIdentifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

type fhirReference struct {
	Reference  string          `json:"reference,omitempty"`
	Type       string          `json:"type,omitempty"`
	Identifier *fhirIdentifier `json:"identifier,omitempty"`
	Display    string          `json:"display,omitempty"`
}

type fhirExtension struct {
	URL              string          `json:"url"`
	ValueURL         string          `json:"valueUrl,omitempty"`
	ValueCode        string          `json:"valueCode,omitempty"`
	ValueString      string          `json:"valueString,omitempty"`
	ValueUnsignedInt *uint64         `json:"valueUnsignedInt,omitempty"`
	Extension        []fhirExtension `json:"extension,omitempty"`
}

// leafExtensions are the extensions of a derived resource standing for the
// leaf at index: where its receipt is, and the leaf itself.
func leafExtensions(root string, index uint64, kind string, commitment []byte) []fhirExtension {
	idx := strconv.FormatUint(index, 10)
	return []fhirExtension{
		{URL: ReceiptExtension, ValueURL: root + "/v1/receipts/leaves/" + idx},
		{URL: LogLeafExtension, Extension: []fhirExtension{
			{URL: "index", ValueUnsignedInt: &index},
			{URL: "kind", ValueCode: kind},
			{URL: "commitment", ValueString: hex.EncodeToString(commitment)},
		}},
	}
}

// gateway is how a derived resource names this server: the observer of
// every AuditEvent and the custodian of every Provenance.
var gatewayRef = fhirReference{Identifier: &fhirIdentifier{System: "urn:ietf:rfc:3986", Value: "urn:fhiranchor:gateway"}, Display: "fhiranchor gateway"}

// apiRoot is the server root of /v1 URLs: the FHIR base without /fhir/r4.
func (s *service) apiRoot(ctx context.Context) string {
	return strings.TrimSuffix(s.base(ctx), "/fhir/r4")
}

// leafID parses a derived resource's id, the leaf index, as a Seq.
func leafID(id string) (int64, bool) {
	n, err := strconv.ParseUint(id, 10, 62)
	if err != nil || (len(id) > 1 && id[0] == '0') {
		return 0, false
	}
	return int64(n) + 1, true
}

// derivedSet renders a searchset Bundle of derived resources; next, when
// not "", is the _cursor of the next page.
func derivedSet(base, typ string, params url.Values, ids []string, resources []json.RawMessage, next string) ([]byte, error) {
	self := url.Values{}
	for k, vs := range params {
		if k != "_cursor" && k != "_format" && k != "_pretty" {
			self[k] = vs
		}
	}
	link := func(rel, cursor string) bundleLink {
		q := self
		if cursor != "" {
			q = url.Values{}
			for k, vs := range self {
				q[k] = vs
			}
			q.Set("_cursor", cursor)
		}
		u := base + "/" + typ
		if enc := q.Encode(); enc != "" {
			u += "?" + enc
		}
		return bundleLink{Relation: rel, URL: u}
	}
	links := []bundleLink{link("self", "")}
	if next != "" {
		links = append(links, link("next", next))
	}
	entries := make([]searchEntry, len(resources))
	for i, r := range resources {
		entries[i] = searchEntry{FullURL: base + "/" + typ + "/" + ids[i], Resource: r, Search: entrySearch{Mode: "match"}}
	}
	return json.Marshal(struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Link         []bundleLink  `json:"link"`
		Entry        []searchEntry `json:"entry,omitempty"`
	}{"Bundle", "searchset", links, entries})
}

// derivedCount is a derived search's _count.
func derivedCount(params url.Values) (int, error) {
	c := params.Get("_count")
	if c == "" {
		return defaultSearchPage, nil
	}
	n, err := strconv.Atoi(c)
	if err != nil || n < 0 {
		return 0, failure(http.StatusBadRequest, "invalid", "", "_count must be a non-negative integer")
	}
	return min(n, maxSearchPage), nil
}

// derivedCursor is a derived search's _cursor: the Seq to list before.
func derivedCursor(params url.Values) (int64, error) {
	c := params.Get("_cursor")
	if c == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(c, 10, 64)
	if err != nil || n < 1 {
		return 0, failure(http.StatusBadRequest, "invalid", "", "malformed page cursor")
	}
	return n, nil
}

// versionRef parses the Ref of a resource-version leaf, "Type/id/_history/n".
func versionRef(ref string) (typ, id string, vid int64, ok bool) {
	typ, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return "", "", 0, false
	}
	id, vs, ok := strings.Cut(rest, "/_history/")
	if !ok {
		return "", "", 0, false
	}
	vid, err := strconv.ParseInt(vs, 10, 64)
	if err != nil || vid < 1 {
		return "", "", 0, false
	}
	return typ, id, vid, true
}

// readDerived is GET AuditEvent/[n] and GET Provenance/[n].
func (s *service) readDerived(ctx context.Context, typ, id string) (*httpbody.HttpBody, error) {
	var body []byte
	var err error
	switch typ {
	case "AuditEvent":
		if s.access == nil {
			return nil, failure(http.StatusNotFound, "not-supported", "", "this gateway keeps no decision log")
		}
		body, err = s.readAuditEvent(ctx, id)
	default:
		body, err = s.readProvenance(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: body}, nil
}

// searchDerived is GET AuditEvent?… and GET Provenance?… (and POST _search).
func (s *service) searchDerived(ctx context.Context, typ, query string, form *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	params, err := searchParams(query, form)
	if err != nil {
		return nil, err
	}
	var body []byte
	switch typ {
	case "AuditEvent":
		if s.access == nil {
			return nil, failure(http.StatusNotFound, "not-supported", "", "this gateway keeps no decision log")
		}
		body, err = s.searchAuditEvents(ctx, params, strictHandling(ctx))
	default:
		body, err = s.searchProvenance(ctx, params, strictHandling(ctx))
	}
	if err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: fhirJSON, Data: body}, nil
}
