package gateway

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestDirectPath pins which requests are served directly: plain reads and
// vreads of one resource only; every other route, and anything that would
// need grpc-gateway's unescaping or query parsing, takes the gRPC route.
func TestDirectPath(t *testing.T) {
	tests := []struct {
		method, target string
		want           []string // nil: the gRPC route
	}{
		{"GET", "/fhir/r4/Patient/p1", []string{"Patient", "p1"}},
		{"GET", "/fhir/r4/Observation/a-b.c/_history/12", []string{"Observation", "a-b.c", "_history", "12"}},
		{"HEAD", "/fhir/r4/Patient/p1", nil},
		{"POST", "/fhir/r4/Patient/p1", nil},
		{"GET", "/fhir/r4/Patient/p1?x=1", nil},
		{"GET", "/fhir/r4/Patient/$export", nil},
		{"GET", "/fhir/r4/Patient/_history", nil},
		{"GET", "/fhir/r4/Patient/p1/_history", nil},
		{"GET", "/fhir/r4/Patient/p1/$everything", nil},
		{"GET", "/fhir/r4/Patient/p1/Observation", nil},
		{"GET", "/fhir/r4/Patient/p1/_history/x", nil},
		{"GET", "/fhir/r4/Patient/p1/_history/", nil},
		{"GET", "/fhir/r4/Patient/p1/", nil},
		{"GET", "/fhir/r4/Nope/p1", nil},
		{"GET", "/fhir/r4/metadata", nil},
		{"GET", "/fhir/r4/Patient/p%2D1", nil}, // escaped: grpc-gateway unescapes it
		{"GET", "/fhir/r4/Patient/" + strings.Repeat("a", 65), nil},
		{"GET", "/v1/receipts/Patient/p1/_history/1", nil},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "http://localhost"+tt.target, nil)
		got, ok := directPath(r)
		if ok != (tt.want != nil) || !slices.Equal(got, tt.want) {
			t.Errorf("directPath(%s %s) = %q, %v; want %q", tt.method, tt.target, got, ok, tt.want)
		}
	}
}
