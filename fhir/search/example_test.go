package search_test

import (
	"encoding/json"
	"fmt"
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
