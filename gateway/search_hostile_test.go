package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestSearchHostileQueries: queries a client chose to hurt the server
// (malformed, huge, deep, encoded oddly, aimed at the cursor) are answered
// 200 or with a 4xx OperationOutcome that quotes nothing of them, never a
// 5xx and never a hang.
func TestSearchHostileQueries(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	auth := []string{"Authorization", "Bearer " + g.Token(t)}
	created(t, g, g.Token(t), "Patient", `{"resourceType":"Patient","name":[{"family":"Hostile"}],"birthDate":"1970-01-01"}`)
	const mark = "Zq9mark"
	many := strings.Repeat(mark+",", 5000)
	for _, q := range []string{
		"Patient?family=" + mark + "%00",
		"Patient?family=" + url.QueryEscape(many),
		"Patient?birthdate=" + mark,
		"Patient?birthdate=ge99999-99-99T99:99:99Z" + mark,
		"Patient?birthdate=" + strings.Repeat("9", 400),
		"Observation?value-quantity=1e999999" + mark,
		"Observation?value-quantity=" + url.QueryEscape("5|"+strings.Repeat("|", 50)+mark),
		"Patient?_count=-1" + mark, "Patient?_count=99999999999999999999", "Patient?_count=" + mark,
		"Patient?_sort=-", "Patient?_sort=" + mark, "Patient?_sort=,,,",
		"Patient?_cursor=" + mark, "Patient?_cursor=" + strings.Repeat("A", 10000),
		"Patient?_include=*:*", "Patient?_include=" + mark, "Patient?_revinclude=" + mark + ":x",
		"Patient?_has:" + mark + ":patient:code=1", "Patient?_has:Observation:" + mark + ":code=1",
		"Patient?_has:Observation:patient:_has:Observation:patient:_has:Observation:patient:code=1",
		"Observation?subject:Patient.organization:Organization.partof.name=" + mark,
		"Observation?" + mark + ".name=x", "Observation?subject:" + mark + ".name=x",
		"Patient?family:" + mark + "=x", "Patient?" + url.QueryEscape(mark+"\u202e") + "=x",
		"Patient?name=%ff%fe", "Patient?_summary=" + mark, "Patient?_total=" + mark, "Patient?_elements=" + mark + ",,,",
		"Patient?_type=" + mark, "?_type=" + mark, "?_type=Patient,Patient,Patient", "Patient?_contained=true",
		"Observation?code-value-quantity=" + url.QueryEscape("$$$$"+mark), "Observation?code-value-quantity=" + url.QueryEscape("a$b$c$d"),
		"Patient?_id=" + url.QueryEscape("../../etc/passwd"), "Patient?_lastUpdated=gt" + mark,
		"Patient/" + mark + "/Observation", "Patient/x/$everything?_count=" + mark, "Patient/x/$everything?_since=" + mark,
	} {
		for _, strict := range []bool{false, true} {
			h := auth
			if strict {
				h = append(append([]string(nil), auth...), "Prefer", "handling=strict")
			}
			r := g.Do(t, http.MethodGet, "/"+q, nil, h...)
			switch {
			case r.Status >= 500:
				t.Errorf("GET %.120s (strict %v): %d %s", q, strict, r.Status, r.Body)
			case r.Status >= 400:
				if !strings.Contains(string(r.Body), `"OperationOutcome"`) || strings.Contains(string(r.Body), mark) {
					t.Errorf("GET %.120s (strict %v): %d %s", q, strict, r.Status, r.Body)
				}
			case r.Status != http.StatusOK:
				t.Errorf("GET %.120s (strict %v): %d", q, strict, r.Status)
			}
		}
	}
}
