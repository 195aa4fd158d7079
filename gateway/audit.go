package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/fhiranchor/fhiranchor/access"
	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/fhir"
	"github.com/fhiranchor/fhiranchor/policy"
	"github.com/fhiranchor/fhiranchor/vault"
)

// AuditFinding is one stored row whose evidence does not hold. It names the
// row by table, leaf index (for rows of the log: versions, leaves, leaf
// records) and the row's reference as stored, never by content; Problem is
// one of a fixed set of sentences (see the problem constants).
type AuditFinding struct {
	Table     string `json:"table"`     // versions, leaves, leaf_records, tokens, data_keys, responses, policies, log
	LeafIndex uint64 `json:"leafIndex"` // for versions, leaves and leaf_records; 0 otherwise
	Ref       string `json:"ref"`       // e.g. "Patient/123/_history/2"; ids are opaque, never PHI
	Problem   string `json:"problem"`
}

// AuditReport is what Audit found.
type AuditReport struct {
	Versions    int            `json:"versions"`
	Erased      int            `json:"erased"`
	Records     int            `json:"records"`
	Leaves      int            `json:"leaves"`
	Checkpoints int            `json:"checkpointsChecked"`
	Copies      int            `json:"researchCopies"`
	Tokens      int            `json:"indexTokens"`
	DataKeys    int            `json:"dataKeys"`
	Responses   int            `json:"responses"`
	Policies    int            `json:"policies"`
	Findings    []AuditFinding `json:"findings"`
}

// The tables an AuditFinding names.
const (
	tableVersions  = "versions"
	tableLeaves    = "leaves"
	tableRecords   = "leaf_records"
	tableTokens    = "tokens"
	tableDataKeys  = "data_keys"
	tableResponses = "responses"
	tablePolicies  = "policies"
	tableLog       = "log"
)

// The problems an audit reports: a fixed vocabulary, so that a finding
// never carries a value.
const (
	problemGap              = "the vault's leaf sequence has a gap"
	problemCheckpoint       = "the vault's leaves no longer hash to the anchored root of this checkpoint"
	problemLeafType         = "the leaf's type column disagrees with the type its data commits to"
	problemUnknownType      = "the leaf has an unknown type"
	problemVersionNoLeaf    = "the version row has no leaf"
	problemRecordNoLeaf     = "the record row has no leaf"
	problemLeafNoVersion    = "the resource-version leaf has no version row"
	problemLeafNoRecord     = "the record leaf has no record row"
	problemVersionOnRecord  = "a version row sits on a record leaf"
	problemRecordOnVersion  = "a record row sits on a resource-version leaf"
	problemLeafMismatch     = "the queued leaf does not match the stored commitment"
	problemLeafRef          = "the leaf's reference does not name its row"
	problemErasedContent    = "an erased version still holds ciphertext, salt or a research copy"
	problemErasedUncovered  = "the version is marked erased but no erasure record of its compartment follows it"
	problemErasureCount     = "the erasure record's count disagrees with the versions marked erased"
	problemDataKeyMissing   = "the data key of a version that is not erased is missing"
	problemNotOpen          = "the ciphertext does not open: it, its row or its data key was altered"
	problemNotCanonical     = "the stored body is not in canonical form"
	problemCommitment       = "the content and salt do not hash to the stored commitment"
	problemRowBody          = "the row's type, id or version disagrees with the committed body"
	problemLastUpdated      = "last_updated disagrees with the committed body's meta.lastUpdated"
	problemDeleted          = "the deleted flag disagrees with the committed body"
	problemCopyNotOpen      = "the research copy does not open"
	problemCopyHash         = "the research copy does not match its de-identification record"
	problemCopyMissing      = "the research copy named by a de-identification record is missing"
	problemCopyNoRecord     = "the research copy has no de-identification record"
	problemRecordCommit     = "the record or its salt no longer matches its leaf"
	problemRecordType       = "the record row's type disagrees with its leaf"
	problemRecordJSON       = "the record is not a record of a kind its leaf type holds"
	problemRecordTime       = "the record row's time disagrees with the record"
	problemRecordActor      = "the record row's actor disagrees with the record"
	problemRecordSubject    = "the record row's subject disagrees with the record"
	problemDeidResource     = "the de-identification record names another version"
	problemActivation       = "the policy activation names a policy version that is missing or has another revision"
	problemPolicyRevision   = "the policy bundle does not hash to its revision"
	problemTokenExtra       = "the blind index holds a token the resource's current version does not carry"
	problemTokenMissing     = "the blind index lacks a token of the resource's current version"
	problemTokenSetOrphan   = "the blind index holds a token set for no current live version"
	problemTokenSetBad      = "a token set of the blind index does not decode"
	problemPostings         = "the blind index's postings differ from its token sets (reindex rewrites them)"
	problemIndexVersion     = "the blind index was built by other rules than this version's, or not yet: start the gateway or run reindex"
	problemDataKeyUnwrap    = "the data key does not unwrap under the master key"
	problemResponseNotOpen  = "the remembered response does not open: it was altered, moved or stored unsealed"
	problemCheckpointsAhead = "anchored checkpoints are larger than the vault's log"
)

