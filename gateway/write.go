package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/fhir/deid"
	"github.com/fhiranchor/fhiranchor/gateway/auth"
	"github.com/fhiranchor/fhiranchor/research"
	"github.com/fhiranchor/fhiranchor/vault"
)

// op is one write or read of a request: a single interaction, or one entry
// of a transaction or batch Bundle.
type op struct {
	entry  int    // Bundle.entry index, or -1 for a single interaction
	prefix string // element path prefix for errors: "Bundle.entry[3].resource" or ""
	method string // POST, PUT, DELETE, GET
	typ    string
	id     string     // target id; assigned for POST, resolved for conditional PUT/DELETE
	cond   url.Values // conditional criteria of PUT/DELETE ("Patient?identifier=...")
	vid    int64      // GET .../_history/{vid}
	hist   bool       // GET .../_history
	search url.Values // GET Type?criteria
	// within is "Patient/<id>" of a GET Patient/<id>/Type?criteria.
	within string
	full   string // Bundle.entry.fullUrl
	res    *fhir.Resource

	ifNoneExist string
	ifMatch     string

	// Results.
	err         *fhirError
	status      int
	version     int64
	lastUpdated time.Time
	compartment string // of a deleted resource: its tombstone is sealed under the same key
	stored      string // the compartment of the live version a PUT or DELETE replaces, or ""
	body        []byte // canonical bytes of the stored version (POST/PUT)
	read        []byte // response resource of a GET entry

	pending     *vault.Version      // the version prepared for Put
	tree        map[string]any      // between prepare and commit: the body to store
	sealedUnder string              // between prepare and commit: the compartment whose key seals it
	deidRecord  *access.Entry       // the record of pending's research copy, if any, made ready
	prevConsent access.ConsentFacts // of a Consent write: the version it replaces

	// Worked out before the vault transaction (precompute): the id of an
	// unconditional create, and its blind-index tokens when its references
	// needed no stored state (pre set).
	preID     string
	pre       bool
	preTokens [][]byte
}

// path returns the FHIRPath-like expression of an element of the op's
// input. For a single interaction the request elements are HTTP headers,
// which have no expression.
func (o *op) path(suffix string) string {
	if o.entry < 0 {
		if strings.HasPrefix(suffix, ".request") {
			return ""
		}
		return o.typ + strings.TrimPrefix(suffix, ".resource")
	}
	return fmt.Sprintf("Bundle.entry[%d]%s", o.entry, suffix)
}

func (o *op) location() string {
	return o.typ + "/" + o.id + "/_history/" + strconv.FormatInt(o.version, 10)
}

func (o *op) etag() string { return `W/"` + strconv.FormatInt(o.version, 10) + `"` }

// writes reports whether the op changes the vault when it succeeds.
func (o *op) writes() bool { return o.method == "POST" || o.method == "PUT" || o.method == "DELETE" }

