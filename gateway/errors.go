package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/research"
	"github.com/fhiranchor/fhiranchor/vault"
)

const fhirJSON = "application/fhir+json"

// errorDomain names fhiranchor in google.rpc.ErrorInfo details.
const errorDomain = "fhiranchor.dev"

// fhirError is a failure the client is told about: an HTTP status and the
// issues of an OperationOutcome. Its text never holds PHI.
type fhirError struct {
	status int
	issues []issue
	// retryAfter, when positive, tells the client when to try again
	// (Retry-After on REST, google.rpc.RetryInfo on gRPC): 429 and 503.
	retryAfter time.Duration
}

func (e *fhirError) Error() string {
	if len(e.issues) == 0 {
		return http.StatusText(e.status)
	}
	return fmt.Sprintf("%d %s", e.status, e.issues[0].Diagnostics)
}

// failure builds a fhirError with one issue. expr may be "".
func failure(status int, code, expr, diagnostics string) *fhirError {
	is := issue{Severity: "error", Code: code, Diagnostics: diagnostics}
	if expr != "" {
		is.Expression = []string{expr}
	}
	return &fhirError{status: status, issues: []issue{is}}
}

// asFHIRError maps any error of the request path to what the client sees.
// This is the one place where domain errors become statuses.
func asFHIRError(ctx context.Context, err error) *fhirError {
	var fe *fhirError
	var ve fhir.ValidationErrors
	var single *fhir.ValidationError
	var re *research.Error
	switch {
	case errors.As(err, &fe):
		return fe
	case errors.As(err, &re):
		return failure(re.Status, re.Code, re.Path, re.Message)
	case errors.As(err, &ve):
		return &fhirError{status: http.StatusBadRequest, issues: validationIssues(ve, "")}
	case errors.As(err, &single):
		return &fhirError{status: http.StatusBadRequest, issues: validationIssues(fhir.ValidationErrors{single}, "")}
	case errors.Is(err, vault.ErrErased):
		return failure(http.StatusGone, "deleted", "", "the content of this resource was erased")
	case errors.Is(err, vault.ErrNotFound):
		return failure(http.StatusNotFound, "not-found", "", "resource not found")
	case errors.Is(err, vault.ErrConflict):
		return failure(http.StatusConflict, "conflict", "", "a concurrent write changed this resource; retry")
	case errors.Is(err, auth.ErrNoToken):
		return failure(http.StatusUnauthorized, "login", "", "a bearer token is required")
	case errors.Is(err, auth.ErrExpired):
		return failure(http.StatusUnauthorized, "expired", "", "the bearer token has expired")
	case errors.Is(err, auth.ErrInvalidToken):
		return failure(http.StatusUnauthorized, "security", "", "the bearer token is not valid")
	case errors.Is(err, vault.ErrUnavailable):
		// The driver's error names no values (the stores strip them); it
		// says which way the database failed, for the operator.
		slog.WarnContext(ctx, "vault unavailable", slog.Any("err", err))
		fe := failure(http.StatusServiceUnavailable, "transient", "", "the database is unavailable; retry later")
		fe.retryAfter = retryUnavailable
		return fe
	case errors.Is(err, context.Canceled):
		return failure(499, "timeout", "", "the client cancelled the request")
	case errors.Is(err, context.DeadlineExceeded):
		// The server's deadline (Limits.RequestTimeout) passed: the work
		// was rolled back; the server is overloaded or a dependency slow,
		// so the client may retry later (503, not 504: no upstream of the
		// client's timed out).
		fe := failure(http.StatusServiceUnavailable, "timeout", "", "the request took too long and was rolled back; retry later")
		fe.retryAfter = retryUnavailable
		return fe
	}
	// Unexpected: the details stay in our log (no PHI reaches errors by
	// construction), the client gets a generic outcome.
	slog.ErrorContext(ctx, "request failed", slog.Any("err", err))
	return failure(http.StatusInternalServerError, "exception", "", "internal error")
}

// toStatus converts a handler's error into a gRPC status that carries the
// OperationOutcome (as a google.api.HttpBody detail) and the HTTP status (in
// an ErrorInfo detail), so REST and gRPC clients get the same answer.
func toStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	fe := asFHIRError(ctx, err)
	st := status.New(grpcCode(fe.status), fe.Error())
	details := []protoadapt.MessageV1{
		&httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(fe.issues...)},
		&errdetails.ErrorInfo{Reason: "FHIR_" + strconv.Itoa(fe.status), Domain: errorDomain,
			Metadata: map[string]string{"http_status": strconv.Itoa(fe.status)}},
	}
	if fe.retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(fe.retryAfter)})
	}
	withDetails, derr := st.WithDetails(details...)
	if derr != nil {
		return st.Err()
	}
	return withDetails.Err()
}

func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound, http.StatusGone:
		return codes.NotFound
	case http.StatusConflict:
		return codes.Aborted
	case http.StatusPreconditionFailed:
		return codes.FailedPrecondition
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusNotImplemented, http.StatusMethodNotAllowed:
		return codes.Unimplemented
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case 499:
		return codes.Canceled
	}
	return codes.Internal
}

// outcomeOf extracts the OperationOutcome, HTTP status and retry delay
// from a gRPC error. Errors raised by gRPC itself (message too large,
// unavailable) get an outcome built from their code.
func outcomeOf(err error) (int, []byte, time.Duration) {
	st := status.Convert(err)
	httpStatus := 0
	var body []byte
	var retry time.Duration
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *httpbody.HttpBody:
			body = d.Data
		case *errdetails.ErrorInfo:
			if d.Domain == errorDomain {
				httpStatus, _ = strconv.Atoi(d.Metadata["http_status"])
			}
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration()
		}
	}
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(st.Code())
		switch st.Code() {
		case codes.ResourceExhausted:
			httpStatus = http.StatusRequestEntityTooLarge
		case codes.DeadlineExceeded, codes.Unavailable:
			// gRPC's own: the in-process connection closing, or a deadline
			// the REST side saw first. The server's answer, 503, as for a
			// deadline the handler saw.
			httpStatus = http.StatusServiceUnavailable
		}
	}
	if retry <= 0 && (httpStatus == http.StatusServiceUnavailable || httpStatus == http.StatusTooManyRequests) {
		retry = retryUnavailable
	}
	if body == nil {
		code := "exception"
		if httpStatus < 500 {
			code = "processing"
		}
		body = outcomeJSON(issue{Severity: "error", Code: code, Diagnostics: http.StatusText(httpStatus)})
	}
	return httpStatus, body, retry
}

// writeOutcome writes an OperationOutcome response.
func writeOutcome(w http.ResponseWriter, httpStatus int, body []byte) {
	w.Header().Set("Content-Type", fhirJSON)
	if httpStatus == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fhiranchor"`)
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

// writeError writes fe as an OperationOutcome, with Retry-After when it
// has one.
func writeError(w http.ResponseWriter, fe *fhirError) {
	if fe.retryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(fe.retryAfter))
	}
	writeOutcome(w, fe.status, outcomeJSON(fe.issues...))
}

// httpErrorHandler is grpc-gateway's error handler: every REST error is an
// OperationOutcome.
func httpErrorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	st, body, retry := outcomeOf(err)
	if retry > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(retry))
	}
	writeOutcome(w, st, body)
}

// routingErrorHandler answers unknown paths and methods with an
// OperationOutcome.
func routingErrorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, httpStatus int) {
	code := "not-supported"
	writeOutcome(w, httpStatus, outcomeJSON(issue{Severity: "error", Code: code, Diagnostics: "no such interaction: " + http.StatusText(httpStatus)}))
}
