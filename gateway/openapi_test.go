package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestOpenAPI: /openapi.json is public and is one document with the paths
// of every service's proto file.
func TestOpenAPI(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	r := g.DoRoot(t, http.MethodGet, "/openapi.json", nil)
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/openapi.json: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	var doc struct {
		Swagger string `json:"swagger"`
		Info    struct {
			Version string `json:"version"`
		} `json:"info"`
		Paths       map[string]map[string]any `json:"paths"`
		Definitions map[string]any            `json:"definitions"`
		Tags        []struct {
			Name string `json:"name"`
		} `json:"tags"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" || doc.Info.Version != gateway.Version {
		t.Errorf("swagger %q, version %q", doc.Swagger, doc.Info.Version)
	}
	for _, p := range []string{"/fhir/r4/{type}/{id}", "/fhir/r4/metadata", "/v1/log/key", "/v1/policies", "/v1/cohorts:count"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("no path %s", p)
		}
	}
	tags := map[string]bool{}
	for _, tg := range doc.Tags {
		tags[tg.Name] = true
	}
	for _, s := range []string{"FHIRService", "LogService", "AdminService", "PolicyService", "DecisionService", "CohortService"} {
		if !tags[s] {
			t.Errorf("no tag %s", s)
		}
	}
	if _, ok := doc.Definitions["rpcStatus"]; !ok {
		t.Error("no rpcStatus definition")
	}
}
