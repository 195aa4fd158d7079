package access

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/vault"
)

// Group commit. A read answers only after the record of its decision is
// durable, and a durable commit costs an fsync: one transaction per read
// would make every read wait for its own fsync, one at a time. Instead the
// decision records of concurrent requests share transactions: a request
// that finds no commit under way commits its record and whatever queued
// behind it; one that finds a commit under way queues and waits. When a
// commit finishes, its committer hands the queue to the first waiter, which
// commits the next batch. Every waiter returns only when the transaction
// holding its records committed, or with that transaction's error: a record
// is never acknowledged before it is durable, and a failed commit fails
// every request in it. No goroutine outlives the requests it serves.
//
// A commit is a vault transaction, or, when no request in the batch needs
// its records' leaf indexes at once (a refusal names its record; an
// allowed read does not), an append to the vault's leaf journal
// (vault.LeafJournal): as durable, one write and fdatasync instead of a
// transaction's six b-tree pages, and the log takes the records in, in order,
// before anyone reads it.
//
// A committer gathers before it commits: reads that are being decided
// when it starts (Control.Read announces each with expect) will queue in
// a moment, and a commit costs much the same for one record as for many.
// So the committer waits for those reads to queue, at most maxGather,
// and then commits them all at once. It never waits for reads that are
// not under way, so a lone read commits at once, and it waits only for
// those under way when it started, so a steady stream of new reads cannot
// hold a commit back past them.

// maxBatch bounds the records of one transaction, so that a burst does not
// make one transaction, and every request waiting on it, arbitrarily long.
const maxBatch = 512

// maxGather bounds how long a committer waits for reads under way to
// queue behind it: about the time a read takes to be decided on a busy
// machine.
const maxGather = time.Millisecond

// commitRequest is one request's records, waiting for a commit.
type commitRequest struct {
	records []decidedEntry
	// journal says the records may go to the vault's leaf journal: their
	// caller needs no leaf index (and none breaks the glass, whose log
	// line names it).
	journal bool
	leaves  []uint64
	err     error
	// wake receives true when the records are committed (or failed: err),
	// false when this request must commit the queue itself.
	wake chan bool
}

type groupCommit struct {
	mu      sync.Mutex
	queue   []*commitRequest
	leading bool // a committer is at work; it hands over when it finishes
	// expected counts the requests announced by expect that have neither
	// queued nor given up; queuedExpected counts those that queued.
	expected       int
	queuedExpected uint64
	arrived        chan struct{} // a gathering committer's wake-up (capacity 1)
	maxGather      time.Duration // maxGather; tests lengthen it
}

// expect announces a request that will queue its records in a moment (or
// call unexpect): a committer gathers it into its commit.
func (g *groupCommit) expect() {
	g.mu.Lock()
	g.expected++
	g.mu.Unlock()
}

// unexpect withdraws an announcement of expect that will not queue.
func (g *groupCommit) unexpect() {
	g.mu.Lock()
	g.expected--
	g.mu.Unlock()
	g.signal()
}

// signal wakes a gathering committer, if any.
func (g *groupCommit) signal() {
	select {
	case g.arrived <- struct{}{}:
	default:
	}
}

// gather waits, at most maxGather, until the requests announced when it
// is called have queued or given up, or the queue is full.
func (g *groupCommit) gather() {
	g.mu.Lock()
	want, base := g.expected, g.queuedExpected
	full := g.queuedRecords() >= maxBatch
	g.mu.Unlock()
	if want == 0 || full {
		return
	}
	t := time.NewTimer(g.maxGather)
	defer t.Stop()
	for {
		select {
		case <-g.arrived:
		case <-t.C:
			return
		}
		g.mu.Lock()
		done := g.expected == 0 || g.queuedExpected-base >= uint64(want) || g.queuedRecords() >= maxBatch
		g.mu.Unlock()
		if done {
			return
		}
	}
}

