package search_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/fhiranchor/fhiranchor/fhir/search"
)

func Example() {
	p, _ := search.Lookup("Observation", "patient")
	fmt.Println(p.Type, p.Expression, p.Targets)

	dec := json.NewDecoder(strings.NewReader(`{"resourceType":"Observation","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
		"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-03",
		"valueQuantity":{"value":72.0,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`))
	dec.UseNumber() // keeps 72.0 as written
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		panic(err)
	}
	vals, err := search.Extract("Observation", tree)
	if err != nil {
		panic(err)
	}
	for _, v := range vals {
		switch v.Type {
		case search.TypeToken:
			fmt.Println(v.Param, v.Token.System+"|"+v.Token.Code)
		case search.TypeReference:
			fmt.Println(v.Param, v.Reference.Type, v.Reference.ID)
		case search.TypeDate:
			fmt.Println(v.Param, v.Date.Low.Format("2006-01-02"), v.Date.High.Format("2006-01-02"))
		case search.TypeQuantity:
			fmt.Println(v.Param, v.Quantity.Value, v.Quantity.System+"|"+v.Quantity.Code)
		}
	}
	fmt.Println(search.NormalizeString("  Zoë  DUPONT"))
	// Output:
	// reference Observation.subject.where(resolve() is Patient) [Patient]
	// code http://loinc.org|8867-4
	// combo-code http://loinc.org|8867-4
	// combo-value-quantity 72.0 http://unitsofmeasure.org|/min
	// date 2020-03-01 2020-04-01
	// patient Patient p1
	// status |final
	// subject Patient p1
	// value-quantity 72.0 http://unitsofmeasure.org|/min
	// zoe dupont
}

// ExampleParse shows the two steps of a search over the blind index: the
// keys narrow to candidates, Match decides on each.
func ExampleParse() {
	q, err := search.Parse("Patient", url.Values{"birthdate": {"le1971"}, "name": {"zoe"}, "_sort": {"-birthdate"}}, true)
	if err != nil {
		panic(err)
	}
	dec := json.NewDecoder(strings.NewReader(`{"resourceType":"Patient","id":"p1",
		"name":[{"family":"Dupont","given":["Zoë"]}],"birthDate":"1970-05-02"}`))
	dec.UseNumber()
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		panic(err)
	}
	vals, _ := search.Extract("Patient", tree)
	stored := search.IndexKeys("Patient", vals) // the gateway HMACs and stores these
	for _, c := range q.Clauses {
		keys, narrows := c.Keys() // the gateway looks these up (HMACed)
		fmt.Println(c.Param.Code, narrows, len(keys) > 0, slices.ContainsFunc(keys, func(k string) bool { return slices.Contains(stored, k) }), c.Match(vals))
	}
	// Output:
	// birthdate true true true true
	// name true true true true
}
