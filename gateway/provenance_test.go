package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

type provenanceDoc struct {
	ResourceType string
	ID           string
	Extension    []struct {
		URL       string
		ValueURL  string `json:"valueUrl"`
		Extension []struct {
			URL              string
			ValueUnsignedInt uint64
			ValueString      string
		}
	}
	Target   []struct{ Reference string }
	Recorded string
	Activity struct{ Coding []struct{ Code string } }
	Agent    []struct {
		Type struct{ Coding []struct{ Code string } }
		Who  refDoc
	}
}

// TestProvenanceOfEveryWrite creates, updates and deletes a resource as one
// client and checks each version's derived Provenance: its target, time,
// activity, writing client, commitment and receipt; read by id and searched
// by target; and that only callers who may read the version (or auditors)
// see it, and that no client can write one.
func TestProvenanceOfEveryWrite(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	writer := g.TokenFor(t, auth.Claims{ClientID: "ehr-writer", PurposeOfUse: "TREAT", TTL: time.Hour})
	w := []string{"Authorization", "Bearer " + writer}
	id := created(t, g, writer, "Organization", `{"resourceType":"Organization","name":"Acme Lab"}`)
	if r := g.Do(t, http.MethodPut, "/Organization/"+id, []byte(`{"resourceType":"Organization","id":"`+id+`","name":"Acme Labs"}`), w...); r.Status != http.StatusOK {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, http.MethodDelete, "/Organization/"+id, nil, w...); r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}

	reader := g.Token(t, "system/Organization.read")
	r := g.Do(t, http.MethodGet, "/Provenance?target=Organization/"+id, nil, "Authorization", "Bearer "+reader)
	if r.Status != http.StatusOK {
		t.Fatalf("search: %d %s", r.Status, r.Body)
	}
	var set struct {
		Entry []struct {
			FullURL  string
			Resource json.RawMessage
		}
	}
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Entry) != 3 {
		t.Fatalf("%d Provenances, want 3: %s", len(set.Entry), r.Body)
	}
	for i, op := range []string{"DELETE", "UPDATE", "CREATE"} {
		var p provenanceDoc
		if err := json.Unmarshal(set.Entry[i].Resource, &p); err != nil {
			t.Fatal(err)
		}
		vid := 3 - i
		target := "Organization/" + id + "/_history/" + string(rune('0'+vid))
		if p.ResourceType != "Provenance" || len(p.Target) != 1 || p.Target[0].Reference != target ||
			p.Activity.Coding[0].Code != op {
			t.Errorf("version %d: %s", vid, set.Entry[i].Resource)
		}
		if len(p.Agent) != 2 || p.Agent[0].Type.Coding[0].Code != "author" || p.Agent[0].Who.Identifier.Value != "ehr-writer" ||
			p.Agent[0].Who.Identifier.System != gateway.ClientSystem {
			t.Errorf("version %d: agents %+v", vid, p.Agent)
		}
		// The receipt of the version names the same leaf and commitment.
		var rc struct {
			LeafIndex  uint64 `json:"leafIndex"`
			Commitment string `json:"commitment"`
		}
		rr := g.DoRoot(t, http.MethodGet, "/v1/receipts/"+target, nil, w...)
		if rr.Status != http.StatusOK || json.Unmarshal(rr.Body, &rc) != nil {
			t.Fatalf("receipt of %s: %d %s", target, rr.Status, rr.Body)
		}
		var commitment, receipt string
		var index uint64
		for _, x := range p.Extension {
			if x.URL == gateway.ReceiptExtension {
				receipt = x.ValueURL
			}
			for _, s := range x.Extension {
				switch s.URL {
				case "commitment":
					commitment = s.ValueString
				case "index":
					index = s.ValueUnsignedInt
				}
			}
		}
		if p.ID == "" || index != rc.LeafIndex || commitment == "" || !strings.Contains(string(rr.Body), commitment) ||
			!strings.HasSuffix(receipt, "/v1/receipts/leaves/"+p.ID) {
			t.Errorf("version %d: leaf %d commitment %s receipt %s; the version's receipt: %s", vid, index, commitment, receipt, rr.Body)
		}
		if p.Recorded == "" {
			t.Errorf("version %d: no recorded", vid)
		}
		// Read by id.
		one := g.Do(t, http.MethodGet, "/Provenance/"+p.ID, nil, "Authorization", "Bearer "+reader)
		if one.Status != http.StatusOK || !jsonEqual(json.RawMessage(one.Body), set.Entry[i].Resource) {
			t.Errorf("Provenance/%s: %d %s", p.ID, one.Status, one.Body)
		}
		if vid == 2 {
			r := g.Do(t, http.MethodGet, "/Provenance?target="+target, nil, "Authorization", "Bearer "+reader)
			if r.Status != http.StatusOK || strings.Count(string(r.Body), `"resourceType":"Provenance"`) != 1 {
				t.Errorf("target=%s: %d %s", target, r.Status, r.Body)
			}
		}
	}

	// Callers who may not read Organizations see no Provenance of one;
	// auditors see it.
	other := g.Token(t, "system/Observation.read")
	if r := g.Do(t, http.MethodGet, "/Provenance?target=Organization/"+id, nil, "Authorization", "Bearer "+other); r.Status != http.StatusForbidden {
		t.Errorf("search without Organization scope: %d", r.Status)
	}
	var first provenanceDoc
	json.Unmarshal(set.Entry[2].Resource, &first)
	if r := g.Do(t, http.MethodGet, "/Provenance/"+first.ID, nil, "Authorization", "Bearer "+other); r.Status != http.StatusForbidden {
		t.Errorf("read without Organization scope: %d", r.Status)
	}
	auditor := g.TokenFor(t, auth.Claims{ClientID: "auditor", Scopes: []string{gateway.AuditScope}, TTL: time.Hour})
	if r := g.Do(t, http.MethodGet, "/Provenance/"+first.ID, nil, "Authorization", "Bearer "+auditor); r.Status != http.StatusOK {
		t.Errorf("auditor read: %d", r.Status)
	}
	if r := g.Do(t, http.MethodGet, "/Provenance", nil, "Authorization", "Bearer "+reader); r.Status != http.StatusBadRequest {
		t.Errorf("search without target: %d", r.Status)
	}
	// A client's own Provenance is stored apart: never under an id of
	// digits or with the log's extensions, and never among the log's.
	own := `{"resourceType":"Provenance",%s"target":[{"reference":"Organization/` + id + `"}],
		"recorded":"2026-01-01T00:00:00Z","agent":[{"who":{"display":"x"}}]}`
	if r := g.Do(t, http.MethodPut, "/Provenance/"+first.ID, []byte(strings.Replace(own, "%s", `"id":"`+first.ID+`",`, 1)), w...); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("PUT Provenance/%s: %d %s", first.ID, r.Status, r.Body)
	}
	if r := g.Do(t, http.MethodPost, "/Provenance", []byte(strings.Replace(own, "%s", `"extension":[{"url":"`+gateway.ReceiptExtension+`","valueUrl":"http://x/v1/receipts/leaves/1"}],`, 1)), w...); r.Status != http.StatusUnprocessableEntity {
		t.Errorf("POST Provenance with a receipt extension: %d %s", r.Status, r.Body)
	}
	stored := created(t, g, writer, "Provenance", strings.Replace(own, "%s", "", 1))
	if r := g.Do(t, http.MethodGet, "/Provenance/"+stored, nil, "Authorization", "Bearer "+reader); r.Status != http.StatusForbidden {
		t.Errorf("GET a stored Provenance without Provenance scope: %d", r.Status)
	}
	if r := g.Do(t, http.MethodGet, "/Provenance/"+stored, nil, w...); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "2026-01-01T00:00:00") {
		t.Errorf("GET a stored Provenance: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, http.MethodGet, "/Provenance?target=Organization/"+id, nil, w...); strings.Contains(string(r.Body), stored) {
		t.Errorf("the log's Provenances include a stored one: %s", r.Body)
	}
	// A patient's version: its Provenance is decided like a read of it.
	patient := created(t, g, writer, "Patient", `{"resourceType":"Patient","name":[{"family":"Quixote"}]}`)
	if r := g.Do(t, http.MethodGet, "/Provenance?target=Patient/"+patient, nil, append(w, "X-Purpose-Of-Use", "HMARKT")...); r.Status != http.StatusForbidden {
		t.Errorf("Provenance of a patient's version for marketing: %d", r.Status)
	}
	if r := g.Do(t, http.MethodGet, "/Provenance?target=Patient/"+patient, nil, w...); r.Status != http.StatusOK ||
		!strings.Contains(string(r.Body), `"reference":"Patient/`+patient+`/_history/1"`) {
		t.Errorf("Provenance of a patient's version: %d %s", r.Status, r.Body)
	}
}
