package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// logReader is what the log service needs of *anchor.Log.
type logReader interface {
	Receipt(ctx context.Context, index uint64) (anchor.Receipt, error)
	Consistency(ctx context.Context, from, to uint64) ([][]byte, error)
	Checkpoints(ctx context.Context, after uint64, limit int) ([]anchor.Checkpoint, error)
}

// logService implements fhiranchorv1.LogServiceServer.
type logService struct {
	fhiranchorv1.UnimplementedLogServiceServer
	log    logReader
	vault  *vault.Sealed
	access *access.Control // nil without policy
	names  *refNames
	key    string // verifier key of the log's signed checkpoints; "" if unsigned
}

// GetReceipt returns the receipt of one stored resource version; it tells
// whether the content has since been erased.
func (s *logService) GetReceipt(ctx context.Context, req *fhiranchorv1.GetReceiptRequest) (*httpbody.HttpBody, error) {
	r, err := s.record(ctx, req.GetType(), req.GetId(), req.GetVersionId())
	if err != nil {
		return nil, err
	}
	rc, err := s.log.Receipt(ctx, uint64(r.Leaf.Seq-1))
	if errors.Is(err, anchor.ErrNotFound) {
		// Acknowledged, not yet read into the log: pending, without a proof.
		rc, err = pendingReceipt(r.Leaf), nil
	}
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	rc.Erased = r.Erased
	return jsonBody(ctx, rc)
}

// pendingReceipt describes a queued leaf the log has not taken in yet.
func pendingReceipt(l vault.Leaf) anchor.Receipt {
	t := anchor.LeafType(l.Type)
	rc := anchor.Receipt{LeafIndex: uint64(l.Seq - 1), LeafType: t.String(), LeafTypeNumber: l.Type, Status: anchor.StatusPending}
	if len(l.Data) > 1 {
		rc.Commitment = l.Data[1:]
	}
	return rc
}

// GetLeafReceipt returns the receipt of any leaf. Leaves carry no PHI and
// no resource identity, so any authenticated client may ask.
func (s *logService) GetLeafReceipt(ctx context.Context, req *fhiranchorv1.GetLeafReceiptRequest) (*httpbody.HttpBody, error) {
	if _, ok := principalFrom(ctx); !ok {
		return nil, auth.ErrNoToken
	}
	rc, err := s.log.Receipt(ctx, req.GetLeafIndex())
	if errors.Is(err, anchor.ErrNotFound) {
		ls, lerr := s.vault.Store().Leaves(ctx, int64(req.GetLeafIndex()), 1)
		if lerr != nil {
			return nil, fmt.Errorf("receipt: %w", lerr)
		}
		if len(ls) == 0 || ls[0].Seq != int64(req.GetLeafIndex())+1 {
			return nil, failure(http.StatusNotFound, "not-found", "", "no such leaf")
		}
		rc, err = pendingReceipt(ls[0]), nil
	}
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	return jsonBody(ctx, rc)
}

// GetEvidence returns what the vault's owner hands a verifier:
// {"resource": <the version's canonical bytes>, "salt": "<hex>"}.
func (s *logService) GetEvidence(ctx context.Context, req *fhiranchorv1.GetEvidenceRequest) (*httpbody.HttpBody, error) {
	vid, err := strconv.ParseInt(req.GetVersionId(), 10, 64)
	if err != nil || vid < 1 {
		return nil, failure(http.StatusNotFound, "not-found", "", "no such version")
	}
	if err := checkTypeID(req.GetType(), req.GetId()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, req.GetType(), auth.Read); err != nil {
		return nil, err
	}
	v, err := s.vault.VRead(ctx, req.GetType(), req.GetId(), vid)
	if err != nil {
		return nil, err
	}
	if s.access != nil { // evidence is the version in clear: a read like any other
		if _, err := readVersion(ctx, s.access, v); err != nil {
			return nil, err
		}
	}
	// Written by hand so the resource is exactly the canonical bytes that
	// were committed to (encoding/json would re-indent and HTML-escape it).
	body := make([]byte, 0, len(v.Body)+100)
	body = append(body, `{"resource":`...)
	body = append(body, v.Body...)
	body = append(body, `,"salt":"`...)
	body = hex.AppendEncode(body, v.Salt)
	body = append(body, "\"}\n"...)
	setResponse(ctx, http.StatusOK)
	return &httpbody.HttpBody{ContentType: "application/json", Data: body}, nil
}