// access is the SMART permission the op needs.
func (o *op) access() auth.Access {
	switch o.method {
	case "POST":
		return auth.Create
	case "PUT":
		return auth.Update
	case "DELETE":
		return auth.Delete
	case "GET":
		if o.search != nil {
			return auth.Search
		}
	}
	return auth.Read
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// opFromEntry checks an entry's request and turns it into an op. A problem
// is recorded in op.err so a batch can answer it per entry.
func opFromEntry(e fhir.Entry) *op {
	o := &op{entry: e.Index, method: e.Request.Method, full: e.FullURL, res: e.Resource,
		ifNoneExist: e.Request.IfNoneExist, ifMatch: e.Request.IfMatch}
	o.prefix = o.path(".resource")
	if len(e.Invalid) > 0 {
		o.err = &fhirError{status: http.StatusBadRequest, issues: validationIssues(e.Invalid, "")}
		return o
	}
	bad := func(code, suffix, msg string) *op {
		o.err = failure(http.StatusBadRequest, code, o.path(suffix), msg)
		return o
	}
	if o.method == "HEAD" {
		o.method = "GET"
	}
	rawPath, rawQuery, hasQuery := strings.Cut(e.Request.URL, "?")
	segs := strings.Split(rawPath, "/")
	if segs[0] == "" {
		return bad("required", ".request.url", "request.url is empty")
	}
	if strings.HasPrefix(segs[len(segs)-1], "$") || strings.HasPrefix(segs[0], "$") {
		o.err = failure(http.StatusNotImplemented, "not-supported", o.path(".request.url"), "operations are not supported in a Bundle")
		return o
	}
	if !fhir.IsResourceType(segs[0]) {
		return bad("not-supported", ".request.url", "request.url does not name a FHIR R4 resource type")
	}
	o.typ = segs[0]
	var query url.Values
	if hasQuery {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return bad("invalid", ".request.url", "request.url has a malformed query")
		}
		query = q
	}
	if len(segs) > 1 {
		if !idPattern.MatchString(segs[1]) {
			return bad("invalid", ".request.url", "request.url has an invalid id")
		}
		o.id = segs[1]
	}
	switch o.method {
	case "POST":
		if len(segs) != 1 || hasQuery {
			return bad("invalid", ".request.url", "a POST entry's url must be a resource type")
		}
	case "PUT", "DELETE":
		switch {
		case len(segs) == 2 && !hasQuery:
		case len(segs) == 1 && hasQuery:
			o.cond = query
		default:
			return bad("invalid", ".request.url", "the url must be Type/id or Type?criteria")
		}
	case "GET":
		switch {
		case len(segs) == 1:
			o.search = query
			if o.search == nil {
				o.search = url.Values{}
			}
		case len(segs) == 2:
		case len(segs) == 3 && segs[0] == "Patient" && fhir.IsResourceType(segs[2]):
			o.within = "Patient/" + o.id
			o.typ, o.id = segs[2], ""
			o.search = query
			if o.search == nil {
				o.search = url.Values{}
			}
		case len(segs) == 3 && segs[2] == "_history":
			o.hist = true
		case len(segs) == 4 && segs[2] == "_history":
			v, err := strconv.ParseInt(segs[3], 10, 64)
			if err != nil || v < 1 {
				return bad("invalid", ".request.url", "invalid version id")
			}
			o.vid = v
		default:
			return bad("invalid", ".request.url", "unsupported read url")
		}
	case "PATCH":
		o.err = failure(http.StatusNotImplemented, "not-supported", o.path(".request.method"), "PATCH is not supported")
		return o
	}
	if o.method == "POST" || o.method == "PUT" {
		if o.res.Type != o.typ {
			return bad("invalid", ".resource.resourceType", "the resource type does not match request.url")
		}
		if o.method == "PUT" && o.cond == nil {
			if id := o.res.ID(); id != "" && id != o.id {
				return bad("invalid", ".resource.id", "the resource id does not match request.url")
			}
		}
	}
	return o
}

// writer applies ops to the vault.
type writer struct {
	vault *vault.Sealed
	now   func() time.Time
	// access decides whether the client may write for each patient; nil
	// only where a benchmark measures the spine without policy.
	access *access.Control
	// deid makes the research copy of each version in a patient
	// compartment; nil without policy.
	deid *research.Deidentifier
}

// apply runs the ops of one request inside one vault transaction. With
// atomic set (a transaction Bundle or a single interaction) the first failure
// aborts everything and is returned; otherwise (a batch) each failure is left
// in its op and the others proceed.
//
// Order is FHIR's transaction order: DELETE, POST, PUT, then references are
// resolved and versions stored; GETs run after the commit.
//
// A write the policy refuses is not an error: with atomic set, apply
// returns the refusal, having recorded its decisions in tx and written
// nothing else, and the caller commits tx and answers the refusal.
func (w *writer) apply(ctx context.Context, tx *vault.SealedTx, ops []*op, atomic bool) (*fhirError, error) {
	refused, err := w.applyOps(ctx, tx, ops, atomic)
	var fe *fhirError
	if errors.As(err, &fe) {
		return nil, fe
	}
	return refused, err
}

