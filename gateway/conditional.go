package gateway

import (
	"context"
	"net/http"
	"net/url"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// ConditionalUpdate stores a resource under the one resource its criteria
// match (PUT /{type}?criteria): none creates it (under the body's id, or a
// new one), one updates it, several are a 412. It takes the writer's
// conditional path, the one transaction Bundles use, so only _id and
// identifier are supported criteria.
func (s *service) ConditionalUpdate(ctx context.Context, req *fhiranchorv1.ConditionalUpdateRequest) (*httpbody.HttpBody, error) {
	if err := checkType(req.GetType()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, req.GetType(), auth.Update); err != nil {
		return nil, err
	}
	cond, err := parseCriteria(req.GetCriteria())
	if err != nil {
		return nil, err
	}
	res, err := s.parseResource(req.GetBody(), req.GetType())
	if err != nil {
		return nil, err
	}
	o := &op{entry: -1, prefix: req.GetType(), method: "PUT", typ: req.GetType(), res: res, cond: cond,
		ifMatch: header(ctx, "if-match")}
	if err := s.write(ctx, func(tx *vault.SealedTx) (*fhirError, error) {
		o.id = "" // resolved again if the transaction is retried
		return s.writer.apply(ctx, tx, []*op{o}, true)
	}); err != nil {
		return nil, err
	}
	return s.writeResponse(ctx, o)
}

// ConditionalDelete deletes the one resource its criteria match
// (DELETE /{type}?criteria): none changes nothing (204), several are a 412
// (conditionalDelete "single").
func (s *service) ConditionalDelete(ctx context.Context, req *fhiranchorv1.ConditionalDeleteRequest) (*httpbody.HttpBody, error) {
	if err := checkType(req.GetType()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, req.GetType(), auth.Delete); err != nil {
		return nil, err
	}
	cond, err := parseCriteria(req.GetCriteria())
	if err != nil {
		return nil, err
	}
	o := &op{entry: -1, prefix: req.GetType(), method: "DELETE", typ: req.GetType(), cond: cond,
		ifMatch: header(ctx, "if-match")}
	if err := s.write(ctx, func(tx *vault.SealedTx) (*fhirError, error) {
		o.id = ""
		return s.writer.apply(ctx, tx, []*op{o}, true)
	}); err != nil {
		return nil, err
	}
	return s.deleteResponse(ctx, o)
}

// parseCriteria reads conditional criteria sent as a query string. The
// writer refuses parameters it does not index.
func parseCriteria(criteria string) (url.Values, error) {
	q, err := url.ParseQuery(criteria)
	if err != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "", "malformed search criteria")
	}
	if len(q) == 0 {
		return nil, failure(http.StatusBadRequest, "required", "", "a conditional update or delete needs search criteria, such as identifier=system|value")
	}
	return q, nil
}