// AuditGCPercent is the garbage collector's target `fhiranchor audit` runs
// with, unless GOGC says otherwise. An audit allocates some 27 KB for each
// version it checks (its decoded tree, unpacked body and copy, rows) and
// keeps about 150 bytes (its entry in the map of current versions): at the
// default of 100 the collector ran some 400 times in an audit of a million
// resources. 200 made that audit 4-10 % faster for a peak RSS a third larger
// (RSS 1.1 GiB); 400 gained another 2 % for 1.5 GiB.
const AuditGCPercent = 200

// SetAuditGC sets the garbage collector's target to AuditGCPercent, as
// `fhiranchor audit` runs, unless getenv("GOGC") chooses one, and returns
// what restores the target before.
func SetAuditGC(getenv func(string) string) (restore func()) {
	if getenv("GOGC") != "" {
		return func() {}
	}
	old := debug.SetGCPercent(AuditGCPercent)
	return func() { debug.SetGCPercent(old) }
}

// auditPage is how many rows an audit reads per query.
const auditPage = 1000

// Audit checks every row of every table of the vault, not a sample (as
// PostgreSQL's amcheck checks every page of an index):
//
//   - leaves, versions and leaf records are walked together in Seq order:
//     every resource-version leaf has its version row and every record leaf
//     its record row, and no row lacks its leaf; leaf Seqs are gapless;
//   - every version's commitment is re-derived from its decrypted canonical
//     body and salt and compared with the stored commitment and the leaf;
//     its type, id, version, last_updated and deleted flag are compared with
//     the committed body; an erased version must be empty and be followed by
//     an erasure record of its compartment, whose count must match;
//   - every research copy must open and hash to the output its
//     de-identification record commits to;
//   - every record's commitment is re-derived from the record and salt, and
//     its row's subject, actor, time and the leaf's reference from the record;
//   - the blind index must hold exactly the tokens of each resource's current
//     live version, derived again from its body, as that version's token
//     set, and its postings must be exactly those the sets make (compared
//     by a keyed, order-free digest: see indexDigest);
//   - every data key must unwrap, every remembered response must open, every
//     policy bundle must hash to its revision and every policy activation
//     name a stored bundle of that revision;
//   - the Merkle root of the vault's leaves at each given checkpoint size
//     must be the root that was anchored.
//
// Decrypting needs the master key, so only the vault's owner can run it. What
// it cannot detect is listed in docs/anchoring.md.
func Audit(ctx context.Context, v *vault.Sealed, anchoredRoots map[uint64][]byte) (AuditReport, error) {
	a := &auditor{v: v, st: v.Store(), roots: anchoredRoots,
		current: map[resourceKey]currentVersion{}, keySeeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, copies: map[string]*pendingCopy{}, erased: map[string][]erasedVersion{},
		tree: (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)}
	workers := runtime.GOMAXPROCS(0)
	if n := int(auditWorkers.Load()); n > 0 {
		workers = n
	}
	a.slots = make(chan struct{}, workers)
	// A step that fails leaves pages being read and rows being checked:
	// cancel them, and wait for them before returning.
	ctx, cancel := context.WithCancel(ctx)
	defer a.checking.Wait()
	defer cancel()
	// The postings and the policy bundles are checked against nothing the
	// log walk learns: they are read meanwhile, on what CPU the walk leaves
	// (it waits for pages and for its own bookkeeping), and their results
	// are taken where the steps below need them.
	a.sets, a.postings = newIndexDigests()
	a.postingsWalked = a.start(ctx, func(ctx context.Context) error { return a.st.WalkPostings(ctx, a.postings.add) })
	a.bundlesChecked = a.start(ctx, func(ctx context.Context) (err error) {
		a.bundles, err = checkBundles(ctx, a.st)
		return err
	})
	steps := []func(context.Context) error{a.walkLog, a.walkTokens, a.walkDataKeys, a.walkResponses, a.walkPolicies}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return a.rep, fmt.Errorf("audit: %w", err)
		}
	}
	return a.rep, nil
}

// auditor holds what one audit has learned so far.
type auditor struct {
	v     *vault.Sealed
	st    vault.Store
	roots map[uint64][]byte
	rep   AuditReport

	tree      *compact.Range
	treeBroke bool

	// current is the newest version seen of each resource, with the
	// tokens the blind index must hold for it, by resourceKey under
	// keySeeds.
	current  map[resourceKey]currentVersion
	keySeeds [2]maphash.Seed
	// copies are the versions in a patient compartment waiting for their
	// de-identification record, by commitment (hex).
	copies map[string]*pendingCopy
	// erased are the versions marked erased not yet covered by an erasure
	// record, by the recordRef of their compartment.
	erased map[string][]erasedVersion
	// activations are the policy versions activation records name, with the
	// revision they name.
	activations []activation
	// slots bounds the chunks of rows being checked at once (spread);
	// checking counts the goroutines reading pages and checking rows.
	slots    chan struct{}
	checking sync.WaitGroup

	// sets and postings digest the blind index's token sets and postings
	// (see indexDigest); postingsWalked waits for the postings' walk.
	sets, postings *indexDigest
	postingsWalked func() error
	// bundles is what checking the stored policy bundles found, once
	// bundlesChecked has returned.
	bundles        bundleCheck
	bundlesChecked func() error
}

// start runs step on a goroutine of its own and returns a function that
// waits for it and returns its error.
func (a *auditor) start(ctx context.Context, step func(context.Context) error) func() error {
	done := make(chan error, 1)
	a.checking.Add(1)
	go func() {
		defer a.checking.Done()
		done <- step(ctx)
	}()
	return func() error { return <-done }
}

