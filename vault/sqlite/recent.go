package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/fhiranchor/fhiranchor/vault"
)

// The recent level of the blind index lives in memory (schema_v10.sql).
//
// Each write's postings used to be inserted into a third table,
// postings_recent, inside the writer's transaction: a B-tree seek and
// insert per posting, the largest single cost of a write after the
// resource itself (some 30 µs a resource of the writer's serial time, in
// the Synthea ingest's profile). The rows were redundant all along: a
// token set (token_sets, written in the same transaction) lists the same
// postings. So the postings of the token sets above a watermark
// (index_state.merged) are held in memory only, rebuilt from those token
// sets when the Store opens, and written to postings_mid in bulk, sorted,
// by the commit that moves the watermark (a merge). Token sets at or below
// the watermark have their postings in the two tables.
//
// Readers must see the tables and the memory as of one commit. Each commit
// that changes the recent level bumps index_state.gen in its transaction
// and then applies its changes to memory stamped with that generation; a
// posting is visible to a reader of generation g when it was added at or
// before g and removed after g. A reader reads gen in its SQLite read
// transaction (which fixes the snapshot its queries see), waits until
// memory has caught up with it (the writer applies right after its
// commit), and reads memory as of that generation. Removed postings are
// kept while a reader of an older generation may still need them.
//
// Another process may write the same database (`fhiranchor reindex` runs
// beside the gateway): its commits bump gen too, and this process's memory
// knows nothing of them. So the writer reads gen at the start of each
// group (its transaction holds the write lock: nothing commits under it)
// and rebuilds the level from the token sets when gen is not its own; and
// a reader whose generation memory does not cover, which is not this
// process's commit about to be applied, reads the token sets of its own
// snapshot instead.

// never is the removed generation of a posting not removed.
const never = math.MaxUint64

// recentPosting is a posting of the recent level: the version's Seq, the
// index of its type in recentLevel.types, and the generations between
// which it is visible. It holds no pointer, so that the collector need not
// scan the level; the version's id is in recentLevel.refs, once a version.
type recentPosting struct {
	seq            int64
	added, removed uint64
	typ            uint16
}

// recentRef is the id of a version the level holds postings of, and how
// many it holds.
type recentRef struct {
	id string
	n  int
}

// recentOp is a change to the recent level staged by a transaction.
type recentOp struct {
	token   string
	seq     int64
	typ, id string
	remove  bool
}

// recentLevel is the in-memory level of the postings. Only the Update
// leading a group changes it (apply), after its commit.
type recentLevel struct {
	mu       sync.Mutex
	caughtUp *sync.Cond // broadcast when gen advances
	gen      uint64     // the last generation applied
	merged   int64      // token sets above this Seq have their postings here
	// byToken holds each token's postings sorted by Seq: new versions take
	// new Seqs, so a write appends.
	byToken map[string][]recentPosting
	// tokens are byToken's keys sorted, for listings in token order, or
	// nil after a key was added or dropped.
	tokens []string
	live   int            // postings not removed
	dead   int            // postings removed but kept for older readers
	pinned map[uint64]int // readers by the generation pinned when they began
	swept  uint64         // the oldest pinned generation when collect last ran
	refs   map[int64]recentRef
	types  []string // the resource types met, by recentPosting.typ
	// base is the generation the level was loaded at: it knows nothing
	// older. committing is the generation this process is committing, 0
	// when none.
	base, committing uint64
}

func newRecentLevel(gen uint64, merged int64) *recentLevel {
	rl := &recentLevel{gen: gen, base: gen, merged: merged, byToken: map[string][]recentPosting{},
		pinned: map[uint64]int{}, refs: map[int64]recentRef{}}
	rl.caughtUp = sync.NewCond(&rl.mu)
	return rl
}

// visible reports whether p is in the level as of generation g.
func (p *recentPosting) visible(g uint64) bool { return p.added <= g && g < p.removed }

