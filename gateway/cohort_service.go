package gateway

import (
	"context"
	"net/http"
	"sync/atomic"

	"google.golang.org/genproto/googleapis/api/httpbody"

	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/research"
)

// Researcher scopes (i2b2's privacy tiers, in two): aggregate answers only,
// or row-level de-identified export.
const (
	CohortQueryScope  = "fhiranchor/cohort.query"
	CohortExportScope = "fhiranchor/cohort.export"
)

// cohortService is the CohortService's transport: package research
// decides, records and releases; these handlers pass it the caller and
// turn its answers into responses (its *research.Error values become
// OperationOutcomes in errors.go).
type cohortService struct {
	fhiranchorv1.UnimplementedCohortServiceServer
	r       *research.Service
	exports *research.Exports
	// base is scheme://host[/path] of the configured public base, or "":
	// export URLs then use the request's.
	base string
}

// CountCohort answers POST /v1/cohorts:count.
func (s *cohortService) CountCohort(ctx context.Context, body *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	a, err := s.r.Count(ctx, callerFrom(ctx), body.GetData())
	if err != nil {
		return nil, err
	}
	return jsonBody(ctx, a)
}

// BreakdownCohort answers POST /v1/cohorts:breakdown.
func (s *cohortService) BreakdownCohort(ctx context.Context, body *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	a, err := s.r.Breakdown(ctx, callerFrom(ctx), body.GetData())
	if err != nil {
		return nil, err
	}
	return jsonBody(ctx, a)
}

// ExportCohort answers POST /v1/cohorts:export.
func (s *cohortService) ExportCohort(ctx context.Context, body *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	base := s.base
	if base == "" {
		base = serverBase(ctx)
	}
	return exportResponse(ctx)(s.exports.KickOff(ctx, callerFrom(ctx), base, body.GetData()))
}

// GetExport answers the status URL.
func (s *cohortService) GetExport(ctx context.Context, req *fhiranchorv1.GetExportRequest) (*httpbody.HttpBody, error) {
	return exportResponse(ctx)(s.exports.Status(ctx, callerFrom(ctx), req.GetId()))
}

// GetExportFile serves one NDJSON file of a finished export.
func (s *cohortService) GetExportFile(ctx context.Context, req *fhiranchorv1.GetExportFileRequest) (*httpbody.HttpBody, error) {
	return exportResponse(ctx)(s.exports.File(ctx, callerFrom(ctx), req.GetId(), req.GetName()))
}

// DeleteExport cancels an export or deletes its files.
func (s *cohortService) DeleteExport(ctx context.Context, req *fhiranchorv1.DeleteExportRequest) (*httpbody.HttpBody, error) {
	return exportResponse(ctx)(s.exports.Delete(ctx, callerFrom(ctx), req.GetId()))
}

// exportResponse returns a function that sends what an export interaction
// answered: its status and headers (a plain 200 sets none, as it never
// did), and its body or note.
func exportResponse(ctx context.Context) func(research.Response, error) (*httpbody.HttpBody, error) {
	return func(r research.Response, err error) (*httpbody.HttpBody, error) {
		if err != nil {
			return nil, err
		}
		var kv []string
		for _, h := range [][2]string{{"content-location", r.ContentLocation}, {"x-progress", r.Progress}, {"retry-after", r.RetryAfter}} {
			if h[1] != "" {
				kv = append(kv, h[0], h[1])
			}
		}
		if r.Status != http.StatusOK || len(kv) > 0 {
			setResponse(ctx, r.Status, kv...)
		}
		if r.Note != "" {
			return &httpbody.HttpBody{ContentType: fhirJSON, Data: outcomeJSON(issue{Severity: "information", Code: "informational",
				Diagnostics: r.Note})}, nil
		}
		return &httpbody.HttpBody{ContentType: r.ContentType, Data: r.Body}, nil
	}
}

// exportStageHook, set by tests only (SetExportStageHook), runs at named
// stages of an export build ("selected", "files", "holds"), so that a test
// can erase a patient at a chosen moment.
var exportStageHook atomic.Pointer[func(stage string)]

// exportStage is research.Config.Stage.
func exportStage(stage string) {
	if f := exportStageHook.Load(); f != nil {
		(*f)(stage)
	}
}