// resourceKey stands for a resource (its type and id) in the audit's map
// of current versions: a 128-bit hash keyed by seeds drawn for each audit.
// A million "Type/id" strings and version structs behind pointers were two
// million objects the garbage collector marked at every cycle of an audit
// (a hundred cycles in an audit of a million resources); this map holds no
// pointer at all. Two resources of one vault colliding is as likely as
// guessing the seeds. A finding that must name the resource reads its row
// again by Seq (versionAt).
type resourceKey [2]uint64

// resourceKey returns the key of the resource typ/id.
func (a *auditor) resourceKey(typ, id string) resourceKey {
	var k resourceKey
	var n [binary.MaxVarintLen64]byte
	for i, seed := range a.keySeeds {
		var h maphash.Hash
		h.SetSeed(seed)
		// The type's length first: a row's columns are anything an
		// intruder wrote, and ("a", "bc") must not be ("ab", "c").
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(typ)))])
		h.WriteString(typ)
		h.WriteString(id)
		k[i] = h.Sum64()
	}
	return k
}

// versionAt reads the version row at seq again, for a finding about the
// resource the walk kept by its key only.
func (a *auditor) versionAt(ctx context.Context, seq int64) (vault.Record, error) {
	rs, err := a.st.Versions(ctx, seq-1, 1)
	if err != nil {
		return vault.Record{}, fmt.Errorf("read the version at seq %d again: %w", seq, err)
	}
	if len(rs) == 0 || rs[0].Leaf.Seq != seq {
		return vault.Record{}, fmt.Errorf("the version at seq %d changed during the audit", seq)
	}
	return rs[0], nil
}

type currentVersion struct {
	version int64
	seq     int64       // of its row
	live    bool        // neither a tombstone nor erased
	tokens  tokenDigest // of the tokens derived from its body; none unless live
	unknown bool        // the body did not open: its tokens cannot be derived (found with the version)
}

type pendingCopy struct {
	seq     int64
	ref     string // the version's location as stored
	hash    string // SHA-256 (hex) of the copy, "" when the version has none
	subject string // recordRef of the version's compartment
}

type erasedVersion struct {
	seq int64
	ref string
}

type activation struct {
	seq      int64
	ref      string
	version  int64
	revision string
}

func (a *auditor) find(table string, seq int64, ref, problem string) {
	f := AuditFinding{Table: table, Ref: ref, Problem: problem}
	if seq > 0 {
		f.LeafIndex = uint64(seq - 1)
	}
	a.rep.Findings = append(a.rep.Findings, f)
}

// walkLog walks the leaves, versions and leaf records in Seq order, as one
// merged stream. Each table is read a page ahead, and what can be checked of
// a row without the others (a leaf's hash, a version's content, a record's
// commitment and decoding) is checked on every core as soon as its page is
// read: the walk itself only matches rows and keeps the books.
func (a *auditor) walkLog(ctx context.Context) error {
	leafSeq := func(l vault.Leaf) int64 { return l.Seq }
	leaves := newStream(a, a.st.Leaves, leafSeq, hashLeaves)
	versions := newStream(a, a.st.Versions, func(r vault.Record) int64 { return r.Leaf.Seq }, a.checkContents)
	records := newStream(a, a.st.Records, leafSeq, a.decodeRecords)
	for {
		seq := int64(-1)
		for _, s := range []interface {
			head(context.Context) (int64, bool, error)
		}{leaves, versions, records} {
			h, ok, err := s.head(ctx)
			if err != nil {
				return err
			}
			if ok && (seq < 0 || h < seq) {
				seq = h
			}
		}
		if seq < 0 {
			break
		}
		var row logRow
		row.leaf, row.leafHash, row.hasLeaf = leaves.take(seq)
		row.version, row.content, row.hasVersion = versions.take(seq)
		row.record, row.decoded, row.hasRecord = records.take(seq)
		if err := a.checkSeq(ctx, seq, &row); err != nil {
			return err
		}
	}
	a.finishLog()
	return nil
}

// logRow is what the log holds at one Seq, with what was checked of it
// ahead of the walk.
type logRow struct {
	leaf     vault.Leaf
	leafHash []byte // the leaf's Merkle hash
	hasLeaf  bool

	version    vault.Record
	content    *pendingContent // nil for an erased version
	hasVersion bool

	record    vault.Leaf
	decoded   *pendingRecord
	hasRecord bool
}

// stream pages through one table of the log in Seq order, one page ahead
// of the walk. P is what prepare starts for each row of a page.
type stream[T, P any] struct {
	a     *auditor
	next  func(ctx context.Context, after int64, limit int) ([]T, error)
	seqOf func(T) int64
	// prepare sees each page as soon as it is read (off the walk's
	// goroutine) and returns a value for each of its rows.
	prepare func(context.Context, []T) []P
	buf     []T
	pre     []P
	ahead   chan streamPage[T, P] // the page being read, nil when none is
	after   int64
	done    bool
}

type streamPage[T, P any] struct {
	rows []T
	pre  []P
	err  error
}

func newStream[T, P any](a *auditor, next func(ctx context.Context, after int64, limit int) ([]T, error), seqOf func(T) int64, prepare func(context.Context, []T) []P) *stream[T, P] {
	return &stream[T, P]{a: a, next: next, seqOf: seqOf, prepare: prepare}
}

