package gateway_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// TestWhoAmI checks that /v1/whoami tells a token's holder its client id,
// role and scopes, nothing else, and refuses a missing or forged token.
func TestWhoAmI(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	for _, c := range []struct {
		scopes []string
		role   string
	}{
		{[]string{gateway.PolicyAdminScope, gateway.AuditScope}, "admin"},
		{[]string{gateway.AdminScope}, "operator"},
		{[]string{gateway.AuditScope}, "auditor"},
		{[]string{gateway.PatientSelfScope}, "patient"},
		{[]string{gateway.CohortExportScope}, "researcher"},
		{[]string{"system/Observation.rs"}, "clinical"},
		{[]string{"openid"}, "none"},
	} {
		tok := g.TokenFor(t, auth.Claims{ClientID: "who-" + c.role, Scopes: c.scopes, TTL: time.Hour,
			PurposeOfUse: "TREAT", FHIRUser: "Patient/p1", Organization: "Organization/o1"})
		r := g.DoRoot(t, http.MethodGet, gateway.WhoAmIPath, nil, "Authorization", "Bearer "+tok)
		if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%v: %d %q", c.scopes, r.Status, r.Header.Get("Cache-Control"))
			continue
		}
		var got map[string]any
		if err := json.Unmarshal(r.Body, &got); err != nil {
			t.Fatal(err)
		}
		var scopes []string
		for _, s := range got["scopes"].([]any) {
			scopes = append(scopes, s.(string))
		}
		if len(got) != 3 || got["client_id"] != "who-"+c.role || got["role"] != c.role || !slices.Equal(scopes, c.scopes) {
			t.Errorf("%v: got %s", c.scopes, r.Body)
		}
		if strings.Contains(string(r.Body), "p1") || strings.Contains(string(r.Body), "o1") {
			t.Errorf("%v: the answer carries more than the client, role and scopes: %s", c.scopes, r.Body)
		}
	}
	for _, h := range [][]string{nil, {"Authorization", "Bearer x.y.z"}} {
		if r := g.DoRoot(t, http.MethodGet, gateway.WhoAmIPath, nil, h...); r.Status != http.StatusUnauthorized {
			t.Errorf("whoami with %v: %d, want 401", h, r.Status)
		}
	}
}

// TestConsoleServed checks that the gateway serves the console under
// /console/ without a token.
func TestConsoleServed(t *testing.T) {
	g := testonly.StartGateway(t, testonly.Options{Quiet: true})
	r := g.DoRoot(t, http.MethodGet, "/console/", nil)
	if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'self'") ||
		!strings.Contains(string(r.Body), `src="/console/app.js"`) {
		t.Errorf("GET /console/: %d %q", r.Status, r.Header.Get("Content-Security-Policy"))
	}
	if r := g.DoRoot(t, http.MethodGet, "/console/app.js", nil); r.Status != http.StatusOK || r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("GET /console/app.js: %d %q", r.Status, r.Header.Get("Content-Type"))
	}
}