// queuedRecords is how many records wait in the queue; g.mu is held.
func (g *groupCommit) queuedRecords() int {
	n := 0
	for _, r := range g.queue {
		n += len(r.records)
	}
	return n
}

// record makes recs durable, in a commit shared with concurrent requests,
// and returns. If the caller needs their leaf indexes (index), or one
// breaks the glass, the commit is a vault transaction and record returns
// the indexes; otherwise it may be an append to the vault's leaf journal
// (vault.LeafJournal), which the log takes in later, and record returns
// none. expected says the request was announced by expect.
func (c *Control) record(ctx context.Context, recs []decidedEntry, expected, index bool) ([]uint64, error) {
	r := &commitRequest{records: recs, journal: !index, wake: make(chan bool, 1)}
	for _, rec := range recs {
		r.journal = r.journal && !rec.breakGlass
	}
	g := &c.commits
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if expected {
		g.expected--
		g.queuedExpected++
	}
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if expected {
		g.signal()
	}
	// Waiting is not cancellable: the committer may hand this request the
	// lead, and a request that left would leave the queue without one. A
	// commit is bounded by the vault's own timeouts.
	if lead || !<-r.wake {
		c.commitQueue(ctx, r)
	}
	return r.leaves, r.err
}

// commitQueue commits up to maxBatch records from the head of the queue,
// where the caller's own request self is (a committer starts when the queue
// is empty or is handed the lead as its head), wakes the other requests of
// the batch, and hands the lead to the next queued request, if any.
func (c *Control) commitQueue(ctx context.Context, self *commitRequest) {
	g := &c.commits
	g.gather()
	g.mu.Lock()
	var batch []*commitRequest
	n := 0
	for len(g.queue) > 0 && (n == 0 || n+len(g.queue[0].records) <= maxBatch) {
		n += len(g.queue[0].records)
		batch = append(batch, g.queue[0])
		g.queue = g.queue[1:]
	}
	g.mu.Unlock()

	// The commit serves every request in the batch: the committer's
	// client leaving must not roll back the others' records.
	ctx = context.WithoutCancel(ctx)
	journaled, err := c.journal(ctx, batch)
	if !journaled && err == nil {
		err = c.commit(ctx, batch)
	}
	if err != nil {
		err = fmt.Errorf("record access decisions: %w", err)
	}

	g.mu.Lock()
	var next *commitRequest
	if len(g.queue) > 0 {
		next = g.queue[0]
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	for _, r := range batch {
		if err != nil {
			r.err, r.leaves = err, nil
		}
		if r != self {
			r.wake <- true
		}
	}
	if next != nil {
		next.wake <- false
	}
}

// journal appends the batch's records to the vault's leaf journal if every
// request in it may go there and the vault has one; false if not.
func (c *Control) journal(ctx context.Context, batch []*commitRequest) (bool, error) {
	var ls []vault.Leaf
	for _, r := range batch {
		if !r.journal {
			return false, nil
		}
		for _, p := range r.records {
			ls = append(ls, p.leaf)
		}
	}
	ok, err := c.vault.JournalLeaves(ctx, ls)
	if !ok || err != nil {
		return ok, err
	}
	for _, r := range batch {
		r.leaves = r.leaves[:0]
		if c.metrics != nil {
			for _, p := range r.records {
				c.metrics.Decided(p.allow)
			}
		}
	}
	return true, nil
}

// commit adds the batch's records in a vault transaction and gives each
// request its leaf indexes.
func (c *Control) commit(ctx context.Context, batch []*commitRequest) error {
	return c.vault.Update(ctx, func(tx *vault.SealedTx) error {
		for _, r := range batch {
			r.leaves = r.leaves[:0]
			for _, p := range r.records {
				idx, err := c.add(ctx, tx, p)
				if err != nil {
					return err
				}
				r.leaves = append(r.leaves, idx)
			}
		}
		return nil
	})
}