// loadLevel reads the index state and the token sets above its watermark
// into a new level, in q's snapshot (a transaction, or the database before
// it is shared).
func loadLevel(ctx context.Context, q queryer) (*recentLevel, error) {
	var gen uint64
	var merged int64
	if err := q.QueryRowContext(ctx, `SELECT gen, merged FROM index_state WHERE one = 1`).Scan(&gen, &merged); err != nil {
		return nil, fmt.Errorf("read index state: %w", mapErr(err))
	}
	rl := newRecentLevel(gen, merged)
	if err := rl.load(ctx, q); err != nil {
		return nil, err
	}
	return rl, nil
}

// load reads the token sets above the watermark into the level.
func (rl *recentLevel) load(ctx context.Context, q queryer) error {
	rows, err := q.QueryContext(ctx, `SELECT s.seq, s.tokens, v.type, v.id FROM token_sets s
JOIN versions v INDEXED BY versions_ident ON v.seq = s.seq WHERE s.seq > ? ORDER BY s.seq`, rl.merged)
	if err != nil {
		return fmt.Errorf("load recent postings: %w", mapErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var b []byte
		var typ, id string
		if err := rows.Scan(&seq, &b, &typ, &id); err != nil {
			return fmt.Errorf("load recent postings: %w", err)
		}
		// A set that does not decode adds nothing: the audit reports it
		// (its version lacks its tokens) and reindex writes it again.
		tokens, _ := vault.DecodeTokenSet(b)
		for _, tok := range tokens {
			rl.add(recentOp{token: string(tok), seq: seq, typ: typ, id: id}, rl.gen)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load recent postings: %w", err)
	}
	return nil
}

// add inserts a posting visible from generation g. Called with mu held or
// before the level is shared.
func (rl *recentLevel) add(op recentOp, g uint64) {
	typ := rl.typeIndex(op.typ)
	if r, ok := rl.refs[op.seq]; ok {
		r.n++
		rl.refs[op.seq] = r
	} else {
		// The id is cloned: the caller's may be a slice of a whole
		// request body, which the level would otherwise keep alive.
		rl.refs[op.seq] = recentRef{id: strings.Clone(op.id), n: 1}
	}
	p := recentPosting{seq: op.seq, typ: typ, added: g, removed: never}
	ps, ok := rl.byToken[op.token]
	if !ok {
		rl.tokens = nil
	}
	i := len(ps)
	for i > 0 && ps[i-1].seq > op.seq {
		i-- // a token set rewritten at an older Seq (reindex): rare
	}
	rl.byToken[op.token] = slices.Insert(ps, i, p)
	rl.live++
}

// typeIndex returns the index of typ in rl.types, adding it if new.
// There are some 150 resource types.
func (rl *recentLevel) typeIndex(typ string) uint16 {
	if i := slices.Index(rl.types, typ); i >= 0 {
		return uint16(i)
	}
	rl.types = append(rl.types, strings.Clone(typ))
	return uint16(len(rl.types) - 1)
}

// remove marks the live posting (token, seq) removed from generation g.
func (rl *recentLevel) remove(token string, seq int64, g uint64) {
	ps := rl.byToken[token]
	i := sort.Search(len(ps), func(i int) bool { return ps[i].seq >= seq })
	for ; i < len(ps) && ps[i].seq == seq; i++ {
		if ps[i].removed == never {
			ps[i].removed = g
			rl.live--
			rl.dead++
			return
		}
	}
}

// apply makes a committed transaction's staged changes visible at
// generation g; merged, if not 0, is the new watermark of a merge, which
// moved every posting left into postings_mid.
func (rl *recentLevel) apply(ops []recentOp, g uint64, merged int64) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for _, op := range ops {
		if op.remove {
			rl.remove(op.token, op.seq, g)
		} else {
			rl.add(op, g)
		}
	}
	if merged != 0 {
		for tok, ps := range rl.byToken {
			for i := range ps {
				if ps[i].removed == never {
					ps[i].removed = g
				}
			}
			rl.byToken[tok] = ps
		}
		rl.dead += rl.live
		rl.live = 0
		rl.merged = merged
	}
	rl.gen, rl.committing = g, 0
	rl.collect()
	rl.caughtUp.Broadcast()
}

// collect drops the removed postings no reader can see any more, once
// they are as many as the live ones (so that the cost is amortised).
func (rl *recentLevel) collect() {
	if rl.dead == 0 || rl.dead < rl.live && rl.dead < 4096 {
		return
	}
	oldest := rl.gen
	for g := range rl.pinned {
		oldest = min(oldest, g)
	}
	// Postings are removed at the newest generation, so while the oldest
	// reader stays, what it pins stays too.
	if oldest == rl.swept {
		return
	}
	rl.swept = oldest
	for tok, ps := range rl.byToken {
		kept := slices.DeleteFunc(ps, func(p recentPosting) bool {
			if p.removed > oldest {
				return false
			}
			rl.dead--
			if r := rl.refs[p.seq]; r.n > 1 {
				r.n--
				rl.refs[p.seq] = r
			} else {
				delete(rl.refs, p.seq)
			}
			return true
		})
		if len(kept) == 0 {
			delete(rl.byToken, tok)
			rl.tokens = nil
		} else {
			rl.byToken[tok] = kept
		}
	}
}

// replace takes over fresh's postings, loaded at a later generation
// than the level's (another process committed), and reports whether it
// did; fresh is the level's afterwards. The writer forces it: what its
// transaction read is the database, whatever the level held.
func (rl *recentLevel) replace(fresh *recentLevel, force bool) bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if !force && fresh.gen <= rl.gen {
		return false // not newer: the reader keeps its own
	}
	rl.byToken, rl.tokens, rl.refs, rl.types = fresh.byToken, nil, fresh.refs, fresh.types
	rl.live, rl.dead = fresh.live, 0
	rl.gen, rl.base, rl.merged = fresh.gen, fresh.gen, fresh.merged
	rl.caughtUp.Broadcast()
	return true
}

