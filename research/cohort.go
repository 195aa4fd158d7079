package research

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/cohort"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// Research actions, as the policy names them.
const (
	actionResearchQuery = "research-query"
	actionExport        = "export"
)

// Answer is the response of a count or breakdown: the released result,
// the decision record's leaf index, the hash that record commits to, the
// version of the policy that decided, and how many more queries of this
// shape (the same criteria up to numbers and dates) the client may run
// within the repeat window.
type Answer struct {
	Result        json.RawMessage `json:"result"`
	Decision      uint64          `json:"decision"`
	Released      string          `json:"released"`
	PolicyVersion int64           `json:"policyVersion"`
	RepeatsLeft   int             `json:"repeatsLeft"`
}

type breakdownAnswer struct {
	Breakdown []string              `json:"breakdown"`
	Total     cohort.Released       `json:"total"`
	Cells     []cohort.ReleasedCell `json:"cells"`
}

// Count answers a cohort count (a cohort.Query in JSON) for caller.
func (s *Service) Count(ctx context.Context, caller access.Caller, data []byte) (Answer, error) {
	return s.query(ctx, caller, data, false)
}

// Breakdown answers a cohort breakdown (a cohort.Query in JSON with at
// least one dimension in "breakdown") for caller.
func (s *Service) Breakdown(ctx context.Context, caller access.Caller, data []byte) (Answer, error) {
	return s.query(ctx, caller, data, true)
}

// consentTally decides, per patient, whether their consent permits a
// research action, and keeps the decisions for the record.
type consentTally struct {
	s   *Service
	ctx context.Context
	in  policy.Input
	// mu guards what follows: the index asks on several goroutines.
	mu        sync.Mutex
	decisions map[string]policy.Decision
	revision  string
	version   int64 // the policy version that decided
	err       error
	// free holds patients found without a consent in bulk before the
	// index asks (lookUp); set before the index asks, then only read.
	free *access.ConsentFree
}

// lookUp finds, before the index asks about them one by one, which of
// patients have no consent on file: in a few queries instead of one each.
func (t *consentTally) lookUp(patients []string) error {
	free, err := t.s.access.WithoutConsent(t.ctx, patients)
	if err != nil {
		return fmt.Errorf("decide research consent: %w", err)
	}
	t.free = free
	return nil
}

func (s *Service) tally(ctx context.Context, caller access.Caller, action string, at time.Time) *consentTally {
	in := caller.Input(action, "", policy.ResourceRef{Type: "Patient"}, at)
	return &consentTally{s: s, ctx: ctx, in: in, decisions: map[string]policy.Decision{}}
}

// permit is the cohort index's consent callback. A vault failure denies
// and is reported after the query (t.err).
func (t *consentTally) permit(patient string) bool {
	t.mu.Lock()
	d, ok := t.decisions[patient]
	failed := t.err != nil
	t.mu.Unlock()
	if failed {
		return false
	}
	if ok {
		return d.Allow // a breakdown asks again for the patients the count saw
	}
	in := t.in
	in.Patient = patient
	in.Resource.ID = strings.TrimPrefix(patient, "Patient/")
	in.Resource.Reference = patient
	out, err := t.s.access.DecideCommitted(t.ctx, in, t.free)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.err = cmp.Or(t.err, err)
		return false
	}
	d = out.Decision
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
	return t.s.access.Active().Version
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
		Actor: access.ActorRef(t.s.vault, t.in.Actor.Reference), Organization: t.in.Actor.Organization, Roles: t.in.Actor.Roles,
		Action: t.in.Action, Purpose: t.in.Purpose, Query: q.Fingerprint(), Shape: q.Shape(),
		Criteria: t.s.criteria.seal(q.CriteriaJSON()), Breakdown: q.Breakdown, Allow: allow, Reasons: reasons, Permitted: permitted, Refused: refused,
		PolicyRevision: t.revision, PolicyVersion: t.policyVersion(),
	}
}

