package access

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Write is one resource a request writes, as the decision needs it.
type Write struct {
	// Patient is the compartment the new version belongs to ("Patient/<id>"),
	// or "" for none; for a deletion, the deleted version's compartment.
	Patient string
	// Stored is the compartment of the version it replaces, or "": a write
	// that moves a resource out of a patient's compartment writes for that
	// patient too.
	Stored string
	Type   string
	ID     string
	// Tree is the new content, nil for a deletion.
	Tree map[string]any
}

// WriteVerdict is the verdict on the writes of one request for one patient.
type WriteVerdict struct {
	Patient string
	// Consent says the verdict covers the patient's Consent writes, which
	// are decided apart (see Writes).
	Consent bool
	// Resource is set instead of Patient for the verdict on one write of an
	// affiliation ("PractitionerRole/<id>", "Organization/<id>").
	Resource string
	Verdict
}

// Refused reports whether any verdict denies.
func Refused(vs []WriteVerdict) bool {
	for _, v := range vs {
		if v.Effect != Allowed {
			return true
		}
	}
	return false
}

// Writes decides, once per patient, whether caller may write ws for that
// patient, on stored state, and records the decisions in tx. It never edits
// its input: the caller applies the verdicts (see VerdictFor).
//
// A write for a patient is decided against the stored Patient's
// managingOrganization, not the incoming one, and a write that changes it
// is decided for the old and the new organization: both must allow. A
// patient not stored yet is decided against the organization the request
// gives it.
//
// Consent resources are not subject to the patient's consents: a patient's
// new or revoked directive must be recordable whatever the old one says (an
// expired opt-in would otherwise lock the patient's consent state forever).
// They are still bound to the patient's managing organization: a client
// bound to another organization may not write the directive that decides
// who reads the patient's data.
//
// Affiliations are stored state decisions read (a PractitionerRole's
// organization binds its practitioners; see Control.Decide), so a client
// bound to an organization may change only its own: a PractitionerRole
// whose stored and new organization are both its organization, and its
// own Organization resource. Otherwise it could move a practitioner out of
// an organization a consent denies, or into one a consent grants. Clients
// bound to no organization (the system integrations) are not constrained.
//
// With atomic set (a transaction), when any patient is refused, only the
// refusals are recorded: the caller then writes nothing else, and the
// transaction commits the refusals alone. Otherwise every decision is
// recorded.
func (c *Control) Writes(ctx context.Context, tx *vault.SealedTx, caller Caller, ws []Write, atomic bool, at time.Time) ([]WriteVerdict, error) {
	type group struct {
		patient string
		consent bool
		writes  []Write
	}
	var groups []*group
	index := map[string]*group{}
	add := func(patient string, consent bool, w Write) {
		key := fmt.Sprint(consent, patient)
		g := index[key]
		if g == nil {
			g = &group{patient: patient, consent: consent}
			index[key] = g
			groups = append(groups, g)
		}
		g.writes = append(g.writes, w)
	}
	for _, w := range ws {
		consent := w.Type == "Consent"
		if w.Patient != "" {
			add(w.Patient, consent, w)
		}
		if w.Stored != "" && w.Stored != w.Patient {
			add(w.Stored, consent, w)
		}
	}
	type decided struct {
		in  policy.Input
		out Outcome
	}
	verdicts := make([]WriteVerdict, 0, len(groups))
	all := make([][]decided, 0, len(groups))
	deciding := make([]int, 0, len(groups)) // per group, the decision its verdict stands on
	for _, g := range groups {
		orgs, err := organizations(ctx, tx, g.patient, g.writes)
		if err != nil {
			return nil, err
		}
		var ds []decided
		pick := 0
		for _, org := range orgs {
			in := caller.Input("write", g.patient, policy.ResourceRef{}, at)
			in.PatientOrganization = org
			var out Outcome
			if g.consent {
				out = c.directive(in)
			} else if out, err = c.Decide(ctx, tx, in); err != nil {
				return nil, err
			}
			if !out.Allow && ds != nil && ds[pick].out.Allow {
				pick = len(ds)
			}
			ds = append(ds, decided{in, out})
		}
		v := WriteVerdict{Patient: g.patient, Consent: g.consent, Verdict: Verdict{Effect: Allowed, Outcome: ds[pick].out}}
		if !ds[pick].out.Allow {
			v.Effect = Denied
		}
		verdicts = append(verdicts, v)
		all = append(all, ds)
		deciding = append(deciding, pick)
	}
	for _, w := range ws {
		if caller.Organization == "" || !affiliation(w.Type) {
			continue
		}
		in := caller.Input("write", "", policy.ResourceRef{Type: w.Type, ID: w.ID, Reference: w.Type + "/" + w.ID}, at)
		out, err := c.affiliationWrite(ctx, tx, caller, w)
		if err != nil {
			return nil, err
		}
		v := WriteVerdict{Resource: w.Type + "/" + w.ID, Verdict: Verdict{Effect: Allowed, Outcome: out}}
		if !out.Allow {
			v.Effect = Denied
		}
		verdicts = append(verdicts, v)
		all = append(all, []decided{{in, out}})
		deciding = append(deciding, 0)
	}
	refused := atomic && Refused(verdicts)
	for i := range verdicts {
		for j, d := range all[i] {
			if refused && d.out.Allow {
				continue
			}
			idx, err := c.Record(ctx, tx, d.in, d.out, verdicts[i].Resource)
			if err != nil {
				return nil, err
			}
			if j == deciding[i] {
				verdicts[i].Leaf, verdicts[i].Recorded = idx, true
			}
		}
	}
	return verdicts, nil
}

