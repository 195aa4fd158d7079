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
// bulk.go); SMART backend-services bearer tokens.
func capabilityStatement(baseURL string) ([]byte, error) {
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
				revIncludes[target] = append(revIncludes[target], t+":"+p.Code)
			}
		}
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
		switch t {
		case "Patient":
			r.Operation = []operation{{Name: "everything", Definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
				{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}}
		case "Group":
			r.Operation = []operation{{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}}
		}
		resources = append(resources, r)
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
			"mode": "server",
			"security": map[string]any{
				"service": []map[string]any{{"coding": []map[string]any{{
					"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
				"description": "Bearer JWT (ES256 or RS256) with SMART backend-services system scopes, e.g. system/*.read system/*.write.",
			},
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
