// Package auth authenticates callers of the gateway with SMART backend
// services style bearer tokens.
//
// A Verifier checks a signed JWT against a KeySet and turns it into a
// Principal: who the client is and which Scopes it holds. Keys come from PEM
// files or JWKS documents (LoadKeySet; JWKS parsed by jwx), and from an
// identity provider's JWKS URL (RemoteKeys: jwx's jwk.Cache, refreshed when
// a token names an unknown kid). Only ES256 (P-256) and RS256 (RSA of
// at least 2048 bits) are accepted; every other alg, including "none" and the
// HMAC family, is rejected, which closes the classic alg-confusion attack
// where a public key is replayed as an HMAC secret. A Verifier remembers
// the tokens it accepted, for at most a minute and never past their exp,
// and forgets them when the identity provider's key set changes (cache.go):
// a client presenting one token on every request pays for one signature
// check a minute.
//
// Scopes follow the SMART on FHIR grammar, v1 ("system/Patient.read") and v2
// ("system/Patient.rs"). Only system/ scopes grant access for now; see Scopes
// for what is parsed and why some scopes grant nothing.
//
// TokenServer is the token endpoint of SMART Backend Services: it checks a
// registered Client's signed assertion (RS384 or ES384, private_key_jwt)
// and issues an access token with MintToken that the Verifier accepts.
//
// For development and the embedded default configuration, LoadOrCreateDevKey
// keeps a P-256 signing key on disk, MintToken issues tokens with it, and
// DevKeySet trusts it. Production deployments load their authorization
// server's keys with LoadKeySet instead.
//
// Errors never carry the token or any claim value: callers may log them and
// map them to a response (ErrNoToken, ErrInvalidToken, ErrExpired) with
// errors.Is.
//
// The package uses the standard library, github.com/golang-jwt/jwt/v5 and
// github.com/lestrrat-go/jwx/v3 only; it knows nothing of gRPC or HTTP so
// that every transport can call it.
package auth
