package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// The SMART Backend Services token request's fixed values
// (hl7.org/fhir/smart-app-launch/backend-services.html).
const (
	GrantClientCredentials = "client_credentials"
	AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// AssertionAlgs are the algorithms a client assertion may be signed with:
// the two SMART Backend Services requires servers to support.
var AssertionAlgs = []string{"RS384", "ES384"}

// DefaultTokenTTL is how long an issued access token lives by default.
const DefaultTokenTTL = 5 * time.Minute

// maxAssertionLife is how far in the future an assertion's exp may be
// (the specification: "no more than five minutes in the future").
const maxAssertionLife = 5 * time.Minute

// maxReplayEntries bounds the jti cache. Entries live at most
// maxAssertionLife plus leeway; a full cache refuses new assertions rather
// than forgetting ones that could be replayed.
const maxReplayEntries = 1 << 20

// TokenConfig configures a TokenServer.
type TokenConfig struct {
	// Key signs the access tokens; the gateway's Verifier must trust it.
	Key *ecdsa.PrivateKey
	// Issuer and Audience become the iss and aud of access tokens; set
	// them to the Verifier's Config.Issuer and Config.Audience.
	Issuer   string
	Audience string
	// TTL is the access tokens' lifetime; zero means DefaultTokenTTL.
	TTL time.Duration
	// Leeway tolerates clock skew on the assertions' exp, nbf and iat.
	Leeway time.Duration
	// Clients finds registrations.
	Clients ClientStore
	// Remote fetches clients' jwks_url sets; nil refuses such clients.
	Remote *RemoteKeys
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives the reason of each refusal (never a claim value);
	// nil means slog.Default().
	Log *slog.Logger
}

// TokenServer is the token endpoint of SMART Backend Services: it trades a
// client's signed assertion for a short-lived access token signed by the
// gateway. It knows nothing of HTTP; the transport passes it the form's
// fields. Safe for concurrent use.
type TokenServer struct {
	cfg TokenConfig

	mu   sync.Mutex
	seen map[string]time.Time // client_id NUL jti -> when it may be forgotten
}

// NewTokenServer returns a TokenServer for cfg.
func NewTokenServer(cfg TokenConfig) (*TokenServer, error) {
	if cfg.Key == nil || cfg.Key.Curve != elliptic.P256() {
		return nil, errors.New("token server: a P-256 signing key is required")
	}
	if cfg.Clients == nil {
		return nil, errors.New("token server: a client store is required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTokenTTL
	}
	cfg.Leeway = max(cfg.Leeway, 0)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &TokenServer{cfg: cfg, seen: map[string]time.Time{}}, nil
}

// TTL is the lifetime of the access tokens issued.
func (s *TokenServer) TTL() time.Duration { return s.cfg.TTL }

// TokenRequest is a token request's form fields.
type TokenRequest struct {
	GrantType           string
	Scope               string
	ClientAssertionType string
	ClientAssertion     string
	// ClientID is the optional client_id field; when present it must be
	// the assertion's iss.
	ClientID string
	// TokenURL is the token endpoint's absolute URL: the aud an
	// assertion must name.
	TokenURL string
}

// TokenResponse is a successful answer (RFC 6749 section 5.1).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// OAuthError is a refusal (RFC 6749 section 5.2). Description is a fixed
// text: it never quotes what the client sent.
type OAuthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
	// Status is the HTTP status: 401 for invalid_client, else 400.
	Status int `json:"-"`
}

func (e *OAuthError) Error() string { return e.Code + ": " + e.Description }

func oauthErr(code, desc string) *OAuthError {
	st := 400
	if code == "invalid_client" {
		st = 401
	}
	return &OAuthError{Code: code, Description: desc, Status: st}
}

// clientErr is the invalid_client every failed client authentication
// gets: the same text whatever failed, so the answer tells a prober
// nothing (the reason is logged).
func (s *TokenServer) clientErr(ctx context.Context, reason string) *OAuthError {
	s.cfg.Log.InfoContext(ctx, "token request refused", slog.String("reason", reason))
	return oauthErr("invalid_client", "client authentication failed")
}

// Exchange checks a token request and issues an access token, or returns
// an *OAuthError.
func (s *TokenServer) Exchange(ctx context.Context, req TokenRequest) (TokenResponse, error) {
	switch {
	case req.GrantType != GrantClientCredentials:
		return TokenResponse{}, oauthErr("unsupported_grant_type", "grant_type must be client_credentials")
	case req.ClientAssertionType != AssertionTypeJWTBearer:
		return TokenResponse{}, oauthErr("invalid_request", "client_assertion_type must be "+AssertionTypeJWTBearer)
	case req.ClientAssertion == "":
		return TokenResponse{}, oauthErr("invalid_request", "client_assertion is required")
	case strings.TrimSpace(req.Scope) == "":
		return TokenResponse{}, oauthErr("invalid_scope", "scope is required")
	}
	c, err := s.authenticate(ctx, req)
	if err != nil {
		return TokenResponse{}, err
	}
	granted := c.grant(strings.Fields(req.Scope))
	if len(granted) == 0 {
		s.cfg.Log.InfoContext(ctx, "token request refused", slog.String("reason", "no requested scope is registered"), slog.String("client", c.ID))
		return TokenResponse{}, oauthErr("invalid_scope", "none of the requested scopes is registered for this client")
	}
	tok, err := MintToken(s.cfg.Key, Claims{
		ClientID: c.ID, Issuer: s.cfg.Issuer, Audience: s.cfg.Audience, Scopes: granted,
		TTL: s.cfg.TTL, Now: s.cfg.Now(),
		FHIRUser: c.FHIRUser, Organization: c.Organization, Roles: c.Roles, PurposeOfUse: c.PurposeOfUse,
	})
	if err != nil {
		return TokenResponse{}, fmt.Errorf("issue token: %w", err)
	}
	return TokenResponse{AccessToken: tok, TokenType: "bearer", ExpiresIn: int64(s.cfg.TTL / time.Second), Scope: strings.Join(granted, " ")}, nil
}

// authenticate verifies the client assertion and returns its client.
func (s *TokenServer) authenticate(ctx context.Context, req TokenRequest) (Client, error) {
	raw := []byte(req.ClientAssertion)
	if len(raw) > maxTokenLen {
		return Client{}, s.clientErr(ctx, "assertion too large")
	}
	msg, err := jws.Parse(raw, jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return Client{}, s.clientErr(ctx, "malformed assertion")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg, _ := hdr.Algorithm()
	if !slices.Contains(AssertionAlgs, alg.String()) {
		return Client{}, s.clientErr(ctx, "unsupported assertion algorithm")
	}
	if _, ok := hdr.Critical(); ok {
		return Client{}, s.clientErr(ctx, "unsupported critical header")
	}
	kid, _ := hdr.KeyID()
	if kid == "" {
		return Client{}, s.clientErr(ctx, "assertion has no kid")
	}
	// The issuer names the client whose keys verify the signature; it is
	// read before verification only to find those keys.
	unverified, err := jwt.ParseInsecure(raw)
	if err != nil {
		return Client{}, s.clientErr(ctx, "malformed assertion claims")
	}
	id, _ := unverified.Issuer()
	if id == "" || (req.ClientID != "" && req.ClientID != id) {
		return Client{}, s.clientErr(ctx, "assertion iss missing or not client_id")
	}
	c, err := s.cfg.Clients.Client(ctx, id)
	switch {
	case errors.Is(err, ErrUnknownClient), errors.Is(err, ErrRevokedClient):
		return Client{}, s.clientErr(ctx, "unknown or revoked client")
	case err != nil:
		return Client{}, fmt.Errorf("look up client: %w", err)
	}
	if slices.Contains(c.RevokedKIDs, kid) {
		return Client{}, s.clientErr(ctx, "revoked key")
	}
	key, reason := s.clientKey(ctx, c, kid, alg)
	if key == nil {
		return Client{}, s.clientErr(ctx, reason)
	}
	now := s.cfg.Now()
	tok, err := jwt.Parse(raw,
		jwt.WithKey(alg, key),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(s.cfg.Leeway),
		jwt.WithIssuer(c.ID),
		jwt.WithSubject(c.ID),
		jwt.WithAudience(req.TokenURL),
		jwt.WithRequiredClaim("exp"),
		jwt.WithRequiredClaim("jti"),
	)
	if err != nil {
		return Client{}, s.clientErr(ctx, assertionReason(err))
	}
	exp, _ := tok.Expiration()
	if exp.After(now.Add(maxAssertionLife + s.cfg.Leeway)) {
		return Client{}, s.clientErr(ctx, "assertion exp more than five minutes ahead")
	}
	jti, _ := tok.JwtID()
	if !s.firstUse(c.ID, jti, exp.Add(s.cfg.Leeway), now) {
		return Client{}, s.clientErr(ctx, "assertion jti replayed")
	}
	return c, nil
}

// clientKey returns the key of c with kid that may verify alg, or nil and
// why not.
func (s *TokenServer) clientKey(ctx context.Context, c Client, kid string, alg jwa.SignatureAlgorithm) (jwk.Key, string) {
	var set jwk.Set
	switch {
	case c.JWKS != nil && c.JWKS.Set != nil:
		set = c.JWKS.Set
	case c.JWKSURL != "" && s.cfg.Remote != nil:
		var err error
		if set, err = s.cfg.Remote.Set(ctx, c.JWKSURL, kid); err != nil {
			s.cfg.Log.WarnContext(ctx, "client JWKS unavailable", slog.String("client", c.ID), slog.Any("err", err))
			return nil, "client JWKS unavailable"
		}
	default:
		return nil, "client has no keys"
	}
	k, ok := set.LookupKeyID(kid)
	if !ok {
		return nil, "no client key with the assertion's kid"
	}
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return nil, "key is not a signing key"
	}
	if ka, ok := k.Algorithm(); ok && ka.String() != alg.String() {
		return nil, "key's alg is not the assertion's"
	}
	pub, err := rawPublicKey(k)
	if err != nil {
		return nil, "unsupported key type"
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if alg.String() != "RS384" || p.N.BitLen() < minRSABits || p.N.BitLen() > maxRSABits {
			return nil, "key does not fit the assertion's alg"
		}
	case *ecdsa.PublicKey:
		if alg.String() != "ES384" || p.Curve != elliptic.P384() {
			return nil, "key does not fit the assertion's alg"
		}
	}
	return k, ""
}

// assertionReason names why jwt.Parse refused an assertion, for the log.
func assertionReason(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return "assertion expired"
	case errors.Is(err, jwt.InvalidAudienceError()):
		return "assertion aud is not the token endpoint"
	case errors.Is(err, jwt.InvalidIssuerError()):
		return "assertion iss is not the client"
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return "assertion not valid yet"
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return "assertion lacks exp or jti"
	case errors.Is(err, jwt.ValidateError()):
		return "assertion claims invalid (sub must be the client)"
	}
	return "assertion signature does not verify"
}

// firstUse records jti of client until forget and reports whether it was
// unseen.
func (s *TokenServer) firstUse(client, jti string, forget, now time.Time) bool {
	key := client + "\x00" + jti
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.seen[key]; ok && now.Before(t) {
		return false
	}
	if len(s.seen) >= maxReplayEntries {
		for k, t := range s.seen {
			if !now.Before(t) {
				delete(s.seen, k)
			}
		}
		if len(s.seen) >= maxReplayEntries {
			return false
		}
	}
	s.seen[key] = forget
	return true
}
