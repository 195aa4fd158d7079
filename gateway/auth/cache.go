package auth

import (
	"context"
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Verified-token cache. A client sends the same bearer token with every
// request for the token's lifetime, and checking its signature (an ECDSA or
// RSA verification) is most of what authenticating a request costs; a REST
// request is authenticated twice besides, before its body is read and again
// by the gRPC interceptor. So a Verifier remembers the principal of each
// token it accepted, by the SHA-256 of the token's bytes, and serves it
// again while all of these hold:
//
//   - the token has not expired: an entry lives until the token's exp at the
//     latest (the leeway past exp is left to a full verification);
//   - the entry is younger than the cache TTL, which bounds how long a
//     token is accepted without being verified afresh;
//   - when the Verifier trusts an identity provider's JWKS URL, the set
//     fetched from it is the very one in force when the token was verified:
//     any refresh of the set (a key rotated in or out) sends the token back
//     to a full verification, so a removed key's tokens are refused as soon
//     as the set without it is fetched.
//
// Only acceptances are cached: a refused token is verified in full every
// time, so a flood of bad tokens costs what it did. Everything else a
// token is checked for (signature, alg, kid, iss, aud, nbf, iat) is a
// function of its bytes and the trusted keys, which are immutable (KeySet)
// or covered by the rule above (JWKS URL).

// DefaultCacheTTL is how long a verified token is served from the cache
// before it is verified again (Config.CacheTTL).
const DefaultCacheTTL = time.Minute

// maxCachedTokens bounds the tokens remembered. A full cache drops its
// expired entries, then everything: it only ever costs a verification.
const maxCachedTokens = 4096

type cachedToken struct {
	p     Principal
	until time.Time
	kid   string
	// remote is the JWKS URL's set when the token was verified (nil when
	// the Verifier trusts no URL or the set could not be had).
	remote jwk.Set
}

type tokenCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[[sha256.Size]byte]cachedToken
}

func newTokenCache(ttl time.Duration) *tokenCache {
	switch {
	case ttl < 0:
		return nil
	case ttl == 0:
		ttl = DefaultCacheTTL
	}
	return &tokenCache{ttl: ttl, m: map[[sha256.Size]byte]cachedToken{}}
}

// cached returns the principal cached under sum if it may still serve at now.
func (v *Verifier) cached(ctx context.Context, sum [sha256.Size]byte, now time.Time) (Principal, bool) {
	c := v.cache
	c.mu.Lock()
	e, ok := c.m[sum]
	c.mu.Unlock()
	if !ok || !now.Before(e.until) {
		return Principal{}, false
	}
	if v.cfg.JWKSURL != "" && v.cfg.Remote != nil {
		set, err := v.cfg.Remote.Set(ctx, v.cfg.JWKSURL, e.kid)
		if err != nil || set != e.remote {
			c.mu.Lock()
			delete(c.m, sum)
			c.mu.Unlock()
			return Principal{}, false
		}
	}
	p := e.p
	p.Roles = slices.Clone(p.Roles) // callers own what they are handed
	return p, true
}

// remember caches p, verified at now, under sum.
func (v *Verifier) remember(sum [sha256.Size]byte, p Principal, kid string, remote jwk.Set, now time.Time) {
	c := v.cache
	until := now.Add(c.ttl)
	if p.Expiry.Before(until) {
		until = p.Expiry
	}
	if !now.Before(until) {
		return
	}
	e := cachedToken{p: p, until: until, kid: kid, remote: remote}
	e.p.Roles = slices.Clone(p.Roles)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedTokens {
		for k, old := range c.m {
			if !now.Before(old.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedTokens {
			clear(c.m)
		}
	}
	c.m[sum] = e
}
