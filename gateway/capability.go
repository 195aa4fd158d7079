package gateway

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/search"
)

// Version is the software version reported in the CapabilityStatement.
var Version = "0.1.0-dev"

// capSecurity is what the CapabilityStatement says of security.
type capSecurity struct {
	tokens   bool   // the token endpoint is served
	tokenURL string // its URL; empty: filled in per request
	cors     bool   // some origins are allowed
}

// capabilityStatement describes what this server really does: every R4
// resource type with read, vread, history-instance, history-type, create,
// update, patch (JSON Patch only) and delete; transaction, batch and
// history-system; conditional create,
// update and delete (of a single match) on _id and identifier only, over
// REST and in Bundles; JSON only (XML is a 406); search-type on every R4
// search parameter package search indexes (each listed with the R4
// definition's documentation), with _include and _revinclude of every
// reference parameter, compartment search and Patient $everything; system
// search with _type; Bulk Data $export (system, Patient, Group; see
// bulk.go); SMART Backend Services (the token endpoint in the
// oauth-uris extension; tokenURL empty: filled in per request).
func capabilityStatement(baseURL string, sec capSecurity) ([]byte, error) {
	tokenURL := sec.tokenURL
	if tokenURL == "" {
		tokenURL = tokenURLPlaceholder
	}
	type interaction struct {
		Code string `json:"code"`
	}
	type searchParam struct {
		Name          string `json:"name"`
		Definition    string `json:"definition,omitempty"`
		Type          string `json:"type"`
		Documentation string `json:"documentation,omitempty"`
	}
	type operation struct {
		Name       string `json:"name"`
		Definition string `json:"definition"`
	}
	type resource struct {
		Type              string        `json:"type"`
		Documentation     string        `json:"documentation,omitempty"`
		Interaction       []interaction `json:"interaction"`
		Versioning        string        `json:"versioning"`
		ReadHistory       bool          `json:"readHistory"`
		UpdateCreate      bool          `json:"updateCreate"`
		ConditionalCreate bool          `json:"conditionalCreate"`
		ConditionalUpdate bool          `json:"conditionalUpdate"`
		ConditionalDelete string        `json:"conditionalDelete"`
		SearchInclude     []string      `json:"searchInclude,omitempty"`
		SearchRevInclude  []string      `json:"searchRevInclude,omitempty"`
		SearchParam       []searchParam `json:"searchParam"`
		Operation         []operation   `json:"operation,omitempty"`
	}
	revIncludes := map[string][]string{} // target type -> Source:param
	for _, t := range search.ResourceTypes() {
		for _, p := range search.Params(t) {
			if p.Type != search.TypeReference {
				continue
			}
			for _, target := range p.Targets {
				if derivedTypes[t] {
					continue // derived resources are never included
				}
				revIncludes[target] = append(revIncludes[target], t+":"+p.Code)
			}
		}
	}
	// AuditEvent and Provenance are views of the log (derived.go): read
	// and search only.
	derivedCapability := func(r resource) resource {
		params := r.SearchParam
		r.SearchParam, r.SearchInclude = nil, nil
		switch r.Type {
		case "AuditEvent":
			r.Documentation = "Read of an id of digits and search answer from the anchored decision log (access and research " +
				"decisions, consent events, policy activations, erasures; id = leaf index): auditors (fhiranchor/audit) see all, a " +
				"patient (fhiranchor/patient.self) those about them; newest first, _count and next links. Other ids are " +
				"client-stored AuditEvents (never under an id of digits, never with the log-leaf extension), read, vread and " +
				"history like any resource but not searched."
			for _, p := range params {
				switch p.Name {
				case "patient":
					p.Documentation = "Patient/<id> or <id>: the records about that patient"
				case "agent":
					p.Documentation = "a client id (the agent's who.identifier), or a reference matched on agent.who"
				}
				r.SearchParam = append(r.SearchParam, p)
			}
		case "Provenance":
			r.Documentation = "Read of an id of digits and search answer from each stored version's log leaf (id = leaf index): " +
				"target, recorded, activity, the writing client and the gateway, the commitment and receipt. Other ids are " +
				"client-stored Provenances (never under an id of digits, never with the log-leaf extension), read, vread and " +
				"history like any resource but not searched. Search by target only."
			for _, p := range params {
				if p.Name == "target" {
					r.SearchParam = append(r.SearchParam, p)
				}
			}
		}
		return r
	}
	var resources []resource
	for _, t := range fhir.ResourceTypes() {
		r := resource{
			Type: t,
			Interaction: []interaction{{"read"}, {"vread"}, {"history-instance"}, {"history-type"}, {"create"}, {"update"}, {"patch"}, {"delete"},
				{"search-type"}},
			Versioning: "versioned", ReadHistory: true, UpdateCreate: true,
			ConditionalCreate: true, ConditionalUpdate: true, ConditionalDelete: "single",
			SearchRevInclude: revIncludes[t],
		}
		for _, p := range search.Params(t) {
			r.SearchParam = append(r.SearchParam, searchParam{Name: p.Code, Definition: p.URL, Type: string(p.Type), Documentation: p.Description})
			if p.Type == search.TypeReference {
				r.SearchInclude = append(r.SearchInclude, t+":"+p.Code)
			}
		}
		if len(r.SearchInclude) > 0 {
			r.SearchInclude = append(r.SearchInclude, "*")
		}
		if derivedTypes[t] {
			r = derivedCapability(r)
		}
		switch t {
		case "Patient":
			r.Operation = []operation{{Name: "everything", Definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
				{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}}
		case "Group":
			r.Operation = []operation{{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}}
		}
		resources = append(resources, r)
	}
	security := map[string]any{
		"cors": sec.cors,
		"service": []map[string]any{{"coding": []map[string]any{{
			"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
		"description": "Bearer JWTs (ES256 or RS256) from the configured keys or identity provider, with SMART system scopes; " +
			"only system/ scopes grant resource access (v1 system/*.read or v2 system/*.rs, per type or *).",
	}
	if sec.tokens {
		security["extension"] = []map[string]any{{
			"url":       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
			"extension": []map[string]any{{"url": "token", "valueUri": tokenURL}},
		}}
		security["description"] = "SMART Backend Services: a registered client signs a JWT assertion (RS384 or ES384, private_key_jwt) " +
			"and trades it at the token endpoint (client_credentials grant) for a short-lived bearer token; tokens of a configured " +
			"identity provider (ES256 or RS256) are accepted too. Only system/ scopes grant resource access " +
			"(v1 system/*.read or v2 system/*.rs, per type or *); see /.well-known/smart-configuration."
	}
	impl := map[string]any{"description": "fhiranchor FHIR gateway"}
	if baseURL != "" {
		impl["url"] = baseURL
	}
	cs := map[string]any{
		"resourceType":   "CapabilityStatement",
		"status":         "active",
		"date":           time.Now().UTC().Format("2006-01-02"),
		"kind":           "instance",
		"software":       map[string]any{"name": "fhiranchor", "version": Version},
		"implementation": impl,
		"fhirVersion":    "4.0.1",
		"instantiates":   []string{bulkDataCapability},
		"format":         []string{"application/fhir+json", "json"},
		"patchFormat":    []string{"application/json-patch+json"},
		"rest": []map[string]any{{
			"mode":        "server",
			"security":    security,
			"resource":    resources,
			"interaction": []interaction{{"transaction"}, {"batch"}, {"search-system"}, {"history-system"}},
			"operation":   []operation{{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}},
			"searchParam": []searchParam{
				{Name: "_id", Type: "token", Definition: "http://hl7.org/fhir/SearchParameter/Resource-id"},
				{Name: "_lastUpdated", Type: "date", Definition: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
				{Name: "_tag", Type: "token", Definition: "http://hl7.org/fhir/SearchParameter/Resource-tag"},
				{Name: "_profile", Type: "uri", Definition: "http://hl7.org/fhir/SearchParameter/Resource-profile"},
				{Name: "_security", Type: "token", Definition: "http://hl7.org/fhir/SearchParameter/Resource-security"},
				{Name: "_source", Type: "uri", Definition: "http://hl7.org/fhir/SearchParameter/Resource-source"},
			},
		}},
	}
	b, err := json.Marshal(cs)
	if err != nil {
		return nil, fmt.Errorf("render CapabilityStatement: %w", err)
	}
	return b, nil
}
