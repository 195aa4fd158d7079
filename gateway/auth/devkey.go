package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// devKeyFile is the dev signing key's file name inside its directory.
const devKeyFile = "dev-signing-key.pem"

// DevKeyPath returns the path of the dev signing key kept in dir.
func DevKeyPath(dir string) string {
	return filepath.Join(dir, devKeyFile)
}

// LoadOrCreateDevKey returns the P-256 dev signing key stored in dir as a
// PKCS #8 "PRIVATE KEY" PEM file (see DevKeyPath). On first use it creates
// dir (mode 0700) if needed and the key file with mode 0600. Concurrent
// first calls agree on one key: the file appears atomically and is never
// overwritten. An existing file that is not a P-256 PKCS #8 key is an error.
//
// The dev key is for development and the embedded default configuration;
// anyone who can read the file can mint tokens the gateway trusts.
func LoadOrCreateDevKey(dir string) (*ecdsa.PrivateKey, error) {
	path := DevKeyPath(dir)
	key, err := readDevKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create dev key directory: %w", err)
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate dev key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode dev key: %w", err)
	}
	// Write a temporary file (os.CreateTemp uses mode 0600) and hard-link it
	// into place: the key file never exists half written, and a concurrent
	// caller's key is never replaced.
	tmp, err := os.CreateTemp(dir, ".dev-signing-key-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create dev key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeAndClose(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("write dev key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readDevKey(path) // another caller created it first
		}
		return nil, fmt.Errorf("create dev key: %w", err)
	}
	return key, nil
}

// writeAndClose writes data to f, syncs and closes it.
func writeAndClose(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// LoadSigningKey reads a P-256 signing key from a PKCS #8 "PRIVATE KEY"
// PEM file, as LoadOrCreateDevKey writes.
func LoadSigningKey(path string) (*ecdsa.PrivateKey, error) {
	return readDevKey(path)
}

// readDevKey reads a P-256 PKCS #8 PEM key. A missing file yields an error
// matching fs.ErrNotExist.
func readDevKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read dev key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("read dev key %s: no PRIVATE KEY PEM block", path)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read dev key %s: %w", path, err)
	}
	key, ok := priv.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("read dev key %s: not a P-256 EC key", path)
	}
	return key, nil
}

// DevKeySet returns a KeySet that trusts only key's public half, under its
// RFC 7638 thumbprint as kid (the kid MintToken sets). A nil key, or one not
// on P-256, yields a set that trusts nothing.
func DevKeySet(key *ecdsa.PrivateKey) *KeySet {
	if key == nil {
		return &KeySet{}
	}
	kid, err := thumbprint(&key.PublicKey)
	if err != nil {
		return &KeySet{}
	}
	return &KeySet{keys: []publicKey{{kid: kid, alg: algES256, key: &key.PublicKey}}}
}

// Claims describes a token for MintToken.
type Claims struct {
	// ClientID becomes the client_id claim. ClientID or Subject is required.
	ClientID string
	// Subject becomes the sub claim; when empty, sub is ClientID.
	Subject string
	// Issuer becomes the iss claim, omitted when empty.
	Issuer string
	// Audience becomes the aud claim, omitted when empty.
	Audience string
	// Scopes are joined with spaces into the scope claim.
	Scopes []string
	// TTL is how long the token is valid; it must be positive.
	TTL time.Duration
	// Now is the issue time; the zero value means time.Now().
	Now time.Time
	// FHIRUser, Organization, Roles and PurposeOfUse become the fhirUser,
	// organization, subject_role and purpose_of_use claims, omitted when empty.
	FHIRUser     string
	Organization string
	Roles        []string
	PurposeOfUse string
}

// mintClaims is the JSON claims set MintToken signs.
type mintClaims struct {
	jwt.RegisteredClaims
	ClientID     string   `json:"client_id,omitempty"`
	Scope        string   `json:"scope,omitempty"`
	FHIRUser     string   `json:"fhirUser,omitempty"`
	Organization string   `json:"organization,omitempty"`
	Roles        []string `json:"subject_role,omitempty"`
	PurposeOfUse string   `json:"purpose_of_use,omitempty"`
}

// MintToken signs an ES256 JWT with key. Its header carries kid, the key's
// RFC 7638 thumbprint; its claims are iss, sub, client_id, aud (when set),
// scope, iat, nbf (both Now), exp (Now+TTL) and a random jti. Times have
// one-second precision.
func MintToken(key *ecdsa.PrivateKey, c Claims) (string, error) {
	if key == nil {
		return "", errors.New("mint token: no signing key")
	}
	kid, err := thumbprint(&key.PublicKey)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	if c.TTL <= 0 {
		return "", errors.New("mint token: TTL must be positive")
	}
	sub := c.Subject
	if sub == "" {
		sub = c.ClientID
	}
	if sub == "" {
		return "", errors.New("mint token: client ID or subject required")
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	claims := mintClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    c.Issuer,
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(c.TTL)),
			ID:        rand.Text(),
		},
		ClientID:     c.ClientID,
		Scope:        strings.Join(c.Scopes, " "),
		FHIRUser:     c.FHIRUser,
		Organization: c.Organization,
		Roles:        c.Roles,
		PurposeOfUse: c.PurposeOfUse,
	}
	if c.Audience != "" {
		claims.Audience = jwt.ClaimStrings{c.Audience}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = kid
	signed, err := tok.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return signed, nil
}
