package gateway_test

import (
	"bytes"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestMetrics ingests three Synthea patients, reads some of them back, is
// refused a few times and asks one cohort question; then /metrics (no
// token) parses as the Prometheus text format, has every family with
// plausible values, and holds none of the patients' names, identifiers,
// dates or resource ids.
func TestMetrics(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{})
	ehr := []string{"Authorization", "Bearer " + g.Token(t)}
	files := smallestPatientBundles(t, 3)
	secrets, _ := collectPatientSecrets(t, files)

	var ids []string // every id the gateway gave an ingested resource
	var patients []string
	for _, f := range files {
		r := g.Do(t, http.MethodPost, "", readFile(t, f), ehr...)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: status %d: %.300s", filepath.Base(f), r.Status, r.Body)
		}
		for _, e := range decodeBundle(t, r.Body).Entry {
			parts := strings.Split(relativeLocation(e.Response.Location), "/")
			if len(parts) < 2 {
				t.Fatalf("location %q", e.Response.Location)
			}
			ids = append(ids, parts[1])
			if parts[0] == "Patient" {
				patients = append(patients, parts[1])
			}
		}
	}
	if len(patients) != 3 {
		t.Fatalf("ingested %d patients", len(patients))
	}
	for _, p := range patients {
		if r := g.Do(t, http.MethodGet, "/Patient/"+p, nil, ehr...); r.Status != http.StatusOK {
			t.Fatalf("read: %d %s", r.Status, r.Body)
		}
	}
	// Refusals: by consent policy (marketing), by token, by missing token.
	if r := g.Do(t, http.MethodGet, "/Patient/"+patients[0], nil, append(ehr, "X-Purpose-Of-Use", "HMARKT")...); r.Status != http.StatusForbidden {
		t.Fatalf("marketing read: %d %s", r.Status, r.Body)
	}
	if r := g.Do(t, http.MethodGet, "/Patient/"+patients[0], nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("read without a token: %d", r.Status)
	}
	if r := g.Do(t, http.MethodGet, "/Patient/"+patients[1], nil, "Authorization", "Bearer "+g.TokenFor(t, auth.Claims{ClientID: "nobody", Scopes: []string{"openid"}, TTL: time.Hour})); r.Status != http.StatusForbidden {
		t.Fatalf("read without a scope: %d", r.Status)
	}
	if _, r := askCohort(t, g, "count", `{"criteria": `+hypertension+`}`, researcher(t, g, "metrics-researcher")); r.Status != http.StatusOK {
		t.Fatalf("cohort count: %d %s", r.Status, r.Body)
	}

	// Every leaf is anchored within the log's max delay (100ms in tests).
	var body []byte
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := g.DoRoot(t, http.MethodGet, "/metrics", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("/metrics: %d %s", r.Status, r.Body)
		}
		body = r.Body
		p := expfmt.NewTextParser(model.UTF8Validation)
		var err error
		if fams, err = p.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
			t.Fatalf("/metrics does not parse: %v\n%s", err, body)
		}
		if value(fams, "fhiranchor_anchor_leaves_pending", nil) == 0 && value(fams, "fhiranchor_anchors_mined_total", nil) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaves still pending:\n%s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, c := range []struct {
		family string
		labels map[string]string
		min    float64
	}{
		{"fhiranchor_requests_total", map[string]string{"method": "/fhiranchor.v1.FHIRService/Transaction", "code": "OK"}, 3},
		{"fhiranchor_requests_total", map[string]string{"method": "/fhiranchor.v1.FHIRService/Read", "code": "OK"}, 3},
		{"fhiranchor_requests_total", map[string]string{"method": "/fhiranchor.v1.FHIRService/Read", "code": "PermissionDenied"}, 2},
		{"fhiranchor_requests_total", map[string]string{"method": "/fhiranchor.v1.CohortService/CountCohort", "code": "OK"}, 1},
		{"fhiranchor_request_duration_seconds", map[string]string{"method": "/fhiranchor.v1.FHIRService/Transaction"}, 3},
		{"fhiranchor_resources_ingested_total", map[string]string{"type": "Patient"}, 3},
		{"fhiranchor_resources_ingested_total", map[string]string{"type": "Observation"}, 20},
		{"fhiranchor_access_decisions_total", map[string]string{"outcome": "allow"}, 6},
		{"fhiranchor_access_decisions_total", map[string]string{"outcome": "deny"}, 1},
		{"fhiranchor_research_queries_total", map[string]string{"outcome": "released"}, 1},
		{"fhiranchor_research_suppressed_total", nil, 0},
		{"fhiranchor_anchors_mined_total", nil, 1},
		{"fhiranchor_anchor_gas_used_total", nil, 21000},
		{"fhiranchor_anchor_last_age_seconds", nil, 0},
		{"fhiranchor_vault_versions", nil, float64(len(ids))},
		{"fhiranchor_vault_leaves", nil, float64(len(ids))},
		{"fhiranchor_vault_data_keys", nil, 1},
		{"fhiranchor_vault_idempotent_responses", nil, 0},
		{"fhiranchor_vault_policy_versions", nil, 0},
		{"fhiranchor_cohort_index_patients", nil, 1},
		{"fhiranchor_cohort_index_resources", nil, 1},
	} {
		if _, ok := fams[c.family]; !ok {
			t.Errorf("no family %s", c.family)
			continue
		}
		if v := value(fams, c.family, c.labels); v < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.family, c.labels, v, c.min)
		}
	}
	if age := value(fams, "fhiranchor_anchor_last_age_seconds", nil); age > 600 {
		t.Errorf("last anchor is %vs old", age)
	}
	if n := value(fams, "fhiranchor_resources_ingested_total", nil); n != float64(len(ids)) {
		t.Errorf("ingested %v resources, the Bundles held %d", n, len(ids))
	}
	// Labels are fixed words: methods, codes, R4 types, outcomes.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" && !strings.HasPrefix(l.GetValue(), "/fhiranchor.v1.") && l.GetValue() != "other" {
					t.Errorf("%s: method label %q", name, l.GetValue())
				}
			}
		}
	}
	if found := secrets.find(body); len(found) > 0 {
		t.Errorf("/metrics holds the patients' data: %q", found)
	}
	for _, id := range ids {
		if bytes.Contains(body, []byte(id)) {
			t.Errorf("/metrics holds resource id %s", id)
		}
	}
}

// value sums the samples of family whose labels include labels: counter,
// gauge, or a histogram's count.
func value(fams map[string]*dto.MetricFamily, family string, labels map[string]string) float64 {
	var sum float64
	for _, m := range fams[family].GetMetric() {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match != len(labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}
