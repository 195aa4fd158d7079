package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

// selfSigned returns a self-signed certificate for key as a PEM block.
func selfSigned(t *testing.T, key crypto.Signer) *pem.Block {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer.example"},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour), // expired: certificates are only key containers
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "CERTIFICATE", Bytes: der}
}

func pkcs8Block(t *testing.T, key any) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func TestLoadKeySetRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ecKey := newECKey(t, elliptic.P256())
	rsaPriv := rsaKey()
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecParams := &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}}

	type signer struct {
		method jwt.SigningMethod
		key    any
		kid    string
	}
	es := signer{jwt.SigningMethodES256, ecKey, ""}
	rs := signer{jwt.SigningMethodRS256, rsaPriv, ""}
	tests := []struct {
		name    string
		file    func() string
		wantLen int
		signers []signer
	}{
		{"EC PUBLIC KEY", func() string { return writePEM(t, dir, "ec-pub.pem", pkixBlock(t, &ecKey.PublicKey)) }, 1, []signer{es}},
		{"RSA PUBLIC KEY (PKIX)", func() string { return writePEM(t, dir, "rsa-pub.pem", pkixBlock(t, &rsaPriv.PublicKey)) }, 1, []signer{rs}},
		{"RSA PUBLIC KEY (PKCS1)", func() string {
			return writePEM(t, dir, "rsa-pkcs1.pem", &pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaPriv.PublicKey)})
		}, 1, []signer{rs}},
		{"EC CERTIFICATE", func() string { return writePEM(t, dir, "ec-cert.pem", selfSigned(t, ecKey)) }, 1, []signer{es}},
		{"RSA CERTIFICATE", func() string { return writePEM(t, dir, "rsa-cert.pem", selfSigned(t, rsaPriv)) }, 1, []signer{rs}},
		{"EC PRIVATE KEY (PKCS8)", func() string { return writePEM(t, dir, "ec-p8.pem", pkcs8Block(t, ecKey)) }, 1, []signer{es}},
		{"RSA PRIVATE KEY (PKCS8)", func() string { return writePEM(t, dir, "rsa-p8.pem", pkcs8Block(t, rsaPriv)) }, 1, []signer{rs}},
		{"EC PRIVATE KEY (SEC1, with EC PARAMETERS)", func() string {
			return writePEM(t, dir, "ec-sec1.pem", ecParams, &pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
		}, 1, []signer{es}},
		{"RSA PRIVATE KEY (PKCS1)", func() string {
			return writePEM(t, dir, "rsa-pkcs1-priv.pem", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaPriv)})
		}, 1, []signer{rs}},
		{"two PEM blocks", func() string {
			return writePEM(t, dir, "both.pem", pkixBlock(t, &ecKey.PublicKey), pkixBlock(t, &rsaPriv.PublicKey))
		}, 2, []signer{es, rs}},
		{"JWKS", func() string {
			return writeJWKS(t, dir, "keys.json", jwkOf(t, "ec-1", &ecKey.PublicKey), jwkOf(t, "rsa-1", &rsaPriv.PublicKey))
		}, 2, []signer{{jwt.SigningMethodES256, ecKey, "ec-1"}, {jwt.SigningMethodRS256, rsaPriv, "rsa-1"}, es, rs}},
		{"JWKS skips keys it cannot use", func() string {
			ec := jwkOf(t, "ec-1", &ecKey.PublicKey)
			ec["use"], ec["alg"] = "sig", "ES256"
			encKey := jwkOf(t, "enc", &rsaPriv.PublicKey)
			encKey["use"] = "enc"
			psKey := jwkOf(t, "ps", &rsaPriv.PublicKey)
			psKey["alg"] = "PS256"
			return writeJWKS(t, dir, "mixed.json", ec,
				map[string]string{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
				map[string]string{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
				jwkOf(t, "p384", &newECKey(t, elliptic.P384()).PublicKey),
				encKey, psKey)
		}, 1, []signer{{jwt.SigningMethodES256, ecKey, "ec-1"}}},
		{"single JWK", func() string {
			data, err := json.Marshal(jwkOf(t, "", &ecKey.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			return writeFile(t, dir, "one.jwk", append([]byte("\n  "), data...))
		}, 1, []signer{es}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := auth.LoadKeySet(tt.file())
			if err != nil {
				t.Fatalf("LoadKeySet: %v", err)
			}
			if got := keys.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
			v := auth.NewVerifier(keys, auth.Config{Issuer: testIssuer, Audience: testAudience})
			for _, s := range tt.signers {
				tok := sign(t, s.method, s.key, s.kid, goodClaims(time.Now()))
				if _, err := v.Verify(tok); err != nil {
					t.Errorf("Verify %s token (kid %q): %v", s.method.Alg(), s.kid, err)
				}
			}
		})
	}
}

func TestLoadKeySetMultipleFiles(t *testing.T) {
	dir := t.TempDir()
	ecKey := newECKey(t, elliptic.P256())
	keys, err := auth.LoadKeySet(
		writePEM(t, dir, "ec.pem", pkixBlock(t, &ecKey.PublicKey)),
		writeJWKS(t, dir, "rsa.json", jwkOf(t, "r", &rsaKey().PublicKey)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2", got)
	}
}

func TestLoadKeySetErrors(t *testing.T) {
	dir := t.TempDir()
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256 := newECKey(t, elliptic.P256())
	offCurve := jwkOf(t, "bad", &p256.PublicKey)
	offCurve["y"] = offCurve["x"] // (x, x) is not on the curve
	padded := jwkOf(t, "pad", &p256.PublicKey)
	padded["x"] += "="
	shortX := jwkOf(t, "short", &p256.PublicKey)
	shortX["x"] = "AQAB"
	tests := []struct {
		name string
		path func() string
	}{
		{"missing file", func() string { return filepath.Join(dir, "nope.pem") }},
		{"empty file", func() string { return writeFile(t, dir, "empty", nil) }},
		{"garbage", func() string { return writeFile(t, dir, "garbage", []byte("hello")) }},
		{"bad JSON", func() string { return writeFile(t, dir, "bad.json", []byte(`{"keys":[`)) }},
		{"empty JWKS", func() string { return writeFile(t, dir, "empty.json", []byte(`{"keys":[]}`)) }},
		{"JWKS of HMAC keys only", func() string {
			return writeJWKS(t, dir, "oct.json", map[string]string{"kty": "oct", "k": "c2VjcmV0"})
		}},
		{"JWKS EC point off curve", func() string { return writeJWKS(t, dir, "off.json", offCurve) }},
		{"JWKS EC padded base64", func() string { return writeJWKS(t, dir, "padded.json", padded) }},
		{"JWKS EC short coordinate", func() string { return writeJWKS(t, dir, "short.json", shortX) }},
		{"JWKS weak RSA", func() string { return writeJWKS(t, dir, "weak.json", jwkOf(t, "weak", &weakRSA.PublicKey)) }},
		{"JWKS RSA without e", func() string {
			k := jwkOf(t, "noe", &rsaKey().PublicKey)
			delete(k, "e")
			return writeJWKS(t, dir, "noe.json", k)
		}},
		{"JWKS RSA even exponent", func() string {
			k := jwkOf(t, "even", &rsaKey().PublicKey)
			k["e"] = "AQAC"
			return writeJWKS(t, dir, "even.json", k)
		}},
		{"PEM weak RSA", func() string { return writePEM(t, dir, "weak.pem", pkixBlock(t, &weakRSA.PublicKey)) }},
		{"PEM P-384", func() string {
			return writePEM(t, dir, "p384.pem", pkixBlock(t, &newECKey(t, elliptic.P384()).PublicKey))
		}},
		{"PEM Ed25519", func() string { return writePEM(t, dir, "ed.pem", pkixBlock(t, edPub)) }},
		{"PEM unknown block type", func() string {
			return writePEM(t, dir, "unknown.pem", pkixBlock(t, &p256.PublicKey), &pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte{1}})
		}},
		{"PEM corrupt PUBLIC KEY", func() string {
			return writePEM(t, dir, "corrupt.pem", &pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})
		}},
		{"PEM EC PARAMETERS only", func() string {
			return writePEM(t, dir, "params.pem", &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if keys, err := auth.LoadKeySet(tt.path()); err == nil {
				t.Errorf("LoadKeySet succeeded with %d keys, want error", keys.Len())
			}
		})
	}
	t.Run("no paths", func(t *testing.T) {
		if _, err := auth.LoadKeySet(); err == nil {
			t.Error("LoadKeySet() succeeded, want error")
		}
	})
	t.Run("one bad file fails the set", func(t *testing.T) {
		good := writePEM(t, dir, "good.pem", pkixBlock(t, &p256.PublicKey))
		if _, err := auth.LoadKeySet(good, filepath.Join(dir, "nope.pem")); err == nil {
			t.Error("LoadKeySet succeeded, want error")
		}
	})
}

func TestKeySetNil(t *testing.T) {
	var keys *auth.KeySet
	if got := keys.Len(); got != 0 {
		t.Errorf("nil KeySet Len() = %d, want 0", got)
	}
	if got := auth.DevKeySet(nil).Len(); got != 0 {
		t.Errorf("DevKeySet(nil).Len() = %d, want 0", got)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got := auth.DevKeySet(p384).Len(); got != 0 {
		t.Errorf("DevKeySet(P-384 key).Len() = %d, want 0", got)
	}
	if _, err := auth.NewVerifier(&auth.KeySet{}, auth.Config{}).Verify("a.b.c"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("Verify with zero KeySet err = %v, want ErrInvalidToken", err)
	}
}