// read starts reading the page after s.after.
func (s *stream[T, P]) read(ctx context.Context) {
	ch := make(chan streamPage[T, P], 1)
	s.ahead = ch
	after := s.after
	s.a.checking.Add(1)
	go func() {
		defer s.a.checking.Done()
		rows, err := s.next(ctx, after, auditPage)
		var pre []P
		if err == nil {
			pre = s.prepare(ctx, rows)
		}
		ch <- streamPage[T, P]{rows: rows, pre: pre, err: err}
	}()
}

func (s *stream[T, P]) head(ctx context.Context) (int64, bool, error) {
	if len(s.buf) == 0 && !s.done {
		if s.ahead == nil {
			s.read(ctx)
		}
		var page streamPage[T, P]
		select {
		case page = <-s.ahead:
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
		s.ahead = nil
		if page.err != nil {
			return 0, false, page.err
		}
		if len(page.rows) < auditPage {
			s.done = true
		} else {
			s.after = s.seqOf(page.rows[len(page.rows)-1])
			s.read(ctx)
		}
		s.buf, s.pre = page.rows, page.pre
	}
	if len(s.buf) == 0 {
		return 0, false, nil
	}
	return s.seqOf(s.buf[0]), true, nil
}

// take returns the head row, and what prepare returned for it, if its Seq
// is seq. head must have been called.
func (s *stream[T, P]) take(seq int64) (T, P, bool) {
	var row T
	var pre P
	if len(s.buf) == 0 || s.seqOf(s.buf[0]) != seq {
		return row, pre, false
	}
	row, s.buf = s.buf[0], s.buf[1:]
	pre, s.pre = s.pre[0], s.pre[1:]
	return row, pre, true
}

// checkSeq checks what the log holds at one Seq: its leaf, version row and
// record row, each of which may be missing.
func (a *auditor) checkSeq(ctx context.Context, seq int64, row *logRow) error {
	var l, rec *vault.Leaf
	var r *vault.Record
	if row.hasLeaf {
		l = &row.leaf
	}
	if row.hasVersion {
		r = &row.version
	}
	if row.hasRecord {
		rec = &row.record
	}
	var typ anchor.LeafType // what the leaf's data commits to
	if l != nil {
		a.rep.Leaves++
		a.appendLeaf(l, row.leafHash)
		if len(l.Data) > 0 {
			typ = anchor.LeafType(l.Data[0])
		}
		if len(l.Data) == 0 || l.Data[0] != l.Type {
			a.find(tableLeaves, seq, l.Ref, problemLeafType)
		}
		switch {
		case !knownLeafType(typ):
			a.find(tableLeaves, seq, l.Ref, problemUnknownType)
		case typ == anchor.LeafResourceVersion && r == nil:
			a.find(tableLeaves, seq, l.Ref, problemLeafNoVersion)
		case typ != anchor.LeafResourceVersion && rec == nil:
			a.find(tableLeaves, seq, l.Ref, problemLeafNoRecord)
		}
	}
	if r != nil {
		ref := location(r)
		switch {
		case l == nil:
			a.find(tableVersions, seq, ref, problemVersionNoLeaf)
		case typ != anchor.LeafResourceVersion:
			a.find(tableVersions, seq, ref, problemVersionOnRecord)
		}
		if err := a.checkVersion(ctx, *r, l, row.content); err != nil {
			return err
		}
	}
	if rec != nil {
		switch {
		case l == nil:
			a.find(tableRecords, seq, "", problemRecordNoLeaf)
		case typ == anchor.LeafResourceVersion:
			a.find(tableRecords, seq, l.Ref, problemRecordOnVersion)
		default:
			if err := a.checkRecord(ctx, *l, *rec, row.decoded); err != nil {
				return err
			}
		}
	}
	return nil
}

func knownLeafType(t anchor.LeafType) bool {
	return t >= anchor.LeafResourceVersion && t <= anchor.LeafDeidentification
}

// hashLeaves returns the Merkle leaf hash of each leaf of a page.
func hashLeaves(_ context.Context, page []vault.Leaf) [][]byte {
	hashes := make([][]byte, len(page))
	for i, l := range page {
		hashes[i] = rfc6962.DefaultHasher.HashLeaf(l.Data)
	}
	return hashes
}

// appendLeaf adds a leaf, by its hash, to the Merkle tree and compares the
// root with the anchored one at every checkpoint. After a gap no root can
// be computed.
func (a *auditor) appendLeaf(l *vault.Leaf, hash []byte) {
	if a.treeBroke {
		return
	}
	if uint64(l.Seq) != a.tree.End()+1 {
		a.find(tableLog, int64(a.tree.End())+1, l.Ref, problemGap)
		a.treeBroke = true
		return
	}
	if err := a.tree.Append(hash, nil); err != nil {
		a.treeBroke = true
		return
	}
	if want, ok := a.roots[a.tree.End()]; ok {
		a.rep.Checkpoints++
		got, err := a.tree.GetRootHash(nil)
		if err != nil || !bytes.Equal(got, want) {
			a.find(tableLog, l.Seq, "checkpoint/"+strconv.FormatUint(a.tree.End(), 10), problemCheckpoint)
		}
	}
}

// location is the reference of a stored version, as its leaf names it.
func location(r *vault.Record) string {
	return r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.Version, 10)
}

