package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Consent decisions are made by package access; this file turns its
// verdicts into answers. A refusal names the decision's record (its leaf
// index) and the consents and provisions in its reasons, never data.

// readVersion decides a read of v by the request's caller; without policy
// every read is allowed. A denial or a withheld version is a 403.
func readVersion(ctx context.Context, ac *access.Control, v vault.Version) (policy.Decision, error) {
	if ac == nil {
		return policy.Decision{Allow: true}, nil
	}
	verdict, err := ac.Read(ctx, callerFrom(ctx), v)
	if err != nil {
		return policy.Decision{}, err
	}
	if fe := refusal(verdict); fe != nil {
		return verdict.Outcome.Decision, fe
	}
	return verdict.Outcome.Decision, nil
}

// refusal is the OperationOutcome of a verdict that does not allow, or nil.
func refusal(v access.Verdict) *fhirError {
	switch v.Effect {
	case access.Denied:
		return denied(v.Outcome.Decision, v.Leaf)
	case access.Withheld:
		return failure(http.StatusForbidden, "suppressed", "",
			"the resource carries security labels the patient's consent withholds (decision "+strconv.FormatUint(v.Leaf, 10)+")")
	}
	return nil
}

// denied is the OperationOutcome of a denying decision: its reasons name
// consents and provisions, never data.
func denied(d policy.Decision, idx uint64) *fhirError {
	return failure(http.StatusForbidden, "forbidden", "", "access not permitted by consent: "+
		strings.Join(d.Reasons, "; ")+" (decision "+strconv.FormatUint(idx, 10)+")")
}
