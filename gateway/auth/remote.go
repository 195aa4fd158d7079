package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// DefaultMinRefresh is the least time between two fetches of one JWKS URL
// that an unknown kid triggers (RemoteConfig.MinRefresh).
const DefaultMinRefresh = 30 * time.Second

// RemoteConfig configures RemoteKeys.
type RemoteConfig struct {
	// MinRefresh is the least time between two refreshes of one URL that
	// an unknown kid triggers; zero means DefaultMinRefresh. It bounds how
	// often callers presenting made-up kids can make the gateway fetch.
	MinRefresh time.Duration
	// MaxInterval is the longest a fetched set is kept before it is fetched
	// again in the background; zero means one hour.
	MaxInterval time.Duration
	// HTTPClient fetches the documents; nil means a client with a 10s
	// timeout.
	HTTPClient *http.Client
}

// RemoteKeys is a cache of JWKS documents fetched from URLs (an external
// identity provider's keys, a SMART client's jwks_url), built on jwx's
// jwk.Cache: each URL is fetched when added, refreshed in the background,
// and refreshed at once when a token names a kid the cached set lacks, at
// most once per MinRefresh. A key rotated in at the URL is therefore
// accepted without a restart, and a key removed from it is refused once
// the set has been fetched again. Safe for concurrent use.
type RemoteKeys struct {
	cache *jwk.Cache
	cfg   RemoteConfig

	mu   sync.Mutex
	last map[string]time.Time // url -> last refresh an unknown kid caused
}

// NewRemoteKeys starts a cache whose background fetches stop when ctx
// ends.
func NewRemoteKeys(ctx context.Context, cfg RemoteConfig) (*RemoteKeys, error) {
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = DefaultMinRefresh
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = time.Hour
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	c, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		return nil, fmt.Errorf("start JWKS cache: %w", err)
	}
	return &RemoteKeys{cache: c, cfg: cfg, last: map[string]time.Time{}}, nil
}

// Add fetches url's JWKS and keeps it cached. Adding a URL twice is a
// no-op.
func (r *RemoteKeys) Add(ctx context.Context, url string) error {
	if r.cache.IsRegistered(ctx, url) {
		return nil
	}
	err := r.cache.Register(ctx, url,
		jwk.WithHTTPClient(r.cfg.HTTPClient),
		jwk.WithMinInterval(r.cfg.MinRefresh),
		jwk.WithMaxInterval(r.cfg.MaxInterval),
	)
	if err != nil && !r.cache.IsRegistered(ctx, url) {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	return nil
}

// Set returns the cached set of url. When kid is not empty and the set
// holds no key with that kid, the set is fetched again first, unless the
// last such refresh of url is less than MinRefresh ago.
func (r *RemoteKeys) Set(ctx context.Context, url, kid string) (jwk.Set, error) {
	if err := r.Add(ctx, url); err != nil {
		return nil, err
	}
	set, err := r.cache.Lookup(ctx, url)
	if err == nil && (kid == "" || hasKID(set, kid)) {
		return set, nil
	}
	if !r.mayRefresh(url) {
		if err != nil {
			return nil, fmt.Errorf("look up JWKS: %w", err)
		}
		return set, nil
	}
	fresh, ferr := r.cache.Refresh(ctx, url)
	if ferr != nil {
		if err != nil {
			return nil, fmt.Errorf("refresh JWKS: %w", ferr)
		}
		return set, nil // keep serving the cached set while the URL is down
	}
	return fresh, nil
}

// mayRefresh reports whether url may be refreshed now, and if so records
// that it is.
func (r *RemoteKeys) mayRefresh(url string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if t, ok := r.last[url]; ok && now.Sub(t) < r.cfg.MinRefresh {
		return false
	}
	r.last[url] = now
	return true
}

func hasKID(set jwk.Set, kid string) bool {
	_, ok := set.LookupKeyID(kid)
	return ok
}

// rawPublicKey exports k's public key: *rsa.PublicKey or
// *ecdsa.PublicKey; other key types are an error.
func rawPublicKey(k jwk.Key) (any, error) {
	pk, err := k.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	var raw any
	if err := jwk.Export(pk, &raw); err != nil {
		return nil, fmt.Errorf("export key: %w", err)
	}
	switch raw.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return raw, nil
	}
	return nil, errors.New("unsupported key type")
}

// setKeys returns the keys of set usable for verifying access tokens (see
// LoadKeySet for which are skipped); unusable ones are skipped, never an
// error, since a provider's set may hold keys for other purposes.
func setKeys(set jwk.Set) []publicKey {
	var out []publicKey
	for i := range set.Len() {
		k, _ := set.Key(i)
		if use, ok := k.KeyUsage(); ok && use != "sig" {
			continue
		}
		raw, err := rawPublicKey(k)
		if err != nil {
			continue
		}
		kid, _ := k.KeyID()
		pk, err := newPublicKey(kid, raw)
		if err != nil {
			continue
		}
		if alg, ok := k.Algorithm(); ok && alg.String() != pk.alg {
			continue
		}
		out = append(out, pk)
	}
	return out
}
