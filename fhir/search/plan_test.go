package search

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
)

// generalPlan is the plan of resourceType with nothing specialised: every
// parameter's and component's expression as compiled, evaluated afresh.
func generalPlan(resourceType string) *plan {
	pl := &plan{}
	for _, p := range load().sorted[resourceType] {
		pp := planParam{Param: p, expr: p.expr}
		for _, comp := range p.Components {
			pp.comps = append(pp.comps, comp.expr)
		}
		pl.params = append(pl.params, pp)
	}
	return pl
}

// checkPlan extracts tree by its type's plan and by generalPlan, and fails
// unless both give the same values, field for field, and the same error.
func checkPlan(t testing.TB, x *Extractor, name, rt string, tree map[string]any) {
	t.Helper()
	want, werr := x.extract(generalPlan(rt), rt, tree)
	got, gerr := x.Extract(rt, tree)
	if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s %s (indexed %v): the plan gives %d values (error %v), the general evaluation %d (error %v)",
			name, rt, x.Indexed, len(got), gerr, len(want), werr)
	}
}

// TestPlanMatchesGeneral holds the specialised plans (shared
// subexpressions, steps found beforehand, composites over the resource)
// to the general evaluation of the same expressions, on every resource of
// the shared test data and mutants of them.
func TestPlanMatchesGeneral(t *testing.T) {
	for _, sub := range []string{"synthea", "hl7-examples"} {
		es := resources(t, sub)
		if sub == "synthea" {
			es = es[:min(len(es), 3000)]
		}
		es = append(es, mutants(t, es[:min(len(es), 300)])...)
		for _, indexed := range []bool{false, true} {
			x := &Extractor{ReferenceType: bundleTypes(es), Indexed: indexed}
			for _, e := range es {
				if _, ok := load().plans[e.resourceType]; ok {
					checkPlan(t, x, e.file, e.resourceType, e.tree)
				}
			}
		}
	}
}

// TestExtractConcurrent extracts the HL7 examples from several goroutines
// at once, as the gateway's handlers do: the pooled contexts and shared
// plans must give each the values a lone extraction gives (run with -race).
func TestExtractConcurrent(t *testing.T) {
	es := resources(t, "hl7-examples")
	x := &Extractor{ReferenceType: bundleTypes(es)}
	want := make([][]Value, len(es))
	for i, e := range es {
		want[i], _ = x.Extract(e.resourceType, e.tree)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Go(func() {
			for n := range len(es) * 3 {
				i := (n*7 + g) % len(es)
				got, _ := x.Extract(es[i].resourceType, es[i].tree)
				if !reflect.DeepEqual(got, want[i]) {
					errs <- fmt.Sprintf("%s %s: values differ when extracted concurrently", es[i].file, es[i].resourceType)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
