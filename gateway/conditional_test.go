package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// idFromLocation returns the id of a Location .../Type/id/_history/n.
func idFromLocation(t *testing.T, r testonly.Response) string {
	t.Helper()
	parts := strings.Split(r.Header.Get("Location"), "/")
	if len(parts) < 4 || parts[len(parts)-2] != "_history" {
		t.Fatalf("Location %q", r.Header.Get("Location"))
	}
	return parts[len(parts)-3]
}

// TestConditionalUpdateOverREST follows FHIR's rules for
// PUT [type]?[criteria]: no match creates, one match updates it, several
// are a 412; the body's id must be the match's; only _id and identifier
// are criteria, and a refusal quotes nothing the client chose.
func TestConditionalUpdateOverREST(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	const crit = "/Patient?identifier=http://h.example/mrn%7CA1"
	patient := func(gender string) []byte {
		return []byte(`{"resourceType":"Patient","identifier":[{"system":"http://h.example/mrn","value":"A1"}],"gender":"` + gender + `"}`)
	}

	r := g.Do(t, "PUT", crit, patient("female"), auth...)
	mustStatus(t, r, http.StatusCreated)
	id := idFromLocation(t, r)
	r = g.Do(t, "PUT", crit+"&_format=json", patient("male"), auth...)
	mustStatus(t, r, http.StatusOK)
	if idFromLocation(t, r) != id || r.Header.Get("ETag") != `W/"2"` || !strings.Contains(string(r.Body), `"gender":"male"`) {
		t.Fatalf("update of the match: Location %q ETag %q body %s", r.Header.Get("Location"), r.Header.Get("ETag"), r.Body)
	}
	r = g.Do(t, "PUT", "/Patient?_id="+id, patient("other"), auth...)
	mustStatus(t, r, http.StatusOK)
	if idFromLocation(t, r) != id || r.Header.Get("ETag") != `W/"3"` {
		t.Fatalf("update by _id: Location %q ETag %q", r.Header.Get("Location"), r.Header.Get("ETag"))
	}
	mustStatus(t, g.Do(t, "PUT", crit, patient("male"), append(auth, "If-Match", `W/"1"`)...), http.StatusPreconditionFailed)
	withID := []byte(`{"resourceType":"Patient","id":"not-the-match","identifier":[{"system":"http://h.example/mrn","value":"A1"}]}`)
	mustStatus(t, g.Do(t, "PUT", crit, withID, auth...), http.StatusBadRequest)

	// No match, with an id: created under that id.
	r = g.Do(t, "PUT", "/Patient?identifier=http://h.example/mrn%7CB2", []byte(`{"resourceType":"Patient","id":"b2","identifier":[{"system":"http://h.example/mrn","value":"B2"}]}`), auth...)
	mustStatus(t, r, http.StatusCreated)
	if idFromLocation(t, r) != "b2" {
		t.Fatalf("no match with an id: Location %q", r.Header.Get("Location"))
	}

	// Two matches: 412, and nothing written.
	mustStatus(t, g.Do(t, "POST", "/Patient", patient("female"), auth...), http.StatusCreated)
	before := g.Stats(t).Versions
	r = g.Do(t, "PUT", crit, patient("unknown"), auth...)
	mustStatus(t, r, http.StatusPreconditionFailed)
	if !strings.Contains(string(r.Body), "multiple-matches") {
		t.Errorf("412 body: %s", r.Body)
	}
	if after := g.Stats(t).Versions; after != before {
		t.Errorf("a refused conditional update wrote %d versions", after-before)
	}

	// Unsupported criteria and none at all.
	r = g.Do(t, "PUT", "/Patient?name=Quixote", patient("female"), auth...)
	mustStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(string(r.Body), "not-supported") || strings.Contains(string(r.Body), "Quixote") ||
		strings.Contains(string(r.Body), "name") || strings.Contains(string(r.Body), `"expression"`) {
		t.Errorf("unsupported criteria: %s", r.Body)
	}
	mustStatus(t, g.Do(t, "PUT", "/Patient", patient("female"), auth...), http.StatusBadRequest)
	mustStatus(t, g.Do(t, "PUT", "/Patient?identifier=%zz", patient("female"), auth...), http.StatusBadRequest)
	mustStatus(t, g.Do(t, "PUT", crit, []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`), auth...), http.StatusBadRequest)
	mustStatus(t, g.Do(t, "PUT", "/NotAType?_id=x", patient("female"), auth...), http.StatusNotFound)
	// The update scope is checked.
	reader := []string{"Authorization", "Bearer " + g.Token(t, "system/*.read")}
	mustStatus(t, g.Do(t, "PUT", "/Patient?identifier=http://h.example/mrn%7CC3", patient("female"), reader...), http.StatusForbidden)
	mustStatus(t, g.Do(t, "PUT", "/Patient?identifier=http://h.example/mrn%7CC3", patient("female")), http.StatusUnauthorized)
}

// TestConditionalDeleteOverREST: DELETE [type]?[criteria] deletes the one
// match, changes nothing without one (204) and refuses several (412).
func TestConditionalDeleteOverREST(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	put := func(id, mrn string) {
		t.Helper()
		mustStatus(t, g.Do(t, "PUT", "/Patient/"+id, []byte(`{"resourceType":"Patient","id":"`+id+`","identifier":[{"system":"http://h.example/mrn","value":"`+mrn+`"}]}`), auth...), http.StatusCreated)
	}
	put("d1", "D1")
	put("d2", "D2")
	put("d3", "D2")

	mustStatus(t, g.Do(t, "DELETE", "/Patient?identifier=http://h.example/mrn%7CNONE", nil, auth...), http.StatusNoContent)
	r := g.Do(t, "DELETE", "/Patient?identifier=http://h.example/mrn%7CD2", nil, auth...)
	mustStatus(t, r, http.StatusPreconditionFailed)
	mustStatus(t, g.Do(t, "GET", "/Patient/d2", nil, auth...), http.StatusOK)

	r = g.Do(t, "DELETE", "/Patient?identifier=http://h.example/mrn%7CD1", nil, auth...)
	mustStatus(t, r, http.StatusOK)
	if r.Header.Get("ETag") != `W/"2"` {
		t.Errorf("conditional delete ETag %q", r.Header.Get("ETag"))
	}
	mustStatus(t, g.Do(t, "GET", "/Patient/d1", nil, auth...), http.StatusGone)
	// The deleted resource matches no more.
	mustStatus(t, g.Do(t, "DELETE", "/Patient?identifier=http://h.example/mrn%7CD1", nil, auth...), http.StatusNoContent)
	mustStatus(t, g.Do(t, "DELETE", "/Patient?_id=d3", nil, auth...), http.StatusOK)
	mustStatus(t, g.Do(t, "GET", "/Patient/d3", nil, auth...), http.StatusGone)

	mustStatus(t, g.Do(t, "DELETE", "/Patient", nil, auth...), http.StatusBadRequest)
	r = g.Do(t, "DELETE", "/Patient?gender=female", nil, auth...)
	mustStatus(t, r, http.StatusBadRequest)
	if strings.Contains(string(r.Body), "female") || strings.Contains(string(r.Body), "gender") {
		t.Errorf("unsupported criteria quoted: %s", r.Body)
	}
	writer := []string{"Authorization", "Bearer " + g.Token(t, "system/*.read")}
	mustStatus(t, g.Do(t, "DELETE", "/Patient?_id=d2", nil, writer...), http.StatusForbidden)
}

// TestCapabilityStatementClaimsRESTInteractions: what the statement says
// of conditional interactions, patch and formats is what the REST API does.
func TestCapabilityStatementClaimsRESTInteractions(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	tok := g.Token(t)
	r := g.Do(t, "GET", "/metadata", nil)
	mustStatus(t, r, http.StatusOK)
	var cs struct {
		Format      []string
		PatchFormat []string
		Rest        []struct {
			Resource []struct {
				Type              string
				Interaction       []struct{ Code string }
				ConditionalUpdate bool
				ConditionalDelete string
				SearchParam       []struct{ Name, Type, Documentation string }
				SearchInclude     []string
			}
		}
	}
	if err := json.Unmarshal(r.Body, &cs); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cs.PatchFormat, ",") != "application/json-patch+json" || strings.Join(cs.Format, ",") != "application/fhir+json,json" {
		t.Errorf("formats %v, patch formats %v", cs.Format, cs.PatchFormat)
	}
	for _, res := range cs.Rest[0].Resource {
		var codes []string
		for _, i := range res.Interaction {
			codes = append(codes, i.Code)
		}
		if got := strings.Join(codes, ","); got != "read,vread,history-instance,history-type,create,update,patch,delete,search-type" ||
			!res.ConditionalUpdate || res.ConditionalDelete != "single" {
			t.Fatalf("%s: interactions %s, conditionalUpdate %v, conditionalDelete %q", res.Type, got, res.ConditionalUpdate, res.ConditionalDelete)
		}
		if res.Type == "AuditEvent" || res.Type == "Provenance" {
			continue // searched in the log, by auditors (auditevent_test.go)
		}
		// Every parameter listed is one the search takes, strictly, with
		// its documentation; every _include listed is accepted.
		q := url.Values{}
		for _, p := range res.SearchParam {
			if p.Documentation == "" {
				t.Errorf("%s: parameter %s has no documentation", res.Type, p.Name)
			}
			q.Set(p.Name+":missing", "false")
		}
		for _, inc := range res.SearchInclude {
			q.Add("_include", inc)
		}
		if len(res.SearchParam) < 6 {
			t.Errorf("%s: %d search parameters listed", res.Type, len(res.SearchParam))
		}
		r := g.Do(t, "GET", "/"+res.Type+"?"+q.Encode(), nil, "Authorization", "Bearer "+tok, "Prefer", "handling=strict")
		if r.Status != http.StatusOK {
			t.Errorf("%s: the parameters the CapabilityStatement lists, in a strict search: %d %s", res.Type, r.Status, r.Body)
		}
	}
}
