package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

func TestDevKeyPath(t *testing.T) {
	if got, want := auth.DevKeyPath("/var/lib/fhiranchor"), filepath.Join("/var/lib/fhiranchor", "dev-signing-key.pem"); got != want {
		t.Errorf("DevKeyPath = %q, want %q", got, want)
	}
}

func TestLoadOrCreateDevKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "keys") // does not exist yet
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if key.Curve != elliptic.P256() {
		t.Errorf("curve = %s, want P-256", key.Curve.Params().Name)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(auth.DevKeyPath(dir))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("key file mode = %o, want 600", got)
		}
		di, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := di.Mode().Perm(); got&0o077 != 0 {
			t.Errorf("key dir mode = %o, want no group or other access", got)
		}
	}
	data, err := os.ReadFile(auth.DevKeyPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PRIVATE KEY PEM block")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Errorf("key file is not PKCS #8: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the key file (temporary file left behind?)", len(entries))
	}

	again, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if !again.Equal(key) {
		t.Error("second call returned a different key, want the stored one")
	}
}

func TestLoadOrCreateDevKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	keys := make([]*ecdsa.PrivateKey, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := auth.LoadOrCreateDevKey(dir)
			if err != nil {
				t.Errorf("LoadOrCreateDevKey: %v", err)
				return
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i, k := range keys {
		if k == nil || !k.Equal(keys[0]) {
			t.Fatalf("caller %d got a different key", i)
		}
	}
}

func TestLoadOrCreateDevKeyRejectsBadFile(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"not PEM", []byte("hello")},
		{"wrong block type", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}})},
		{"corrupt PKCS8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})},
		{"P-384", pem.EncodeToMemory(pkcs8Block(t, p384))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "dev-signing-key.pem", tt.data)
			if _, err := auth.LoadOrCreateDevKey(dir); err == nil {
				t.Error("LoadOrCreateDevKey succeeded, want error")
			}
			got, err := os.ReadFile(auth.DevKeyPath(dir))
			if err != nil || string(got) != string(tt.data) {
				t.Error("LoadOrCreateDevKey changed an existing key file")
			}
		})
	}
}

// rfc7638 computes the JWK thumbprint independently of the package: json
// sorts map keys, giving the lexicographic member order RFC 7638 requires.
func rfc7638(t *testing.T, pub *ecdsa.PublicKey) string {
	t.Helper()
	jwk := jwkOf(t, "", pub)
	data, err := json.Marshal(map[string]string{"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return b64(sum[:])
}

func TestMintToken(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	now := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	tok, err := auth.MintToken(key, auth.Claims{
		ClientID: "ehr-client",
		Subject:  "ehr-42",
		Issuer:   testIssuer,
		Audience: testAudience,
		Scopes:   []string{"system/Patient.rs", "fhiranchor/policy.admin"},
		TTL:      10 * time.Minute,
		Now:      now,
	})
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := map[string]any{"alg": "ES256", "typ": "JWT", "kid": rfc7638(t, &key.PublicKey)}
	if diff := cmp.Diff(wantHeader, parsed.Header); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	claims := parsed.Claims.(jwt.MapClaims)
	jti, _ := claims["jti"].(string)
	if len(jti) < 16 {
		t.Errorf("jti = %q, want a random ID", jti)
	}
	delete(claims, "jti")
	wantClaims := jwt.MapClaims{
		"iss":       testIssuer,
		"sub":       "ehr-42",
		"client_id": "ehr-client",
		"aud":       []any{testAudience},
		"scope":     "system/Patient.rs fhiranchor/policy.admin",
		"iat":       float64(now.Unix()),
		"nbf":       float64(now.Unix()),
		"exp":       float64(now.Add(10 * time.Minute).Unix()),
	}
	if diff := cmp.Diff(wantClaims, claims); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}

	other, err := auth.MintToken(key, auth.Claims{ClientID: "c", TTL: time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	otherParsed, _, err := jwt.NewParser().ParseUnverified(other, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	oc := otherParsed.Claims.(jwt.MapClaims)
	if oc["jti"] == jti {
		t.Error("two tokens share a jti")
	}
	for _, absent := range []string{"aud", "iss", "scope"} {
		if _, ok := oc[absent]; ok {
			t.Errorf("claim %q present, want it omitted when unset", absent)
		}
	}
	if oc["sub"] != "c" {
		t.Errorf("sub = %v, want the client ID when Subject is empty", oc["sub"])
	}
}

func TestMintTokenVerifies(t *testing.T) {
	dir := t.TempDir()
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The dev key file itself is a valid key file (kid-less PEM key).
	fromFile, err := auth.LoadKeySet(auth.DevKeyPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.Config{Issuer: testIssuer, Audience: testAudience}
	tok, err := auth.MintToken(key, auth.Claims{ClientID: "ehr", Issuer: testIssuer, Audience: testAudience, Scopes: []string{"system/Patient.rs"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for name, keys := range map[string]*auth.KeySet{"DevKeySet": auth.DevKeySet(key), "LoadKeySet": fromFile} {
		p, err := auth.NewVerifier(keys, cfg).Verify(tok)
		if err != nil {
			t.Errorf("%s: Verify: %v", name, err)
			continue
		}
		if p.ClientID != "ehr" || !p.Scopes.Allows("Patient", auth.Search) || p.Scopes.Allows("Patient", auth.Create) {
			t.Errorf("%s: principal = %+v, scopes %q", name, p, p.Scopes)
		}
	}
	// A different dev key is not trusted.
	stranger := newECKey(t, elliptic.P256())
	if _, err := auth.NewVerifier(auth.DevKeySet(stranger), cfg).Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("Verify with another dev key err = %v, want ErrInvalidToken", err)
	}
}

func TestMintTokenErrors(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  *ecdsa.PrivateKey
		c    auth.Claims
	}{
		{"nil key", nil, auth.Claims{ClientID: "c", TTL: time.Minute}},
		{"P-384 key", p384, auth.Claims{ClientID: "c", TTL: time.Minute}},
		{"zero TTL", key, auth.Claims{ClientID: "c"}},
		{"negative TTL", key, auth.Claims{ClientID: "c", TTL: -time.Minute}},
		{"no client or subject", key, auth.Claims{TTL: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := auth.MintToken(tt.key, tt.c)
			if err == nil {
				t.Errorf("MintToken = %q, want error", tok)
			}
			if err != nil && strings.Contains(err.Error(), "PRIVATE") {
				t.Errorf("error %q mentions key material", err)
			}
		})
	}
}
