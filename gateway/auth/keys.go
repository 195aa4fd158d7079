package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// The only signing algorithms a token may use.
const (
	algES256 = "ES256"
	algRS256 = "RS256"
)

// RSA modulus bounds. The upper one keeps an attacker-supplied JWKS from
// making every verification expensive.
const (
	minRSABits = 2048
	maxRSABits = 16384
)

// KeySet is a set of public keys trusted to sign tokens. A KeySet is
// immutable once built and safe for concurrent use. The zero KeySet, and a
// nil *KeySet, trust nothing.
type KeySet struct {
	keys []publicKey
}

// publicKey is one trusted key. kid is empty for keys read from PEM.
type publicKey struct {
	kid string
	alg string // algES256 or algRS256: the one alg this key verifies
	key crypto.PublicKey
}

// LoadKeySet reads trusted public keys from files. Each file is either PEM
// or a JWKS JSON document ({"keys":[...]}, or a single JWK object).
//
// PEM files may hold any number of "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY"
// (PKCS #1) and "CERTIFICATE" blocks; "PRIVATE KEY" (PKCS #8), "EC PRIVATE
// KEY" and "RSA PRIVATE KEY" blocks contribute their public half. A
// certificate is only a container for its key: its validity period and chain
// are not checked. "EC PARAMETERS" blocks, as written by openssl ecparam, are
// skipped; any other block type is an error. PEM keys have no key ID.
//
// In a JWKS, EC keys on P-256 (crv, x, y) and RSA keys (n, e) are used with
// their kid. Keys this package cannot use are skipped: other kty or crv,
// "use" other than "sig", or an "alg" other than ES256 or RS256.
//
// Every key must be P-256 or RSA of 2048 to 16384 bits; a weaker or
// malformed key is an error, not skipped, because it means the
// configuration is wrong. LoadKeySet fails if the files hold no usable key.
func LoadKeySet(paths ...string) (*KeySet, error) {
	var s KeySet
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load keys: %w", err)
		}
		keys, err := parseKeyFile(data)
		if err != nil {
			return nil, fmt.Errorf("load keys from %s: %w", path, err)
		}
		s.keys = append(s.keys, keys...)
	}
	if len(s.keys) == 0 {
		return nil, errors.New("load keys: no usable key")
	}
	return &s, nil
}

// Merge returns a KeySet trusting every key of sets; nil sets are
// skipped.
func Merge(sets ...*KeySet) *KeySet {
	var out KeySet
	for _, s := range sets {
		if s != nil {
			out.keys = append(out.keys, s.keys...)
		}
	}
	return &out
}

// Len returns the number of keys in the set.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// candidates returns the keys that may have signed a token with this alg
// and kid. A token naming a kid is checked against the keys with that kid
// and against keys that have none (PEM keys); keys with another kid are never
// tried. A token without a kid is checked against every key for its alg.
func (s *KeySet) candidates(alg, kid string) []jwt.VerificationKey {
	if s == nil {
		return nil
	}
	var out []jwt.VerificationKey
	for _, k := range s.keys {
		if k.alg != alg || (kid != "" && k.kid != "" && k.kid != kid) {
			continue
		}
		out = append(out, k.key)
	}
	return out
}

// parseKeyFile parses one PEM or JWKS file.
func parseKeyFile(data []byte) ([]publicKey, error) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		return parseJWKS(trimmed)
	}
	return parsePEM(data)
}

// parsePEM parses every PEM block in data.
func parsePEM(data []byte) ([]publicKey, error) {
	var keys []publicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		pub, err := pemPublicKey(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		if pub == nil {
			continue
		}
		k, err := newPublicKey("", pub)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM key blocks and not a JWKS document")
	}
	return keys, nil
}

// pemPublicKey returns the public key in block, or nil for a block that holds
// none and may be skipped.
func pemPublicKey(block *pem.Block) (crypto.PublicKey, error) {
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	case "PRIVATE KEY":
		priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return nil, errors.New("unsupported private key type")
		}
		return signer.Public(), nil
	case "EC PRIVATE KEY":
		priv, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		return priv.Public(), nil
	case "RSA PRIVATE KEY":
		priv, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		return priv.Public(), nil
	case "EC PARAMETERS":
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported PEM block type %q", block.Type)
}

// newPublicKey checks that pub is a key this package accepts and records the
// alg it verifies.
func newPublicKey(kid string, pub crypto.PublicKey) (publicKey, error) {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return publicKey{}, errors.New("EC key is not on P-256")
		}
		return publicKey{kid: kid, alg: algES256, key: pub}, nil
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return publicKey{}, fmt.Errorf("RSA key has %d bits, want %d to %d", bits, minRSABits, maxRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return publicKey{}, errors.New("RSA key has an invalid public exponent")
		}
		return publicKey{kid: kid, alg: algRS256, key: pub}, nil
	}
	return publicKey{}, fmt.Errorf("unsupported key type %T", pub)
}

// parseJWKS parses a JWK Set, or a single JWK, with jwx.
func parseJWKS(data []byte) ([]publicKey, error) {
	if err := strictBase64url(data); err != nil {
		return nil, err
	}
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	var keys []publicKey
	for i := range set.Len() {
		k, _ := set.Key(i)
		if !usable(k) {
			continue
		}
		pub, err := rawPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		kid, _ := k.KeyID()
		pk, err := newPublicKey(kid, pub)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		keys = append(keys, pk)
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no EC P-256 or RSA signing key")
	}
	return keys, nil
}

// strictBase64url refuses key members that are not unpadded base64url,
// as RFC 7518 requires; jwx also accepts padded and standard base64, and a
// key a lenient parser reads differently from a strict one is a
// configuration error to report, not to guess at.
func strictBase64url(data []byte) error {
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parse JWKS: %w", err)
	}
	if doc.Keys == nil {
		var one map[string]any
		if err := json.Unmarshal(data, &one); err != nil {
			return fmt.Errorf("parse JWKS: %w", err)
		}
		doc.Keys = []map[string]any{one}
	}
	for i, k := range doc.Keys {
		for _, m := range []string{"x", "y", "n", "e"} {
			if v, ok := k[m].(string); ok {
				if _, err := base64.RawURLEncoding.Strict().DecodeString(v); err != nil {
					return fmt.Errorf("JWKS key %d: member %s is not unpadded base64url", i, m)
				}
			}
		}
	}
	return nil
}

// usable reports whether k is a key this package verifies tokens with:
// EC on P-256 or RSA, for signing, with no alg or ES256/RS256.
func usable(k jwk.Key) bool {
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return false
	}
	alg := ""
	if a, ok := k.Algorithm(); ok {
		alg = a.String()
	}
	switch k.KeyType() {
	case jwa.EC():
		crv, _ := k.(jwk.ECDSAPublicKey)
		if crv == nil {
			if priv, ok := k.(jwk.ECDSAPrivateKey); ok {
				c, _ := priv.Crv()
				return c == jwa.P256() && (alg == "" || alg == algES256)
			}
			return false
		}
		c, _ := crv.Crv()
		return c == jwa.P256() && (alg == "" || alg == algES256)
	case jwa.RSA():
		return alg == "" || alg == algRS256
	}
	return false
}

// thumbprint returns the RFC 7638 JWK thumbprint of pub, base64url encoded.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return "", errors.New("thumbprint: key is not on P-256")
	}
	k, err := jwk.Import(pub)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}
