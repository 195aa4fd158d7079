package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/policy"
	fhiranchorv1 "github.com/fhiranchor/fhiranchor/proto/fhiranchor/v1"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Researcher scopes (i2b2's privacy tiers, in two): aggregate answers only,
// or row-level de-identified export.
const (
	CohortQueryScope  = "fhiranchor/cohort.query"
	CohortExportScope = "fhiranchor/cohort.export"
)

// Research actions, as the policy names them.
const (
	actionResearchQuery = "research-query"
	actionExport        = "export"
)

type cohortService struct {
	fhiranchorv1.UnimplementedCohortServiceServer
	r       *research
	exports *exports
}

// CountCohort answers POST /v1/cohorts:count.
func (s *cohortService) CountCohort(ctx context.Context, body *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	return s.r.query(ctx, body.GetData(), false)
}

// BreakdownCohort answers POST /v1/cohorts:breakdown.
func (s *cohortService) BreakdownCohort(ctx context.Context, body *httpbody.HttpBody) (*httpbody.HttpBody, error) {
	return s.r.query(ctx, body.GetData(), true)
}

// consentTally decides, per patient, whether their consent permits a
// research action, and keeps the decisions for the record.
type consentTally struct {
	r         *research
	ctx       context.Context
	in        policy.Input
	decisions map[string]policy.Decision
	revision  string
	version   int64 // the policy version that decided
	err       error
}

func (r *research) tally(ctx context.Context, action string, at time.Time) *consentTally {
	in := callerFrom(ctx).Input(action, "", policy.ResourceRef{Type: "Patient"}, at)
	return &consentTally{r: r, ctx: ctx, in: in, decisions: map[string]policy.Decision{}}
}

// permit is the cohort index's consent callback. A vault failure denies
// and is reported after the query (t.err).
func (t *consentTally) permit(patient string) bool {
	if t.err != nil {
		return false
	}
	if d, ok := t.decisions[patient]; ok {
		return d.Allow // a breakdown asks again for the patients the count saw
	}
	in := t.in
	in.Patient = patient
	in.Resource.ID = strings.TrimPrefix(patient, "Patient/")
	in.Resource.Reference = patient
	out, err := t.r.access.Decide(t.ctx, access.Committed{Vault: t.r.vault}, in)
	if err != nil {
		t.err = err
		return false
	}
	d := out.Decision
	if d.PolicyRevision != "" {
		t.revision, t.version = d.PolicyRevision, out.PolicyVersion
	}
	t.decisions[patient] = d
	return d.Allow
}

// policyVersion is the version of the policy that decided, or the active
// one when no patient was asked about.
func (t *consentTally) policyVersion() int64 {
	if t.version != 0 {
		return t.version
	}
	return t.r.access.Active().Version
}

func (t *consentTally) counts() (permitted, refused int) {
	for _, d := range t.decisions {
		if d.Allow {
			permitted++
		} else {
			refused++
		}
	}
	return permitted, refused
}

// record builds the decision record of a research action.
func (t *consentTally) record(q *cohort.Query, allow bool, reasons []string) access.ResearchDecision {
	permitted, refused := t.counts()
	if reasons == nil {
		reasons = []string{}
	}
	return access.ResearchDecision{
		Kind: access.KindResearchDecision, Time: t.in.Time.Format(time.RFC3339Nano), Client: t.in.Actor.ClientID,
		Actor: access.ActorRef(t.r.vault, t.in.Actor.Reference), Organization: t.in.Actor.Organization, Roles: t.in.Actor.Roles,
		Action: t.in.Action, Purpose: t.in.Purpose, Query: q.Fingerprint(), Shape: q.Shape(),
		Criteria: t.r.criteria.seal(q.CriteriaJSON()), Breakdown: q.Breakdown, Allow: allow, Reasons: reasons, Permitted: permitted, Refused: refused,
		PolicyRevision: t.revision, PolicyVersion: t.policyVersion(),
	}
}

// query answers a count or a breakdown: parse, check the repeat limit,
// catch the index up, count the patients whose consent permits research,
// release through the privacy rules, and record the decision (with the hash
// of what is released) before answering.
func (r *research) query(ctx context.Context, data []byte, breakdown bool) (*httpbody.HttpBody, error) {
	q, err := cohort.ParseQuery(data)
	if err != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "", "the cohort query is not valid: "+err.Error())
	}
	if breakdown && len(q.Breakdown) == 0 {
		return nil, failure(http.StatusBadRequest, "required", "breakdown", "a breakdown needs at least one dimension in \"breakdown\"")
	}
	if err := r.catchUp(ctx); err != nil {
		return nil, err
	}
	at := access.Now(r.now)
	t := r.tally(ctx, actionResearchQuery, at)

	// The limit check and the record that counts toward it are one step.
	r.limits.Lock()
	defer r.limits.Unlock()
	if n, err := r.repeats(ctx, t.in.Actor.ClientID, q.Shape(), at); err != nil {
		return nil, err
	} else if r.privacy.Exceeded(n) {
		reason := fmt.Sprintf("repeat limit: %d near-identical queries within %s", n, r.privacy.Window())
		idx, err := r.addRecord(ctx, t.record(q, false, []string{reason}), at, q.Shape())
		if err != nil {
			return nil, err
		}
		return nil, failure(http.StatusTooManyRequests, "throttled", "",
			"this query is too close to "+strconv.Itoa(n)+" earlier ones within the repeat window (decision "+strconv.FormatUint(idx, 10)+")")
	}

	// The overlap control compares every count with the releases the
	// decision log holds (re-evaluated on the current index), so a
	// suppressed cell cannot be recovered by subtracting two released counts.
	earlier, err := r.earlier(ctx, t.in.Actor.ClientID, at)
	if err != nil {
		return nil, err
	}
	res, err := r.index.Answer(q, breakdown, at, r.privacy, t.permit, earlier)
	if err != nil {
		return nil, failure(http.StatusBadRequest, "invalid", "breakdown", "the breakdown is not valid: "+err.Error())
	}
	var answer any = res.Total
	if breakdown {
		answer = breakdownAnswer{Breakdown: q.Breakdown, Total: res.Total, Cells: res.Cells}
	}
	if res.Overlaps > 0 || res.Skipped > 0 {
		r.log.InfoContext(ctx, "cohort overlap control", slog.String("client", t.in.Actor.ClientID),
			slog.Int("suppressed", res.Overlaps), slog.Int("compared", res.Compared), slog.Int("unreadable", res.Skipped))
	}
	if t.err != nil {
		return nil, fmt.Errorf("decide research consent: %w", t.err)
	}
	released, err := json.Marshal(answer)
	if err != nil {
		return nil, fmt.Errorf("encode cohort answer: %w", err)
	}
	sum := sha256.Sum256(released)
	rec := t.record(q, true, nil)
	rec.Released, rec.Answer = hex.EncodeToString(sum[:]), released
	// The candidates' consent, not that of the patients the overlap
	// control asked about.
	rec.Permitted, rec.Refused = res.Permitted, res.Refused
	idx, err := r.addRecord(ctx, rec, at, q.Shape())
	if err != nil {
		return nil, err
	}
	return jsonBody(ctx, cohortAnswer{Result: released, Decision: idx, Released: rec.Released, PolicyVersion: rec.PolicyVersion})
}

