package console_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/internal/browsertest"
)

var ingestedRE = regexp.MustCompile(`(?m)^fhiranchor_resources_ingested_total\{[^}]*\} (\S+)$`)

// ingested sums the ingest counter from the server's /metrics, outside
// the browser.
func ingested(t *testing.T, s *browsertest.Server) int {
	t.Helper()
	r := s.DoRoot(t, http.MethodGet, "/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.Status)
	}
	total := 0.0
	for _, m := range ingestedRE.FindAllStringSubmatch(string(r.Body), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		total += v
	}
	return int(total)
}

// TestConsoleOperator is the operator's glance: health, readiness,
// anchoring lag and ingest rate, the counts checked against /metrics and
// the rate against a write made between two refreshes.
func TestConsoleOperator(t *testing.T) {
	s := browsertest.Shared(t)
	b := browsertest.New(t)
	b.Open(s, browsertest.RoleOperator)
	b.Click(`nav a[data-page="operator"]`)
	b.Wait("the operator cards", `!!document.getElementById('card-ingest')`)
	if got := b.Text("#card-health .value"); got != "up" {
		t.Errorf("health %q, want up", got)
	}
	if got := b.Text("#card-ready .value"); got != "ready" {
		t.Errorf("readiness %q, want ready", got)
	}
	if got := b.Text("#card-lag .value"); !strings.HasSuffix(got, " s") && got != "no anchor yet" {
		t.Errorf("anchoring lag %q", got)
	}

	// A write between two readings: the rate is positive and the total is
	// the server's.
	org := []byte(`{"resourceType":"Organization","name":"Console operator test"}`)
	if r := s.Do(t, http.MethodPost, "/Organization", org, "Authorization", "Bearer "+s.Tokens[browsertest.RoleClinical]); r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	want := ingested(t, s)
	b.Click(`#operator-refresh`)
	b.Wait("the ingest rate", `/^[0-9.]+ \/s$/.test(document.querySelector('#card-ingest .value').textContent) && document.querySelector('#card-ingest .muted').textContent.startsWith(`+strconv.Quote(strconv.FormatInt(int64(want), 10))+`.replace(/\B(?=(\d{3})+(?!\d))/g, ','))`)
	if rate := b.Text("#card-ingest .value"); strings.HasPrefix(rate, "0.00 ") {
		t.Errorf("ingest rate %q after a write", rate)
	}
	if n := browsertest.Eval[int](b, `document.querySelectorAll('#vault-stats tr').length`); n == 0 {
		t.Errorf("no vault statistics shown")
	}
	b.Screenshot("operator")
	b.CheckRendered()
	b.CheckKeyboard()
}