// VerdictFor returns the verdict that governs a write: the denying one of
// its patients' verdicts, if any.
func VerdictFor(vs []WriteVerdict, w Write) (WriteVerdict, bool) {
	var found WriteVerdict
	ok := false
	for _, v := range vs {
		if v.Resource != "" {
			if v.Resource != w.Type+"/"+w.ID {
				continue
			}
		} else if v.Consent != (w.Type == "Consent") || (v.Patient != w.Patient && v.Patient != w.Stored) {
			continue
		}
		if !ok || (found.Effect == Allowed && v.Effect != Allowed) {
			found, ok = v, true
		}
	}
	return found, ok
}

// directive decides a Consent write: only the managing-organization binding
// applies (see Writes). A client bound to an organization may write the
// consent directives of that organization's patients and of patients with
// no managing organization.
func (c *Control) directive(in policy.Input) Outcome {
	act := c.Active()
	out := Outcome{PolicyVersion: act.Version}
	out.PolicyRevision = act.Revision
	if in.Actor.Organization == "" || in.PatientOrganization == "" || in.Actor.Organization == in.PatientOrganization {
		out.Allow = true
		out.Reasons = []string{"consent directive: written for the patient's managing organization"}
		return out
	}
	out.Reasons = []string{"write: client does not act for the patient's managing organization"}
	return out
}

// organizations returns the managing organizations a write for patient is
// decided against: the stored Patient's; and, when the request writes the
// Patient with another one (or creates it), that one too. A patient with
// none is decided once, against "".
func organizations(ctx context.Context, tx *vault.SealedTx, patient string, ws []Write) ([]string, error) {
	id := strings.TrimPrefix(patient, "Patient/")
	stored, exists, err := storedOrganization(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	var orgs []string
	if exists {
		orgs = append(orgs, stored)
	}
	for _, w := range ws {
		if w.Type == "Patient" && w.ID == id && w.Tree != nil {
			if next := refOf(w.Tree, "managingOrganization"); !exists || next != stored {
				orgs = append(orgs, next)
			}
		}
	}
	if len(orgs) == 0 {
		orgs = []string{""}
	}
	return orgs, nil
}

// storedOrganization reads the stored Patient's managingOrganization, and
// whether there is a stored Patient.
func storedOrganization(ctx context.Context, tx *vault.SealedTx, id string) (string, bool, error) {
	patient, err := stored(ctx, tx, "Patient", id)
	if err != nil || patient == nil {
		return "", false, err
	}
	return refOf(patient, "managingOrganization"), true, nil
}

// affiliation reports whether resources of typ say who acts for which
// organization.
func affiliation(typ string) bool { return typ == "PractitionerRole" || typ == "Organization" }

// affiliationWrite decides a write of an affiliation by a client bound to
// an organization (see Writes).
func (c *Control) affiliationWrite(ctx context.Context, tx *vault.SealedTx, caller Caller, w Write) (Outcome, error) {
	act := c.Active()
	out := Outcome{PolicyVersion: act.Version}
	out.PolicyRevision = act.Revision
	own := true
	switch w.Type {
	case "Organization":
		own = "Organization/"+w.ID == caller.Organization
	case "PractitionerRole":
		role, err := stored(ctx, tx, "PractitionerRole", w.ID)
		if err != nil {
			return Outcome{}, err
		}
		if role != nil {
			own = refOf(role, "organization") == caller.Organization
		}
		if w.Tree != nil {
			own = own && refOf(w.Tree, "organization") == caller.Organization
		}
	}
	if !own {
		out.Reasons = []string{"write: client may change the affiliations of its own organization only"}
		return out, nil
	}
	out.Allow = true
	out.Reasons = []string{"affiliation: written by its own organization"}
	return out, nil
}