type breakdownAnswer struct {
	Breakdown []string              `json:"breakdown"`
	Total     cohort.Released       `json:"total"`
	Cells     []cohort.ReleasedCell `json:"cells"`
}

// cohortAnswer is the response of a count or breakdown: the released
// result, the decision record's leaf index, and the hash that record
// commits to.
type cohortAnswer struct {
	Result        json.RawMessage `json:"result"`
	Decision      uint64          `json:"decision"`
	Released      string          `json:"released"`
	PolicyVersion int64           `json:"policyVersion"`
}

// addRecord records a research decision made at at in its own transaction.
func (r *research) addRecord(ctx context.Context, rec access.ResearchDecision, at time.Time, shape string) (uint64, error) {
	var idx uint64
	err := r.vault.Update(ctx, func(tx *vault.SealedTx) error {
		var err error
		idx, _, err = access.Add(ctx, tx, access.KindResearchDecision, "access-decision", access.ResearchSubject, rec.Client, at, rec)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record cohort decision: %w", err)
	}
	return idx, nil
}

// repeats counts the client's allowed queries of this shape within the
// repeat window, newest first, from the decision log: the limit holds
// across restarts and across gateways sharing the database.
func (r *research) repeats(ctx context.Context, client, shape string, at time.Time) (int, error) {
	since := at.Add(-r.privacy.Window())
	n := 0
	f := vault.LeafFilter{Type: uint8(anchor.LeafAccessDecision), Subject: access.ResearchSubject, Actor: client, Limit: 128}
	for {
		ls, err := r.vault.Store().FindLeaves(ctx, f)
		if err != nil {
			return 0, fmt.Errorf("count earlier queries: %w", err)
		}
		for _, l := range ls {
			if l.Time.Before(since) {
				return n, nil
			}
			var rec struct {
				Allow  bool   `json:"allow"`
				Action string `json:"action"`
				Shape  string `json:"shape"`
			}
			if json.Unmarshal(l.Record, &rec) == nil && rec.Allow && rec.Action == actionResearchQuery && rec.Shape == shape {
				n++
			}
		}
		if len(ls) < f.Limit {
			return n, nil
		}
		f.Before = ls[len(ls)-1].Seq
	}
}

// earlierPage is how many records the overlap control reads per query to
// the decision log.
const earlierPage = 256

// earlier lists the releases the overlap control compares a new one with,
// newest first, from the decision log: the allowed cohort counts and
// breakdowns within the repeat window of this client (overlapScope
// "client") or of every client ("all"), at most the history bound. So the
// control holds across restarts and across gateways sharing the database.
func (r *research) earlier(ctx context.Context, client string, at time.Time) ([]cohort.Earlier, error) {
	scope, history := r.privacy.Overlap()
	if scope == cohort.OverlapOff {
		return nil, nil
	}
	since := at.Add(-r.privacy.Window())
	f := vault.LeafFilter{Type: uint8(anchor.LeafAccessDecision), Subject: access.ResearchSubject, Limit: earlierPage}
	if scope == cohort.OverlapClient {
		f.Actor = client
	}
	var out []cohort.Earlier
	for {
		ls, err := r.vault.Store().FindLeaves(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("read earlier cohort releases: %w", err)
		}
		for _, l := range ls {
			if l.Time.Before(since) {
				return out, nil
			}
			var rec struct {
				Allow     bool            `json:"allow"`
				Action    string          `json:"action"`
				Criteria  string          `json:"criteria"`
				Breakdown []string        `json:"breakdown"`
				Answer    json.RawMessage `json:"answer"`
			}
			// A record without criteria (written before the control) cannot
			// be re-evaluated and is passed over.
			if json.Unmarshal(l.Record, &rec) != nil || !rec.Allow || rec.Action != actionResearchQuery ||
				len(rec.Answer) == 0 || len(rec.Criteria) == 0 {
				continue
			}
			criteria, err := r.criteria.open(rec.Criteria)
			if err != nil {
				continue // not ours to open (another master key), or tampered with
			}
			e := cohort.Earlier{Criteria: criteria, Breakdown: rec.Breakdown}
			var bd struct {
				Total *cohort.Released      `json:"total"`
				Cells []cohort.ReleasedCell `json:"cells"`
			}
			if json.Unmarshal(rec.Answer, &bd) == nil && bd.Total != nil {
				e.Total, e.Cells = *bd.Total, bd.Cells
				if e.Cells == nil {
					e.Cells = []cohort.ReleasedCell{}
				}
			} else if json.Unmarshal(rec.Answer, &e.Total) != nil {
				continue
			}
			out = append(out, e)
			if len(out) >= history {
				return out, nil
			}
		}
		if len(ls) < f.Limit {
			return out, nil
		}
		f.Before = ls[len(ls)-1].Seq
	}
}