// checkVersion checks one version row against its leaf (nil if missing)
// and its committed body, whose check p started (nil if erased).
func (a *auditor) checkVersion(ctx context.Context, r vault.Record, l *vault.Leaf, p *pendingContent) error {
	a.rep.Versions++
	seq, ref := r.Leaf.Seq, location(&r)
	if l != nil {
		if l.Ref != ref {
			a.find(tableLeaves, seq, l.Ref, problemLeafRef)
		}
		if !bytes.Equal(l.Data, anchor.LeafData(anchor.LeafResourceVersion, r.Commitment)) {
			a.find(tableVersions, seq, ref, problemLeafMismatch)
		}
	}
	key := a.resourceKey(r.Type, r.ID)
	cur := currentVersion{version: r.Version, seq: seq, live: !r.Deleted && !r.Erased}
	if prev, seen := a.current[key]; !seen || r.Version > prev.version {
		// The newest version so far: the index must hold its tokens, as
		// what follows finds them. (An older one's are not the index's.)
		defer func() { a.current[key] = cur }()
	}
	compartment := r.Compartment()
	if r.Erased {
		a.rep.Erased++
		if len(r.Ciphertext) > 0 || len(r.Salt) > 0 || len(r.Deid) > 0 {
			a.find(tableVersions, seq, ref, problemErasedContent)
		}
		subject := "" // the shared key is never erased: no erasure can cover it
		if compartment != "" {
			subject = access.Ref(a.v, compartment)
		}
		a.erased[subject] = append(a.erased[subject], erasedVersion{seq: seq, ref: ref})
		return nil
	}
	if err := wait(ctx, p.done); err != nil {
		return err
	}
	c := p.c
	if c.err != nil {
		return c.err
	}
	cur.unknown = c.unknown
	for _, problem := range c.problems {
		a.find(tableVersions, seq, ref, problem)
	}
	if c.stop {
		return nil
	}
	cur.tokens = c.tokens
	if compartment == "" || r.Deleted {
		if len(r.Deid) > 0 {
			// Only versions in a compartment get copies.
			a.find(tableVersions, seq, ref, problemCopyNoRecord)
		}
		return nil
	}
	pc := &pendingCopy{seq: seq, ref: ref, subject: access.Ref(a.v, compartment)}
	if len(r.Deid) > 0 {
		a.rep.Copies++
		if c.copyNotOpen {
			a.find(tableVersions, seq, ref, problemCopyNotOpen)
			return nil
		}
		pc.hash = c.copyHash
	}
	a.copies[hex.EncodeToString(r.Commitment)] = pc
	return nil
}

// versionContent is what checking a version's sealed content found: the
// part of checkVersion that needs no other row, so that it runs in
// parallel (checkContents) while the walk itself stays in Seq order.
type versionContent struct {
	problems    []string    // on the version row, in the order found
	stop        bool        // nothing more can be checked: the body did not open or decode
	unknown     bool        // the body did not open: its tokens cannot be derived
	tokens      tokenDigest // of the blind-index tokens of a live version
	tokenList   []string    // those tokens, sorted and distinct, if asked for
	copyHash    string      // SHA-256 (hex) of the research copy, if it has one and it opened
	copyNotOpen bool
	err         error // the context's, if it ended
}

// checkContent opens a version that is not erased and checks its body
// against its row: it must open, be canonical, hash with its salt to the
// stored commitment and agree with the row's type, id, version,
// last_updated and deleted flag. It derives the tokens of a live version
// and hashes its research copy.
func checkContent(ctx context.Context, v *vault.Sealed, r vault.Record, keepTokens bool) (c versionContent) {
	ver, err := v.Open(ctx, r)
	c.unknown = err != nil
	switch {
	case errors.Is(err, vault.ErrNotFound):
		c.problems, c.stop = append(c.problems, problemDataKeyMissing), true
		return c
	case err != nil:
		c.err = ctx.Err()
		c.problems, c.stop = append(c.problems, problemNotOpen), true
		return c
	}
	// One pass checks the canonical form and decodes the tree.
	decoded, err := fhir.DecodeCanonical(ver.Body)
	if err != nil {
		c.problems, c.stop = append(c.problems, problemNotCanonical), true
		return c
	}
	if !bytes.Equal(anchor.Commit(anchor.LeafResourceVersion, ver.Salt, ver.Body), r.Commitment) {
		c.problems = append(c.problems, problemCommitment)
	}
	tree, ok := decoded.(map[string]any)
	if !ok {
		c.problems, c.stop = append(c.problems, problemNotCanonical), true
		return c
	}
	meta, _ := tree["meta"].(map[string]any)
	if tree["resourceType"] != r.Type || tree["id"] != r.ID || meta == nil || meta["versionId"] != strconv.FormatInt(r.Version, 10) {
		c.problems = append(c.problems, problemRowBody)
	}
	// Every version the gateway stores carries meta.lastUpdated (its own
	// clock, set on write), tombstones included.
	if lu, ok := meta["lastUpdated"].(string); ok && lu != r.LastUpdated.UTC().Format(fhir.InstantLayout) {
		c.problems = append(c.problems, problemLastUpdated)
	}
	if tombstone := tree["deleted"] == true; tombstone != r.Deleted {
		c.problems = append(c.problems, problemDeleted)
	}
	if !r.Deleted {
		tokens := versionTokens(v, r.Type, tree)
		if keepTokens {
			c.tokenList = tokenSet(tokens)
		}
		c.tokens = digestTokens(tokens)
	}
	if r.Compartment() == "" || r.Deleted || len(r.Deid) == 0 {
		return c
	}
	data, err := v.OpenCopy(ctx, r)
	if err != nil {
		c.err = ctx.Err()
		c.copyNotOpen = true
		return c
	}
	sum := sha256.Sum256(data)
	c.copyHash = hex.EncodeToString(sum[:])
	return c
}

