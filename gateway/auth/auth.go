package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Sentinel errors. Verify wraps them with a fixed reason, so errors.Is works
// and the message is safe to log: it never holds the token or a claim value.
var (
	// ErrNoToken means the request carried no bearer token.
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidToken means a token was presented and rejected. Every error
	// Verify returns for a bad token matches it, an expired one included.
	ErrInvalidToken = errors.New("invalid token")
	// ErrExpired means the token was otherwise acceptable but its exp has
	// passed; such errors match ErrInvalidToken too.
	ErrExpired = errors.New("token expired")
)

// maxTokenLen bounds the work an unauthenticated caller can cause. SMART
// tokens are a few KiB at most.
const maxTokenLen = 16 << 10

// Errors the key function returns; classify turns them into reasons.
var (
	errNoKey = errors.New("no trusted key")
	errCrit  = errors.New("critical header")
	errKID   = errors.New("kid header")
)

// Config sets what a Verifier requires of a token beyond a valid signature
// and exp.
type Config struct {
	// Issuer, when set, is the required iss claim.
	Issuer string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// Leeway tolerates clock skew when checking exp, nbf and iat. Negative
	// values count as zero.
	Leeway time.Duration
	// JWKSURL, when set, is an identity provider's JWKS endpoint whose keys
	// are trusted besides the KeySet's; Remote fetches and caches it and
	// must be set with it.
	JWKSURL string
	// Remote is the JWKS cache JWKSURL is read through.
	Remote *RemoteKeys
	// CacheTTL is how long an accepted token is served from the
	// Verifier's cache before it is verified afresh (never past its exp;
	// see cache.go); zero means DefaultCacheTTL, negative disables the
	// cache.
	CacheTTL time.Duration
	// Now is the clock exp, nbf, iat and the cache are checked against;
	// nil means time.Now.
	Now func() time.Time
}

// Principal is the authenticated caller a token describes.
type Principal struct {
	// ClientID is the client_id claim, or sub when the token has none.
	ClientID string
	// Subject is the sub claim; it may be empty.
	Subject string
	// Scopes are the scopes the token grants.
	Scopes Scopes
	// Expiry is when the token expires (its exp claim).
	Expiry time.Time
	// FHIRUser is the SMART fhirUser claim: the FHIR reference the client
	// acts as, such as "Practitioner/p1" or "Patient/123"; may be empty.
	FHIRUser string
	// Organization is the organization claim: the "Organization/<id>" the
	// client acts for (an EHR's own organization); may be empty.
	Organization string
	// Roles are the subject_role claim's codes (IHE IUA), e.g. "physician".
	Roles []string
	// PurposeOfUse is the purpose_of_use claim (IHE IUA): the v3-ActReason
	// code the client declares by default, such as TREAT; may be empty.
	PurposeOfUse string
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	keys  *KeySet
	cfg   Config
	opts  []jwt.ParserOption
	cache *tokenCache // nil: every token is verified in full
}

// NewVerifier returns a Verifier that trusts keys and enforces cfg. A nil
// keys trusts nothing: every token is rejected.
func NewVerifier(keys *KeySet, cfg Config) *Verifier {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithValidMethods([]string{algES256, algRS256}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(max(cfg.Leeway, 0)),
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{keys: keys, cfg: cfg, opts: opts, cache: newTokenCache(cfg.CacheTTL)}
}

// Verify checks token's signature against the trusted keys, its alg (ES256
// or RS256 only), exp (required), nbf and iat (each with the configured
// leeway), and iss and aud when configured. A token must name its client in
// client_id or sub.
//
// An empty token yields ErrNoToken. Any other rejection wraps
// ErrInvalidToken, and also ErrExpired when the token has expired.
func (v *Verifier) Verify(token string) (Principal, error) {
	return v.VerifyContext(context.Background(), token)
}

// VerifyContext is Verify with a context for fetching the keys of
// Config.JWKSURL when the token names a kid the cached set lacks.
//
// A token accepted recently is served from a cache (see cache.go and
// Config.CacheTTL) with the same result, until its exp at the latest.
func (v *Verifier) VerifyContext(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrNoToken
	}
	if len(token) > maxTokenLen {
		return Principal{}, invalid("token too large")
	}
	now := v.cfg.Now()
	var sum [32]byte
	if v.cache != nil {
		sum = sha256.Sum256([]byte(token))
		if p, ok := v.cached(ctx, sum, now); ok {
			return p, nil
		}
	}
	var (
		c      tokenClaims
		kid    string
		remote jwk.Set
	)
	tok, err := jwt.NewParser(v.opts...).ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		var keys any
		var err error
		kid, remote, keys, err = v.keyfunc(ctx, t)
		return keys, err
	})
	if err != nil {
		return Principal{}, v.classify(tok, &c, err)
	}
	if c.ExpiresAt == nil { // WithExpirationRequired guarantees it; stay safe if that changes
		return Principal{}, invalid("token has no exp claim")
	}
	clientID := c.ClientID
	if clientID == "" {
		clientID = c.Subject
	}
	if clientID == "" {
		return Principal{}, invalid("token names no client (client_id or sub)")
	}
	p := Principal{
		ClientID: clientID,
		Subject:  c.Subject,
		Scopes:   ParseScopes(strings.Join(c.Scope, " ")),
		Expiry:   c.ExpiresAt.Time,

		FHIRUser:     c.FHIRUser,
		Organization: c.Organization,
		Roles:        c.Roles,
		PurposeOfUse: c.PurposeOfUse,
	}
	if v.cache != nil {
		v.remember(sum, p, kid, remote, now)
	}
	return p, nil
}

