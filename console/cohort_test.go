package console_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/fhiranchor/fhiranchor/cohort"
)

// nodeOrSkip finds node; without it the JavaScript tests skip, except in
// CI (FHIRANCHOR_INTEGRATION=1), where that is a failure.
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("FHIRANCHOR_INTEGRATION") == "1" {
			t.Fatal("node is not installed; FHIRANCHOR_INTEGRATION=1 needs it")
		}
		t.Skip("node is not installed")
	}
	return node
}

// printQueries prints the query the builder makes of each model in
// test/cohort_models.mjs as one JSON line {"name", "count", "breakdown"}
// (breakdown null when the model has none).
const printQueries = `
import { buildQuery } from './src/lib/cohort.js';
import { models } from './test/cohort_models.mjs';
for (const [name, m] of Object.entries(models)) {
  const count = buildQuery(m);
  if (count.errors.length) throw new Error(name + ': ' + JSON.stringify(count.errors));
  let breakdown = null;
  if (m.breakdown.length) {
    const b = buildQuery(m, { withBreakdown: true });
    if (b.errors.length) throw new Error(name + ': ' + JSON.stringify(b.errors));
    breakdown = b.query;
  }
  process.stdout.write(JSON.stringify({ name, count: count.query, breakdown }) + '\n');
}
`

// TestCohortBuilderQueriesParse hands every query the builder makes of the
// common models (test/cohort_models.mjs) to the server's own parser: the
// console never sends a query the server refuses as invalid.
func TestCohortBuilderQueriesParse(t *testing.T) {
	n := 0
	for _, line := range builtQueries(t) {
		n++
		q, err := cohort.ParseQuery(line.Count)
		if err != nil {
			t.Errorf("%s: the server refuses the count query: %v\n%s", line.Name, err, line.Count)
			continue
		}
		if len(q.Breakdown) != 0 {
			t.Errorf("%s: a count query carries a breakdown", line.Name)
		}
		if string(line.Breakdown) == "null" {
			continue
		}
		b, err := cohort.ParseQuery(line.Breakdown)
		if err != nil {
			t.Errorf("%s: the server refuses the breakdown query: %v\n%s", line.Name, err, line.Breakdown)
			continue
		}
		if len(b.Breakdown) == 0 {
			t.Errorf("%s: the breakdown query has no dimension", line.Name)
		}
		// Count and breakdown ask about the same patients.
		if b.Fingerprint() != q.Fingerprint() {
			t.Errorf("%s: the breakdown's criteria differ from the count's", line.Name)
		}
	}
	if n < 10 {
		t.Fatalf("only %d models checked", n)
	}
}

type builtQuery struct {
	Name      string          `json:"name"`
	Count     json.RawMessage `json:"count"`
	Breakdown json.RawMessage `json:"breakdown"`
}

// builtQueries runs the builder on the common models
// (test/cohort_models.mjs) with node.
func builtQueries(t *testing.T) []builtQuery {
	t.Helper()
	node := nodeOrSkip(t)
	cmd := exec.Command(node, "--input-type=module", "-e", printQueries)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.Bytes())
	}
	var qs []builtQuery
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var q builtQuery
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("node printed a line that is not JSON: %v", err)
		}
		qs = append(qs, q)
	}
	if len(qs) < 10 {
		t.Fatalf("the builder made only %d queries", len(qs))
	}
	return qs
}