func (w *writer) applyOps(ctx context.Context, tx *vault.SealedTx, ops []*op, atomic bool) (*fhirError, error) {
	now := access.Now(w.now)
	tallyFrom(ctx).reset()
	fail := func(o *op, err error) error {
		var fe *fhirError
		if !errors.As(err, &fe) {
			return err // infrastructure failure: abort the whole request
		}
		if atomic {
			return fe
		}
		o.err = fe
		return nil
	}
	// Stored AuditEvents and Provenances stay apart from the log's.
	for _, o := range ops {
		if o.err == nil && derivedTypes[o.typ] && o.res != nil {
			if err := derivedBody(o.typ, o.res.Tree); err != nil {
				if err := fail(o, err); err != nil {
					return nil, err
				}
			}
		}
	}
	// Resolve targets: which resource each op writes, and at which version.
	seen := map[string]int{}
	for _, method := range []string{"DELETE", "POST", "PUT"} {
		for _, o := range ops {
			if o.err != nil || o.method != method {
				continue
			}
			err := w.resolve(ctx, tx, o)
			if err == nil && derivedTypes[o.typ] {
				err = derivedID(o.typ, o.id)
			}
			if err != nil {
				if err := fail(o, err); err != nil {
					return nil, err
				}
				continue
			}
			if o.status == http.StatusOK && o.method == "POST" {
				continue // conditional create matched: nothing to write
			}
			key := o.typ + "/" + o.id
			if prev, dup := seen[key]; dup && atomic {
				return nil, failure(http.StatusBadRequest, "duplicate", o.path(""),
					fmt.Sprintf("entries %d and %d change the same resource", prev, o.entry))
			}
			seen[key] = o.entry
		}
	}
	// fullUrl -> server reference, for transaction Bundles only: batch
	// entries must not depend on each other, and a single resource has no
	// Bundle to resolve against.
	var refs map[string]string
	if atomic && ops[0].entry >= 0 {
		refs = map[string]string{}
		for _, o := range ops {
			if o.err == nil && o.full != "" && (o.method == "POST" || o.method == "PUT") {
				refs[o.full] = o.typ + "/" + o.id
			}
		}
	}
	var sealing []*op
	for _, o := range ops {
		if o.err != nil || !o.writes() || (o.method == "POST" && o.status == http.StatusOK) {
			continue
		}
		tree, err := w.prepare(ctx, tx, o, refs, now)
		if err != nil {
			if err := fail(o, err); err != nil {
				return nil, err
			}
			continue
		}
		if tree != nil {
			o.tree = tree
			sealing = append(sealing, o)
		}
	}
	// What needs no stored state runs on every core: the writer's
	// transaction is the one thing writes wait for.
	errs := make([]error, len(sealing))
	eachParallel(len(sealing), func(i int) { errs[i] = w.commit(ctx, sealing[i], now) })
	for i, o := range sealing {
		o.tree = nil
		if errs[i] != nil {
			if err := fail(o, errs[i]); err != nil {
				return nil, err
			}
		}
	}
	// Research copies and packing come before the decisions, though a
	// refused write discards its copy: recording the first decision takes
	// PostgreSQL's Seq lock, which every other writer then waits for until
	// this transaction commits, and they are most of its work.
	if w.deid != nil {
		if err := w.researchCopies(ctx, tx, ops, now); err != nil {
			return nil, err
		}
	}
	pack(ops)
	if w.access != nil {
		refused, err := w.decide(ctx, tx, ops, atomic, now)
		if err != nil || refused != nil {
			return refused, err
		}
	}
	for _, o := range ops {
		if o.err != nil || o.pending == nil {
			continue
		}
		if err := w.put(ctx, tx, o); err != nil {
			if err := fail(o, err); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

// decide asks access for the verdicts on the ops' writes, decided on
// stored state and recorded in tx. In a batch, the ops of a refused patient
// fail with 403 and the others proceed; in a transaction, the first refusal
// is returned and nothing is written.
func (w *writer) decide(ctx context.Context, tx *vault.SealedTx, ops []*op, atomic bool, now time.Time) (*fhirError, error) {
	var ws []access.Write
	var wops []*op
	for _, o := range ops {
		if o.err != nil || o.pending == nil {
			continue
		}
		wr := access.Write{Patient: o.pending.Compartment, Stored: o.stored, Type: o.typ, ID: o.id}
		if o.method != "DELETE" && o.res != nil {
			wr.Tree = o.res.Tree
		}
		ws, wops = append(ws, wr), append(wops, o)
	}
	if len(ws) == 0 {
		return nil, nil
	}
	verdicts, err := w.access.Writes(ctx, tx, callerFrom(ctx), ws, atomic, now)
	if err != nil {
		return nil, err
	}
	for i, wr := range ws {
		v, ok := access.VerdictFor(verdicts, wr)
		if !ok || v.Effect == access.Allowed {
			continue
		}
		if atomic {
			fe := failure(http.StatusForbidden, "forbidden", "", "writing for this patient is not permitted: "+
				strings.Join(v.Outcome.Reasons, "; ")+" (decision "+strconv.FormatUint(v.Leaf, 10)+")")
			if wops[i].entry >= 0 {
				fe.issues[0].Expression = []string{wops[i].path("")}
			}
			return fe, nil
		}
		fe := denied(v.Outcome.Decision, v.Leaf)
		fe.issues[0].Expression = []string{wops[i].path("")}
		wops[i].err = fe
	}
	return nil, nil
}

// resolve finds the target of a write and checks its preconditions.
func (w *writer) resolve(ctx context.Context, tx *vault.SealedTx, o *op) error {
	switch o.method {
	case "POST":
		if o.ifNoneExist != "" {
			ids, err := w.match(ctx, tx, o, o.ifNoneExist, ".request.ifNoneExist")
			if err != nil {
				return err
			}
			switch len(ids) {
			case 0:
			case 1:
				cur, err := tx.Current(ctx, o.typ, ids[0])
				if err != nil {
					return fmt.Errorf("read match of conditional create: %w", err)
				}
				o.id, o.version, o.lastUpdated, o.status = ids[0], cur.Version, cur.LastUpdated, http.StatusOK
				return nil
			default:
				return failure(http.StatusPreconditionFailed, "multiple-matches", o.path(".request.ifNoneExist"), "the If-None-Exist criteria match more than one resource")
			}
		}
		o.id = cmp.Or(o.preID, uuid.NewString())
		o.version, o.status = 1, http.StatusCreated
		return nil
	case "PUT", "DELETE":
		if o.cond != nil {
			ids, err := w.matchValues(ctx, tx, o, o.typ, o.cond, ".request.url")
			if err != nil {
				return err
			}
			switch len(ids) {
			case 0:
				if o.method == "DELETE" {
					o.status = http.StatusNoContent
					return nil
				}
				o.id = o.res.ID()
				if o.id == "" {
					o.id = uuid.NewString()
				}
			case 1:
				o.id = ids[0]
				if o.method == "PUT" {
					if id := o.res.ID(); id != "" && id != o.id {
						return failure(http.StatusBadRequest, "invalid", o.path(".resource.id"), "the resource id is not the id of the resource the criteria match")
					}
				}
			default:
				return failure(http.StatusPreconditionFailed, "multiple-matches", o.path(".request.url"), "the conditional criteria match more than one resource")
			}
		}
		cur, err := tx.Current(ctx, o.typ, o.id)
		exists := err == nil
		if err != nil && !errors.Is(err, vault.ErrNotFound) {
			return fmt.Errorf("read current version: %w", err)
		}
		if o.ifMatch != "" {
			want, ok := parseETag(o.ifMatch)
			if !ok {
				return failure(http.StatusBadRequest, "invalid", o.path(".request.ifMatch"), "If-Match must be an ETag such as W/\"3\"")
			}
			if !exists || cur.Deleted || cur.Version != want {
				return failure(http.StatusPreconditionFailed, "conflict", o.path(".request.ifMatch"), "the resource is not at the version If-Match names")
			}
		}
		if o.method == "DELETE" {
			if !exists || cur.Deleted {
				o.status = http.StatusNoContent // deleting what is not there succeeds and changes nothing
				return nil
			}
			o.version, o.status, o.compartment = cur.Version+1, http.StatusOK, cur.Compartment()
			o.stored = o.compartment
			return nil
		}
		o.status, o.version = http.StatusCreated, 1
		if exists {
			o.version = cur.Version + 1
			if !cur.Deleted {
				o.status = http.StatusOK
				o.stored = cur.Compartment()
			}
		}
		return nil
	}
	return nil
}

// prepare readies the version an op resolved to from stored state
// (references resolved, versioned, the compartment whose key seals it, a
// Consent's previous version) and returns its body, which commit then
// turns into the version to store; nothing is stored yet, so the policy can
// decide on the patient it belongs to before anything is written.
func (w *writer) prepare(ctx context.Context, tx *vault.SealedTx, o *op, refs map[string]string, now time.Time) (map[string]any, error) {
	if o.method == "DELETE" && o.status == http.StatusNoContent {
		return nil, nil
	}
	o.lastUpdated = now
	var tree map[string]any
	if o.method == "DELETE" {
		tree = fhir.Tombstone(o.typ, o.id, o.version, now)
		// Under the deleted resource's data key, so erasing a patient
		// erases their tombstones too.
		o.sealedUnder = o.compartment
	} else {
		if err := w.resolveReferences(ctx, tx, o, refs); err != nil {
			return nil, err
		}
		o.res.SetVersion(o.id, o.version, now)
		tree = o.res.Tree
		o.sealedUnder = fhir.PatientCompartment(o.typ, tree)
	}
	if o.typ == "Consent" && o.version > 1 {
		prev, err := access.PreviousConsent(ctx, tx, o.id)
		if err != nil {
			return nil, err
		}
		o.prevConsent = prev
	}
	o.pending = nil
	o.deidRecord = nil
	return tree, nil
}

// commit builds the version prepare left in o.tree: its canonical bytes,
// salted commitment, leaf and blind-index tokens. It reads no stored state
// and touches only o, so the ops of a request run it in parallel.
func (w *writer) commit(ctx context.Context, o *op, now time.Time) error {
	var tokens [][]byte
	switch {
	case o.pre:
		tokens = o.preTokens
	case o.method != "DELETE":
		tokens = versionTokens(w.vault, o.typ, o.tree)
	}
	canonical, err := fhir.Canonical(o.tree)
	if err != nil {
		return fmt.Errorf("canonical form: %w", err)
	}
	salt, err := anchor.NewSalt()
	if err != nil {
		return err
	}
	commitment := anchor.Commit(anchor.LeafResourceVersion, salt, canonical)
	o.pending = &vault.Version{
		Type: o.typ, ID: o.id, Version: o.version, LastUpdated: now, Deleted: o.method == "DELETE",
		Compartment: o.sealedUnder, Body: canonical, Salt: salt, Commitment: commitment, Tokens: tokens, Client: clientOf(ctx),
		Leaf: vault.Leaf{Type: uint8(anchor.LeafResourceVersion), Data: anchor.LeafData(anchor.LeafResourceVersion, commitment), Ref: o.location()},
	}
	return nil
}

// precompute runs before the vault transaction of ops: it assigns the ids
// of their unconditional creates, resolves the references of those that
// name nothing else in the Bundle, or only other such creates, and derives
// their blind-index tokens. The writer's transaction is what every write
// waits for, and extracting search values and HMACing keys needs no stored
// state: done here, on the request's goroutine, the transaction finds them
// ready. Everything else (a conditional reference or create, a reference to
// an entry whose id the transaction decides, one it would refuse) is left
// to the transaction, which resolves and derives it as before; what this
// rewrites, it rewrites to what the transaction would.
func (w *writer) precompute(ops []*op, atomic bool) {
	creates := false
	for _, o := range ops {
		if o.err == nil && o.method == "POST" && o.ifNoneExist == "" && o.res != nil && !derivedTypes[o.typ] {
			o.preID, creates = uuid.NewString(), true
		}
	}
	if !creates {
		return
	}
	// applyOps resolves fullUrls for transaction Bundles only; here only
	// those of the creates above. A fullUrl written twice names its last
	// entry, as there.
	var refs, entries map[string]string
	if atomic && ops[0].entry >= 0 {
		refs, entries = map[string]string{}, map[string]string{}
		for _, o := range ops {
			if o.err == nil && o.full != "" && (o.method == "POST" || o.method == "PUT") {
				entries[o.full] = o.preID
			}
		}
		for _, o := range ops {
			if o.preID != "" && entries[o.full] == o.preID {
				refs[o.full] = o.typ + "/" + o.preID
			}
		}
	}
	for _, o := range ops {
		if o.preID != "" && preResolve(o, refs, entries) {
			// The transaction sets version and time again; the tokens
			// depend on neither.
			o.res.SetVersion(o.preID, 1, time.Now())
			o.preTokens, o.pre = versionTokens(w.vault, o.typ, o.res.Tree), true
		}
	}
}

// preResolve rewrites the references of o that refs (the fullUrls of
// precomputed creates, or nil outside a transaction Bundle) resolves, and
// reports whether resolveReferences would leave every other one as it is:
// none is conditional, none names a fullUrl only the transaction resolves
// (entries, all the Bundle's), and no urn is left unresolved. On false the
// transaction resolves o; what was rewritten here is then a literal
// reference it leaves as it is, to what it would have rewritten it to.
func preResolve(o *op, refs, entries map[string]string) bool {
	ok := true
	_ = fhir.RewriteReferences(o.res.Tree, o.typ, func(_, ref string) (string, error) {
		if to, mine := refs[ref]; mine {
			return to, nil
		}
		if _, other := entries[ref]; other {
			ok = false
		}
		if refs != nil && (strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:")) {
			ok = false
		}
		if strings.Contains(ref, "?") {
			ok = false
		}
		return ref, nil
	})
	return ok
}

// eachParallel calls fn(0) to fn(n-1) on up to GOMAXPROCS goroutines and
// returns when all have returned; a few calls run on the caller alone.
func eachParallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/4)
	if workers < 2 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// researchCopies makes the research copy of every version about to be
// stored in a patient compartment. Each copy is made knowing its patient:
// the birth date (Safe Harbor's ages over 89) and the identifying strings of
// the patient and of everyone the request names (relatives, practitioners,
// organizations), which the de-identification removes from any text it keeps.
func (w *writer) researchCopies(ctx context.Context, tx *vault.SealedTx, ops []*op, now time.Time) error {
	var known []string
	inRequest := map[string]map[string]any{} // Patient trees of this request, by compartment
	for _, o := range ops {
		if o.err != nil || o.pending == nil || o.method == "DELETE" || o.res == nil {
			continue
		}
		known = append(known, deid.Lexicon(o.res.Tree)...)
		if o.typ == "Patient" {
			inRequest["Patient/"+o.id] = o.res.Tree
		}
	}
	subjects := map[string]deid.Subject{}
	refs := map[string]string{} // compartment -> its Ref in records, one HMAC a patient
	var copies []copyJob
	for _, o := range ops {
		if o.err != nil || o.pending == nil || o.method == "DELETE" || o.pending.Compartment == "" {
			continue
		}
		c := o.pending.Compartment
		subject, ok := subjects[c]
		if !ok {
			patient := inRequest[c]
			if patient == nil {
				stored, err := storedPatient(ctx, tx, c)
				if err != nil {
					return err
				}
				patient = stored
			}
			birthDate, terms := "", known
			if patient != nil {
				birthDate, _ = patient["birthDate"].(string)
				if inRequest[c] == nil {
					terms = append(deid.Lexicon(patient), known...)
				}
			}
			// Compiled once per patient of the request, not per copy.
			subject = deid.NewSubject(birthDate, terms)
			subjects[c], refs[c] = subject, access.Ref(tx, c)
		}
		copies = append(copies, copyJob{o: o, subject: subject, location: access.Ref(tx, o.location()), compartment: refs[c]})
	}
	// De-identification reads no stored state: on every core, and so is
	// each copy's record made ready (the writer only inserts it).
	client := clientOf(ctx)
	errs := make([]error, len(copies))
	eachParallel(len(copies), func(i int) {
		j := copies[i]
		v := j.o.pending
		var rec *access.Deidentification
		v.Deid, rec = w.deid.Copy(ctx, j.o.typ, j.o.res.Tree, v.Compartment, j.subject, now, j.location, v.Commitment)
		if rec == nil {
			return
		}
		e, err := access.NewEntry(access.KindDeidentification, "deidentification/"+rec.Resource, j.compartment, client, v.LastUpdated, rec)
		if err != nil {
			errs[i] = err
			return
		}
		j.o.deidRecord = &e
	})
	return errors.Join(errs...)
}

// pack compresses the versions about to be stored, on every core, so that
// Put only seals them (Version.Pack); after researchCopies, the last step
// that changes them.
func pack(ops []*op) {
	var vs []*vault.Version
	for _, o := range ops {
		if o.err == nil && o.pending != nil {
			vs = append(vs, o.pending)
		}
	}
	eachParallel(len(vs), func(i int) { vs[i].Pack() })
}

// copyJob is a research copy to make, with what it needs from stored state.
type copyJob struct {
	o           *op
	subject     deid.Subject
	location    string // the version, as a record names it
	compartment string // its patient, as a record names it
}

// storedPatient returns the current stored Patient of a compartment as a
// tree, or nil when there is none (a patient known only by reference, one
// deleted or erased).
func storedPatient(ctx context.Context, tx *vault.SealedTx, compartment string) (map[string]any, error) {
	v, err := tx.Read(ctx, "Patient", strings.TrimPrefix(compartment, "Patient/"))
	if errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrErased) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the patient of a research copy: %w", err)
	}
	if v.Deleted {
		return nil, nil
	}
	tree, err := fhir.DecodeObject(v.Body)
	if err != nil {
		return nil, fmt.Errorf("decode the patient of a research copy: %w", err)
	}
	return tree, nil
}