// keyfunc picks the keys that may have signed t. It also returns t's kid
// and the JWKS URL's set it consulted (nil: none), which a cached
// acceptance is bound to.
func (v *Verifier) keyfunc(ctx context.Context, t *jwt.Token) (string, jwk.Set, any, error) {
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 section 4.1.11: we understand no extensions, so a token
		// that marks any as critical must be rejected.
		return "", nil, nil, errCrit
	}
	var kid string
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok {
			return "", nil, nil, errKID
		}
		kid = s
	}
	keys := v.keys.candidates(t.Method.Alg(), kid)
	var remoteSet jwk.Set
	if v.cfg.JWKSURL != "" && v.cfg.Remote != nil {
		if set, err := v.cfg.Remote.Set(ctx, v.cfg.JWKSURL, kid); err == nil {
			remoteSet = set
			remote := KeySet{keys: setKeys(set)}
			keys = append(keys, remote.candidates(t.Method.Alg(), kid)...)
		}
	}
	if len(keys) == 0 {
		return kid, remoteSet, nil, errNoKey
	}
	return kid, remoteSet, jwt.VerificationKeySet{Keys: keys}, nil
}

// classify maps a jwt error to one of our sentinels with a fixed reason. The
// jwt error itself is dropped: its text may quote header values.
func (v *Verifier) classify(tok *jwt.Token, c *tokenClaims, err error) error {
	if tok == nil || errors.Is(err, jwt.ErrTokenMalformed) {
		return invalid("malformed token")
	}
	if alg, _ := tok.Header["alg"].(string); alg != algES256 && alg != algRS256 {
		return invalid("unsupported signing algorithm")
	}
	switch {
	case errors.Is(err, errCrit):
		return invalid("unsupported critical header")
	case errors.Is(err, errKID):
		return invalid("malformed kid header")
	case errors.Is(err, errNoKey):
		return invalid("no trusted key for token")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("signature does not verify")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case c.ExpiresAt == nil:
			return invalid("token has no exp claim")
		case c.Issuer == "" && v.cfg.Issuer != "":
			return invalid("token has no iss claim")
		}
		return invalid("token has no aud claim")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid("issuer not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalid("audience not accepted")
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: %w", ErrInvalidToken, ErrExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("token not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return invalid("invalid claims")
	}
	return invalid("token rejected")
}

// invalid wraps ErrInvalidToken with a fixed reason.
func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// tokenClaims are the claims Verify reads.
type tokenClaims struct {
	jwt.RegisteredClaims
	ClientID     string     `json:"client_id"`
	Scope        scopeClaim `json:"scope"`
	FHIRUser     string     `json:"fhirUser"`
	Organization string     `json:"organization"`
	Roles        scopeClaim `json:"subject_role"`
	PurposeOfUse string     `json:"purpose_of_use"`
}

// scopeClaim is the scope claim: a space-separated string (RFC 8693, SMART)
// or, as some servers issue it, a JSON array of strings.
type scopeClaim []string

// UnmarshalJSON accepts a string, an array of strings or null.
func (s *scopeClaim) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = strings.Fields(str)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("scope claim is neither a string nor an array of strings")
	}
	*s = list
	return nil
}

// FromAuthorizationHeader returns the token in an Authorization header value
// of the form "Bearer <token>" (RFC 6750); the scheme is case-insensitive.
// It returns ErrNoToken when h is empty or uses another scheme or no token,
// and ErrInvalidToken when the credentials are not a single token.
func FromAuthorizationHeader(h string) (string, error) {
	h = strings.TrimSpace(h)
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	token := strings.TrimLeft(rest, " ")
	if token == "" {
		return "", ErrNoToken
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("%w: malformed bearer credentials", ErrInvalidToken)
		}
	}
	return token, nil
}