// auditWorkers, when positive, bounds the rows checked at once instead of
// the number of cores: only tests set it (SetAuditWorkers).
var auditWorkers atomic.Int32

// checkChunk is how many rows of a page a worker checks in a row: enough to
// make handing out work cheap, few enough to keep every core busy.
const checkChunk = 32

// spread runs check(i) for every i < n on the audit's workers, a chunk of
// rows at a time, chunks starting in order, and returns at once. done[i /
// checkChunk] is closed when the chunk of i has been checked. After ctx
// ends, checks are skipped.
func (a *auditor) spread(ctx context.Context, n int, check func(i int)) (done []chan struct{}) {
	done = make([]chan struct{}, (n+checkChunk-1)/checkChunk)
	for c := range done {
		done[c] = make(chan struct{})
	}
	a.checking.Add(1)
	go func() {
		defer a.checking.Done()
		for c := range done {
			a.slots <- struct{}{}
			a.checking.Add(1)
			go func() {
				defer a.checking.Done()
				for i := c * checkChunk; i < min(n, (c+1)*checkChunk) && ctx.Err() == nil; i++ {
					check(i)
				}
				<-a.slots
				close(done[c])
			}()
		}
	}()
	return done
}

// wait waits for a check started by spread. Once ctx has ended, checks are
// skipped, so what a closed done guards counts only while ctx has not.
func wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
	case <-ctx.Done():
	}
	return ctx.Err()
}

// pendingContent is a version's content check, done when done is closed.
type pendingContent struct {
	done chan struct{}
	c    versionContent
}

// checkContents starts checking the content of a page of versions (those
// not erased, nil for the others) on the audit's workers, for checkVersion
// to wait for: the walk goes on with the page's other rows meanwhile.
func (a *auditor) checkContents(ctx context.Context, page []vault.Record) []*pendingContent {
	pending := make([]*pendingContent, len(page))
	all := make([]pendingContent, len(page))
	var todo []int
	for i, r := range page {
		if !r.Erased {
			pending[i] = &all[i]
			todo = append(todo, i)
		}
	}
	done := a.spread(ctx, len(todo), func(j int) {
		i := todo[j]
		pending[i].c = checkContent(ctx, a.v, page[i], false)
	})
	for j, i := range todo {
		pending[i].done = done[j/checkChunk]
	}
	return pending
}

// tokenDigest stands for a set of blind-index tokens: SHA-256 over them
// sorted and distinct, and how many they are. The audit keeps one per
// resource from the versions walk to the token sets walk (the tokens
// themselves are a few hundred bytes a resource, held through the whole
// walk), and derives the tokens again to tell what differs only for a set
// whose digest does not match.
type tokenDigest struct {
	sum [sha256.Size]byte
	n   int
}

// digestTokens returns the digest of tokens, sorting them in place.
func digestTokens(tokens [][]byte) tokenDigest {
	slices.SortFunc(tokens, bytes.Compare)
	tokens = slices.CompactFunc(tokens, bytes.Equal)
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, t := range tokens {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(t)))])
		h.Write(t)
	}
	d := tokenDigest{n: len(tokens)}
	h.Sum(d.sum[:0])
	return d
}

