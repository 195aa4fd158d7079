package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "https://fhiranchor.example/fhir/r4"
)

// rsaKey is shared: generating 2048-bit keys is slow under -race.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newECKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pkixBlock returns pub as a "PUBLIC KEY" PEM block.
func pkixBlock(t testing.TB, pub crypto.PublicKey) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePEM writes blocks to a file in dir and returns its path.
func writePEM(t testing.TB, dir, name string, blocks ...*pem.Block) string {
	t.Helper()
	var data []byte
	for _, b := range blocks {
		data = append(data, pem.EncodeToMemory(b)...)
	}
	return writeFile(t, dir, name, data)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf returns the public JWK of pub with kid (omitted when empty).
func jwkOf(t testing.TB, kid string, pub crypto.PublicKey) map[string]string {
	t.Helper()
	m := map[string]string{}
	if kid != "" {
		m["kid"] = kid
	}
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		point, err := pub.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		size := (len(point) - 1) / 2
		m["kty"], m["crv"] = "EC", pub.Curve.Params().Name
		m["x"], m["y"] = b64(point[1:1+size]), b64(point[1+size:])
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes())
	default:
		t.Fatalf("jwkOf: unsupported %T", pub)
	}
	return m
}

// writeJWKS writes a JWK Set of keys to a file in dir and returns its path.
func writeJWKS(t testing.TB, dir, name string, keys ...map[string]string) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, data)
}

// sign signs claims with method and key; kid is set when non-empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goodClaims returns claims the test verifier accepts, issued at now.
func goodClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "ehr-42",
		"client_id": "ehr-client",
		"scope":     "system/Patient.rs system/Observation.write",
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(5 * time.Minute).Unix(),
	}
}

