package gateway

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
)

// WhoAmIPath answers a bearer token's holder with what the token lets it
// do: its client id, its role and its scopes. The web console asks it to
// decide which pages to show; the server still checks every call.
const WhoAmIPath = "/v1/whoami"

// whoAmI is the answer of WhoAmIPath: nothing but what the caller's own
// token already says (no fhirUser, organization or purpose: a page that
// needs those asks the API that uses them).
type whoAmI struct {
	ClientID string   `json:"client_id"`
	Role     string   `json:"role"`
	Scopes   []string `json:"scopes"`
}

// roleOf names the first of the roles (roles.go) the scopes hold, in the
// order a console shows them: policy admin, operator, auditor, patient,
// researcher, then an EHR client; "none" when they hold none.
func roleOf(s auth.Scopes) string {
	switch {
	case s.Has(PolicyAdminScope):
		return "admin"
	case s.Has(AdminScope):
		return "operator"
	case s.Has(AuditScope):
		return "auditor"
	case s.Has(PatientSelfScope):
		return "patient"
	case s.Has(CohortQueryScope) || s.Has(CohortExportScope):
		return "researcher"
	case s.AllowsAny(auth.Read) || s.AllowsAny(auth.Create) || s.AllowsAny(auth.Update):
		return "clinical"
	}
	return "none"
}

// whoAmIHandler serves GET WhoAmIPath for any valid token; a missing or bad
// token gets the 401 every other endpoint gives.
func whoAmIHandler(v tokenVerifier, ips *clientLimits, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		leave, fe := ips.enter(remoteIP(r))
		if fe != nil {
			writeError(w, fe)
			return
		}
		defer leave()
		p, err := authenticate(r.Context(), v, r.Header.Get("Authorization"))
		if err != nil {
			writeError(w, asFHIRError(r.Context(), err))
			return
		}
		log.DebugContext(r.Context(), "whoami", slog.String("client", p.ClientID))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(whoAmI{
			ClientID: p.ClientID,
			Role:     roleOf(p.Scopes),
			Scopes:   strings.Fields(p.Scopes.String()),
		})
	}
}