// put stores the version prepare built, and for a Consent the consent
// events it makes.
func (w *writer) put(ctx context.Context, tx *vault.SealedTx, o *op) error {
	v := o.pending
	if err := tx.Put(ctx, *v); err != nil {
		if errors.Is(err, vault.ErrConflict) {
			return failure(http.StatusConflict, "conflict", o.path(""), "a concurrent write changed this resource; retry")
		}
		return fmt.Errorf("store version: %w", err)
	}
	if o.deidRecord != nil {
		// The copy's leaf follows its version's in the same transaction.
		if _, err := o.deidRecord.Add(ctx, tx); err != nil {
			return err
		}
	}
	if o.typ == "Consent" {
		var next access.ConsentFacts
		if !v.Deleted {
			next = access.FactsOfConsent(o.res.Tree, false)
		}
		if err := access.RecordConsentEvents(ctx, tx, clientOf(ctx), o.prevConsent, next, o.location(), v.Commitment, v.LastUpdated); err != nil {
			return err
		}
	}
	if !v.Deleted {
		tallyFrom(ctx).add(o.typ)
	}
	o.body = v.Body
	return nil
}

// resolveReferences rewrites the references of a transaction entry that
// name another entry (its fullUrl) or a resource by search (a conditional
// reference, "Patient?identifier=sys|value", FHIR's transaction rule) into
// server references. refs is nil outside a transaction Bundle, where a
// conditional reference is refused and a urn: reference is stored as sent
// (it names no entry there). A conditional reference must match exactly one
// resource: stored as written it would leave its resource outside the
// patient's compartment, and so outside their consent.
func (w *writer) resolveReferences(ctx context.Context, tx *vault.SealedTx, o *op, refs map[string]string) error {
	return fhir.RewriteReferences(o.res.Tree, o.typ, func(path, ref string) (string, error) {
		if to, ok := refs[ref]; ok {
			return to, nil
		}
		where := joinPath(o.prefix, path)
		if strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:") {
			if refs == nil {
				return ref, nil // a logical urn outside a transaction names nothing here
			}
			return "", failure(http.StatusBadRequest, "not-found", where, "the reference names no entry of this transaction")
		}
		typ, query, conditional := strings.Cut(ref, "?")
		if !conditional {
			return ref, nil
		}
		if refs == nil {
			return "", failure(http.StatusBadRequest, "not-supported", where, "conditional references are resolved only in a transaction Bundle")
		}
		q, err := url.ParseQuery(query)
		if err != nil || len(q) == 0 || !fhir.IsResourceType(typ) {
			return "", failure(http.StatusBadRequest, "invalid", where, "malformed conditional reference")
		}
		ids, err := w.matchValues(ctx, tx, o, typ, q, "")
		if err != nil {
			var fe *fhirError
			if errors.As(err, &fe) {
				fe.issues[0].Expression = []string{where}
			}
			return "", err
		}
		switch len(ids) {
		case 1:
			return typ + "/" + ids[0], nil
		case 0:
			return "", failure(http.StatusBadRequest, "not-found", where, "the conditional reference matches no resource")
		default:
			return "", failure(http.StatusPreconditionFailed, "multiple-matches", where, "the conditional reference matches more than one resource")
		}
	})
}

