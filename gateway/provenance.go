package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Provenance of every stored version, derived from its log leaf: id = the
// leaf index, target = the version, recorded = its lastUpdated, activity =
// create, update or delete, the writing client (kept beside the version
// since schema v7 / v4; versions stored before name none) as the author and
// the gateway as custodian, and the leaf's commitment and receipt as
// extensions.

type provenance struct {
	ResourceType string          `json:"resourceType"`
	ID           string          `json:"id"`
	Extension    []fhirExtension `json:"extension"`
	Target       []fhirReference `json:"target"`
	Recorded     string          `json:"recorded"`
	Activity     *fhirConcept    `json:"activity,omitempty"`
	Agent        []provAgent     `json:"agent"`
}

type provAgent struct {
	Type *fhirConcept  `json:"type,omitempty"`
	Who  fhirReference `json:"who"`
}

var (
	dataOperation = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
	authorType    = fhirCoding{System: "http://terminology.hl7.org/CodeSystem/provenance-participant-type", Code: "author", Display: "Author"}
)

// renderProvenance renders the Provenance of the stored version r (read
// with its leaf). root is the server root of receipt URLs.
func renderProvenance(root string, r vault.Record) *provenance {
	index := uint64(r.Leaf.Seq - 1)
	op := "UPDATE"
	switch {
	case r.Deleted:
		op = "DELETE"
	case r.Version == 1:
		op = "CREATE"
	}
	p := &provenance{
		ResourceType: "Provenance", ID: strconv.FormatUint(index, 10),
		Extension: leafExtensions(root, index, "resource-version", r.Commitment),
		Target:    []fhirReference{{Reference: r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.Version, 10)}},
		Recorded:  r.LastUpdated.UTC().Format(fhir.InstantLayout),
		Activity:  &fhirConcept{Coding: []fhirCoding{{System: dataOperation, Code: op}}},
	}
	if r.Client != "" {
		p.Agent = append(p.Agent, provAgent{Type: &fhirConcept{Coding: []fhirCoding{authorType}},
			Who: fhirReference{Identifier: &fhirIdentifier{System: ClientSystem, Value: r.Client}}})
	}
	p.Agent = append(p.Agent, provAgent{Type: &fhirConcept{Coding: []fhirCoding{custodianType}}, Who: gatewayRef})
	return p
}

// isAuditor reports whether the caller holds AuditScope.
func isAuditor(ctx context.Context) (bool, error) {
	p, ok := principalFrom(ctx)
	if !ok {
		return false, auth.ErrNoToken
	}
	return p.Scopes.Has(AuditScope), nil
}

// readProvenance is GET Provenance/[n]: auditors may read any; others
// what reading the version itself would let them (scopes and consent).
func (s *service) readProvenance(ctx context.Context, id string) ([]byte, error) {
	notFound := failure(http.StatusNotFound, "not-found", "", "no such Provenance")
	seq, ok := leafID(id)
	if !ok {
		return nil, notFound
	}
	l, err := s.vault.Store().Leaf(ctx, seq)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("read leaf: %w", err)
	}
	typ, rid, vid, ok := versionRef(l.Ref)
	if l.Type != uint8(anchor.LeafResourceVersion) || !ok {
		return nil, notFound
	}
	auditor, err := isAuditor(ctx)
	if err != nil {
		return nil, err
	}
	if !auditor {
		if err := authorize(ctx, typ, auth.Read); err != nil {
			return nil, err
		}
		v, err := s.vault.VRead(ctx, typ, rid, vid)
		if err != nil {
			return nil, err
		}
		if _, err := s.allowRead(ctx, v); err != nil {
			return nil, err
		}
	}
	r, err := s.vault.Store().Version(ctx, typ, rid, vid)
	if err != nil {
		return nil, err
	}
	setResponse(ctx, http.StatusOK, "last-modified", r.LastUpdated.UTC().Format(http.TimeFormat))
	return json.Marshal(renderProvenance(s.apiRoot(ctx), r))
}

// searchProvenance is GET Provenance?target=Type/id[/_history/n]: the
// Provenance of each version of the target (newest first), or of one.
func (s *service) searchProvenance(ctx context.Context, params url.Values, strict bool) ([]byte, error) {
	var target string
	for k, vs := range params {
		switch k {
		case "target":
			if len(vs) != 1 || strings.Contains(vs[0], ",") {
				return nil, failure(http.StatusBadRequest, "not-supported", "", "Provenance search takes one target")
			}
			target = vs[0]
		case "_format", "_pretty", "_count":
		default:
			if strict {
				return nil, failure(http.StatusBadRequest, "not-supported", "", "Provenance search supports target only")
			}
		}
	}
	target = strings.TrimPrefix(target, s.base(ctx)+"/")
	typ, rest, _ := strings.Cut(target, "/")
	id, history, hasVersion := strings.Cut(rest, "/_history/")
	if target == "" || checkTypeID(typ, id) != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "", "Provenance search needs target=Type/id or Type/id/_history/n")
	}
	vid := int64(0)
	if hasVersion {
		n, err := strconv.ParseInt(history, 10, 64)
		if err != nil || n < 1 {
			return nil, failure(http.StatusBadRequest, "invalid", "", "Provenance search needs target=Type/id or Type/id/_history/n")
		}
		vid = n
	}
	auditor, err := isAuditor(ctx)
	if err != nil {
		return nil, err
	}
	store := s.vault.Store()
	var records []vault.Record
	if auditor {
		if records, err = store.History(ctx, typ, id); err != nil && !errors.Is(err, vault.ErrNotFound) {
			return nil, err
		}
	} else {
		if err := authorize(ctx, typ, auth.Read); err != nil {
			return nil, err
		}
		versions, err := s.vault.History(ctx, typ, id)
		if err != nil && !errors.Is(err, vault.ErrNotFound) {
			return nil, err
		}
		if len(versions) > 0 {
			if versions, err = s.allowHistory(ctx, versions); err != nil {
				return nil, err
			}
		}
		for _, v := range versions {
			r, err := store.Version(ctx, v.Type, v.ID, v.Version)
			if err != nil {
				return nil, err
			}
			records = append(records, r)
		}
	}
	root := s.apiRoot(ctx)
	var ids []string
	var page []json.RawMessage
	for _, r := range records {
		if vid != 0 && r.Version != vid {
			continue
		}
		body, err := json.Marshal(renderProvenance(root, r))
		if err != nil {
			return nil, err
		}
		ids, page = append(ids, strconv.FormatInt(r.Leaf.Seq-1, 10)), append(page, body)
	}
	setResponse(ctx, http.StatusOK)
	return derivedSet(s.base(ctx), "Provenance", params, ids, page, "")
}
