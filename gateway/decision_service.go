package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// decisionService lists the decision log and consent events to auditors,
// and to a patient their own.
type decisionService struct {
	fhiranchorv1.UnimplementedDecisionServiceServer
	vault *vault.Sealed
	names *refNames
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Listed records are {"leafIndex", "receipt", "record", "salt"}: the exact
// committed bytes, the salt, and where the receipt is. Saved to a file, one
// is evidence for `fhiranchor verify --evidence`. Records name patients and
// resources by recordRef; a listing adds "resolved", the references of those
// that still exist, for the caller allowed to read the record.

// ListDecisions lists access decisions, newest first.
func (s *decisionService) ListDecisions(ctx context.Context, req *fhiranchorv1.ListDecisionsRequest) (*httpbody.HttpBody, error) {
	patient, err := normPatient(req.GetPatient())
	if err != nil {
		return nil, err
	}
	if patient, err = recordsScope(ctx, patient); err != nil {
		return nil, err
	}
	return s.list(ctx, vault.LeafFilter{Type: uint8(anchor.LeafAccessDecision), Subject: access.Ref(s.vault, patient), Actor: req.GetClient()},
		req.GetPageSize(), req.GetPageToken(), "decisions")
}

// GetDecision returns one decision record.
func (s *decisionService) GetDecision(ctx context.Context, req *fhiranchorv1.GetDecisionRequest) (*httpbody.HttpBody, error) {
	l, err := s.vault.Store().Leaf(ctx, int64(req.GetLeafIndex())+1)
	if errors.Is(err, vault.ErrNotFound) || (err == nil && l.Type != uint8(anchor.LeafAccessDecision)) {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such decision")
	}
	if err != nil {
		return nil, fmt.Errorf("read decision: %w", err)
	}
	if err := mayReadRecord(ctx, s.vault, l); err != nil {
		return nil, err
	}
	return recordBody(ctx, s.names, l)
}

// mayReadRecord admits auditors to any record, and a patient to records
// about them (not to those about no patient, such as policy activations).
func mayReadRecord(ctx context.Context, k access.Tokener, l vault.Leaf) error {
	p, ok := principalFrom(ctx)
	if !ok {
		return auth.ErrNoToken
	}
	if p.Scopes.Has(AuditScope) {
		return nil
	}
	if l.Subject != "" && p.Scopes.Has(PatientSelfScope) && strings.HasPrefix(p.FHIRUser, "Patient/") &&
		access.Ref(k, p.FHIRUser) == l.Subject {
		return nil
	}
	if l.Subject == "" {
		return failure(http.StatusForbidden, "forbidden", "", "this record is for auditors")
	}
	return failure(http.StatusForbidden, "forbidden", "", "these records are for auditors and for the patient they are about")
}

// ListConsentEvents lists a patient's consent events, newest first.
func (s *decisionService) ListConsentEvents(ctx context.Context, req *fhiranchorv1.ListConsentEventsRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID("Patient", req.GetPatientId()); err != nil {
		return nil, err
	}
	patient, err := recordsScope(ctx, "Patient/"+req.GetPatientId())
	if err != nil {
		return nil, err
	}
	return s.list(ctx, vault.LeafFilter{Type: uint8(anchor.LeafConsentEvent), Subject: access.Ref(s.vault, patient)},
		req.GetPageSize(), req.GetPageToken(), "events")
}

func (s *decisionService) list(ctx context.Context, f vault.LeafFilter, size int32, token, key string) (*httpbody.HttpBody, error) {
	f.Limit = defaultPageSize
	if size > 0 {
		f.Limit = min(int(size), maxPageSize)
	}
	if token != "" {
		before, err := strconv.ParseInt(token, 10, 64)
		if err != nil || before < 1 {
			return nil, failure(http.StatusBadRequest, "invalid", "page_token", "malformed page token")
		}
		f.Before = before
	}
	ls, err := s.vault.Store().FindLeaves(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	// Written by hand so each record is exactly the committed bytes.
	resolved, err := s.names.resolve(ctx, recordRefs(ls...))
	if err != nil {
		return nil, err
	}
	body := []byte(`{"` + key + `":[`)
	for i, l := range ls {
		if i > 0 {
			body = append(body, ',')
		}
		body = appendEntry(body, l, resolved)
	}
	body = append(body, ']')
	if len(ls) == f.Limit {
		body = append(body, `,"nextPageToken":"`+strconv.FormatInt(ls[len(ls)-1].Seq, 10)+`"`...)
	}
	body = append(body, "}\n"...)
	setResponse(ctx, http.StatusOK)
	return &httpbody.HttpBody{ContentType: "application/json", Data: body}, nil
}

// recordBody renders one record leaf as its evidence document.
func recordBody(ctx context.Context, names *refNames, l vault.Leaf) (*httpbody.HttpBody, error) {
	resolved, err := names.resolve(ctx, recordRefs(l))
	if err != nil {
		return nil, err
	}
	setResponse(ctx, http.StatusOK)
	return &httpbody.HttpBody{ContentType: "application/json", Data: append(appendEntry(nil, l, resolved), '\n')}, nil
}

// appendEntry writes {"leafIndex", "receipt", "record", "salt"} with the
// record byte for byte as committed (encoding/json would re-indent it, and
// the commitment is over those exact bytes), and "resolved": the entries of
// resolved that the record names.
func appendEntry(b []byte, l vault.Leaf, resolved map[string]string) []byte {
	idx := strconv.FormatInt(l.Seq-1, 10)
	b = append(b, `{"leafIndex":`+idx+`,"receipt":"/v1/receipts/leaves/`+idx+`","record":`...)
	b = append(b, l.Record...)
	b = append(b, `,"salt":"`...)
	b = hex.AppendEncode(b, l.Salt)
	b = append(b, '"')
	mine := map[string]string{}
	for _, ref := range recordRefs(l) {
		if name, ok := resolved[ref]; ok {
			mine[ref] = name
		}
	}
	if len(mine) > 0 {
		enc, _ := json.Marshal(mine) // a map of strings cannot fail
		b = append(b, `,"resolved":`...)
		b = append(b, enc...)
	}
	return append(b, '}')
}

// recordRefs returns the recordRefs the records of ls name, as resources
// ("Type/tok-…", without a version).
func recordRefs(ls ...vault.Leaf) []string {
	var out []string
	for _, l := range ls {
		var rec struct {
			Patient  string `json:"patient"`
			Actor    string `json:"actor"`
			Resource string `json:"resource"`
			Consent  string `json:"consent"`
			Erased   string `json:"erased"`
			BasedOn  []struct {
				ID string `json:"id"`
			} `json:"basedOn"`
		}
		if json.Unmarshal(l.Record, &rec) != nil {
			continue
		}
		for _, c := range rec.BasedOn {
			if strings.HasPrefix(c.ID, "tok-") {
				out = append(out, "Consent/"+c.ID)
			}
		}
		for _, r := range []string{rec.Patient, rec.Actor, rec.Resource, rec.Consent, rec.Erased} {
			if typ, rest, ok := strings.Cut(r, "/"); ok && strings.HasPrefix(rest, "tok-") {
				tok, _, _ := strings.Cut(rest, "/")
				out = append(out, typ+"/"+tok)
			}
		}
	}
	return out
}

// recordsScope decides whose records the caller may list: an auditor any
// patient's (or all, for ""), a patient only their own, whatever they asked.
func recordsScope(ctx context.Context, patient string) (string, error) {
	p, ok := principalFrom(ctx)
	if !ok {
		return "", auth.ErrNoToken
	}
	if p.Scopes.Has(AuditScope) {
		return patient, nil
	}
	if p.Scopes.Has(PatientSelfScope) && strings.HasPrefix(p.FHIRUser, "Patient/") {
		if patient == "" || patient == p.FHIRUser {
			return p.FHIRUser, nil
		}
	}
	return "", failure(http.StatusForbidden, "forbidden", "", "these records are for auditors and for the patient they are about")
}

func normPatient(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	id := strings.TrimPrefix(p, "Patient/")
	if !idPattern.MatchString(id) {
		return "", failure(http.StatusBadRequest, "invalid", "patient", "patient must be Patient/<id> or <id>")
	}
	return "Patient/" + id, nil
}

// GetLeafEvidence returns the record and salt of a record leaf (consent
// event, policy activation, access decision, erasure), for its receipt's
// content check. Auditors may read any; a patient those about them.
func (s *logService) GetLeafEvidence(ctx context.Context, req *fhiranchorv1.GetLeafEvidenceRequest) (*httpbody.HttpBody, error) {
	l, err := s.vault.Store().Leaf(ctx, int64(req.GetLeafIndex())+1)
	if errors.Is(err, vault.ErrNotFound) || (err == nil && len(l.Record) == 0) {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such record leaf")
	}
	if err != nil {
		return nil, fmt.Errorf("read leaf: %w", err)
	}
	if err := mayReadRecord(ctx, s.vault, l); err != nil {
		return nil, err
	}
	return recordBody(ctx, s.names, l)
}
