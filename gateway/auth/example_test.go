package auth_test

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

func ExampleMintToken() {
	dir, err := os.MkdirTemp("", "fhiranchor-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The dev key is created on first use and reused afterwards.
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		log.Fatal(err)
	}
	token, err := auth.MintToken(key, auth.Claims{
		ClientID: "ehr-integration",
		Issuer:   "https://fhiranchor.example",
		Audience: "https://fhiranchor.example/fhir/r4",
		Scopes:   []string{"system/Patient.rs", "system/Observation.cruds", "fhiranchor/policy.admin"},
		TTL:      time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}

	// The gateway's interceptor does this for every call.
	v := auth.NewVerifier(auth.DevKeySet(key), auth.Config{
		Issuer:   "https://fhiranchor.example",
		Audience: "https://fhiranchor.example/fhir/r4",
		Leeway:   30 * time.Second,
	})
	bearer, err := auth.FromAuthorizationHeader("Bearer " + token)
	if err != nil {
		log.Fatal(err)
	}
	p, err := v.Verify(bearer)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.ClientID)
	fmt.Println("read Patient:", p.Scopes.Allows("Patient", auth.Read))
	fmt.Println("create Patient:", p.Scopes.Allows("Patient", auth.Create))
	fmt.Println("delete Observation:", p.Scopes.Allows("Observation", auth.Delete))
	fmt.Println("policy admin:", p.Scopes.Has("fhiranchor/policy.admin"))
	// Output:
	// ehr-integration
	// read Patient: true
	// create Patient: false
	// delete Observation: true
	// policy admin: true
}

func ExampleParseScopes() {
	s := auth.ParseScopes("system/Patient.read system/Observation.rs?category=laboratory patient/*.cruds")
	fmt.Println(s.Allows("Patient", auth.Search))
	fmt.Println(s.Allows("Observation", auth.Read)) // query-restricted: grants nothing yet
	fmt.Println(s.Allows("Encounter", auth.Read))   // patient/ scopes grant nothing yet
	// Output:
	// true
	// false
	// false
}
