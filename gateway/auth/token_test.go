package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	jwxt "github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

const tokenURL = "https://fhiranchor.example/auth/token"

// assertionKey is a client's signing key and its public JWK.
type assertionKey struct {
	priv jwk.Key
	pub  jwk.Key
	alg  jwa.SignatureAlgorithm
}

func newAssertionKey(t testing.TB, kid string, alg jwa.SignatureAlgorithm) assertionKey {
	t.Helper()
	var raw any
	var err error
	switch alg {
	case jwa.ES384():
		raw, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jwa.ES256():
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		raw = rsaKey()
	}
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := priv.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return assertionKey{priv: priv, pub: pub, alg: alg}
}

func publicSet(t testing.TB, keys ...assertionKey) *auth.JWKS {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k.pub); err != nil {
			t.Fatal(err)
		}
	}
	return &auth.JWKS{Set: set}
}

// assertion signs a client assertion; mutate edits its claims first.
func assertion(t testing.TB, k assertionKey, alg jwa.SignatureAlgorithm, client string, now time.Time, mutate func(jwxt.Token)) string {
	t.Helper()
	tok, err := jwxt.NewBuilder().Issuer(client).Subject(client).Audience([]string{tokenURL}).
		Expiration(now.Add(4 * time.Minute)).IssuedAt(now).JwtID(rand.Text()).Build()
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(tok)
	}
	signed, err := jwxt.Sign(tok, jwxt.WithKey(alg, k.priv))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

type tokenFixture struct {
	srv      *auth.TokenServer
	verifier *auth.Verifier
	key      assertionKey
	now      time.Time
}

