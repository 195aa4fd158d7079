package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/fhiranchor/fhiranchor/gateway"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// smartKey is an ES384 client key: the private JWK and its public set.
func smartKey(t *testing.T, kid string) (jwk.Key, json.RawMessage) {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = priv.Set(jwk.KeyIDKey, kid)
	pub, _ := priv.PublicKey()
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return priv, b
}

func smartAssertion(t *testing.T, key jwk.Key, client, aud string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewBuilder().Issuer(client).Subject(client).Audience([]string{aud}).
		Expiration(now.Add(4 * time.Minute)).JwtID(rand.Text()).Build()
	if err != nil {
		t.Fatal(err)
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES384(), key))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tokenForm(assertion, scope string) []byte {
	return []byte(url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {auth.AssertionTypeJWTBearer}, "client_assertion": {assertion}}.Encode())
}

// TestSMARTBackendServices: discovery, a token for a configured client,
// FHIR calls with it, a client registered and revoked through the admin
// API, a revoked key, OAuth errors that quote nothing, CORS.
func TestSMARTBackendServices(t *testing.T) {
	cfgKey, cfgSet := smartKey(t, "cfg-1")
	var set auth.JWKS
	if err := set.UnmarshalJSON(cfgSet); err != nil {
		t.Fatal(err)
	}
	g := testonly.StartGateway(t, testonly.Options{
		SMART:       &testonly.SMARTOptions{Clients: auth.StaticClients{"ehr": {ID: "ehr", Scopes: []string{"system/Patient.cruds"}, JWKS: &set}}},
		CORSOrigins: []string{"https://portal.example"},
	})
	tokenURL := g.Root + gateway.TokenPath

	for _, path := range []string{"/.well-known/smart-configuration", "/fhir/r4/.well-known/smart-configuration"} {
		r := g.DoRoot(t, http.MethodGet, path, nil)
		var doc map[string]any
		if r.Status != 200 || json.Unmarshal(r.Body, &doc) != nil || doc["token_endpoint"] != tokenURL {
			t.Fatalf("GET %s = %d %s", path, r.Status, r.Body)
		}
		if algs, _ := doc["token_endpoint_auth_signing_alg_values_supported"].([]any); len(algs) != 2 {
			t.Errorf("%s: signing algs %v", path, algs)
		}
	}
	meta := g.Do(t, http.MethodGet, "/metadata", nil)
	if !strings.Contains(string(meta.Body), `"valueUri":"`+tokenURL+`"`) || !strings.Contains(string(meta.Body), "oauth-uris") {
		t.Errorf("CapabilityStatement does not name the token endpoint %s", tokenURL)
	}

	exchange := func(form []byte) (int, map[string]any) {
		r := g.DoRoot(t, http.MethodPost, gateway.TokenPath, form, "Content-Type", "application/x-www-form-urlencoded")
		var m map[string]any
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatalf("token endpoint answered %d %q", r.Status, r.Body)
		}
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("token answer Cache-Control = %q", r.Header.Get("Cache-Control"))
		}
		return r.Status, m
	}
	st, m := exchange(tokenForm(smartAssertion(t, cfgKey, "ehr", tokenURL), "system/Patient.cruds system/Observation.rs"))
	if st != 200 || m["token_type"] != "bearer" || m["scope"] != "system/Patient.cruds" || m["expires_in"] != float64(300) {
		t.Fatalf("token = %d %v", st, m)
	}
	bearer := "Bearer " + m["access_token"].(string)
	created := g.Do(t, http.MethodPost, "/Patient", []byte(`{"resourceType":"Patient","gender":"female"}`), "Authorization", bearer)
	if created.Status != 201 {
		t.Fatalf("create with the issued token = %d %s", created.Status, created.Body)
	}
	if r := g.Do(t, http.MethodGet, "/Observation?_count=1", nil, "Authorization", bearer); r.Status != 403 {
		t.Errorf("search of an ungranted type = %d, want 403", r.Status)
	}

	// Refusals quote nothing the client sent.
	for name, form := range map[string][]byte{
		"bad aud":            tokenForm(smartAssertion(t, cfgKey, "ehr", "https://evil.example/token"), "system/Patient.cruds"),
		"unregistered scope": tokenForm(smartAssertion(t, cfgKey, "ehr", tokenURL), "system/Secret.rs"),
		"unknown client":     tokenForm(smartAssertion(t, cfgKey, "mallory", tokenURL), "system/Patient.cruds"),
	} {
		st, m := exchange(form)
		body, _ := json.Marshal(m)
		if st != 400 && st != 401 || m["error"] == nil {
			t.Errorf("%s: %d %s", name, st, body)
		}
		for _, leak := range []string{"evil", "Secret", "mallory"} {
			if strings.Contains(string(body), leak) {
				t.Errorf("%s: answer %s quotes the request", name, body)
			}
		}
	}

	// The admin API registers a client; revoking its key, then it, is
	// refused at once.
	admin := "Bearer " + g.Token(t, gateway.AdminScope)
	apiKey, apiSet := smartKey(t, "api-1")
	reg, _ := json.Marshal(map[string]any{"client_id": "lab", "scopes": []string{"system/Observation.rs"}, "jwks": apiSet})
	if r := g.DoRoot(t, http.MethodPost, "/v1/clients", reg, "Authorization", "Bearer "+g.Token(t, "system/*.cruds")); r.Status != 403 {
		t.Errorf("register without the admin scope = %d, want 403", r.Status)
	}
	if r := g.DoRoot(t, http.MethodPost, "/v1/clients", reg, "Authorization", admin); r.Status != 201 {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	if r := g.DoRoot(t, http.MethodGet, "/v1/clients", nil, "Authorization", admin); r.Status != 200 ||
		!strings.Contains(string(r.Body), `"lab"`) || !strings.Contains(string(r.Body), `"ehr"`) {
		t.Errorf("list = %d %s", r.Status, r.Body)
	}
	if st, m := exchange(tokenForm(smartAssertion(t, apiKey, "lab", tokenURL), "system/Observation.rs")); st != 200 {
		t.Fatalf("token of the registered client = %d %v", st, m)
	}
	if r := g.DoRoot(t, http.MethodDelete, "/v1/clients/lab/keys/api-1", nil, "Authorization", admin); r.Status != 204 {
		t.Fatalf("revoke key = %d %s", r.Status, r.Body)
	}
	if st, _ := exchange(tokenForm(smartAssertion(t, apiKey, "lab", tokenURL), "system/Observation.rs")); st != 401 {
		t.Errorf("token with a revoked key = %d, want 401", st)
	}
	if r := g.DoRoot(t, http.MethodDelete, "/v1/clients/ehr", nil, "Authorization", admin); r.Status != 204 {
		t.Fatalf("revoke configured client = %d %s", r.Status, r.Body)
	}
	if st, _ := exchange(tokenForm(smartAssertion(t, cfgKey, "ehr", tokenURL), "system/Patient.cruds")); st != 401 {
		t.Errorf("token of a revoked client = %d, want 401", st)
	}
	// Registrations live in the vault: they survive a restart.
	g.Restart(t)
	if r := g.DoRoot(t, http.MethodGet, "/v1/clients/ehr", nil, "Authorization", admin); r.Status != 200 || !strings.Contains(string(r.Body), `"revoked":true`) {
		t.Errorf("revoked client after restart = %d %s", r.Status, r.Body)
	}

	// CORS: preflight from an allowed origin, none for others.
	pre := g.Do(t, http.MethodOptions, "/Patient", nil, "Origin", "https://portal.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
	if pre.Status != 204 || pre.Header.Get("Access-Control-Allow-Origin") != "https://portal.example" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "If-Match") {
		t.Errorf("preflight = %d %v", pre.Status, pre.Header)
	}
	if r := g.Do(t, http.MethodOptions, "/Patient", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "POST"); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin allowed: %v", r.Header)
	}
	get := g.Do(t, http.MethodGet, "/metadata", nil, "Origin", "https://portal.example")
	if !strings.Contains(get.Header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Errorf("expose headers = %q", get.Header.Get("Access-Control-Expose-Headers"))
	}
}
