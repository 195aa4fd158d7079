package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/gateway/auth"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// jsonPatchType is the media type of a JSON Patch document (RFC 6902).
const jsonPatchType = "application/json-patch+json"

// Patch applies a JSON Patch to the current version of a resource
// (PATCH /{type}/{id}) and stores the result as an update would: the result
// is validated like a PUT body, and stored through the writer, so consent
// decisions, research copies and anchoring apply to it as to any version.
//
// The answers follow RFC 5789 section 2.2: a malformed patch document is a
// 400, a patch that does not apply to the current version (a failed test,
// a path that is not there) a 409, a result that is not a valid resource of
// the same type and id a 422. FHIRPath Patch is not supported (415).
//
// Patching reads the current version, so it needs the read scope besides
// update, and the patient's consent to the read is decided (and recorded)
// first, as for a read.
func (s *service) Patch(ctx context.Context, req *fhiranchorv1.PatchRequest) (*httpbody.HttpBody, error) {
	if err := checkTypeID(req.GetType(), req.GetId()); err != nil {
		return nil, err
	}
	if err := authorize(ctx, req.GetType(), auth.Update); err != nil {
		return nil, err
	}
	if err := authorize(ctx, req.GetType(), auth.Read); err != nil {
		return nil, err
	}
	if mt, _, err := mime.ParseMediaType(req.GetBody().GetContentType()); err != nil || mt != jsonPatchType {
		return nil, failure(http.StatusUnsupportedMediaType, "not-supported", "",
			"send a JSON Patch: Content-Type application/json-patch+json (FHIRPath Patch is not supported)")
	}
	patch, fe := decodePatch(req.GetBody().GetData())
	if fe != nil {
		return nil, fe
	}
	// The read the patch builds on, decided before the write transaction
	// (a read decision is recorded in a transaction of its own).
	cur, err := s.vault.Read(ctx, req.GetType(), req.GetId())
	if err != nil {
		return nil, err
	}
	if cur.Deleted {
		return nil, failure(http.StatusGone, "deleted", "", "the resource was deleted")
	}
	if ifMatch := header(ctx, "if-match"); ifMatch != "" {
		want, ok := parseETag(ifMatch)
		if !ok {
			return nil, failure(http.StatusBadRequest, "invalid", "", "If-Match must be an ETag such as W/\"3\"")
		}
		if want != cur.Version {
			return nil, failure(http.StatusPreconditionFailed, "conflict", "", "the resource is not at the version If-Match names")
		}
	}
	if _, err := s.allowRead(ctx, cur); err != nil {
		return nil, err
	}
	patched, fe := applyPatch(patch, cur.Body)
	if fe != nil {
		return nil, fe
	}
	res, err := s.parser.Parse(patched)
	if err != nil {
		fe := asFHIRError(ctx, err)
		fe.status = http.StatusUnprocessableEntity
		return nil, fe
	}
	switch {
	case res.Type != req.GetType():
		return nil, failure(http.StatusUnprocessableEntity, "invalid", req.GetType()+".resourceType", "the patch must not change the resource type")
	case res.ID() != req.GetId():
		return nil, failure(http.StatusUnprocessableEntity, "invalid", req.GetType()+".id", "the patch must not change the resource id")
	}
	// Stored only over the version patched: a write in between is a
	// conflict the client retries, never a lost update.
	o := &op{entry: -1, prefix: req.GetType(), method: "PUT", typ: req.GetType(), id: req.GetId(), res: res,
		ifMatch: `W/"` + strconv.FormatInt(cur.Version, 10) + `"`}
	if err := s.write(ctx, func(tx *vault.SealedTx) (*fhirError, error) {
		return s.writer.apply(ctx, tx, []*op{o}, true)
	}); err != nil {
		var fe *fhirError
		if errors.As(err, &fe) && fe.status == http.StatusPreconditionFailed && header(ctx, "if-match") == "" {
			return nil, failure(http.StatusConflict, "conflict", "", "a concurrent write changed this resource; retry")
		}
		return nil, err
	}
	return s.writeResponse(ctx, o)
}

// patchOps are the operations of RFC 6902 and the members each needs
// besides op and path.
var patchOps = map[string][]string{
	"add": {"value"}, "remove": nil, "replace": {"value"},
	"move": {"from"}, "copy": {"from"}, "test": {"value"},
}

// decodePatch checks that data is a well-formed JSON Patch document: an
// array of operations, each a known op with a path (and a value or from
// where the op needs one). Its answers name the operation's index only,
// never what the client wrote.
func decodePatch(data []byte) (jsonpatch.Patch, *fhirError) {
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, failure(http.StatusBadRequest, "structure", "", "the body is not a JSON Patch document: a JSON array of operations")
	}
	if len(raw) == 0 {
		return nil, failure(http.StatusBadRequest, "required", "", "the JSON Patch document has no operations")
	}
	for i, o := range raw {
		bad := func(what string) *fhirError {
			return failure(http.StatusBadRequest, "invalid", "", "JSON Patch operation "+strconv.Itoa(i)+": "+what)
		}
		var name string
		if err := json.Unmarshal(o["op"], &name); err != nil {
			return nil, bad("op is missing or not a string")
		}
		needs, ok := patchOps[name]
		if !ok {
			return nil, bad("op is not one of add, remove, replace, move, copy, test")
		}
		var path string
		if err := json.Unmarshal(o["path"], &path); err != nil || !jsonPointer(path) {
			return nil, bad("path is missing or not a JSON Pointer")
		}
		for _, member := range needs {
			v, ok := o[member]
			if !ok {
				return nil, bad(member + " is missing")
			}
			if member == "from" {
				var from string
				if err := json.Unmarshal(v, &from); err != nil || !jsonPointer(from) {
					return nil, bad("from is not a JSON Pointer")
				}
			}
		}
	}
	patch, err := jsonpatch.DecodePatch(data)
	if err != nil {
		return nil, failure(http.StatusBadRequest, "structure", "", "the body is not a JSON Patch document")
	}
	return patch, nil
}

// jsonPointer reports whether p is a JSON Pointer (RFC 6901) as a patch
// path: empty or starting with "/", with "~" only in the escapes ~0 and ~1.
func jsonPointer(p string) bool {
	if p != "" && p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 == len(p) || (p[i+1] != '0' && p[i+1] != '1')) {
			return false
		}
	}
	return true
}

// applyPatch applies patch to the stored body. A patch that does not apply
// (a test that fails, a path that is not there) is a 409: the document is
// well-formed, the resource's state is not what it expects.
func applyPatch(patch jsonpatch.Patch, body []byte) ([]byte, *fhirError) {
	opts := jsonpatch.NewApplyOptions()
	opts.SupportNegativeIndices = false // RFC 6902 has none
	opts.AccumulatedCopySizeLimit = int64(len(body)) + 1<<20
	out, err := patch.ApplyWithOptions(body, opts)
	if err != nil {
		if errors.Is(err, jsonpatch.ErrTestFailed) {
			return nil, failure(http.StatusConflict, "conflict", "", "a test operation of the patch failed")
		}
		return nil, failure(http.StatusConflict, "conflict", "", "the patch does not apply to the current version of the resource")
	}
	if !bytes.HasPrefix(bytes.TrimSpace(out), []byte("{")) {
		return nil, failure(http.StatusUnprocessableEntity, "invalid", "", "the patch does not leave a resource")
	}
	return out, nil
}