// errUncovered is a read of a generation older than the level was last
// loaded at (another process's commit replaced it meanwhile).
var errUncovered = errors.New("generation older than the in-memory postings")

// read runs f on the snapshot's level; if another process's commit
// replaced the Store's level meanwhile, on one read in the snapshot.
func (sn *snapshot) read(ctx context.Context, f func(rl *recentLevel) error) error {
	err := f(sn.level)
	if !errors.Is(err, errUncovered) {
		return err
	}
	if sn.level, err = loadLevel(ctx, sn.tx); err != nil {
		return err
	}
	return f(sn.level)
}

// snapshot is a read of both the tables and the recent level as of one
// commit.
type snapshot struct {
	s     *Store
	tx    *sql.Tx
	gen   uint64
	pin   uint64
	level *recentLevel // the Store's, or one read in tx
}

// begin starts a snapshot: a read transaction on the reader pool, and the
// generation it sees.
func (s *Store) begin(ctx context.Context) (*snapshot, error) {
	rl := s.recentLevel
	rl.mu.Lock()
	pin := rl.gen
	rl.pinned[pin]++
	rl.mu.Unlock()
	sn := &snapshot{s: s, pin: pin}
	tx, err := s.r.BeginTx(ctx, nil)
	if err == nil {
		sn.tx = tx
		// The first read of the transaction fixes its snapshot.
		err = tx.StmtContext(ctx, s.rstmt[stGen]).QueryRowContext(ctx).Scan(&sn.gen)
	}
	if err == nil {
		rl.mu.Lock()
		// This process's commit of that generation is applied right
		// after it returns.
		for rl.gen < sn.gen && rl.committing == sn.gen {
			rl.caughtUp.Wait()
		}
		// A snapshot taken after pinning sees at least the pinned
		// generation: one older means the database's gen moved back (a
		// restored file, an edit), which memory cannot answer for.
		if max(rl.base, pin) <= sn.gen && sn.gen <= rl.gen {
			sn.level = rl
		}
		rl.mu.Unlock()
	}
	if err == nil && sn.level == nil {
		// Another process's commit, or one this process could not tell
		// the outcome of: the snapshot's own token sets say, and become
		// the Store's if newer than what it holds.
		var fresh *recentLevel
		if fresh, err = loadLevel(ctx, sn.tx); err == nil {
			sn.level = fresh
			if rl.replace(fresh, false) {
				sn.level = rl
			}
		}
	}
	if err != nil {
		sn.end()
		return nil, fmt.Errorf("begin read: %w", mapErr(err))
	}
	return sn, nil
}

