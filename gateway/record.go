package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/vault"
)

// addRecord queues a leaf of type t that commits to rec: a consent event, a
// policy activation, an access decision or an erasure. rec is marshalled to
// JSON once; those exact bytes and their salt are kept beside the leaf, so
// the record can be handed to a verifier with its receipt. rec MUST hold
// opaque ids only (resource references, client ids, codes, hashes), never
// PHI: the record is listed to auditors and patients. subject is the
// "Patient/<id>" the record is about, or ""; actor is the client id.
// It returns the leaf's index in the log.
func addRecord(ctx context.Context, tx *vault.SealedTx, t anchor.LeafType, ref, subject, actor string, at time.Time, rec any) (uint64, []byte, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return 0, nil, fmt.Errorf("encode %s record: %w", t, err)
	}
	salt, err := anchor.NewSalt()
	if err != nil {
		return 0, nil, err
	}
	commitment := anchor.Commit(t, salt, body)
	seq, err := tx.AddLeaf(ctx, vault.Leaf{
		Type: uint8(t), Data: anchor.LeafData(t, commitment), Ref: ref,
		Record: body, Salt: salt, Subject: subject, Actor: actor, Time: at,
	})
	if err != nil {
		return 0, nil, fmt.Errorf("queue %s leaf: %w", t, err)
	}
	return uint64(seq - 1), salt, nil
}

// clientOf returns the authenticated client id, or "".
func clientOf(ctx context.Context) string {
	if p, ok := principalFrom(ctx); ok {
		return p.ClientID
	}
	return ""
}

// microsNow is the record time: UTC, at the microsecond precision a Store keeps.
func microsNow(now func() time.Time) time.Time {
	return now().UTC().Truncate(time.Microsecond)
}
