package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/research"
	"github.com/fhiranchor/fhiranchor/vault"
)

// AdminScope is the scope of operator actions such as erasing a patient.
const AdminScope = "fhiranchor/admin"

// adminService implements fhiranchorv1.AdminServiceServer.
type adminService struct {
	fhiranchorv1.UnimplementedAdminServiceServer
	vault *vault.Sealed
	now   func() time.Time
	// exports are withdrawn when they hold the erased patient; nil without
	// policy (no exports here; other gateways follow the erasure leaf).
	exports *research.Exports
	log     *slog.Logger
}

// erasure is what ErasePatient answers: the erasure's own leaf, and the
// record and salt its commitment was made from, so the operator can prove
// later what was erased and when. None of it is PHI.
type erasure struct {
	Compartment    string          `json:"compartment"` // as records name it: "Patient/tok-…"
	VersionsErased int64           `json:"versionsErased"`
	LeafIndex      uint64          `json:"leafIndex"`
	Receipt        string          `json:"receipt"`
	Record         json.RawMessage `json:"record"`
	Salt           string          `json:"salt"`
}

// ErasePatient crypto-shreds a patient compartment and queues an erasure
// leaf in the same transaction, then withdraws the exports holding the
// patient from this gateway's export directory. Every other gateway reads
// the leaf before it serves an export, so the erasure reaches exports on all
// of them.
func (a *adminService) ErasePatient(ctx context.Context, req *fhiranchorv1.ErasePatientRequest) (*httpbody.HttpBody, error) {
	if err := requireScope(ctx, AdminScope); err != nil {
		return nil, err
	}
	if err := checkTypeID("Patient", req.GetId()); err != nil {
		return nil, err
	}
	compartment := "Patient/" + req.GetId()
	at := access.Now(a.now)
	var out erasure
	err := a.vault.Update(ctx, func(tx *vault.SealedTx) error {
		n, err := tx.Erase(ctx, compartment)
		if errors.Is(err, vault.ErrNotFound) {
			return failure(http.StatusNotFound, "not-found", "", "the vault holds nothing sealed for this patient")
		}
		if err != nil {
			return fmt.Errorf("erase: %w", err)
		}
		subject := access.Ref(tx, compartment)
		record, err := json.Marshal(access.Erasure{Kind: access.KindErasure, Erased: subject,
			ErasedAt: at.Format(fhir.InstantLayout), Versions: n, Client: clientOf(ctx)})
		if err != nil {
			return fmt.Errorf("encode erasure record: %w", err)
		}
		// The record and salt stay beside the leaf too, so the erasure can
		// be proven later without the operator's copy.
		idx, salt, err := access.Add(ctx, tx, access.KindErasure, "erasure/"+subject, subject, clientOf(ctx), at, json.RawMessage(record))
		if err != nil {
			return err
		}
		seq := int64(idx) + 1
		out = erasure{Compartment: subject, VersionsErased: n, LeafIndex: uint64(seq - 1),
			Receipt: "/v1/receipts/leaves/" + strconv.FormatInt(seq-1, 10), Record: record, Salt: hex.EncodeToString(salt)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if a.exports != nil {
		// The erasure stands even if this fails: serving an export follows
		// the erasure leaves again, and refuses while it cannot.
		if _, err := a.exports.FollowErasures(ctx); err != nil {
			a.log.ErrorContext(ctx, "erasure could not withdraw exports yet", slog.String("err", err.Error()))
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("render erasure: %w", err)
	}
	setResponse(ctx, http.StatusOK)
	return &httpbody.HttpBody{ContentType: "application/json", Data: body}, nil
}

// requireScope checks a non-resource scope.
func requireScope(ctx context.Context, scope string) error {
	p, ok := principalFrom(ctx)
	if !ok {
		return auth.ErrNoToken
	}
	if !p.Scopes.Has(scope) {
		return failure(http.StatusForbidden, "forbidden", "", "this operation needs the "+scope+" scope")
	}
	return nil
}