// query answers a count or a breakdown: parse, check the repeat limit,
// catch the index up, count the patients whose consent permits research,
// release through the privacy rules, and record the decision (with the hash
// of what is released) before answering.
func (s *Service) query(ctx context.Context, caller access.Caller, data []byte, breakdown bool) (Answer, error) {
	q, err := cohort.ParseQuery(data)
	if err != nil {
		return Answer{}, failure(http.StatusBadRequest, "invalid", "", "the cohort query is not valid: "+err.Error())
	}
	if breakdown && len(q.Breakdown) == 0 {
		return Answer{}, failure(http.StatusBadRequest, "required", "breakdown", "a breakdown needs at least one dimension in \"breakdown\"")
	}
	if err := s.catchUp(ctx); err != nil {
		return Answer{}, err
	}
	at := access.Now(s.now)
	t := s.tally(ctx, caller, actionResearchQuery, at)

	// The limit check and the record that counts toward it are one step.
	s.limits.Lock()
	defer s.limits.Unlock()
	n, err := s.repeats(ctx, t.in.Actor.ClientID, q.Shape(), at)
	if err != nil {
		return Answer{}, err
	}
	if s.privacy.Exceeded(n) {
		reason := fmt.Sprintf("repeat limit: %d near-identical queries within %s", n, s.privacy.Window())
		idx, err := s.addRecord(ctx, t.record(q, false, []string{reason}), at)
		if err != nil {
			return Answer{}, err
		}
		if s.metrics != nil {
			s.metrics.Queried(false, 0)
		}
		return Answer{}, failure(http.StatusTooManyRequests, "throttled", "",
			"this query is too close to "+strconv.Itoa(n)+" earlier ones within the repeat window (decision "+strconv.FormatUint(idx, 10)+")")
	}

	// The overlap control compares every count with the releases the
	// decision log holds (re-evaluated on the current index), so a
	// suppressed cell cannot be recovered by subtracting two released counts.
	earlier, err := s.earlier(ctx, t.in.Actor.ClientID, at)
	if err != nil {
		return Answer{}, err
	}
	ix := s.idx()
	if err := t.lookUp(ix.Matching(q, breakdown, at)); err != nil {
		return Answer{}, err
	}
	res, err := ix.Answer(q, breakdown, at, s.privacy, t.permit, earlier)
	if err != nil {
		return Answer{}, failure(http.StatusBadRequest, "invalid", "breakdown", "the breakdown is not valid: "+err.Error())
	}
	var answer any = res.Total
	if breakdown {
		answer = breakdownAnswer{Breakdown: q.Breakdown, Total: res.Total, Cells: res.Cells}
	}
	if res.Overlaps > 0 || res.Skipped > 0 {
		s.log.InfoContext(ctx, "cohort overlap control", slog.String("client", t.in.Actor.ClientID),
			slog.Int("suppressed", res.Overlaps), slog.Int("compared", res.Compared), slog.Int("unreadable", res.Skipped))
	}
	if t.err != nil {
		return Answer{}, fmt.Errorf("decide research consent: %w", t.err)
	}
	released, err := json.Marshal(answer)
	if err != nil {
		return Answer{}, fmt.Errorf("encode cohort answer: %w", err)
	}
	sum := sha256.Sum256(released)
	rec := t.record(q, true, nil)
	rec.Released, rec.Answer = hex.EncodeToString(sum[:]), released
	// The candidates' consent, not that of the patients the overlap
	// control asked about.
	rec.Permitted, rec.Refused = res.Permitted, res.Refused
	idx, err := s.addRecord(ctx, rec, at)
	if err != nil {
		return Answer{}, err
	}
	if s.metrics != nil {
		s.metrics.Queried(true, suppressedCounts(res))
	}
	return Answer{Result: released, Decision: idx, Released: rec.Released, PolicyVersion: rec.PolicyVersion,
		RepeatsLeft: s.privacy.Left(n + 1)}, nil
}

// suppressedCounts counts the suppressed counts of an answer: its total
// and its cells.
func suppressedCounts(a cohort.Answer) int {
	n := 0
	if a.Total.Suppressed {
		n++
	}
	for _, c := range a.Cells {
		if c.Suppressed {
			n++
		}
	}
	return n
}

// addRecord records a research decision made at at in its own transaction.
func (s *Service) addRecord(ctx context.Context, rec access.ResearchDecision, at time.Time) (uint64, error) {
	var idx uint64
	err := s.vault.Update(ctx, func(tx *vault.SealedTx) error {
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
func (s *Service) repeats(ctx context.Context, client, shape string, at time.Time) (int, error) {
	since := at.Add(-s.privacy.Window())
	n := 0
	f := vault.LeafFilter{Type: uint8(anchor.LeafAccessDecision), Subject: access.ResearchSubject, Actor: client, Limit: 128}
	for {
		ls, err := s.vault.Store().FindLeaves(ctx, f)
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
				if s.privacy.Exceeded(n) {
					// The limit is reached: older queries change nothing
					// (Exceeded, Left), and a busy client's window would
					// otherwise be read whole on every query.
					return n, nil
				}
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
func (s *Service) earlier(ctx context.Context, client string, at time.Time) ([]cohort.Earlier, error) {
	scope, history := s.privacy.Overlap()
	if scope == cohort.OverlapOff {
		return nil, nil
	}
	since := at.Add(-s.privacy.Window())
	f := vault.LeafFilter{Type: uint8(anchor.LeafAccessDecision), Subject: access.ResearchSubject, Limit: earlierPage}
	if scope == cohort.OverlapClient {
		f.Actor = client
	}
	var out []cohort.Earlier
	for {
		ls, err := s.vault.Store().FindLeaves(ctx, f)
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
			criteria, err := s.criteria.open(rec.Criteria)
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
