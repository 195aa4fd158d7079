package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestFormatNegotiation: a client that asks for XML (by Accept or
// _format) gets a 406 OperationOutcome in JSON, not JSON it did not ask
// for; the JSON names of _format are served; an XML body is a 415.
func TestFormatNegotiation(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	mustStatus(t, g.Do(t, "PUT", "/Patient/f1", []byte(`{"resourceType":"Patient","id":"f1"}`), auth...), http.StatusCreated)

	for _, c := range []struct {
		query, accept string
		status        int
	}{
		{"", "", http.StatusOK},
		{"", "application/fhir+json", http.StatusOK},
		{"", "application/json", http.StatusOK},
		{"", "*/*", http.StatusOK},
		{"", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", http.StatusOK},
		{"", "application/fhir+xml;q=1.0, application/fhir+json;q=0.9", http.StatusOK},
		{"", "application/fhir+xml", http.StatusNotAcceptable},
		{"", "application/xml, text/xml", http.StatusNotAcceptable},
		{"", "application/fhir+xml, application/fhir+json;q=0", http.StatusNotAcceptable},
		{"", "text/turtle", http.StatusNotAcceptable},
		{"?_format=json", "", http.StatusOK},
		{"?_format=application/fhir%2Bjson", "", http.StatusOK},
		{"?_format=application/json", "", http.StatusOK},
		{"?_format=application/fhir%2Bjson;fhirVersion=4.0", "", http.StatusOK},
		{"?_format=json", "application/fhir+xml", http.StatusOK}, // _format overrides Accept
		{"?_format=xml", "", http.StatusNotAcceptable},
		{"?_format=application/fhir%2Bxml", "", http.StatusNotAcceptable},
		{"?_format=text/xml", "application/fhir+json", http.StatusNotAcceptable},
		{"?_format=ttl", "", http.StatusNotAcceptable},
		{"?_format=Zanzibar", "", http.StatusNotAcceptable},
	} {
		h := auth
		if c.accept != "" {
			h = append([]string{"Accept", c.accept}, auth...)
		}
		r := g.Do(t, "GET", "/Patient/f1"+c.query, nil, h...)
		if r.Status != c.status {
			t.Errorf("GET%s Accept %q: %d %s, want %d", c.query, c.accept, r.Status, r.Body, c.status)
			continue
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
			t.Errorf("GET%s Accept %q: Content-Type %q", c.query, c.accept, ct)
		}
		if c.status == http.StatusNotAcceptable && (!strings.Contains(string(r.Body), `"OperationOutcome"`) || strings.Contains(string(r.Body), "Zanzibar")) {
			t.Errorf("406 body: %s", r.Body)
		}
	}
	// The CapabilityStatement too, without a token.
	mustStatus(t, g.Do(t, "GET", "/metadata?_format=xml", nil), http.StatusNotAcceptable)
	mustStatus(t, g.Do(t, "GET", "/metadata?_format=json", nil), http.StatusOK)

	// Request bodies: XML is not read.
	xml := []byte(`<Patient xmlns="http://hl7.org/fhir"/>`)
	for _, method := range []string{"POST", "PUT"} {
		path := "/Patient"
		if method == "PUT" {
			path = "/Patient/f1"
		}
		r := g.Do(t, method, path, xml, append([]string{"Content-Type", "application/fhir+xml"}, auth...)...)
		mustStatus(t, r, http.StatusUnsupportedMediaType)
	}
	mustStatus(t, g.Do(t, "PUT", "/Patient?_id=f1", xml, append([]string{"Content-Type", "application/fhir+xml"}, auth...)...), http.StatusUnsupportedMediaType)
}

// TestPretty: _pretty=true indents every JSON answer (a resource, a
// Bundle, an OperationOutcome) with two spaces; without it answers stay
// compact.
func TestPretty(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	mustStatus(t, g.Do(t, "PUT", "/Patient/pr", []byte(`{"resourceType":"Patient","id":"pr","name":[{"family":"Doe","given":["Jo"]}]}`), auth...), http.StatusCreated)

	for _, path := range []string{"/Patient/pr", "/Patient/pr/_history", "/Patient/nobody", "/metadata"} {
		compact := g.Do(t, "GET", path, nil, auth...)
		pretty := g.Do(t, "GET", path+"?_pretty=true", nil, auth...)
		if compact.Status != pretty.Status {
			t.Fatalf("%s: status %d compact, %d pretty", path, compact.Status, pretty.Status)
		}
		if bytes.Contains(bytes.TrimSpace(compact.Body), []byte("\n")) {
			t.Errorf("%s: the default answer is not compact: %s", path, compact.Body)
		}
		if !bytes.HasPrefix(pretty.Body, []byte("{\n  \"")) {
			t.Errorf("%s?_pretty=true: %s", path, pretty.Body)
		}
		// The same JSON, indented by two spaces: compacting it gives back
		// the document (ids and timestamps of Bundles aside).
		var a, b bytes.Buffer
		if err := json.Compact(&b, pretty.Body); err != nil {
			t.Fatalf("%s?_pretty=true is not JSON: %v", path, err)
		}
		if path != "/Patient/pr/_history" && path != "/metadata" {
			json.Compact(&a, compact.Body)
			if a.String() != b.String() {
				t.Errorf("%s: pretty is not the compact answer indented:\n%s\n%s", path, a.String(), b.String())
			}
		}
		var indented bytes.Buffer
		json.Indent(&indented, b.Bytes(), "", "  ")
		if !bytes.Equal(bytes.TrimSpace(indented.Bytes()), bytes.TrimSpace(pretty.Body)) {
			t.Errorf("%s: not a stable two-space indentation: %s", path, pretty.Body)
		}
	}
	r := g.Do(t, "GET", "/Patient/pr?_pretty=false", nil, auth...)
	if bytes.Contains(bytes.TrimSpace(r.Body), []byte("\n")) {
		t.Errorf("_pretty=false: %s", r.Body)
	}
	// A write's answer and the parameter's not being a criterion.
	r = g.Do(t, "PUT", "/Patient?_id=pr&_pretty=true", []byte(`{"resourceType":"Patient","id":"pr","gender":"female"}`), auth...)
	mustStatus(t, r, http.StatusOK)
	if !bytes.HasPrefix(r.Body, []byte("{\n  \"")) {
		t.Errorf("pretty update: %s", r.Body)
	}
}