func newTokenFixture(t testing.TB, clients auth.ClientStore, remote *auth.RemoteKeys) tokenFixture {
	t.Helper()
	gk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	srv, err := auth.NewTokenServer(auth.TokenConfig{Key: gk, Issuer: testIssuer, Audience: testAudience, Clients: clients, Remote: remote,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return tokenFixture{srv: srv, verifier: auth.NewVerifier(auth.DevKeySet(gk), auth.Config{Issuer: testIssuer, Audience: testAudience}), now: now}
}

func request(assertion, scope string) auth.TokenRequest {
	return auth.TokenRequest{GrantType: auth.GrantClientCredentials, Scope: scope, ClientAssertionType: auth.AssertionTypeJWTBearer,
		ClientAssertion: assertion, TokenURL: tokenURL}
}

func TestTokenExchange(t *testing.T) {
	es := newAssertionKey(t, "es-1", jwa.ES384())
	rs := newAssertionKey(t, "rs-1", jwa.RS384())
	clients := auth.StaticClients{"ehr": {ID: "ehr", Scopes: []string{"system/Patient.rs", "system/Observation.rs"},
		FHIRUser: "Practitioner/p1", Organization: "Organization/o1", PurposeOfUse: "TREAT", JWKS: publicSet(t, es, rs)}}
	f := newTokenFixture(t, clients, nil)
	for _, k := range []assertionKey{es, rs} {
		resp, err := f.srv.Exchange(context.Background(), request(assertion(t, k, k.alg, "ehr", f.now, nil), "system/Patient.rs system/Encounter.rs"))
		if err != nil {
			t.Fatalf("%s: Exchange: %v", k.alg, err)
		}
		if resp.TokenType != "bearer" || resp.ExpiresIn != 300 || resp.Scope != "system/Patient.rs" {
			t.Errorf("%s: response = %+v", k.alg, resp)
		}
		p, err := f.verifier.Verify(resp.AccessToken)
		if err != nil {
			t.Fatalf("%s: the gateway's verifier refuses its own token: %v", k.alg, err)
		}
		if p.ClientID != "ehr" || !p.Scopes.Allows("Patient", auth.Read) || p.Scopes.Allows("Encounter", auth.Read) ||
			p.FHIRUser != "Practitioner/p1" || p.Organization != "Organization/o1" || p.PurposeOfUse != "TREAT" {
			t.Errorf("%s: principal = %+v", k.alg, p)
		}
	}
}

func TestTokenExchangeRefusals(t *testing.T) {
	good := newAssertionKey(t, "good", jwa.ES384())
	other := newAssertionKey(t, "good", jwa.ES384()) // same kid, key not registered
	es256 := newAssertionKey(t, "p256", jwa.ES256())
	rs := newAssertionKey(t, "rs", jwa.RS384())
	revokedKey := newAssertionKey(t, "old", jwa.ES384())
	clients := auth.StaticClients{
		"ehr":  {ID: "ehr", Scopes: []string{"system/Patient.rs"}, JWKS: publicSet(t, good, es256, rs, revokedKey), RevokedKIDs: []string{"old"}},
		"gone": {ID: "gone", Scopes: []string{"system/Patient.rs"}, JWKS: publicSet(t, good)},
	}
	revoked := auth.Chain{revokedStore{"gone"}, clients}
	f := newTokenFixture(t, revoked, nil)
	replayed := assertion(t, good, jwa.ES384(), "ehr", f.now, nil)
	if _, err := f.srv.Exchange(context.Background(), request(replayed, "system/Patient.rs")); err != nil {
		t.Fatalf("first use: %v", err)
	}
	tests := []struct {
		name     string
		req      auth.TokenRequest
		wantCode string
	}{
		{"bad aud", request(assertion(t, good, jwa.ES384(), "ehr", f.now, func(tok jwxt.Token) {
			_ = tok.Set(jwxt.AudienceKey, []string{"https://elsewhere.example/token"})
		}), "system/Patient.rs"), "invalid_client"},
		{"expired", request(assertion(t, good, jwa.ES384(), "ehr", f.now, func(tok jwxt.Token) {
			_ = tok.Set(jwxt.ExpirationKey, f.now.Add(-time.Minute))
		}), "system/Patient.rs"), "invalid_client"},
		{"exp over five minutes ahead", request(assertion(t, good, jwa.ES384(), "ehr", f.now, func(tok jwxt.Token) {
			_ = tok.Set(jwxt.ExpirationKey, f.now.Add(time.Hour))
		}), "system/Patient.rs"), "invalid_client"},
		{"no jti", request(assertion(t, good, jwa.ES384(), "ehr", f.now, func(tok jwxt.Token) {
			_ = tok.Remove(jwxt.JwtIDKey)
		}), "system/Patient.rs"), "invalid_client"},
		{"replayed jti", request(replayed, "system/Patient.rs"), "invalid_client"},
		{"sub is not the client", request(assertion(t, good, jwa.ES384(), "ehr", f.now, func(tok jwxt.Token) {
			_ = tok.Set(jwxt.SubjectKey, "someone")
		}), "system/Patient.rs"), "invalid_client"},
		{"wrong alg ES256", request(assertion(t, es256, jwa.ES256(), "ehr", f.now, nil), "system/Patient.rs"), "invalid_client"},
		{"wrong alg RS256", request(assertion(t, rs, jwa.RS256(), "ehr", f.now, nil), "system/Patient.rs"), "invalid_client"},
		{"wrong alg PS384", request(assertion(t, rs, jwa.PS384(), "ehr", f.now, nil), "system/Patient.rs"), "invalid_client"},
		{"unknown kid", request(assertion(t, newAssertionKey(t, "nope", jwa.ES384()), jwa.ES384(), "ehr", f.now, nil), "system/Patient.rs"), "invalid_client"},
		{"kid of another key", request(assertion(t, other, jwa.ES384(), "ehr", f.now, nil), "system/Patient.rs"), "invalid_client"},
		{"revoked key", request(assertion(t, revokedKey, jwa.ES384(), "ehr", f.now, nil), "system/Patient.rs"), "invalid_client"},
		{"unregistered client", request(assertion(t, good, jwa.ES384(), "stranger", f.now, nil), "system/Patient.rs"), "invalid_client"},
		{"revoked client", request(assertion(t, good, jwa.ES384(), "gone", f.now, nil), "system/Patient.rs"), "invalid_client"},
		{"unregistered scope", request(assertion(t, good, jwa.ES384(), "ehr", f.now, nil), "system/Observation.rs fhiranchor/admin"), "invalid_scope"},
		{"no scope", request(assertion(t, good, jwa.ES384(), "ehr", f.now, nil), ""), "invalid_scope"},
		{"wrong grant type", func() auth.TokenRequest {
			r := request(assertion(t, good, jwa.ES384(), "ehr", f.now, nil), "system/Patient.rs")
			r.GrantType = "password"
			return r
		}(), "unsupported_grant_type"},
		{"wrong assertion type", func() auth.TokenRequest {
			r := request(assertion(t, good, jwa.ES384(), "ehr", f.now, nil), "system/Patient.rs")
			r.ClientAssertionType = "urn:something"
			return r
		}(), "invalid_request"},
		{"client_id not iss", func() auth.TokenRequest {
			r := request(assertion(t, good, jwa.ES384(), "ehr", f.now, nil), "system/Patient.rs")
			r.ClientID = "gone"
			return r
		}(), "invalid_client"},
		{"garbage", request("not.a.jwt", "system/Patient.rs"), "invalid_client"},
		{"unsigned", request(unsigned(t, "ehr", f.now), "system/Patient.rs"), "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.srv.Exchange(context.Background(), tt.req)
			var oe *auth.OAuthError
			if !errors.As(err, &oe) {
				t.Fatalf("Exchange err = %v, want an OAuthError", err)
			}
			if oe.Code != tt.wantCode {
				t.Errorf("code = %q, want %q", oe.Code, tt.wantCode)
			}
			if want := map[bool]int{true: 401, false: 400}[tt.wantCode == "invalid_client"]; oe.Status != want {
				t.Errorf("status = %d, want %d", oe.Status, want)
			}
			for _, leak := range []string{"ehr", "stranger", "gone", "nope", "Observation", "password", "urn:something"} {
				if strings.Contains(oe.Description, leak) {
					t.Errorf("description %q quotes the request (%q)", oe.Description, leak)
				}
			}
		})
	}
}

// unsigned is an alg "none" assertion.
func unsigned(t testing.TB, client string, now time.Time) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"iss": client, "sub": client, "aud": tokenURL, "exp": now.Add(time.Minute).Unix(), "jti": "x"})
	enc := func(b []byte) string {
		return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(b64(b)), "=")
	}
	return enc([]byte(`{"alg":"none","kid":"good"}`)) + "." + enc(b) + "."
}

