package gateway_test

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestDirectReadsAnswerAsTheGRPCRoute reads and vreads over both routes a
// REST read can take: the direct one (a plain GET [type]/[id] or
// [type]/[id]/_history/[vid]) and the gRPC one (the same GET with a query
// parameter the read ignores, which grpc-gateway routes over the
// in-process connection). Every answer, refusals included, must be the
// same on both: status, body and the headers a client acts on; and each
// read of patient data must record one decision on either route.
func TestDirectReadsAnswerAsTheGRPCRoute(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	tok := g.Token(t)
	patient := created(t, g, tok, "Patient", `{"resourceType":"Patient","name":[{"family":"Direct"}]}`)
	obs := created(t, g, tok, "Observation", `{"resourceType":"Observation","status":"final",`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/`+patient+`"}}`)
	gone := created(t, g, tok, "Observation", `{"resourceType":"Observation","status":"final",`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/`+patient+`"}}`)
	if r := g.Do(t, "DELETE", "/Observation/"+gone, nil, "Authorization", "Bearer "+tok); r.Status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}
	obsOnly := g.Token(t, "system/Observation.read")
	noPurpose := g.TokenFor(t, auth.Claims{ClientID: "test-client", Scopes: []string{"system/*.read"}, TTL: time.Hour})

	cases := []struct {
		name    string
		path    string
		headers []string
		status  int
		decided bool // a read of patient data: one decision recorded
	}{
		{"read", "/Observation/" + obs, []string{"Authorization", "Bearer " + tok}, http.StatusOK, true},
		{"read patient", "/Patient/" + patient, []string{"Authorization", "Bearer " + tok}, http.StatusOK, true},
		{"vread", "/Observation/" + obs + "/_history/1", []string{"Authorization", "Bearer " + tok}, http.StatusOK, true},
		{"pretty", "/Observation/" + obs + "?_pretty=true", []string{"Authorization", "Bearer " + tok}, http.StatusOK, true},
		{"request id", "/Observation/" + obs, []string{"Authorization", "Bearer " + tok, "X-Request-Id", "direct-1"}, http.StatusOK, true},
		{"purpose header", "/Observation/" + obs, []string{"Authorization", "Bearer " + noPurpose, "X-Purpose-Of-Use", "TREAT"}, http.StatusOK, true},
		{"unknown id", "/Observation/no-such-id", []string{"Authorization", "Bearer " + tok}, http.StatusNotFound, false},
		{"unknown version", "/Observation/" + obs + "/_history/9", []string{"Authorization", "Bearer " + tok}, http.StatusNotFound, false},
		{"deleted", "/Observation/" + gone, []string{"Authorization", "Bearer " + tok}, http.StatusGone, false},
		{"no token", "/Observation/" + obs, nil, http.StatusUnauthorized, false},
		{"bad token", "/Observation/" + obs, []string{"Authorization", "Bearer not-a-token"}, http.StatusUnauthorized, false},
		{"scope", "/Patient/" + patient, []string{"Authorization", "Bearer " + obsOnly}, http.StatusForbidden, false},
		{"bad purpose", "/Observation/" + obs, []string{"Authorization", "Bearer " + tok, "X-Purpose-Of-Use", "NOPE"}, http.StatusBadRequest, false},
		{"xml", "/Observation/" + obs + "?_format=xml", []string{"Authorization", "Bearer " + tok}, http.StatusNotAcceptable, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			viaGRPC := tc.path + "?route=grpc"
			if strings.Contains(tc.path, "?") {
				viaGRPC = tc.path + "&route=grpc"
			}
			var answers [2]testonly.Response
			for i, path := range []string{tc.path, viaGRPC} {
				before := g.RecordLeaves(t)
				answers[i] = g.Do(t, "GET", path, nil, tc.headers...)
				if answers[i].Status != tc.status {
					t.Fatalf("GET %s: status %d, want %d: %s", path, answers[i].Status, tc.status, answers[i].Body)
				}
				want := before
				if tc.decided {
					want++
				}
				if got := g.RecordLeaves(t); got != want {
					t.Errorf("GET %s recorded %d decisions, want %d", path, got-before, want-before)
				}
			}
			direct, grpc := answers[0], answers[1]
			if !bytes.Equal(direct.Body, grpc.Body) {
				t.Errorf("bodies differ:\ndirect: %s\ngRPC:   %s", direct.Body, grpc.Body)
			}
			for _, h := range []string{"Content-Type", "ETag", "Last-Modified", "Location", "WWW-Authenticate", "Retry-After", "X-Request-Id"} {
				d, r := direct.Header.Values(h), grpc.Header.Values(h)
				if h == "X-Request-Id" && !slices.Contains(tc.headers, "X-Request-Id") {
					// Made per request when the client sends none.
					if len(d) != 1 || len(r) != 1 {
						t.Errorf("X-Request-Id: direct %q, gRPC %q; want one each", d, r)
					}
					continue
				}
				if strings.Join(d, ",") != strings.Join(r, ",") {
					t.Errorf("%s: direct %q, gRPC %q", h, d, r)
				}
			}
		})
	}
}