// end finishes the snapshot.
func (sn *snapshot) end() {
	if sn.tx != nil {
		sn.tx.Rollback() // it only read
	}
	rl := sn.s.recentLevel
	rl.mu.Lock()
	if rl.pinned[sn.pin]--; rl.pinned[sn.pin] == 0 {
		delete(rl.pinned, sn.pin)
	}
	rl.mu.Unlock()
}

// recentMatch is a posting of the level matched by a lookup.
type recentMatch struct {
	token string
	seq   int64
}

// matches returns, for each posting of tokens visible at generation g
// (after the staged ops, for a transaction's own view) on a resource of
// type typ, its resource's id.
func (rl *recentLevel) matches(g uint64, typ string, tokens [][]byte, staged []recentOp) (map[recentMatch]string, error) {
	want := make(map[string]bool, len(tokens))
	for _, tok := range tokens {
		want[string(tok)] = true
	}
	out := map[recentMatch]string{}
	rl.mu.Lock()
	if g < rl.base {
		rl.mu.Unlock()
		return nil, errUncovered
	}
	if ti := slices.Index(rl.types, typ); ti >= 0 {
		for tok := range want {
			for _, p := range rl.byToken[tok] {
				if p.visible(g) && p.typ == uint16(ti) {
					out[recentMatch{tok, p.seq}] = rl.refs[p.seq].id
				}
			}
		}
	}
	rl.mu.Unlock()
	for _, op := range staged {
		if !want[op.token] {
			continue
		}
		k := recentMatch{op.token, op.seq}
		switch {
		case op.remove:
			delete(out, k)
		case op.typ == typ:
			out[k] = op.id
		}
	}
	return out, nil
}

// findAny returns the distinct ids, ascending, of the level's postings of
// any of tokens at generation g, after staged.
func (rl *recentLevel) findAny(g uint64, typ string, tokens [][]byte, staged []recentOp) ([]string, error) {
	m, err := rl.matches(g, typ, tokens, staged)
	if err != nil {
		return nil, err
	}
	return distinctIDs(m), nil
}

// distinctIDs returns the distinct values of m, ascending.
func distinctIDs[K comparable](m map[K]string) []string {
	return slices.Compact(slices.Sorted(maps.Values(m)))
}

// findAll returns the distinct ids, ascending, of the resources whose
// postings at generation g carry a token of every clause. A version's
// postings are all in one level, so the level answers for its own.
func (rl *recentLevel) findAll(g uint64, typ string, clauses [][][]byte) ([]string, error) {
	var bySeq map[int64]string
	for i, c := range clauses {
		m, err := rl.matches(g, typ, c, nil)
		if err != nil {
			return nil, err
		}
		next := map[int64]string{}
		for k, id := range m {
			if i == 0 {
				next[k.seq] = id
			} else if _, ok := bySeq[k.seq]; ok {
				next[k.seq] = id
			}
		}
		bySeq = next
		if len(bySeq) == 0 {
			return nil, nil
		}
	}
	return distinctIDs(bySeq), nil
}

