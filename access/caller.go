package access

import (
	"time"

	"github.com/fhiranchor/fhiranchor/policy"
)

// Caller is who asks, as the token and request say: built once per request
// by the gateway's interceptor, after the token is verified.
type Caller struct {
	ClientID string
	// Actor is the FHIR user the client acts as (the token's fhirUser), e.g.
	// "Practitioner/p1", "PractitionerRole/r1" or "Patient/123", or "".
	Actor string
	// Organization is the organization the client acts for ("Organization/<id>"),
	// or "" when it acts for none: a system-wide integration.
	Organization string
	Roles        []string
	// Purpose is the purpose of use: the request's header, else the token's.
	Purpose string
}

// Input is the policy input of one action of c.
func (c Caller) Input(action, patient string, res policy.ResourceRef, at time.Time) policy.Input {
	return policy.Input{
		Time: at, Action: action, Patient: patient, Resource: res, Purpose: c.Purpose,
		Actor: policy.Actor{ClientID: c.ClientID, Reference: c.Actor, Roles: c.Roles, Organization: c.Organization},
	}
}
