package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

// TokenPath is the SMART Backend Services token endpoint's path.
const TokenPath = "/auth/token"

// maxFormBytes bounds a token request's body: an assertion is a few KiB.
const maxFormBytes = 64 << 10

// smartScopes are the scopes the discovery document advertises: the SMART
// v2 system scopes (v1 names are accepted too) and the fhiranchor roles.
var smartScopes = []string{
	"system/*.cruds", "system/*.rs", "system/*.c", "system/*.u", "system/*.d",
	"system/*.read", "system/*.write",
	PolicyAdminScope, AuditScope, PatientSelfScope, AdminScope, CohortQueryScope, CohortExportScope,
}

// tokenEndpoint is how the REST layer finds the token endpoint's URL: the
// configured one, else derived from the public base URL, else from each
// request's host (as Location headers are).
type tokenEndpoint string

func (t tokenEndpoint) url(r *http.Request) string {
	if t != "" {
		return string(t)
	}
	return requestOrigin(r) + TokenPath
}

// tokenURLFor is the token endpoint's configured URL: explicit, or the
// origin of baseURL plus TokenPath; empty when neither is set.
func tokenURLFor(explicit, baseURL string) string {
	if explicit != "" {
		return explicit
	}
	if baseURL == "" {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSuffix(baseURL, "/"), "/fhir/r4") + TokenPath
}

// requestOrigin is scheme://host of r as the client addressed it.
func requestOrigin(r *http.Request) string {
	host := r.Header.Get("X-Forwarded-Host")
	if host == "" {
		host = r.Host
	}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + host
}

// smartConfiguration serves GET /.well-known/smart-configuration.
func smartConfiguration(te tokenEndpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"token_endpoint":                                   te.url(r),
			"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
			"token_endpoint_auth_signing_alg_values_supported": auth.AssertionAlgs,
			"grant_types_supported":                            []string{auth.GrantClientCredentials},
			"scopes_supported":                                 smartScopes,
			"capabilities":                                     []string{"client-confidential-asymmetric", "permission-v2"},
		})
	}
}

// tokenHandler serves POST /auth/token: the client_credentials grant of
// SMART Backend Services. Refusals are OAuth error JSON whose texts are
// fixed; bursts are bounded per remote IP like other unauthenticated
// requests.
func tokenHandler(ts *auth.TokenServer, te tokenEndpoint, ips *clientLimits, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		leave, fe := ips.enter(remoteIP(r))
		if fe != nil {
			writeError(w, fe)
			return
		}
		defer leave()
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != formType {
			writeOAuth(w, &auth.OAuthError{Code: "invalid_request", Description: "send the parameters as application/x-www-form-urlencoded", Status: 400})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			writeOAuth(w, &auth.OAuthError{Code: "invalid_request", Description: "the request body is not a readable form", Status: 400})
			return
		}
		f := r.PostForm
		for _, k := range []string{"grant_type", "scope", "client_assertion_type", "client_assertion", "client_id"} {
			if len(f[k]) > 1 { // RFC 6749 section 3.2: parameters MUST NOT repeat
				writeOAuth(w, &auth.OAuthError{Code: "invalid_request", Description: "a parameter is repeated", Status: 400})
				return
			}
		}
		resp, err := ts.Exchange(r.Context(), auth.TokenRequest{
			GrantType: f.Get("grant_type"), Scope: f.Get("scope"),
			ClientAssertionType: f.Get("client_assertion_type"), ClientAssertion: f.Get("client_assertion"),
			ClientID: f.Get("client_id"), TokenURL: te.url(r),
		})
		var oe *auth.OAuthError
		switch {
		case errors.As(err, &oe):
			writeOAuth(w, oe)
			return
		case err != nil:
			log.ErrorContext(r.Context(), "token endpoint", slog.Any("err", err))
			writeOAuth(w, &auth.OAuthError{Code: "server_error", Description: "internal error", Status: 500})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}
}

func writeOAuth(w http.ResponseWriter, e *auth.OAuthError) {
	w.Header().Set("Content-Type", "application/json")
	if e.Code == "invalid_client" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_client"`)
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}

// clientAdmin serves /v1/clients for the AdminScope: register (POST),
// list and read (GET), revoke (DELETE) clients and revoke one key
// (DELETE /v1/clients/{id}/keys/{kid}). Plain JSON, not FHIR.
type clientAdmin struct {
	reg      *ClientRegistry
	verifier tokenVerifier
	ips      *clientLimits
	log      *slog.Logger
}

func (a *clientAdmin) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/clients", a.guard(a.register))
	mux.HandleFunc("GET /v1/clients", a.guard(a.list))
	mux.HandleFunc("GET /v1/clients/{id}", a.guard(a.get))
	mux.HandleFunc("DELETE /v1/clients/{id}", a.guard(a.revoke))
	mux.HandleFunc("DELETE /v1/clients/{id}/keys/{kid}", a.guard(a.revokeKey))
}

