package gateway

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fhiranchor/fhiranchor/fhir"
)

// Version is the software version reported in the CapabilityStatement.
var Version = "0.1.0-dev"

// capabilityStatement describes what this server really does: every R4
// resource type with read, vread, history-instance, history-type, create,
// update, patch (JSON Patch only) and delete; transaction, batch and
// history-system; conditional create,
// update and delete (of a single match) on _id and identifier only, over
// REST and in Bundles; JSON only (XML is a 406); no search interaction
// beyond those criteria; SMART backend-services bearer tokens.
func capabilityStatement(baseURL string) ([]byte, error) {
	type interaction struct {
		Code string `json:"code"`
	}
	type searchParam struct {
		Name          string `json:"name"`
		Type          string `json:"type"`
		Documentation string `json:"documentation,omitempty"`
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
		SearchParam       []searchParam `json:"searchParam"`
	}
	params := []searchParam{
		{Name: "_id", Type: "token", Documentation: "conditional interactions, conditional references in transactions and batch/transaction GET entries only"},
		{Name: "identifier", Type: "token", Documentation: "matched through a blind index; conditional interactions, conditional references in transactions and batch/transaction GET entries only"},
	}
	var resources []resource
	for _, t := range fhir.ResourceTypes() {
		resources = append(resources, resource{
			Type:        t,
			Interaction: []interaction{{"read"}, {"vread"}, {"history-instance"}, {"history-type"}, {"create"}, {"update"}, {"patch"}, {"delete"}},
			Versioning:  "versioned", ReadHistory: true, UpdateCreate: true,
			ConditionalCreate: true, ConditionalUpdate: true, ConditionalDelete: "single",
			SearchParam: params,
		})
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
			"interaction": []interaction{{"transaction"}, {"batch"}, {"history-system"}},
		}},
	}
	b, err := json.Marshal(cs)
	if err != nil {
		return nil, fmt.Errorf("render CapabilityStatement: %w", err)
	}
	return b, nil
}
