package fhir

import (
	"errors"
	"fmt"
)

// Sentinel errors of parsing; a *ValidationError wraps one of them.
var (
	// ErrUnknownResource reports a resourceType that FHIR R4 does not define.
	ErrUnknownResource = errors.New("unknown resource type")
	// ErrInvalid reports JSON that is not a valid FHIR R4 resource.
	ErrInvalid = errors.New("invalid resource")
)

// ValidationError says where input failed and why, without its value: Path is
// a FHIRPath-like expression such as "Bundle.entry[3].resource.birthDate" and
// Reason a fixed phrase. Neither ever holds PHI, so both may go back to the
// client and into logs.
type ValidationError struct {
	Path   string
	Reason string
	Err    error // ErrInvalidJSON, ErrUnknownResource or ErrInvalid
}

func (e *ValidationError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Reason)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// ValidationErrors is every problem found in one input, in the order found.
type ValidationErrors []*ValidationError

func (es ValidationErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	return fmt.Sprintf("%s (and %d more)", es[0].Error(), len(es)-1)
}

// Unwrap lets errors.Is and errors.As see each error.
func (es ValidationErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