// guard authenticates the caller and requires AdminScope.
func (a *clientAdmin) guard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		leave, fe := a.ips.enter(remoteIP(r))
		if fe != nil {
			writeError(w, fe)
			return
		}
		defer leave()
		p, err := authenticate(r.Context(), a.verifier, r.Header.Get("Authorization"))
		if err != nil {
			writeError(w, asFHIRError(r.Context(), err))
			return
		}
		if !p.Scopes.Has(AdminScope) {
			writeError(w, failure(http.StatusForbidden, "forbidden", "", "this operation needs the scope "+AdminScope))
			return
		}
		a.log.InfoContext(r.Context(), "client admin", slog.String("method", r.Method), slog.String("client", p.ClientID))
		next(w, r)
	}
}

func (a *clientAdmin) register(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, failure(http.StatusUnsupportedMediaType, "not-supported", "", "send application/json"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		writeError(w, failure(http.StatusBadRequest, "structure", "", "could not read the request body"))
		return
	}
	var c auth.Client
	if err := json.Unmarshal(body, &c); err != nil {
		writeError(w, failure(http.StatusBadRequest, "structure", "", "the body is not a client registration (client_id, scopes, jwks or jwks_url)"))
		return
	}
	if err := c.Validate(); err != nil {
		writeError(w, failure(http.StatusBadRequest, "invalid", "", err.Error()))
		return
	}
	if err := a.reg.Register(r.Context(), c); err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/clients/"+c.ID)
	a.write(w, http.StatusCreated, ClientInfo{Client: c, Source: "api"})
}

func (a *clientAdmin) list(w http.ResponseWriter, r *http.Request) {
	list, err := a.reg.List(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.write(w, http.StatusOK, map[string]any{"clients": list})
}

func (a *clientAdmin) get(w http.ResponseWriter, r *http.Request) {
	info, err := a.reg.lookup(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.write(w, http.StatusOK, info)
}

func (a *clientAdmin) revoke(w http.ResponseWriter, r *http.Request) {
	if err := a.reg.Revoke(r.Context(), r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *clientAdmin) revokeKey(w http.ResponseWriter, r *http.Request) {
	kid := r.PathValue("kid")
	if kid == "" || len(kid) > 256 {
		writeError(w, failure(http.StatusBadRequest, "invalid", "", "kid must be 1 to 256 characters"))
		return
	}
	if err := a.reg.RevokeKey(r.Context(), r.PathValue("id"), kid); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *clientAdmin) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, auth.ErrUnknownClient) {
		writeError(w, failure(http.StatusNotFound, "not-found", "", "no such client"))
		return
	}
	a.log.ErrorContext(r.Context(), "client admin", slog.Any("err", err))
	writeError(w, failure(http.StatusInternalServerError, "exception", "", "internal error"))
}

func (a *clientAdmin) write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// CORS: browsers may call the API from the configured origins only.
var (
	corsAllowHeaders  = "Authorization, Content-Type, Prefer, If-Match, If-None-Match, If-None-Exist, X-Request-Id, Idempotency-Key, X-Purpose-Of-Use"
	corsExposeHeaders = "Location, ETag, Content-Location, Last-Modified, Link"
	corsMethods       = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
)

// cors answers preflight requests from allowed origins and marks their
// responses readable; origins lists them ("*" allows any). Requests from
// other origins pass unmarked, so the browser withholds the answer.
// Credentials (cookies) are never allowed: the API takes bearer tokens.
func cors(next http.Handler, origins []string) http.Handler {
	if len(origins) == 0 {
		return next
	}
	anyOrigin := slices.Contains(origins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		if !anyOrigin && !slices.Contains(origins, origin) {
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			w.Header().Add("Vary", "Access-Control-Request-Method")
			w.Header().Add("Vary", "Access-Control-Request-Headers")
			w.Header().Set("Access-Control-Allow-Methods", corsMethods)
			w.Header().Set("Access-Control-Allow-Headers", corsAllowHeaders)
			w.Header().Set("Access-Control-Max-Age", strconv.Itoa(600))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}

// capabilityTokenURL replaces the token endpoint placeholder of a
// CapabilityStatement rendered without a known base URL.
func capabilityTokenURL(ctx context.Context, caps []byte) []byte {
	u, _ := json.Marshal(serverBase(ctx) + TokenPath)
	return []byte(strings.ReplaceAll(string(caps), `"`+tokenURLPlaceholder+`"`, string(u)))
}

// tokenURLPlaceholder stands for the token endpoint in a CapabilityStatement
// rendered before the request's host is known.
const tokenURLPlaceholder = "urn:fhiranchor:token-endpoint"
