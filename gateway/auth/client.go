package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// ErrUnknownClient means no client is registered under an id, or it was
// revoked.
var ErrUnknownClient = errors.New("unknown client")

// ErrRevokedClient means the client was registered and has been revoked;
// a ClientStore returns it so that stores asked after it (Chain) are not.
var ErrRevokedClient = errors.New("client revoked")

// Client is a registered SMART Backend Services client: who may ask the
// token endpoint for access tokens, with which keys and for which scopes.
type Client struct {
	// ID is the client_id: the iss and sub of its assertions.
	ID string `json:"client_id" yaml:"client_id"`
	// Scopes are the scopes the client may be granted.
	Scopes []string `json:"scopes" yaml:"scopes"`
	// FHIRUser, Organization and PurposeOfUse, when set, become the
	// fhirUser, organization and purpose_of_use claims of its tokens.
	FHIRUser     string   `json:"fhirUser,omitempty" yaml:"fhir_user"`
	Organization string   `json:"organization,omitempty" yaml:"organization"`
	PurposeOfUse string   `json:"purpose_of_use,omitempty" yaml:"purpose_of_use"`
	Roles        []string `json:"subject_role,omitempty" yaml:"roles"`
	// JWKSURL is where the client publishes its keys (fetched and cached
	// by RemoteKeys). Exactly one of JWKSURL and JWKS is set.
	JWKSURL string `json:"jwks_url,omitempty" yaml:"jwks_url"`
	// JWKS is the client's public key set, registered inline (or read
	// from a file by LoadJWKSFile).
	JWKS *JWKS `json:"jwks,omitempty" yaml:"-"`
	// RevokedKIDs are key ids no longer accepted, whatever the set holds.
	RevokedKIDs []string `json:"revoked_kids,omitempty" yaml:"revoked_kids"`
}

// JWKS is a JSON Web Key Set held as jwx parses it.
type JWKS struct{ jwk.Set }

// MarshalJSON writes the set.
func (j *JWKS) MarshalJSON() ([]byte, error) {
	if j == nil || j.Set == nil {
		return []byte("null"), nil
	}
	return json.Marshal(j.Set)
}

// UnmarshalJSON parses a JWK Set; private members are dropped, so a
// client that sends its private key by mistake does not get it stored.
func (j *JWKS) UnmarshalJSON(b []byte) error {
	set, err := jwk.Parse(b)
	if err != nil {
		return errors.New("jwks is not a JWK Set")
	}
	pub, err := jwk.PublicSetOf(set)
	if err != nil {
		return errors.New("jwks holds a key without a public half")
	}
	j.Set = pub
	return nil
}

// LoadJWKSFile reads a JWK Set file for Client.JWKS.
func LoadJWKSFile(path string) (*JWKS, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read client JWKS: %w", err)
	}
	var j JWKS
	if err := j.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("read client JWKS %s: %w", path, err)
	}
	return &j, nil
}

// clientIDPattern keeps client ids to characters safe in logs, URLs and
// storage keys.
var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~:@-]{0,127}$`)

// Validate checks a registration.
func (c Client) Validate() error {
	switch {
	case !clientIDPattern.MatchString(c.ID):
		return errors.New("client_id must be 1-128 characters of A-Z a-z 0-9 . _ ~ : @ -")
	case len(c.Scopes) == 0:
		return errors.New("a client needs at least one scope")
	case (c.JWKSURL == "") == (c.JWKS == nil || c.JWKS.Set == nil):
		return errors.New("a client needs exactly one of jwks_url and jwks")
	}
	for _, s := range c.Scopes {
		if !isScopeToken(s) {
			return errors.New("a scope is not an RFC 6749 scope token")
		}
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("jwks_url must be an http(s) URL")
		}
	}
	if c.JWKS != nil && c.JWKS.Set != nil {
		for i := range c.JWKS.Len() {
			k, _ := c.JWKS.Key(i)
			if kid, _ := k.KeyID(); kid == "" {
				return errors.New("every key of jwks needs a kid")
			}
		}
	}
	return nil
}

// grant returns the scopes of requested that the client's registration
// covers, in the order requested: a scope registered as is, or a SMART
// system/ resource scope within a registered one (system/*.rs covers
// system/Patient.rs and system/Patient.r; system/*.read covers
// system/Observation.rs). A requested scope wider than every registered
// one is left out, not narrowed.
func (c Client) grant(requested []string) []string {
	var out []string
	for _, s := range requested {
		if slices.Contains(out, s) || !isScopeToken(s) {
			continue
		}
		if slices.Contains(c.Scopes, s) || c.covers(s) {
			out = append(out, s)
		}
	}
	return out
}

// covers reports whether a registered resource scope includes the
// resource scope s.
func (c Client) covers(s string) bool {
	want, ok := parseResourceScope(s)
	if !ok {
		return false
	}
	for _, r := range c.Scopes {
		have, ok := parseResourceScope(r)
		if ok && (have.resourceType == anyType || have.resourceType == want.resourceType) && want.access&^have.access == 0 {
			return true
		}
	}
	return false
}

// ClientStore finds registered clients. Client returns ErrUnknownClient
// for an id never registered or revoked; it is called for every token
// request, so a revocation takes effect at once.
type ClientStore interface {
	Client(ctx context.Context, id string) (Client, error)
}

// StaticClients is a ClientStore of a fixed list (the configuration's).
type StaticClients map[string]Client

// Client returns the client registered under id.
func (s StaticClients) Client(_ context.Context, id string) (Client, error) {
	c, ok := s[id]
	if !ok {
		return Client{}, ErrUnknownClient
	}
	return c, nil
}

// Chain is a ClientStore that asks each store in turn; the first that
// knows the id answers.
type Chain []ClientStore

// Client returns the client of the first store that knows id.
func (ch Chain) Client(ctx context.Context, id string) (Client, error) {
	for _, s := range ch {
		c, err := s.Client(ctx, id)
		if errors.Is(err, ErrUnknownClient) {
			continue
		}
		return c, err
	}
	return Client{}, ErrUnknownClient
}
