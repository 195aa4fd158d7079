package gateway_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// researchOptOut is a Consent by which patient refuses research.
func researchOptOut(patient string) string {
	return `{"resourceType": "Consent", "status": "active",
		"scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
		"category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
		"patient": {"reference": "` + patient + `"},
		"policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
		"provision": {"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}}`
}

// TestWithoutConsent holds the bulk consent lookup of cohort counts
// (access.Control.WithoutConsent) to the consents the test itself wrote:
// created, doubled, deleted, moved to another patient. It may leave a
// patient without consent out (a chunk it could not settle), at most
// consentFreeLeaf-1 = 7 per patient with one, but it must never call a
// patient with a consent on file free: that patient's refusal would be
// ignored. The per-patient lookup (ConsentsOf) must agree with the same
// truth.
func TestWithoutConsent(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 11))
	const n = 700
	var patients []string
	for i := range n {
		id := fmt.Sprintf("p-%d", i)
		body := `{"resourceType": "Patient", "id": "` + id + `", "gender": "female"}`
		if r := g.Do(t, http.MethodPut, "/Patient/"+id, []byte(body), ehr...); r.Status != http.StatusCreated {
			t.Fatalf("PUT Patient = %d %s", r.Status, r.Body)
		}
		patients = append(patients, "Patient/"+id)
	}
	// Patients nobody stored, among the others.
	for i := range 40 {
		patients = append(patients, fmt.Sprintf("Patient/ghost-%d", i))
	}
	rng.Shuffle(len(patients), func(i, j int) { patients[i], patients[j] = patients[j], patients[i] })

	c := access.New(access.Config{Vault: g.Vault})
	consents := map[string][]string{} // patient -> live consent ids, as written
	check := func(stage string) {
		t.Helper()
		free, err := c.WithoutConsent(ctx, patients)
		if err != nil {
			t.Fatalf("%s: WithoutConsent: %v", stage, err)
		}
		missed, with := 0, 0
		for _, p := range patients {
			has := len(consents[p]) > 0
			stored, err := c.ConsentsOf(ctx, access.Committed{Vault: g.Vault}, p)
			if err != nil {
				t.Fatalf("%s: ConsentsOf: %v", stage, err)
			}
			if (len(stored) > 0) != has {
				t.Errorf("%s: the per-patient lookup finds %d consents for a patient with %d", stage, len(stored), len(consents[p]))
			}
			switch {
			case has:
				with++
				if free.Has(p) {
					t.Errorf("%s: a patient with %d consents on file is called free of them", stage, len(consents[p]))
				}
			case !free.Has(p):
				missed++
			}
		}
		if missed > 7*with {
			t.Errorf("%s: %d patients without a consent left out, more than 7 for each of the %d with one", stage, missed, with)
		}
		t.Logf("%s: %d patients with a consent, %d of the others left to a lookup each", stage, with, missed)
	}
	check("no consent at all")

	put := func(patient string) string {
		t.Helper()
		r := g.Do(t, http.MethodPost, "/Consent", []byte(researchOptOut(patient)), ehr...)
		if r.Status != http.StatusCreated {
			t.Fatalf("POST Consent = %d %s", r.Status, r.Body)
		}
		id := idFromLocation(t, r)
		consents[patient] = append(consents[patient], id)
		return id
	}
	// Sparse: a few percent, one of them twice.
	var chosen []string
	for _, p := range patients {
		if len(chosen) < 20 && rng.IntN(100) < 3 && strings.HasPrefix(p, "Patient/p-") {
			chosen = append(chosen, p)
			put(p)
		}
	}
	put(chosen[0])
	check("sparse consents")

	// Deleted: the patient is free again once the last is gone.
	gone := chosen[1]
	if r := g.Do(t, http.MethodDelete, "/Consent/"+consents[gone][0], nil, ehr...); r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		t.Fatalf("DELETE Consent = %d %s", r.Status, r.Body)
	}
	delete(consents, gone)
	// Moved: a consent revised to name another patient leaves the first.
	from, to := chosen[2], chosen[3]
	moved := consents[from][0]
	body := researchOptOut(to)
	body = `{"id": "` + moved + `", ` + body[1:]
	if r := g.Do(t, http.MethodPut, "/Consent/"+moved, []byte(body), ehr...); r.Status != http.StatusOK {
		t.Fatalf("PUT Consent = %d %s", r.Status, r.Body)
	}
	delete(consents, from)
	consents[to] = append(consents[to], moved)
	check("deleted and moved")

	// Dense: every other stored patient.
	for i, p := range patients {
		if i%2 == 0 && strings.HasPrefix(p, "Patient/p-") && len(consents[p]) == 0 {
			put(p)
		}
	}
	check("dense consents")
}

// TestCountFollowsConsentAtOnce: a count decides the consent of the
// patients it matches with the decision cache (one evaluation for every
// patient without a consent) and the bulk lookup. Neither may let an
// opt-out, or its withdrawal, wait: the same client's next count, a moment
// later, follows it.
func TestCountFollowsConsentAtOnce(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true, Research: gateway.ResearchConfig{
		Privacy: cohort.Privacy{Threshold: 1, Noise: cohort.NoiseNone, RoundTo: 1, RepeatLimit: 1 << 20},
	}})
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	const n = 300
	for i := range n {
		gender := []string{"female", "male"}[i%2]
		id := fmt.Sprintf("c-%d", i)
		body := `{"resourceType": "Patient", "id": "` + id + `", "gender": "` + gender + `"}`
		if r := g.Do(t, http.MethodPut, "/Patient/"+id, []byte(body), ehr...); r.Status != http.StatusCreated {
			t.Fatalf("PUT Patient = %d %s", r.Status, r.Body)
		}
	}
	hdr := researcher(t, g, "consent-follower")
	count := func(want int) {
		t.Helper()
		res, r := askCohort(t, g, "count", `{"criteria": {"gender": "female"}}`, hdr)
		if r.Status != http.StatusOK || res.Result.Count == nil || *res.Result.Count != want {
			t.Fatalf("count of women = %d %s, want %d", r.Status, r.Body, want)
		}
	}
	count(n / 2)
	var ids []string
	for _, i := range []int{0, 2, 150} {
		r := g.Do(t, http.MethodPost, "/Consent", []byte(researchOptOut(fmt.Sprintf("Patient/c-%d", i))), ehr...)
		if r.Status != http.StatusCreated {
			t.Fatalf("POST Consent = %d %s", r.Status, r.Body)
		}
		ids = append(ids, idFromLocation(t, r))
		count(n/2 - len(ids))
	}
	for len(ids) > 0 {
		if r := g.Do(t, http.MethodDelete, "/Consent/"+ids[0], nil, ehr...); r.Status != http.StatusOK && r.Status != http.StatusNoContent {
			t.Fatalf("DELETE Consent = %d %s", r.Status, r.Body)
		}
		ids = slices.Delete(ids, 0, 1)
		count(n/2 - len(ids))
	}
}
