package gateway

import (
	"context"

	"github.com/fhiranchor/fhiranchor/access"
)

// callerKey is the context key of the access.Caller the interceptor builds.
type callerKey struct{}

// callerFrom returns the caller of an authenticated request; the zero
// Caller for public methods.
func callerFrom(ctx context.Context) access.Caller {
	c, _ := ctx.Value(callerKey{}).(access.Caller)
	return c
}

// clientOf returns the authenticated client id, or "".
func clientOf(ctx context.Context) string {
	return callerFrom(ctx).ClientID
}
