package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// The organization matrix. A token bound to an organization writes only for
// that organization's patients, and the binding is decided on what is
// stored, never on what the request claims: an outside probe re-homed
// another organization's patient (PUT with managingOrganization changed or
// removed: 200) and then wrote freely. Each attack below is tried by a
// rival organization against acme's patient; every one must be refused and
// change nothing but the decision log.

type orgAttack struct {
	name   string
	method string
	path   string
	body   func(ids orgIDs) string
}

type orgIDs struct{ patient, obs, rivalPatient string }

func patientJSON(id, org string) string {
	m := map[string]any{"resourceType": "Patient", "id": id,
		"identifier": []any{map[string]any{"system": "urn:mrn", "value": "mrn-" + id}}}
	if org != "" {
		m["managingOrganization"] = map[string]any{"reference": org}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func obsJSON(id, patient string) string {
	m := map[string]any{"resourceType": "Observation", "status": "final", "code": map[string]any{"text": "x"},
		"subject": map[string]any{"reference": "Patient/" + patient}}
	if id != "" {
		m["id"] = id
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func entries(es ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": es})
	return string(b)
}

func entry(method, url, resource string) map[string]any {
	e := map[string]any{"request": map[string]any{"method": method, "url": url}}
	if resource != "" {
		var r any
		_ = json.Unmarshal([]byte(resource), &r)
		e["resource"] = r
	}
	return e
}

var orgAttacks = []orgAttack{
	{"write an Observation for the patient", "POST", "/Observation", func(x orgIDs) string { return obsJSON("", x.patient) }},
	{"re-home the patient to the rival", "PUT", "/Patient/{p}", func(x orgIDs) string { return patientJSON(x.patient, "Organization/rival") }},
	{"remove the managing organization", "PUT", "/Patient/{p}", func(x orgIDs) string { return patientJSON(x.patient, "") }},
	{"move the patient's Observation to a rival patient", "PUT", "/Observation/{o}", func(x orgIDs) string { return obsJSON(x.obs, x.rivalPatient) }},
	{"delete the patient's Observation", "DELETE", "/Observation/{o}", nil},
	{"delete the patient", "DELETE", "/Patient/{p}", nil},
	{"re-home and write in one transaction", "POST", "/", func(x orgIDs) string {
		return entries(entry("PUT", "Patient/"+x.patient, patientJSON(x.patient, "Organization/rival")),
			entry("POST", "Observation", obsJSON("", x.patient)))
	}},
	{"remove the organization and write in one batch", "POST", "/", func(x orgIDs) string {
		b := entries(entry("PUT", "Patient/"+x.patient, patientJSON(x.patient, "")), entry("POST", "Observation", obsJSON("", x.patient)))
		return strings.Replace(b, `"transaction"`, `"batch"`, 1)
	}},
	{"conditional update re-homing by identifier", "POST", "/", func(x orgIDs) string {
		return entries(entry("PUT", "Patient?identifier=urn:mrn|mrn-"+x.patient, patientJSON(x.patient, "Organization/rival")))
	}},
	{"write a permissive Consent for the patient", "POST", "/Consent", func(x orgIDs) string {
		return `{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
			`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/` + x.patient + `"},` +
			`"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},` +
			`"provision":{"type":"permit","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},"reference":{"reference":"Organization/rival"}}]}}`
	}},
}

func TestOrganizationBindingIsDecidedOnStoredState(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	orgToken := func(client, org string) string {
		return g.TokenFor(t, auth.Claims{ClientID: client, Organization: org, PurposeOfUse: "TREAT",
			Scopes: []string{"system/*.read", "system/*.write"}, TTL: time.Hour})
	}
	acme, rival, system := orgToken("acme-ehr", "Organization/acme"), orgToken("rival-ehr", "Organization/rival"), g.Token(t)
	put := func(tok, path, body string) testonly.Response {
		return g.Do(t, "PUT", path, []byte(body), "Authorization", "Bearer "+tok)
	}
	if r := put(acme, "/Patient/pa", patientJSON("pa", "Organization/acme")); r.Status != http.StatusCreated {
		t.Fatalf("acme creates its patient: %d %s", r.Status, r.Body)
	}
	if r := put(rival, "/Patient/pr", patientJSON("pr", "Organization/rival")); r.Status != http.StatusCreated {
		t.Fatalf("rival creates its patient: %d %s", r.Status, r.Body)
	}
	if r := put(acme, "/Observation/oa", obsJSON("oa", "pa")); r.Status != http.StatusCreated {
		t.Fatalf("acme writes for its patient: %d %s", r.Status, r.Body)
	}
	ids := orgIDs{patient: "pa", obs: "oa", rivalPatient: "pr"}
	unauthorized := 0
	for _, a := range orgAttacks {
		before := g.Stats(t)
		path := strings.NewReplacer("{p}", ids.patient, "{o}", ids.obs).Replace(a.path)
		var body []byte
		if a.body != nil {
			body = []byte(a.body(ids))
		}
		var r testonly.Response
		if path == "/" {
			r = g.DoRoot(t, a.method, "/fhir/r4", body, "Authorization", "Bearer "+rival)
		} else {
			r = g.Do(t, a.method, path, body, "Authorization", "Bearer "+rival)
		}
		after := g.Stats(t)
		if after.Versions != before.Versions {
			unauthorized++
			t.Errorf("%s: %d, and %d versions stored (%s)", a.name, r.Status, after.Versions-before.Versions, r.Body)
			continue
		}
		if r.Status == http.StatusOK && path == "/" {
			// A batch answers 200 with a status per entry.
			if strings.Contains(string(r.Body), `"status":"20`) {
				unauthorized++
				t.Errorf("%s: an entry succeeded: %s", a.name, r.Body)
			}
			continue
		}
		if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "OperationOutcome") {
			unauthorized++
			t.Errorf("%s: %d %s, want 403", a.name, r.Status, r.Body)
		}
		if after.Leaves <= before.Leaves {
			t.Errorf("%s: the refusal left no decision record", a.name)
		}
	}
	if unauthorized > 0 {
		t.Fatalf("%d unauthorized successes of %d attacks", unauthorized, len(orgAttacks))
	}

	// Affiliations are stored state decisions read: a rival may not move
	// acme's practitioner (PractitionerRole) or rewrite acme's Organization.
	role := func(org string) string {
		id := strings.TrimPrefix(org, "Organization/") + "-role"
		if org != "Organization/acme" {
			id = "acme-role" // the attacks rewrite acme's role
		}
		return `{"resourceType":"PractitionerRole","id":"` + id + `","practitioner":{"reference":"Practitioner/dr"},"organization":{"reference":"` + org + `"}}`
	}
	if r := put(acme, "/PractitionerRole/acme-role", role("Organization/acme")); r.Status != http.StatusCreated {
		t.Fatalf("acme's own PractitionerRole: %d %s", r.Status, r.Body)
	}
	for name, attack := range map[string]func() testonly.Response{
		"move acme's practitioner to the rival": func() testonly.Response { return put(rival, "/PractitionerRole/acme-role", role("Organization/rival")) },
		"move acme's practitioner to another organization": func() testonly.Response {
			return put(rival, "/PractitionerRole/acme-role", role("Organization/elsewhere"))
		},
		"delete acme's practitioner role": func() testonly.Response {
			return g.Do(t, "DELETE", "/PractitionerRole/acme-role", nil, "Authorization", "Bearer "+rival)
		},
		"acme hands its practitioner to the rival": func() testonly.Response { return put(acme, "/PractitionerRole/acme-role", role("Organization/rival")) },
		"rewrite acme's Organization": func() testonly.Response {
			return put(rival, "/Organization/acme", `{"resourceType":"Organization","id":"acme","name":"not acme"}`)
		},
	} {
		if r := attack(); r.Status != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", name, r.Status, r.Body)
		}
	}
	own := `{"resourceType":"PractitionerRole","id":"rival-role","practitioner":{"reference":"Practitioner/dr2"},"organization":{"reference":"Organization/rival"}}`
	if r := put(rival, "/PractitionerRole/rival-role", own); r.Status != http.StatusCreated {
		t.Errorf("rival's own PractitionerRole: %d %s", r.Status, r.Body)
	}

	// After all that, the patient is still acme's: rival still cannot write.
	if r := g.Do(t, "POST", "/Observation", []byte(obsJSON("", "pa")), "Authorization", "Bearer "+rival); r.Status != http.StatusForbidden {
		t.Fatalf("rival writes after the attacks: %d %s", r.Status, r.Body)
	}
	// A re-homing must be allowed for the old and the new organization:
	// acme alone cannot hand its patient to rival...
	if r := put(acme, "/Patient/pa", patientJSON("pa", "Organization/rival")); r.Status != http.StatusForbidden {
		t.Fatalf("acme hands its patient to rival: %d %s", r.Status, r.Body)
	}
	// ...a client bound to no organization (the system integration) can,
	// and then the binding follows the stored patient.
	if r := put(system, "/Patient/pa", patientJSON("pa", "Organization/rival")); r.Status != http.StatusOK {
		t.Fatalf("system re-homes the patient: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, "POST", "/Observation", []byte(obsJSON("", "pa")), "Authorization", "Bearer "+rival); r.Status != http.StatusCreated {
		t.Fatalf("rival writes for its patient now: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, "POST", "/Observation", []byte(obsJSON("", "pa")), "Authorization", "Bearer "+acme); r.Status != http.StatusForbidden {
		t.Fatalf("acme writes for the patient it handed over: %d %s", r.Status, r.Body)
	}
}

// TestConsentDenyingAnOrganizationBindsItsPractitioners: a Consent that
// withholds the patient's data from an organization (the HL7 "Out"
// example's shape) stops the practitioners acting for it, whether the token
// says so (organization claim) or the stored PractitionerRole they sign in
// as does. The probe found them reading (200).
func TestConsentDenyingAnOrganizationBindsItsPractitioners(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := g.Token(t)
	patient := created(t, g, ehr, "Patient", `{"resourceType":"Patient"}`)
	obs := created(t, g, ehr, "Observation", obsJSON("", patient))
	for id, org := range map[string]string{"role-x": "Organization/clinic-x", "role-y": "Organization/clinic-y"} {
		body := `{"resourceType":"PractitionerRole","id":"` + id + `","practitioner":{"reference":"Practitioner/dr-` + id + `"},"organization":{"reference":"` + org + `"}}`
		if r := g.Do(t, "PUT", "/PractitionerRole/"+id, []byte(body), "Authorization", "Bearer "+ehr); r.Status != http.StatusCreated {
			t.Fatalf("PractitionerRole: %d %s", r.Status, r.Body)
		}
	}
	consent := `{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/` + patient + `"},` +
		`"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTOUT"}]},` +
		`"provision":{"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"CST"}]},"reference":{"reference":"Organization/clinic-x"}}]}}`
	created(t, g, ehr, "Consent", consent)

	reader := func(fhirUser, org string) string {
		return g.TokenFor(t, auth.Claims{ClientID: "app", FHIRUser: fhirUser, Organization: org, PurposeOfUse: "TREAT",
			Roles: []string{"physician"}, Scopes: []string{"system/*.read"}, TTL: time.Hour})
	}
	cases := []struct {
		name     string
		fhirUser string
		org      string
		want     int
	}{
		{"the organization itself", "Organization/clinic-x", "", http.StatusForbidden},
		{"a practitioner whose token names the organization", "Practitioner/dr-1", "Organization/clinic-x", http.StatusForbidden},
		{"a practitioner signed in as a PractitionerRole of the organization", "PractitionerRole/role-x", "", http.StatusForbidden},
		{"the same PractitionerRole with another organization claimed", "PractitionerRole/role-x", "Organization/clinic-y", http.StatusForbidden},
		{"a practitioner of another organization", "Practitioner/dr-2", "Organization/clinic-y", http.StatusOK},
		{"a PractitionerRole of another organization", "PractitionerRole/role-y", "", http.StatusOK},
	}
	for _, c := range cases {
		r := g.Do(t, "GET", "/Observation/"+obs, nil, "Authorization", "Bearer "+reader(c.fhirUser, c.org))
		if r.Status != c.want {
			t.Errorf("%s: %d, want %d (%s)", c.name, r.Status, c.want, r.Body)
		}
	}
}