// entries returns up to limit of the level's postings at generation g
// after the entry after, in (token, seq) order.
func (rl *recentLevel) entries(g uint64, after vault.IndexEntry, limit int) ([]vault.IndexEntry, error) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if g < rl.base {
		return nil, errUncovered
	}
	rl.sortTokens()
	var out []vault.IndexEntry
	i, _ := slices.BinarySearch(rl.tokens, string(after.Token))
	for _, tok := range rl.tokens[i:] {
		var token []byte // shared by the token's entries
		// Postings are sorted by Seq within a token.
		for _, p := range rl.byToken[tok] {
			if p.visible(g) && (tok != string(after.Token) || p.seq > after.Seq) {
				if token == nil {
					token = []byte(tok)
				}
				out = append(out, vault.IndexEntry{Token: token, Seq: p.seq})
			}
		}
		if len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

// sortTokens makes rl.tokens byToken's keys, sorted. Called with mu held.
func (rl *recentLevel) sortTokens() {
	if rl.tokens != nil {
		return
	}
	rl.tokens = make([]string, 0, len(rl.byToken))
	for tok := range rl.byToken {
		rl.tokens = append(rl.tokens, tok)
	}
	slices.Sort(rl.tokens)
}

// compareEntries orders index entries by (token, seq).
func compareEntries(a, b vault.IndexEntry) int {
	return cmp.Or(bytes.Compare(a.Token, b.Token), cmp.Compare(a.Seq, b.Seq))
}

// livePostings returns the level's live postings after staged, in
// (token, seq) order: what a merge writes to postings_mid.
func (rl *recentLevel) livePostings(staged []recentOp) []posting {
	// What the staged ops leave of each key they touch, in their order.
	after := map[recentMatch]bool{}
	for _, op := range staged {
		after[recentMatch{op.token, op.seq}] = !op.remove
	}
	rl.mu.Lock()
	rl.sortTokens()
	out := make([]posting, 0, rl.live+len(staged))
	for _, tok := range rl.tokens {
		var b []byte
		for _, p := range rl.byToken[tok] {
			if p.removed != never {
				continue
			}
			if _, touched := after[recentMatch{tok, p.seq}]; touched {
				continue
			}
			if b == nil {
				b = []byte(tok)
			}
			out = append(out, posting{token: b, seq: p.seq})
		}
	}
	rl.mu.Unlock()
	var more []posting
	for k, present := range after {
		if present {
			more = append(more, posting{token: []byte(k.token), seq: k.seq})
		}
	}
	if len(more) == 0 {
		return out
	}
	slices.SortFunc(more, comparePostings)
	// Merge the two sorted runs.
	merged := make([]posting, 0, len(out)+len(more))
	i, j := 0, 0
	for i < len(out) && j < len(more) {
		if comparePostings(out[i], more[j]) <= 0 {
			merged, i = append(merged, out[i]), i+1
		} else {
			merged, j = append(merged, more[j]), j+1
		}
	}
	return append(append(merged, out[i:]...), more[j:]...)
}

// comparePostings orders postings by (token, seq).
func comparePostings(a, b posting) int {
	return cmp.Or(bytes.Compare(a.token, b.token), cmp.Compare(a.seq, b.seq))
}

// settle follows a commit that returned an error: SQLite may have
// committed all the same (an error after the WAL was written). If the
// database says the generation committed, memory applies it; otherwise, or
// if it cannot tell, memory stays as it was: readers of a generation it
// does not cover read their snapshot's token sets, and the next group
// rebuilds it (syncLevel).
func (s *Store) settle(ctx context.Context, gen uint64, staged []recentOp, merged int64) {
	var got uint64
	err := s.wstmt[stGenTx].QueryRowContext(ctx).Scan(&got)
	rl := s.recentLevel
	if err == nil && got == gen {
		rl.apply(staged, gen, merged)
		return
	}
	rl.mu.Lock()
	rl.committing = 0
	rl.caughtUp.Broadcast()
	rl.mu.Unlock()
}

// syncLevel brings the level up to the database at the start of a group,
// in its transaction: another process may have committed since this
// process's last group.
func (s *Store) syncLevel(ctx context.Context, t *tx) error {
	var gen uint64
	if err := t.stmt(ctx, stGenTx).QueryRowContext(ctx).Scan(&gen); err != nil {
		return fmt.Errorf("read index generation: %w", mapErr(err))
	}
	rl := s.recentLevel
	rl.mu.Lock()
	current := rl.gen == gen
	rl.mu.Unlock()
	if current {
		return nil
	}
	fresh, err := loadLevel(ctx, t.tx)
	if err != nil {
		return err
	}
	rl.replace(fresh, true)
	return nil
}

// begin marks gen as being committed by this process, before the commit.
func (rl *recentLevel) begin(gen uint64) {
	rl.mu.Lock()
	rl.committing = gen
	rl.mu.Unlock()
}