// tokenSet returns tokens as sorted, distinct strings.
func tokenSet(tokens [][]byte) []string {
	out := make([]string, 0, len(tokens))
	for _, t := range tokens {
		out = append(out, string(t))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkRecord checks a record row against its leaf: its commitment, then
// its index columns (subject, actor, time) and the leaf's reference against
// the record, then what the record says about other rows.
func (a *auditor) checkRecord(ctx context.Context, l, rec vault.Leaf, p *pendingRecord) error {
	a.rep.Records++
	if err := wait(ctx, p.done); err != nil {
		return err
	}
	seq, typ := l.Seq, anchor.LeafType(l.Data[0])
	leafData := p.leafData // committed under the row's type
	if rec.Type != uint8(typ) {
		a.find(tableRecords, seq, l.Ref, problemRecordType)
		leafData = anchor.LeafData(typ, anchor.Commit(typ, rec.Salt, rec.Record))
	}
	if !bytes.Equal(leafData, l.Data) {
		a.find(tableRecords, seq, l.Ref, problemRecordCommit)
		return nil // nothing the record says can be trusted
	}
	// The record is read as the type its kind names (access.Decode is
	// strict): a committed record of no kind its leaf type holds was made
	// by something other than the gateway.
	kind, decoded, err := p.kind, p.decoded, p.err
	if err != nil || kind.LeafType() != typ {
		a.find(tableRecords, seq, l.Ref, problemRecordJSON)
		return nil
	}
	var at, client, subject, ref string
	checkSubject := true
	switch r := decoded.(type) {
	case *access.ConsentEvent:
		at, client = r.Time, r.Client
		subject, ref = r.Patient, "consent-event/"+r.Consent
	case *access.PolicyActivation:
		at, client = r.Time, r.Client
		subject, ref = "", "policy-activation/"+strconv.FormatInt(r.Version, 10)
		a.activations = append(a.activations, activation{seq: seq, ref: l.Ref, version: r.Version, revision: r.Revision})
	case *access.Decision:
		at, client = r.Time, r.Client
		subject, ref = r.Patient, "access-decision"
	case *access.ResearchDecision:
		at, client = r.Time, r.Client
		subject, ref = access.ResearchSubject, "access-decision"
	case *access.Erasure:
		at, client = r.ErasedAt, r.Client // erasures made before records had kinds name no client
		subject, ref = r.Erased, "erasure/"+r.Erased
		if r.Versions != int64(len(a.erased[r.Erased])) {
			a.find(tableRecords, seq, l.Ref, problemErasureCount)
		}
		delete(a.erased, r.Erased)
	case *access.Deidentification:
		at = r.Time
		ref, checkSubject = "deidentification/"+r.Resource, false
		a.checkCopy(seq, l.Ref, rec.Subject, r)
	}
	if t, err := time.Parse(time.RFC3339Nano, at); err != nil || !t.Truncate(time.Microsecond).Equal(rec.Time) {
		a.find(tableRecords, seq, l.Ref, problemRecordTime)
	}
	if client != "" && client != rec.Actor {
		a.find(tableRecords, seq, l.Ref, problemRecordActor)
	}
	if checkSubject && rec.Subject != subject {
		a.find(tableRecords, seq, l.Ref, problemRecordSubject)
	}
	if l.Ref != ref {
		a.find(tableLeaves, seq, l.Ref, problemLeafRef)
	}
	return nil
}

// pendingRecord is what can be learnt of a record row on its own: its leaf
// data under the row's type and its decoding, done when done is closed.
type pendingRecord struct {
	done     chan struct{}
	leafData []byte
	kind     access.Kind
	decoded  any
	err      error
}

// decodeRecords starts committing to and decoding a page of records on the
// audit's workers, for checkRecord to wait for.
func (a *auditor) decodeRecords(ctx context.Context, page []vault.Leaf) []*pendingRecord {
	pending := make([]*pendingRecord, len(page))
	all := make([]pendingRecord, len(page))
	for i := range page {
		pending[i] = &all[i]
	}
	done := a.spread(ctx, len(page), func(i int) {
		rec, p := page[i], pending[i]
		typ := anchor.LeafType(rec.Type)
		p.leafData = anchor.LeafData(typ, anchor.Commit(typ, rec.Salt, rec.Record))
		p.kind, p.decoded, p.err = access.Decode(rec.Record)
	})
	for i := range page {
		pending[i].done = done[i/checkChunk]
	}
	return pending
}

// checkCopy checks the research copy a de-identification record names (by
// its source commitment) against the record: same patient, same version,
// same hash.
func (a *auditor) checkCopy(seq int64, leafRef, subject string, r *access.Deidentification) {
	p := a.copies[r.Source]
	if p == nil {
		return // its version was erased since, or is missing (found above)
	}
	delete(a.copies, r.Source)
	if subject != p.subject {
		a.find(tableRecords, seq, leafRef, problemRecordSubject)
	}
	if r.Resource != access.Ref(a.v, p.ref) {
		a.find(tableRecords, seq, leafRef, problemDeidResource)
	}
	switch {
	case p.hash == "":
		a.find(tableVersions, p.seq, p.ref, problemCopyMissing)
	case p.hash != r.Output:
		a.find(tableVersions, p.seq, p.ref, problemCopyHash)
	}
}

// finishLog reports what the log walk left open: copies without a record,
// erased versions without an erasure, checkpoints beyond the log.
func (a *auditor) finishLog() {
	for _, p := range a.copies {
		if p.hash != "" {
			a.find(tableVersions, p.seq, p.ref, problemCopyNoRecord)
		}
	}
	a.copies = nil
	for _, vs := range a.erased {
		for _, e := range vs {
			a.find(tableVersions, e.seq, e.ref, problemErasedUncovered)
		}
	}
	a.erased = nil
	if !a.treeBroke {
		if missing := len(a.roots) - a.rep.Checkpoints; missing > 0 {
			a.find(tableLog, int64(a.tree.End()), "log", problemCheckpointsAhead)
		}
	}
}

// walkTokens compares each current live version's token set with the
// tokens derived from the version, then the postings with the sets.
func (a *auditor) walkTokens(ctx context.Context) error {
	version, err := a.st.IndexVersion(ctx)
	if err != nil {
		return err
	}
	if version != IndexVersion {
		// Every set would differ: one finding says why (a vault migrated
		// by this binary's audit before its gateway rebuilt the index).
		a.find(tableTokens, 0, "index_state", problemIndexVersion)
		a.current = nil
		return a.postingsWalked()
	}
	bySeq := make(map[int64]resourceKey, len(a.current))
	for key, cur := range a.current {
		if cur.live {
			bySeq[cur.seq] = key
		}
	}
	sets, postings := a.sets, a.postings
	for after := int64(0); ; {
		page, err := a.st.TokenSets(ctx, after, auditPage)
		if err != nil {
			return err
		}
		for _, set := range page {
			key, ok := bySeq[set.Seq]
			if !ok {
				a.find(tableTokens, set.Seq, "", problemTokenSetOrphan)
				continue
			}
			delete(bySeq, set.Seq)
			if set.Bad {
				r, err := a.versionAt(ctx, set.Seq)
				if err != nil {
					return err
				}
				a.find(tableTokens, set.Seq, r.Type+"/"+r.ID, problemTokenSetBad)
				continue
			}
			sets.addSet(set.Tokens, set.Seq)
			cur := a.current[key]
			if cur.unknown || digestTokens(set.Tokens) == cur.tokens {
				continue // the version's own finding says why, or the set is right
			}
			if err := a.compareTokens(ctx, cur, set); err != nil {
				return err
			}
		}
		if len(page) < auditPage {
			break
		}
		after = page[len(page)-1].Seq
	}
	for seq, key := range bySeq {
		if cur := a.current[key]; cur.tokens.n > 0 {
			r, err := a.versionAt(ctx, seq)
			if err != nil {
				return err
			}
			a.find(tableTokens, seq, r.Type+"/"+r.ID, problemTokenMissing)
		}
	}
	a.current = nil
	if err := a.postingsWalked(); err != nil {
		return err
	}
	a.rep.Tokens = int(postings.n)
	if !postings.equal(sets) {
		a.find(tableTokens, 0, "postings", problemPostings)
	}
	return nil
}

// compareTokens finds what differs between a token set and the tokens
// the current version cur at its Seq derives, whose digests differ: tokens
// the set has that the version does not, and the other way round. The
// version is read and its tokens derived again (the walk kept only their
// digest).
func (a *auditor) compareTokens(ctx context.Context, cur currentVersion, set vault.TokenSet) error {
	r, err := a.versionAt(ctx, set.Seq)
	if err != nil {
		return err
	}
	key := r.Type + "/" + r.ID
	c := checkContent(ctx, a.v, r, true)
	if c.err != nil {
		return c.err
	}
	if r.Version != cur.version || c.unknown || c.tokens != cur.tokens {
		// The row changed under the audit (a gateway is writing): what it
		// holds now is not what was checked. (Errors name the seq, not the
		// resource: a client-chosen id can be an MRN.)
		return fmt.Errorf("the version of the token set at seq %d changed during the audit", set.Seq)
	}
	want := c.tokenList
	have := tokenSet(set.Tokens)
	for _, t := range have {
		if _, ok := slices.BinarySearch(want, t); !ok {
			a.find(tableTokens, set.Seq, key, problemTokenExtra)
			break
		}
	}
	for _, t := range want {
		if _, ok := slices.BinarySearch(have, t); !ok {
			a.find(tableTokens, set.Seq, key, problemTokenMissing)
			break
		}
	}
	return nil
}

// walkDataKeys checks that every stored data key unwraps. (A key missing
// for a version that is not erased is found with the version.)
func (a *auditor) walkDataKeys(ctx context.Context) error {
	for after := ""; ; {
		ks, err := a.st.DataKeys(ctx, after, auditPage)
		if err != nil {
			return err
		}
		for _, k := range ks {
			a.rep.DataKeys++
			if err := a.v.CheckDataKey(k); err != nil {
				a.find(tableDataKeys, 0, k.ID, problemDataKeyUnwrap)
			}
		}
		if len(ks) < auditPage {
			return nil
		}
		after = ks[len(ks)-1].ID
	}
}

// walkResponses checks that every remembered response opens: sealed
// under the master key's responses key and bound to its idempotency key.
func (a *auditor) walkResponses(ctx context.Context) error {
	for after := []byte(nil); ; {
		rs, err := a.st.Responses(ctx, after, auditPage)
		if err != nil {
			return err
		}
		for _, r := range rs {
			a.rep.Responses++
			if _, err := a.v.OpenResponse(r.Key, r.Body); err != nil {
				// The key is a hash of client, interaction and the client's
				// key: opaque. Its first bytes name the row.
				a.find(tableResponses, 0, "responses/"+hex.EncodeToString(r.Key[:min(len(r.Key), 8)]), problemResponseNotOpen)
			}
		}
		if len(rs) < auditPage {
			return nil
		}
		after = rs[len(rs)-1].Key
	}
}

// bundleCheck is what checking the stored policy bundles found: the
// revision of each version, and the versions whose bundle does not hash to
// it.
type bundleCheck struct {
	revisions map[int64]string
	bad       []int64
}

// checkBundles checks that every stored bundle hashes to its revision.
func checkBundles(ctx context.Context, st vault.Store) (bundleCheck, error) {
	c := bundleCheck{revisions: map[int64]string{}}
	ps, err := st.Policies(ctx)
	if err != nil {
		return c, err
	}
	for _, p := range ps {
		full, err := st.Policy(ctx, p.Version)
		if err != nil {
			return c, err
		}
		c.revisions[p.Version] = p.Revision
		files, err := policy.DecodeFiles(full.Bundle)
		if err != nil {
			c.bad = append(c.bad, p.Version)
			continue
		}
		if rev, _, err := policy.Check(ctx, files.FS()); err != nil || rev != p.Revision {
			if ctx.Err() != nil {
				return c, ctx.Err()
			}
			c.bad = append(c.bad, p.Version)
		}
	}
	return c, nil
}

// walkPolicies reports the bundles checkBundles found bad, and checks that
// every activation names a stored bundle of the revision it names.
func (a *auditor) walkPolicies(context.Context) error {
	if err := a.bundlesChecked(); err != nil {
		return err
	}
	a.rep.Policies = len(a.bundles.revisions)
	for _, v := range a.bundles.bad {
		a.find(tablePolicies, 0, "policy/"+strconv.FormatInt(v, 10), problemPolicyRevision)
	}
	for _, act := range a.activations {
		if rev, ok := a.bundles.revisions[act.version]; !ok || rev != act.revision {
			a.find(tableRecords, act.seq, act.ref, problemActivation)
		}
	}
	return nil
}
