package research

import (
	"net/http"
	"strconv"
)

// Error is a failure the client is told about: the HTTP status a REST
// client sees and one OperationOutcome issue. Its text never holds PHI.
type Error struct {
	// Status is the HTTP status, e.g. http.StatusBadRequest.
	Status int
	// Code is the FHIR issue type (invalid, required, throttled, not-found,
	// deleted, exception...).
	Code string
	// Path is the element the issue is about (a FHIRPath-like expression of
	// the request body), or "".
	Path string
	// Message is the diagnostics the client sees.
	Message string
}

// Error returns the status and the client's message.
func (e *Error) Error() string {
	if e.Message == "" {
		return strconv.Itoa(e.Status) + " " + http.StatusText(e.Status)
	}
	return strconv.Itoa(e.Status) + " " + e.Message
}

// failure builds an *Error. path may be "".
func failure(status int, code, path, message string) *Error {
	return &Error{Status: status, Code: code, Path: path, Message: message}
}