// with returns a copy of c with the given claims set, or deleted when nil.
func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// compareScopes lets cmp compare Principals, whose Scopes are opaque.
var compareScopes = cmp.Comparer(func(a, b auth.Scopes) bool { return a.String() == b.String() })

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	ecKey := newECKey(t, elliptic.P256())
	rsaPriv := rsaKey()
	ecPEM := writePEM(t, dir, "ec.pem", pkixBlock(t, &ecKey.PublicKey))
	rsaJWKS := writeJWKS(t, dir, "rsa.jwks.json", jwkOf(t, "rsa-1", &rsaPriv.PublicKey))
	keys, err := auth.LoadKeySet(ecPEM, rsaJWKS)
	if err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(keys, auth.Config{Issuer: testIssuer, Audience: testAudience, Leeway: 30 * time.Second})

	now := time.Now()
	good := goodClaims(now)
	ecPubPEM, err := os.ReadFile(ecPEM)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubDER, err := x509.MarshalPKIXPublicKey(&rsaPriv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPubDER})
	otherEC := newECKey(t, elliptic.P256())
	p384 := newECKey(t, elliptic.P384())

	es := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodES256, ecKey, "", c) }
	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, rsaPriv, "rsa-1", c) }
	header := func(h map[string]any) string { // a header with an ES256 signature over it
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, good)
		tok.Header = h
		s, err := tok.SignedString(ecKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tampered := func() string {
		parts := strings.Split(es(good), ".")
		body, err := json.Marshal(with(good, "scope", "system/*.*"))
		if err != nil {
			t.Fatal(err)
		}
		return parts[0] + "." + b64(body) + "." + parts[2]
	}()
	wantPrincipal := auth.Principal{
		ClientID: "ehr-client",
		Subject:  "ehr-42",
		Scopes:   auth.ParseScopes("system/Patient.rs system/Observation.write"),
		Expiry:   time.Unix(now.Add(5*time.Minute).Unix(), 0),
	}

	tests := []struct {
		name    string
		token   string
		want    auth.Principal // checked when wantErr is nil
		wantErr error
		wantMsg string // the error's full text, checked when wantErr is set
	}{
		{"ES256 round trip", es(good), wantPrincipal, nil, ""},
		{"RS256 round trip with kid", rs(good), wantPrincipal, nil, ""},
		{"RS256 without kid", sign(t, jwt.SigningMethodRS256, rsaPriv, "", good), wantPrincipal, nil, ""},
		{"ES256 with unknown kid tries kid-less PEM key", sign(t, jwt.SigningMethodES256, ecKey, "whatever", good), wantPrincipal, nil, ""},
		{"client_id falls back to sub", es(with(good, "client_id", nil)),
			auth.Principal{ClientID: "ehr-42", Subject: "ehr-42", Scopes: wantPrincipal.Scopes, Expiry: wantPrincipal.Expiry}, nil, ""},
		{"scope as JSON array", es(with(good, "scope", []string{"system/Patient.rs", "system/Observation.write"})), wantPrincipal, nil, ""},
		{"no scope", es(with(good, "scope", nil)),
			auth.Principal{ClientID: "ehr-client", Subject: "ehr-42", Expiry: wantPrincipal.Expiry}, nil, ""},
		{"aud array containing ours", es(with(good, "aud", []string{"other", testAudience})), wantPrincipal, nil, ""},
		{"expired within leeway", es(with(good, "exp", now.Add(-10*time.Second).Unix())),
			auth.Principal{ClientID: "ehr-client", Subject: "ehr-42", Scopes: wantPrincipal.Scopes, Expiry: time.Unix(now.Add(-10*time.Second).Unix(), 0)}, nil, ""},

		{"empty", "", auth.Principal{}, auth.ErrNoToken, "no bearer token"},
		{"expired", es(with(good, "iat", now.Add(-2*time.Hour).Unix(), "nbf", now.Add(-2*time.Hour).Unix(), "exp", now.Add(-time.Hour).Unix())), auth.Principal{}, auth.ErrExpired, "invalid token: token expired"},
		{"expired beyond leeway", es(with(good, "exp", now.Add(-time.Minute).Unix())), auth.Principal{}, auth.ErrExpired, "invalid token: token expired"},
		{"RS256 expired", rs(with(good, "exp", now.Add(-time.Hour).Unix())), auth.Principal{}, auth.ErrExpired, "invalid token: token expired"},
		{"not yet valid", es(with(good, "nbf", now.Add(time.Hour).Unix())), auth.Principal{}, auth.ErrInvalidToken, "invalid token: token not valid yet"},
		{"issued in the future", es(with(good, "iat", now.Add(time.Hour).Unix())), auth.Principal{}, auth.ErrInvalidToken, "invalid token: token not valid yet"},
		{"missing exp", es(with(good, "exp", nil)), auth.Principal{}, auth.ErrInvalidToken, "invalid token: token has no exp claim"},
		{"exp not a number", es(with(good, "exp", "tomorrow")), auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed token"},
		{"wrong EC key", sign(t, jwt.SigningMethodES256, otherEC, "", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: signature does not verify"},
		{"RS256 with kid of another key", sign(t, jwt.SigningMethodRS256, rsaPriv, "rsa-2", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: no trusted key for token"},
		{"tampered payload", tampered, auth.Principal{}, auth.ErrInvalidToken, "invalid token: signature does not verify"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"HS256 keyed with EC public PEM", sign(t, jwt.SigningMethodHS256, ecPubPEM, "", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"HS256 keyed with RSA public PEM", sign(t, jwt.SigningMethodHS256, rsaPubPEM, "rsa-1", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"HS256 keyed with RSA public DER", sign(t, jwt.SigningMethodHS256, rsaPubDER, "rsa-1", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"ES384", sign(t, jwt.SigningMethodES384, p384, "", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"PS256 with a trusted RSA key", sign(t, jwt.SigningMethodPS256, rsaPriv, "rsa-1", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"RS512 with a trusted RSA key", sign(t, jwt.SigningMethodRS512, rsaPriv, "rsa-1", good), auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"wrong issuer", es(with(good, "iss", "https://evil.example")), auth.Principal{}, auth.ErrInvalidToken, "invalid token: issuer not accepted"},
		{"missing issuer", es(with(good, "iss", nil)), auth.Principal{}, auth.ErrInvalidToken, "invalid token: token has no iss claim"},
		{"wrong audience", es(with(good, "aud", "https://evil.example")), auth.Principal{}, auth.ErrInvalidToken, "invalid token: audience not accepted"},
		{"missing audience", es(with(good, "aud", nil)), auth.Principal{}, auth.ErrInvalidToken, "invalid token: token has no aud claim"},
		{"no client", es(with(good, "client_id", nil, "sub", nil)), auth.Principal{}, auth.ErrInvalidToken, "invalid token: token names no client (client_id or sub)"},
		{"scope of wrong type", es(with(good, "scope", 7)), auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed token"},
		{"client_id of wrong type", es(with(good, "client_id", 7)), auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed token"},
		{"crit header", header(map[string]any{"alg": "ES256", "typ": "JWT", "crit": []string{"exp"}}), auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported critical header"},
		{"kid not a string", header(map[string]any{"alg": "ES256", "kid": 7}), auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed kid header"},
		{"too large", es(with(good, "pad", strings.Repeat("x", 20<<10))), auth.Principal{}, auth.ErrInvalidToken, "invalid token: token too large"},
		{"garbage", "not a token", auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed token"},
		{"three garbage segments", "a.b.c", auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed token"},
		{"dots only", "..", auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed token"},
		{"header not JSON", b64([]byte("{oops")) + ".e30.", auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed token"},
		{"unknown alg", b64([]byte(`{"alg":"XX999"}`)) + ".e30.c2ln", auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"no alg", b64([]byte(`{"typ":"JWT"}`)) + ".e30.c2ln", auth.Principal{}, auth.ErrInvalidToken, "invalid token: unsupported signing algorithm"},
		{"token with trailing garbage", es(good) + ".x", auth.Principal{}, auth.ErrInvalidToken, "invalid token: malformed token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(tt.token)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if diff := cmp.Diff(tt.want, got, compareScopes); diff != "" {
					t.Errorf("Verify principal (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify err = %v, want %v", err, tt.wantErr)
			}
			if got := err.Error(); got != tt.wantMsg {
				t.Errorf("Verify err = %q, want %q", got, tt.wantMsg)
			}
			if tt.wantErr == auth.ErrExpired && !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("Verify err = %v, want it to match ErrInvalidToken too", err)
			}
			if tt.wantErr == auth.ErrInvalidToken && errors.Is(err, auth.ErrExpired) {
				t.Errorf("Verify err = %v, must not match ErrExpired", err)
			}
			if diff := cmp.Diff(auth.Principal{}, got, compareScopes); diff != "" {
				t.Errorf("Verify returned a principal with an error (-want +got):\n%s", diff)
			}
			msg := err.Error()
			for _, secret := range []string{"ehr-42", "ehr-client", "evil", "system/", "XX999", "rsa-2"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q leaks claim or header value %q", msg, secret)
				}
			}
			if len(tt.token) > 8 && strings.Contains(msg, tt.token[:8]) {
				t.Errorf("error %q leaks the token", msg)
			}
		})
	}
}

func TestVerifyOptionalIssuerAudience(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	v := auth.NewVerifier(auth.DevKeySet(key), auth.Config{})
	tok := sign(t, jwt.SigningMethodES256, key, "", with(goodClaims(time.Now()), "iss", nil, "aud", nil))
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("Verify without configured iss/aud: %v", err)
	}
}

func TestVerifyNilKeySet(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	v := auth.NewVerifier(nil, auth.Config{})
	tok := sign(t, jwt.SigningMethodES256, key, "", goodClaims(time.Now()))
	if _, err := v.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("Verify with no keys err = %v, want ErrInvalidToken", err)
	}
}

func TestVerifyKIDSelection(t *testing.T) {
	dir := t.TempDir()
	keyA, keyB, keyPEM := newECKey(t, elliptic.P256()), newECKey(t, elliptic.P256()), newECKey(t, elliptic.P256())
	jwks := writeJWKS(t, dir, "keys.json", jwkOf(t, "a", &keyA.PublicKey), jwkOf(t, "b", &keyB.PublicKey))
	onlyJWKS, err := auth.LoadKeySet(jwks)
	if err != nil {
		t.Fatal(err)
	}
	mixed, err := auth.LoadKeySet(jwks, writePEM(t, dir, "extra.pem", pkixBlock(t, &keyPEM.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	claims := goodClaims(time.Now())
	tests := []struct {
		name   string
		keys   *auth.KeySet
		signer *ecdsa.PrivateKey
		kid    string
		wantOK bool
	}{
		{"kid a signed by a", onlyJWKS, keyA, "a", true},
		{"kid b signed by b", onlyJWKS, keyB, "b", true},
		{"kid a signed by b", onlyJWKS, keyB, "a", false},
		{"unknown kid", onlyJWKS, keyA, "c", false},
		{"no kid tries every key", onlyJWKS, keyB, "", true},
		{"untrusted key without kid", onlyJWKS, keyPEM, "", false},
		{"mixed: kid b signed by b", mixed, keyB, "b", true},
		{"mixed: kid-less PEM key with unknown kid", mixed, keyPEM, "c", true},
		{"mixed: kid-less PEM key with another key's kid", mixed, keyPEM, "a", true},
		{"mixed: key a under kid b", mixed, keyA, "b", false},
		{"mixed: no kid", mixed, keyA, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := auth.NewVerifier(tt.keys, auth.Config{Issuer: testIssuer, Audience: testAudience})
			_, err := v.Verify(sign(t, jwt.SigningMethodES256, tt.signer, tt.kid, claims))
			if gotOK := err == nil; gotOK != tt.wantOK {
				t.Errorf("Verify err = %v, want ok = %v", err, tt.wantOK)
			}
			if err != nil && !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("Verify err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestVerifyConcurrent(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	v := auth.NewVerifier(auth.DevKeySet(key), auth.Config{Issuer: testIssuer, Audience: testAudience})
	good, err := auth.MintToken(key, auth.Claims{ClientID: "c", Issuer: testIssuer, Audience: testAudience, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	bad := good[:len(good)-4] + "AAAA"
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			tok, wantOK := good, true
			if i%2 == 1 {
				tok, wantOK = bad, false
			}
			if _, err := v.Verify(tok); (err == nil) != wantOK {
				t.Errorf("Verify err = %v, want ok = %v", err, wantOK)
			}
		})
	}
	wg.Wait()
}

func TestFromAuthorizationHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{"bearer", "Bearer abc.def.ghi", "abc.def.ghi", nil},
		{"lower case scheme", "bearer abc.def.ghi", "abc.def.ghi", nil},
		{"upper case scheme", "BEARER abc", "abc", nil},
		{"extra spaces", "Bearer    abc  ", "abc", nil},
		{"b64token characters", "Bearer a-b_c~d+e/f.g==", "a-b_c~d+e/f.g==", nil},
		{"empty", "", "", auth.ErrNoToken},
		{"spaces only", "   ", "", auth.ErrNoToken},
		{"scheme only", "Bearer", "", auth.ErrNoToken},
		{"scheme and space", "Bearer ", "", auth.ErrNoToken},
		{"basic", "Basic dXNlcjpwYXNz", "", auth.ErrNoToken},
		{"no space", "Bearerabc", "", auth.ErrNoToken},
		{"token alone", "abc.def.ghi", "", auth.ErrNoToken},
		{"tab separator", "Bearer\tabc", "", auth.ErrNoToken},
		{"two tokens", "Bearer abc def", "", auth.ErrInvalidToken},
		{"control character", "Bearer abc\x00def", "", auth.ErrInvalidToken},
		{"non-ASCII", "Bearer abcé", "", auth.ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.FromAuthorizationHeader(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("FromAuthorizationHeader(%q) = %q, %v, want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "abc") {
				t.Errorf("error %q leaks the credentials", err)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	key := newECKey(f, elliptic.P256())
	good, err := auth.MintToken(key, auth.Claims{ClientID: "c", Scopes: []string{"system/*.rs"}, TTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(b64([]byte(`{"alg":"none"}`)) + ".e30.")
	v := auth.NewVerifier(auth.DevKeySet(key), auth.Config{})
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(tok)
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) && !errors.Is(err, auth.ErrNoToken) {
				t.Fatalf("Verify err = %v, want ErrInvalidToken or ErrNoToken", err)
			}
			return
		}
		if p.ClientID == "" || p.Expiry.IsZero() {
			t.Fatalf("Verify accepted a token without client or expiry: %+v", p)
		}
	})
}
