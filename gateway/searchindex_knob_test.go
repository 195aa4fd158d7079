package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestSetSearchIndex: what BenchmarkSearch measures without the index is
// really without it. A Patient written with the index off is not found by
// a search, one written after it is turned back on is; conditional create
// (identifier tokens) still works either way.
func TestSetSearchIndex(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	create := func(family string) {
		t.Helper()
		body := `{"resourceType":"Patient","identifier":[{"system":"urn:knob","value":"` + family + `"}],"name":[{"family":"` + family + `"}]}`
		if r := g.Do(t, http.MethodPost, "/Patient", []byte(body), auth...); r.Status != http.StatusCreated {
			t.Fatalf("create = %d %s", r.Status, r.Body)
		}
		// Conditional create finds it by identifier either way.
		r := g.Do(t, http.MethodPost, "/Patient", []byte(body), append(auth, "If-None-Exist", "identifier=urn:knob|"+family)...)
		if r.Status != http.StatusOK {
			t.Fatalf("conditional create of an existing Patient = %d, want 200", r.Status)
		}
	}
	found := func(family string) int {
		t.Helper()
		r := g.Do(t, http.MethodGet, "/Patient?name="+family, nil, auth...)
		var b struct{ Entry []json.RawMessage }
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &b) != nil {
			t.Fatalf("search = %d %s", r.Status, r.Body)
		}
		return len(b.Entry)
	}
	restore := gateway.SetSearchIndex(false)
	create("Knoboff")
	restore()
	create("Knobon")
	if n := found("Knoboff"); n != 0 {
		t.Errorf("Patient written without the index: search found %d, want 0", n)
	}
	if n := found("Knobon"); n != 1 {
		t.Errorf("Patient written with the index: search found %d, want 1", n)
	}
}
