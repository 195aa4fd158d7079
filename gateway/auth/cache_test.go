package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

// clock is a settable clock for a Verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// cacheTTLs are the Verifier settings every cache test runs under: the
// cache off, the default, and a TTL longer than any token here lives, so
// only exp bounds an entry. The answers must be the same under each.
var cacheTTLs = []struct {
	name string
	ttl  time.Duration
}{{"off", -1}, {"default", 0}, {"long", 24 * time.Hour}}

// TestVerifyCacheExpiry: a token accepted, and so cached, is refused once
// its exp has passed, exactly as without the cache; and repeated
// verifications before then keep answering the same principal.
func TestVerifyCacheExpiry(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	keys := auth.DevKeySet(key)
	issued := time.Unix(1_900_000_000, 0)
	for _, tt := range cacheTTLs {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{t: issued}
			v := auth.NewVerifier(keys, auth.Config{CacheTTL: tt.ttl, Now: clk.now})
			tok, err := auth.MintToken(key, auth.Claims{ClientID: "ehr", Scopes: []string{"system/Patient.rs"}, Roles: []string{"physician"}, TTL: time.Minute, Now: issued})
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []time.Duration{0, time.Second, 59 * time.Second} {
				clk.set(issued.Add(at))
				p, err := v.Verify(tok)
				if err != nil {
					t.Fatalf("at +%v: %v", at, err)
				}
				if p.ClientID != "ehr" || !p.Expiry.Equal(issued.Add(time.Minute)) || len(p.Roles) != 1 || p.Roles[0] != "physician" {
					t.Fatalf("at +%v: principal %+v", at, p)
				}
				p.Roles[0] = "tampered" // a caller's change must not reach the next caller
			}
			for _, at := range []time.Duration{time.Minute, time.Minute + time.Second, time.Hour} {
				clk.set(issued.Add(at))
				if _, err := v.Verify(tok); !errors.Is(err, auth.ErrExpired) {
					t.Errorf("at +%v (exp +1m): err = %v, want ErrExpired", at, err)
				}
			}
		})
	}
}

// TestVerifyCacheRefusalsNotCached: a refused token stays refused, and a
// cached acceptance of one token says nothing of another (a token with
// one byte of its signature changed).
func TestVerifyCacheRefusalsNotCached(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	for _, tt := range cacheTTLs {
		t.Run(tt.name, func(t *testing.T) {
			v := auth.NewVerifier(auth.DevKeySet(key), auth.Config{CacheTTL: tt.ttl})
			tok, err := auth.MintToken(key, auth.Claims{ClientID: "ehr", TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(tok); err != nil {
				t.Fatal(err)
			}
			last := tok[len(tok)-2]
			flip := byte('A')
			if last == 'A' {
				flip = 'B'
			}
			forged := tok[:len(tok)-2] + string(flip) + tok[len(tok)-1:]
			for range 2 {
				if _, err := v.Verify(forged); !errors.Is(err, auth.ErrInvalidToken) {
					t.Fatalf("forged signature: err = %v, want ErrInvalidToken", err)
				}
			}
			other := auth.NewVerifier(auth.DevKeySet(newECKey(t, elliptic.P256())), auth.Config{CacheTTL: tt.ttl})
			if _, err := other.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("a verifier trusting another key: err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

// TestVerifyCacheKeyRotation: an identity provider removes a key from its
// JWKS. Once the gateway has fetched the set without it (here, because a
// token names the new kid), the very token it accepted, and cached, a
// moment ago is refused.
func TestVerifyCacheKeyRotation(t *testing.T) {
	for _, tt := range cacheTTLs {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			idpA, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			idpB, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
			js := newJWKSServer(t, pub("a", idpA))
			remote, err := auth.NewRemoteKeys(ctx, auth.RemoteConfig{MinRefresh: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			v := auth.NewVerifier(nil, auth.Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: js.https.URL, Remote: remote, CacheTTL: tt.ttl})
			now := time.Now()
			tokA := sign(t, gjwt.SigningMethodES256, idpA, "a", goodClaims(now))
			for i := range 3 {
				if _, err := v.VerifyContext(ctx, tokA); err != nil {
					t.Fatalf("key a, verification %d: %v", i, err)
				}
			}
			js.set(pub("b", idpB)) // rotation: a removed, b added
			time.Sleep(20 * time.Millisecond)
			if _, err := v.VerifyContext(ctx, sign(t, gjwt.SigningMethodES256, idpB, "b", goodClaims(now))); err != nil {
				t.Fatalf("rotated-in key b: %v", err)
			}
			if _, err := v.VerifyContext(ctx, tokA); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("the cached token of removed key a: err = %v, want ErrInvalidToken", err)
			}
		})
	}
}