// match evaluates conditional criteria written as a query string
// ("identifier=sys|val" or "Patient?identifier=...").
func (w *writer) match(ctx context.Context, tx *vault.SealedTx, o *op, criteria, where string) ([]string, error) {
	if t, rest, ok := strings.Cut(criteria, "?"); ok {
		if t != o.typ {
			return nil, failure(http.StatusBadRequest, "invalid", o.path(where), "the criteria name another resource type")
		}
		criteria = rest
	}
	q, err := url.ParseQuery(criteria)
	if err != nil || len(q) == 0 {
		return nil, failure(http.StatusBadRequest, "invalid", o.path(where), "malformed search criteria")
	}
	return w.matchValues(ctx, tx, o, o.typ, q, where)
}

// matchValues finds the live resources of typ matching every parameter;
// a parameter's comma-separated values are alternatives. Only _id and
// identifier are indexed: identifiers are kept as blind-index tokens, so a
// search never needs PHI in clear.
func (w *writer) matchValues(ctx context.Context, tx *vault.SealedTx, o *op, typ string, q url.Values, where string) ([]string, error) {
	var result map[string]bool
	for name, values := range q {
		found := map[string]bool{}
		for _, vs := range values {
			for _, v := range strings.Split(vs, ",") {
				ids, err := w.lookup(ctx, tx, typ, name, v)
				if err != nil {
					var fe *fhirError
					if errors.As(err, &fe) {
						fe.issues[0].Expression = nil
						if p := o.path(where); p != "" {
							fe.issues[0].Expression = []string{p}
						}
					}
					return nil, err
				}
				for _, id := range ids {
					found[id] = true
				}
			}
		}
		if result == nil {
			result = found
			continue
		}
		for id := range result {
			if !found[id] {
				delete(result, id)
			}
		}
	}
	out := make([]string, 0, len(result))
	for id := range result {
		out = append(out, id)
	}
	return out, nil
}

// lookup returns the live resources matching one search parameter value.
func (w *writer) lookup(ctx context.Context, f *vault.SealedTx, typ, param, value string) ([]string, error) {
	switch param {
	case "_id":
		cur, err := f.Current(ctx, typ, value)
		if errors.Is(err, vault.ErrNotFound) || (err == nil && cur.Deleted) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("look up _id: %w", err)
		}
		return []string{value}, nil
	case "identifier":
		var token []byte
		if sys, val, ok := strings.Cut(value, "|"); ok {
			token = w.vault.Token("identifier", typ, sys, val)
		} else {
			token = w.vault.Token("identifier-any", typ, value)
		}
		ids, err := f.Find(ctx, typ, token)
		if err != nil {
			return nil, fmt.Errorf("look up identifier: %w", err)
		}
		return ids, nil
	}
	return nil, failure(http.StatusBadRequest, "not-supported", "", "only the _id and identifier search parameters are supported")
}

// parseETag reads W/"3", "3" or 3.
func parseETag(s string) (int64, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	s = strings.Trim(s, `"`)
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}