// ListCheckpoints lists every checkpoint with its signed note and its
// anchor.
func (s *logService) ListCheckpoints(ctx context.Context, _ *fhiranchorv1.ListCheckpointsRequest) (*httpbody.HttpBody, error) {
	var all []anchor.Checkpoint
	for after := uint64(0); ; {
		cps, err := s.log.Checkpoints(ctx, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("list checkpoints: %w", err)
		}
		all = append(all, cps...)
		if len(cps) < 1000 {
			break
		}
		after = cps[len(cps)-1].Size
	}
	// The tree size is the last checkpoint's as listed, not Log.Size: on a
	// gateway that does not anchor, Size lags the Store.
	size := uint64(0)
	if len(all) > 0 {
		size = all[len(all)-1].Size
	}
	if all == nil {
		all = []anchor.Checkpoint{}
	}
	return jsonBody(ctx, map[string]any{"treeSize": size, "checkpoints": all})
}

// GetLogKey returns the note verifier key of the log's signed checkpoints,
// one line of text/plain: a file `fhiranchor verify --log-key` reads as it
// is. It is public (a key, no PHI); a verifier should still have it from
// elsewhere too, since a server could hand out a key of its own.
func (s *logService) GetLogKey(ctx context.Context, _ *fhiranchorv1.GetLogKeyRequest) (*httpbody.HttpBody, error) {
	if s.key == "" {
		return nil, failure(http.StatusNotFound, "not-found", "", "the log does not sign its checkpoints")
	}
	setResponse(ctx, http.StatusOK)
	return &httpbody.HttpBody{ContentType: "text/plain; charset=utf-8", Data: []byte(s.key + "\n")}, nil
}

// signingKeyLabel is the blind-index label of the log's default signing key.
const signingKeyLabel = "checkpoint-signing/v1"

// DefaultSigningKey returns the note signer key of the log's checkpoints
// when none is configured: the Ed25519 key whose seed is the vault's keyed
// token of "checkpoint-signing/v1" (HMAC-SHA256 under a key HKDF derives
// from the master key), named origin. Every gateway sharing a master key
// signs with the same key, and it stays the same across restarts. It is a
// secret: never log it; log anchor.CheckpointVerifierKey of it.
func DefaultSigningKey(v *vault.Sealed, origin string) (string, error) {
	seed := v.Token(signingKeyLabel)
	defer clear(seed)
	skey, _, err := anchor.NewCheckpointKey(origin, seed)
	if err != nil {
		return "", fmt.Errorf("derive checkpoint signing key: %w", err)
	}
	return skey, nil
}

// GetConsistency proves that tree size To extends tree size From.
func (s *logService) GetConsistency(ctx context.Context, req *fhiranchorv1.GetConsistencyRequest) (*httpbody.HttpBody, error) {
	proof, err := s.log.Consistency(ctx, req.GetFrom(), req.GetTo())
	if err != nil {
		if errors.Is(err, anchor.ErrInvalidRange) || errors.Is(err, anchor.ErrNotFound) {
			return nil, failure(http.StatusBadRequest, "invalid", "", "from and to must be checkpoint sizes with from <= to")
		}
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	path := make([]anchor.Hex, len(proof))
	for i, p := range proof {
		path[i] = p
	}
	return jsonBody(ctx, map[string]any{"from": req.GetFrom(), "to": req.GetTo(), "proof": path})
}

// record finds the stored version a receipt is asked for, after checking
// the caller may read that type.
func (s *logService) record(ctx context.Context, typ, id, version string) (vault.Record, error) {
	vid, err := strconv.ParseInt(version, 10, 64)
	if err != nil || vid < 1 {
		return vault.Record{}, failure(http.StatusNotFound, "not-found", "", "no such version")
	}
	if err := checkTypeID(typ, id); err != nil {
		return vault.Record{}, err
	}
	if err := authorize(ctx, typ, auth.Read); err != nil {
		return vault.Record{}, err
	}
	r, err := s.vault.Store().Version(ctx, typ, id, vid)
	if err != nil {
		return vault.Record{}, err
	}
	return r, nil
}

func jsonBody(ctx context.Context, v any) (*httpbody.HttpBody, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render JSON: %w", err)
	}
	setResponse(ctx, http.StatusOK)
	return &httpbody.HttpBody{ContentType: "application/json", Data: append(b, '\n')}, nil
}

// LeafSource adapts the vault's leaf queue to what the log reads: leaf
// index = vault Seq - 1, so a leaf's position is fixed when it is
// acknowledged.
func LeafSource(s vault.Store) anchor.LeafSource {
	return func(ctx context.Context, after uint64, limit int) ([]anchor.Leaf, error) {
		ls, err := s.Leaves(ctx, int64(after), limit)
		if err != nil {
			return nil, err
		}
		out := make([]anchor.Leaf, len(ls))
		for i, l := range ls {
			out[i] = anchor.Leaf{Index: uint64(l.Seq - 1), Type: anchor.LeafType(l.Type), Data: l.Data}
		}
		return out, nil
	}
}
