package access

import (
	"context"
	"errors"
	"fmt"

	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/vault"
)

// stored reads the live current version of typ/id as r sees it: its tree,
// or nil when there is none (never stored, deleted, or erased). Decisions
// read what is stored this way, never what a request claims.
func stored(ctx context.Context, r Reader, typ, id string) (map[string]any, error) {
	v, err := r.Read(ctx, typ, id)
	if errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrErased) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the stored %s: %w", typ, err)
	}
	if v.Deleted {
		return nil, nil
	}
	tree, err := fhir.DecodeObject(v.Body)
	if err != nil {
		return nil, fmt.Errorf("decode the stored %s: %w", typ, err)
	}
	return tree, nil
}

// refOf returns the reference of a Reference element of tree
// (managingOrganization, organization, practitioner...), or "".
func refOf(tree map[string]any, element string) string {
	m, _ := tree[element].(map[string]any)
	ref, _ := m["reference"].(string)
	return ref
}
