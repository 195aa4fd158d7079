package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/vault"
)

// AuditFinding is one stored version or leaf whose evidence does not hold.
type AuditFinding struct {
	LeafIndex uint64 `json:"leafIndex"`
	Ref       string `json:"ref"` // e.g. "Patient/123/_history/2"; ids are opaque, never PHI
	Problem   string `json:"problem"`
}

// AuditReport is what Audit found.
type AuditReport struct {
	Versions    int            `json:"versions"`
	Erased      int            `json:"erased"`
	Records     int            `json:"records"`
	Leaves      int            `json:"leaves"`
	Checkpoints int            `json:"checkpointsChecked"`
	Findings    []AuditFinding `json:"findings"`
}

// Audit re-derives, for every stored version, the commitment from the
// decrypted canonical bytes and the salt, and checks it against the stored
// commitment and the leaf queued for it; it checks every record leaf
// (consent event, policy activation, access decision, erasure) against its
// record and salt the same way; then it recomputes the Merkle root
// of the vault's leaves at each given checkpoint size and compares it with
// the root that was anchored. Any tampering with a ciphertext, a salt, a
// commitment or a leaf in the vault shows up as a finding; decrypting needs
// the master key, so only the vault's owner can run it.
func Audit(ctx context.Context, v *vault.Sealed, anchoredRoots map[uint64][]byte) (AuditReport, error) {
	var rep AuditReport
	st := v.Store()
	const page = 1000
	for after := int64(0); ; {
		rs, err := st.Versions(ctx, after, page)
		if err != nil {
			return rep, fmt.Errorf("audit: %w", err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			rep.Versions++
			if p := auditVersion(ctx, v, r); p != "" {
				rep.Findings = append(rep.Findings, AuditFinding{LeafIndex: uint64(r.Leaf.Seq - 1), Ref: r.Leaf.Ref, Problem: p})
			}
			if r.Erased {
				rep.Erased++
			}
		}
		after = rs[len(rs)-1].Leaf.Seq
	}

	// Records (consent events, policy activations, access decisions,
	// erasures): each must still be what its leaf commits to.
	for before := int64(0); ; {
		ls, err := st.FindLeaves(ctx, vault.LeafFilter{Before: before, Limit: page})
		if err != nil {
			return rep, fmt.Errorf("audit: %w", err)
		}
		for _, l := range ls {
			rep.Records++
			t := anchor.LeafType(l.Type)
			if !bytes.Equal(anchor.LeafData(t, anchor.Commit(t, l.Salt, l.Record)), l.Data) {
				rep.Findings = append(rep.Findings, AuditFinding{LeafIndex: uint64(l.Seq - 1), Ref: l.Ref,
					Problem: "the record or its salt no longer matches its leaf"})
			}
		}
		if len(ls) < page {
			break
		}
		before = ls[len(ls)-1].Seq
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	tree := rf.NewEmptyRange(0)
	for after := int64(0); ; {
		ls, err := st.Leaves(ctx, after, page)
		if err != nil {
			return rep, fmt.Errorf("audit: %w", err)
		}
		if len(ls) == 0 {
			break
		}
		for _, l := range ls {
			if uint64(l.Seq) != tree.End()+1 {
				rep.Findings = append(rep.Findings, AuditFinding{LeafIndex: tree.End(), Ref: l.Ref, Problem: "the vault's leaf sequence has a gap"})
				return rep, nil
			}
			if err := tree.Append(rfc6962.DefaultHasher.HashLeaf(l.Data), nil); err != nil {
				return rep, fmt.Errorf("audit: %w", err)
			}
			rep.Leaves++
			if want, ok := anchoredRoots[tree.End()]; ok {
				rep.Checkpoints++
				got, err := tree.GetRootHash(nil)
				if err != nil {
					return rep, fmt.Errorf("audit: %w", err)
				}
				if !bytes.Equal(got, want) {
					rep.Findings = append(rep.Findings, AuditFinding{LeafIndex: tree.End() - 1, Ref: fmt.Sprintf("checkpoint/%d", tree.End()),
						Problem: "the vault's leaves no longer hash to the anchored root of this checkpoint"})
				}
			}
		}
		after = ls[len(ls)-1].Seq
	}
	if missing := len(anchoredRoots) - rep.Checkpoints; missing > 0 {
		rep.Findings = append(rep.Findings, AuditFinding{LeafIndex: tree.End(), Ref: "log",
			Problem: fmt.Sprintf("%d anchored checkpoints are larger than the vault's log", missing)})
	}
	return rep, nil
}

// auditVersion returns what is wrong with one stored version, or "".
func auditVersion(ctx context.Context, v *vault.Sealed, r vault.Record) string {
	if anchor.LeafType(r.Leaf.Type) != anchor.LeafResourceVersion {
		return "the version's leaf has the wrong type"
	}
	if !bytes.Equal(r.Leaf.Data, anchor.LeafData(anchor.LeafResourceVersion, r.Commitment)) {
		return "the queued leaf does not match the stored commitment"
	}
	if r.Erased {
		return ""
	}
	ver, err := v.Open(ctx, r)
	if errors.Is(err, vault.ErrErased) {
		return ""
	}
	if err != nil {
		return "the ciphertext does not open: it, its row or its data key was altered"
	}
	canonical, err := fhir.CanonicalJSON(ver.Body)
	if err != nil || !bytes.Equal(canonical, ver.Body) {
		return "the stored body is not in canonical form"
	}
	if !bytes.Equal(anchor.Commit(anchor.LeafResourceVersion, ver.Salt, ver.Body), r.Commitment) {
		return "the content and salt do not hash to the stored commitment"
	}
	return ""
}