// revokedStore answers ErrRevokedClient for one id.
type revokedStore struct{ id string }

func (r revokedStore) Client(_ context.Context, id string) (auth.Client, error) {
	if id == r.id {
		return auth.Client{}, auth.ErrRevokedClient
	}
	return auth.Client{}, auth.ErrUnknownClient
}

// jwksServer serves a JWKS that the test can change.
type jwksServer struct {
	mu    sync.Mutex
	keys  []assertionKey
	hits  int
	https *httptest.Server
}

func newJWKSServer(t *testing.T, keys ...assertionKey) *jwksServer {
	s := &jwksServer{keys: keys}
	s.https = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.hits++
		_ = json.NewEncoder(w).Encode(publicSet(t, s.keys...).Set)
	}))
	t.Cleanup(s.https.Close)
	return s
}

func (s *jwksServer) set(keys ...assertionKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func TestTokenExchangeJWKSURLRotation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k1 := newAssertionKey(t, "k1", jwa.ES384())
	k2 := newAssertionKey(t, "k2", jwa.RS384())
	js := newJWKSServer(t, k1)
	remote, err := auth.NewRemoteKeys(ctx, auth.RemoteConfig{MinRefresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f := newTokenFixture(t, auth.StaticClients{"svc": {ID: "svc", Scopes: []string{"system/*.rs"}, JWKSURL: js.https.URL}}, remote)
	exchange := func(k assertionKey) error {
		_, err := f.srv.Exchange(ctx, request(assertion(t, k, k.alg, "svc", f.now, nil), "system/*.rs"))
		return err
	}
	if err := exchange(k1); err != nil {
		t.Fatalf("k1: %v", err)
	}
	js.set(k1, k2) // rotation: k2 added
	time.Sleep(60 * time.Millisecond)
	if err := exchange(k2); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	js.set(k2) // k1 removed
	time.Sleep(60 * time.Millisecond)
	if err := exchange(newAssertionKey(t, "k3", jwa.ES384())); err == nil { // unknown kid: refreshes
		t.Fatal("unknown kid accepted")
	}
	if err := exchange(k1); err == nil {
		t.Error("k1 accepted after it was removed from the JWKS")
	}
	if err := exchange(k2); err != nil {
		t.Errorf("k2: %v", err)
	}
	// Unknown kids do not make every request fetch: at most one fetch per
	// MinRefresh (and one more for where the window falls), however long
	// the 20 requests take on a loaded machine.
	madeUp := newAssertionKey(t, "made-up", jwa.ES384())
	js.mu.Lock()
	before := js.hits
	js.mu.Unlock()
	start := time.Now()
	for range 20 {
		_ = exchange(madeUp)
	}
	allowed := 2 + int(time.Since(start)/(50*time.Millisecond))
	js.mu.Lock()
	after := js.hits
	js.mu.Unlock()
	if after-before > allowed || allowed >= 20 {
		t.Errorf("20 unknown kids caused %d fetches in %v, want at most %d (the refresh rate-limited)", after-before, time.Since(start), allowed)
	}
}

func TestVerifierJWKSURL(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idp1, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	idp2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := func(kid string, raw any) assertionKey {
		k, err := jwk.Import(raw)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		p, _ := k.PublicKey()
		return assertionKey{pub: p}
	}
	js := newJWKSServer(t, pub("a", idp1))
	remote, err := auth.NewRemoteKeys(ctx, auth.RemoteConfig{MinRefresh: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(nil, auth.Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: js.https.URL, Remote: remote})
	now := time.Now()
	if _, err := v.VerifyContext(ctx, sign(t, gjwt.SigningMethodES256, idp1, "a", goodClaims(now))); err != nil {
		t.Fatalf("key a: %v", err)
	}
	js.set(pub("b", idp2))
	time.Sleep(20 * time.Millisecond)
	if _, err := v.VerifyContext(ctx, sign(t, gjwt.SigningMethodRS256, idp2, "b", goodClaims(now))); err != nil {
		t.Fatalf("rotated key b: %v", err)
	}
	if _, err := v.VerifyContext(ctx, sign(t, gjwt.SigningMethodES256, idp1, "a", goodClaims(now))); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("removed key a: err = %v, want ErrInvalidToken", err)
	}
}
