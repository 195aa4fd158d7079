package anchor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/sqlite"
)

// memSource is a LeafSource over a slice, as the vault's queue would be.
type memSource struct {
	mu     sync.Mutex
	leaves []anchor.Leaf
}

// testLeaf returns leaf i: types in turn, a commitment that depends on i.
func testLeaf(i uint64) anchor.Leaf {
	typ := anchor.LeafType(1 + i%5)
	c := sha256.Sum256(fmt.Appendf(nil, "content %d", i))
	return anchor.Leaf{Index: i, Type: typ, Data: anchor.LeafData(typ, c[:])}
}

// add queues n more leaves.
func (s *memSource) add(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.leaves = append(s.leaves, testLeaf(uint64(len(s.leaves))))
	}
}

func (s *memSource) Leaves(ctx context.Context, after uint64, limit int) ([]anchor.Leaf, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if after >= uint64(len(s.leaves)) || limit <= 0 {
		return nil, nil
	}
	end := min(uint64(len(s.leaves)), after+uint64(limit))
	out := make([]anchor.Leaf, 0, end-after)
	for _, l := range s.leaves[after:end] {
		l.Data = bytes.Clone(l.Data)
		out = append(out, l)
	}
	return out, nil
}

// data returns the leaf bytes of every leaf.
func (s *memSource) data() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.leaves))
	for i, l := range s.leaves {
		out[i] = l.Data
	}
	return out
}

// fast is a policy that keeps tests quick: small batches, short delays.
var fast = anchor.Config{
	MaxLeaves: 16,
	MaxDelay:  20 * time.Millisecond,
	Poll:      2 * time.Millisecond,
	Retry:     2 * time.Millisecond,
	Resubmit:  50 * time.Millisecond,
}

// runner is a Log running on a SQLite store.
type runner struct {
	log    *anchor.Log
	store  *sqlite.Store
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.New(t.Context(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatalf("open log store: %v", err)
	}
	return s
}

// start opens the store at path and runs a Log on it until the test ends or
// stop is called.
func start(t *testing.T, cfg anchor.Config, path string, src *memSource, chain anchor.Chain, logger *slog.Logger) *runner {
	t.Helper()
	store := openStore(t, path)
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	l, err := anchor.New(t.Context(), cfg, store, src.Leaves, chain, logger)
	if err != nil {
		store.Close()
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{log: l, store: store, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- l.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends Run, closes the store and returns Run's error.
func (r *runner) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
		r.store.Close()
	})
	return r.err
}

// waitFor polls cond until it holds, or fails the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkpoints returns every checkpoint of l, with its anchor.
func checkpoints(t *testing.T, l *anchor.Log) []anchor.Checkpoint {
	t.Helper()
	cps, err := l.Checkpoints(t.Context(), 0, 1<<20)
	if err != nil {
		t.Fatalf("Checkpoints: %v", err)
	}
	return cps
}

// settled reports whether l holds n leaves and its last checkpoint's anchor
// has status want.
func settled(t *testing.T, l *anchor.Log, n uint64, want anchor.Status) func() bool {
	return func() bool {
		if l.Size() != n {
			return false
		}
		cps := checkpoints(t, l)
		last := cps[len(cps)-1]
		return last.Anchor != nil && last.Anchor.Status == want
	}
}

// checkLog checks everything a Log and its chain promise once every leaf of
// src is anchored with status want: the contract holds one anchor per
// checkpoint, in order, chained by previous roots, each the reference root
// of its tree; every leaf's receipt verifies against the first anchor that
// covers it; every two checkpoints are consistent.
func checkLog(t *testing.T, l *anchor.Log, src *memSource, c *fakeChain, want anchor.Status) {
	t.Helper()
	ctx := t.Context()
	leaves := src.data()
	if l.Size() != uint64(len(leaves)) {
		t.Fatalf("Size = %d, want %d", l.Size(), len(leaves))
	}
	anchors := c.anchors()
	var prev [32]byte
	var size uint64
	for i, a := range anchors {
		if a.Seq != uint64(i)+1 || a.PrevRoot != prev || a.TreeSize <= size {
			t.Fatalf("contract anchor %d: seq %d, tree size %d after %d, previous root %x after %x",
				i+1, a.Seq, a.TreeSize, size, a.PrevRoot, prev)
		}
		if want := anchor.RefRoot(leaves[:a.TreeSize]); !bytes.Equal(a.Root[:], want) {
			t.Fatalf("contract anchor %d: root %x, want the reference root %x", a.Seq, a.Root, want)
		}
		prev, size = a.Root, a.TreeSize
	}
	if size != uint64(len(leaves)) {
		t.Fatalf("the contract's anchors cover %d leaves, want %d", size, len(leaves))
	}

	cps := checkpoints(t, l)
	if len(cps) != len(anchors) {
		t.Fatalf("%d checkpoints, %d anchors on chain; want one anchor per checkpoint", len(cps), len(anchors))
	}
	for i, cp := range cps {
		a := anchors[i]
		if cp.Size != a.TreeSize || !bytes.Equal(cp.Root, a.Root[:]) || cp.Anchor == nil {
			t.Fatalf("checkpoint %d (size %d) does not match contract anchor %d (size %d) or has no anchor", i, cp.Size, a.Seq, a.TreeSize)
		}
		_, tx := c.record(a.Seq)
		if cp.Anchor.Seq != a.Seq || cp.Anchor.Status != want || !bytes.Equal(cp.Anchor.TxHash, tx[:]) {
			t.Errorf("checkpoint %d: anchor seq %d, %s, tx %x; want seq %d, %s, tx %x",
				cp.Size, cp.Anchor.Seq, cp.Anchor.Status, cp.Anchor.TxHash, a.Seq, want, tx)
		}
	}
	for i := range cps {
		for j := i; j < len(cps); j++ {
			p, err := l.Consistency(ctx, cps[i].Size, cps[j].Size)
			if err != nil {
				t.Fatalf("Consistency(%d, %d): %v", cps[i].Size, cps[j].Size, err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, cps[i].Size, cps[j].Size, p, cps[i].Root, cps[j].Root); err != nil {
				t.Errorf("consistency %d -> %d: %v", cps[i].Size, cps[j].Size, err)
			}
		}
	}

	first := 0 // the first anchor covering leaf i
	for i := range leaves {
		for anchors[first].TreeSize <= uint64(i) {
			first++
		}
		a := anchors[first]
		r, err := l.Receipt(ctx, uint64(i))
		if err != nil {
			t.Fatalf("Receipt(%d): %v", i, err)
		}
		if err := anchor.VerifyReceipt(r); err != nil {
			t.Errorf("VerifyReceipt(receipt of leaf %d): %v", i, err)
		}
		_, tx := c.record(a.Seq)
		if r.Status != want || r.Anchor.Seq != a.Seq || r.TreeSize != a.TreeSize || !bytes.Equal(r.Root, a.Root[:]) ||
			!bytes.Equal(r.Anchor.TxHash, tx[:]) || r.Anchor.ChainID != c.info.ChainID || r.Anchor.Contract != c.info.Contract {
			t.Errorf("receipt of leaf %d: %s, anchor %+v, tree size %d; want %s, anchor %d of tree size %d, tx %x",
				i, r.Status, r.Anchor, r.TreeSize, want, a.Seq, a.TreeSize, tx)
		}
		path := make([][]byte, len(r.AuditPath))
		for k, h := range r.AuditPath {
			path[k] = h
		}
		if diff := cmp.Diff(anchor.RefPath(i, leaves[:a.TreeSize]), path); diff != "" {
			t.Errorf("audit path of leaf %d in tree %d differs from the reference (-want +got):\n%s", i, a.TreeSize, diff)
		}
		if !bytes.Equal(anchor.LeafData(anchor.LeafType(r.LeafTypeNumber), r.Commitment), leaves[i]) {
			t.Errorf("receipt of leaf %d: type %d, commitment %x; not the leaf %x", i, r.LeafTypeNumber, r.Commitment, leaves[i])
		}
	}
}

func TestLogAnchorsEveryLeaf(t *testing.T) {
	src, c := &memSource{}, newFakeChain()
	src.add(100)
	r := start(t, fast, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	waitFor(t, "100 leaves confirmed", settled(t, r.log, 100, anchor.StatusConfirmed))
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)

	// MaxLeaves bounds every batch.
	var prev uint64
	for _, a := range c.anchors() {
		if n := a.TreeSize - prev; n > uint64(fast.MaxLeaves) {
			t.Errorf("anchor %d adds %d leaves, more than MaxLeaves %d", a.Seq, n, fast.MaxLeaves)
		}
		prev = a.TreeSize
		if c.sent(a.Seq) != 1 {
			t.Errorf("anchor %d sent %d times, want 1", a.Seq, c.sent(a.Seq))
		}
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

// TestLogRestart: a new Log on the same store file resumes the same tree:
// old receipts are unchanged, new leaves extend the same roots.
func TestLogRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	src, c := &memSource{}, newFakeChain()
	src.add(37)
	r := start(t, fast, path, src, c, nil)
	waitFor(t, "37 leaves confirmed", settled(t, r.log, 37, anchor.StatusConfirmed))
	var before []anchor.Receipt
	for i := range uint64(37) {
		rc, err := r.log.Receipt(t.Context(), i)
		if err != nil {
			t.Fatalf("Receipt(%d): %v", i, err)
		}
		before = append(before, rc)
	}
	cpsBefore := checkpoints(t, r.log)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	src.add(50)
	r = start(t, fast, path, src, c, nil)
	if got := r.log.Size(); got < 37 {
		t.Fatalf("Size after restart = %d, want at least 37", got)
	}
	waitFor(t, "87 leaves confirmed", settled(t, r.log, 87, anchor.StatusConfirmed))
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
	for i, want := range before {
		got, err := r.log.Receipt(t.Context(), uint64(i))
		if err != nil {
			t.Fatalf("Receipt(%d) after restart: %v", i, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("receipt of leaf %d changed across a restart (-before +after):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff(cpsBefore, checkpoints(t, r.log)[:len(cpsBefore)]); diff != "" {
		t.Errorf("checkpoints changed across a restart (-before +after):\n%s", diff)
	}
}

func TestLogBatchBySize(t *testing.T) {
	cfg := fast
	cfg.MaxLeaves, cfg.MaxDelay = 4, time.Hour
	src, c := &memSource{}, newFakeChain()
	src.add(10)
	r := start(t, cfg, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	waitFor(t, "8 leaves confirmed", settled(t, r.log, 8, anchor.StatusConfirmed))
	time.Sleep(50 * cfg.Poll) // leaves 8 and 9 wait for two more, or an hour
	if got := r.log.Size(); got != 8 {
		t.Errorf("Size = %d, want 8: two leaves are not a batch of 4", got)
	}
	var sizes []uint64
	for _, a := range c.anchors() {
		sizes = append(sizes, a.TreeSize)
	}
	if diff := cmp.Diff([]uint64{4, 8}, sizes); diff != "" {
		t.Errorf("anchored tree sizes (-want +got):\n%s", diff)
	}
	rc, err := r.log.Receipt(t.Context(), 9)
	if err != nil {
		t.Fatalf("Receipt(9): %v", err)
	}
	if rc.Status != anchor.StatusPending || rc.Anchor != nil || rc.AuditPath != nil || rc.Root != nil {
		t.Errorf("receipt of an unanchored leaf = %+v, want pending with no proof", rc)
	}
	if err := anchor.VerifyReceipt(rc); !errors.Is(err, anchor.ErrNotAnchored) {
		t.Errorf("VerifyReceipt(pending) = %v, want ErrNotAnchored", err)
	}

	src.add(2)
	waitFor(t, "12 leaves confirmed", settled(t, r.log, 12, anchor.StatusConfirmed))
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
}

func TestLogBatchByDelay(t *testing.T) {
	cfg := fast
	cfg.MaxLeaves, cfg.MaxDelay = 1000, 100*time.Millisecond
	src, c := &memSource{}, newFakeChain()
	r := start(t, cfg, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	t0 := time.Now()
	src.add(3)
	waitFor(t, "3 leaves confirmed", settled(t, r.log, 3, anchor.StatusConfirmed))
	cps := checkpoints(t, r.log)
	if len(cps) != 1 || cps[0].Size != 3 {
		t.Fatalf("checkpoints = %+v, want one of size 3", cps)
	}
	if waited := cps[0].Time.Sub(t0); waited < cfg.MaxDelay {
		t.Errorf("checkpoint written %v after the leaves were queued, before MaxDelay %v", waited, cfg.MaxDelay)
	}
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
}

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recorder) WithGroup(string) slog.Handler      { return h }

// TestLogChainDown: while the chain is unreachable leaves keep arriving;
// none is lost, none is anchored twice, and once the chain is back the
// anchors are contiguous and chained.
func TestLogChainDown(t *testing.T) {
	src, c := &memSource{}, newFakeChain()
	logs := &recorder{}
	src.add(10)
	r := start(t, fast, filepath.Join(t.TempDir(), "log.db"), src, c, slog.New(logs))
	waitFor(t, "10 leaves confirmed", settled(t, r.log, 10, anchor.StatusConfirmed))

	c.setDown(true)
	for range 5 {
		src.add(9)
		time.Sleep(30 * time.Millisecond) // longer than MaxDelay: batches become due
	}
	if n := len(c.anchors()); n != 1 {
		t.Fatalf("%d anchors while the chain was down, want 1", n)
	}
	for _, i := range []uint64{10, 54} {
		rc, err := r.log.Receipt(t.Context(), i)
		if err != nil || rc.Status != anchor.StatusPending {
			t.Errorf("Receipt(%d) while the chain is down = %s, %v; want pending", i, rc.Status, err)
		}
	}
	// At most one checkpoint waits for the chain; the other leaves wait in
	// the source.
	if got := r.log.Size(); got > 10+uint64(fast.MaxLeaves) {
		t.Errorf("Size while the chain is down = %d, want at most %d", got, 10+fast.MaxLeaves)
	}

	c.setDown(false)
	waitFor(t, "55 leaves confirmed", settled(t, r.log, 55, anchor.StatusConfirmed))
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
	for _, a := range c.anchors() {
		if n := c.sent(a.Seq); n != 1 {
			t.Errorf("anchor %d sent %d times, want 1", a.Seq, n)
		}
	}
	r.stop()

	// The log said what happened, with opaque keys only (DESIGN.md
	// invariant 1): no commitment appears in any record.
	allowed := map[string]bool{"seq": true, "tree_size": true, "tx": true, "leaves": true, "err": true,
		"failures": true, "retry_in": true, "index": true, "block": true, "confirmations": true, "type": true, "bytes": true}
	var text strings.Builder
	warned := false
	logs.mu.Lock()
	for _, rec := range logs.recs {
		text.WriteString(rec.Message)
		warned = warned || rec.Message == "anchoring failed; will retry"
		rec.Attrs(func(a slog.Attr) bool {
			if !allowed[a.Key] {
				t.Errorf("log record %q has attribute %q", rec.Message, a.Key)
			}
			text.WriteString(" " + a.Value.String())
			return true
		})
	}
	logs.mu.Unlock()
	if !warned {
		t.Error("no warning logged while the chain was down")
	}
	for _, d := range src.data() {
		if strings.Contains(text.String(), hex.EncodeToString(d[1:])) {
			t.Fatalf("a commitment appears in the log")
		}
	}
}

// TestLogAdoptsAnchorAfterCrash: the process dies after the chain took an
// anchor and before the store recorded it. The next Log adopts the anchor
// the contract holds instead of sending it again.
func TestLogAdoptsAnchorAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	src, c := &memSource{}, newFakeChain()
	src.add(5)
	var r *runner
	c.onSubmit = func() { r.cancel() } // the crash: nothing after Submit runs
	r = start(t, fast, path, src, c, nil)
	waitFor(t, "the first Submit", func() bool { return c.sent(1) == 1 })
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	c.mu.Lock()
	c.onSubmit = nil
	c.mu.Unlock()

	s := openStore(t, path)
	if _, err := s.LastAnchor(t.Context()); !errors.Is(err, anchor.ErrNotFound) {
		t.Fatalf("LastAnchor after the crash = %v, want ErrNotFound (the crash lost the record)", err)
	}
	if cp, err := s.LastCheckpoint(t.Context()); err != nil || cp.Size != 5 {
		t.Fatalf("LastCheckpoint after the crash = %d, %v; want 5", cp.Size, err)
	}
	s.Close()

	r = start(t, fast, path, src, c, nil)
	waitFor(t, "5 leaves confirmed", settled(t, r.log, 5, anchor.StatusConfirmed))
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
	if n := c.sent(1); n != 1 {
		t.Errorf("anchor 1 sent %d times, want 1: the anchor on chain was not adopted", n)
	}
	src.add(3)
	waitFor(t, "8 leaves confirmed", settled(t, r.log, 8, anchor.StatusConfirmed))
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
}

// waitAnchored waits until every checkpoint's anchor has status want.
func waitAnchored(t *testing.T, l *anchor.Log, n int, want anchor.Status) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d anchors %s", n, want), func() bool {
		cps := checkpoints(t, l)
		if len(cps) != n {
			return false
		}
		for _, cp := range cps {
			if cp.Anchor == nil || cp.Anchor.Status != want {
				return false
			}
		}
		return true
	})
}

// TestLogReorgResends: a reorg drops an anchor seen mined; the contract no
// longer holds it, so the Log sends it again, same checkpoint, same seq.
func TestLogReorgResends(t *testing.T) {
	cfg := fast
	cfg.Confirmations = 3
	src, c := &memSource{}, newFakeChain()
	src.add(5)
	r := start(t, cfg, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	waitAnchored(t, r.log, 1, anchor.StatusAnchored)
	_, tx1 := c.record(1)

	c.drop(1)
	waitFor(t, "anchor 1 sent again", func() bool { return c.sent(1) == 2 })
	waitAnchored(t, r.log, 1, anchor.StatusAnchored)
	c.advance(2)
	waitAnchored(t, r.log, 1, anchor.StatusConfirmed)
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
	if _, tx2 := c.record(1); tx2 == tx1 {
		t.Error("the contract holds anchor 1 through the dropped transaction")
	}
}

// TestLogReorgResendsInOrder: a reorg drops two anchors; the second is sent
// again only after the first is back on chain.
func TestLogReorgResendsInOrder(t *testing.T) {
	cfg := fast
	cfg.Confirmations, cfg.MaxLeaves = 3, 4
	src, c := &memSource{}, newFakeChain()
	src.add(8)
	r := start(t, cfg, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	waitAnchored(t, r.log, 2, anchor.StatusAnchored)

	c.drop(1)
	waitFor(t, "both anchors sent again", func() bool { return c.sent(1) == 2 && c.sent(2) == 2 })
	waitAnchored(t, r.log, 2, anchor.StatusAnchored)
	c.advance(3)
	waitAnchored(t, r.log, 2, anchor.StatusConfirmed)
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
}

// TestLogReorgAdopts: a reorg moves an anchor to another transaction and
// block; the contract still holds it, so the Log records where it is now
// and sends nothing.
func TestLogReorgAdopts(t *testing.T) {
	cfg := fast
	cfg.Confirmations = 3
	src, c := &memSource{}, newFakeChain()
	src.add(5)
	r := start(t, cfg, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	waitAnchored(t, r.log, 1, anchor.StatusAnchored)

	tx := c.remine(1)
	waitFor(t, "the new transaction recorded", func() bool {
		cps := checkpoints(t, r.log)
		return bytes.Equal(cps[0].Anchor.TxHash, tx[:])
	})
	c.advance(2)
	waitAnchored(t, r.log, 1, anchor.StatusConfirmed)
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
	if n := c.sent(1); n != 1 {
		t.Errorf("anchor 1 sent %d times, want 1", n)
	}
}

// TestLogStuckTransaction: a transaction stays unmined past Resubmit, so the
// Log sends the anchor again; then both are mined, the first wins, the
// second reverts, and the Log records the one the contract holds.
func TestLogStuckTransaction(t *testing.T) {
	src, c := &memSource{}, newFakeChain()
	c.hold = true
	src.add(5)
	r := start(t, fast, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	waitFor(t, "anchor 1 sent twice", func() bool { return c.sent(1) >= 2 })
	c.mu.Lock()
	c.hold = false
	c.mu.Unlock()
	c.mine()
	waitAnchored(t, r.log, 1, anchor.StatusConfirmed)
	checkLog(t, r.log, src, c, anchor.StatusConfirmed) // the recorded tx is the contract's

	src.add(3)
	waitFor(t, "8 leaves confirmed", settled(t, r.log, 8, anchor.StatusConfirmed))
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
}

// TestLogForeignAnchor: a contract holding anchors this log did not make
// stops Run with ErrForeignAnchor.
func TestLogForeignAnchor(t *testing.T) {
	t.Run("at start", func(t *testing.T) {
		src, c := &memSource{}, newFakeChain()
		c.foreign(anchor.Anchor{Seq: 1, Root: [32]byte{1}, TreeSize: 9})
		src.add(3)
		r := start(t, fast, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
		select {
		case err := <-r.done:
			r.done <- err
			if !errors.Is(err, anchor.ErrForeignAnchor) {
				t.Errorf("Run = %v, want ErrForeignAnchor", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not stop")
		}
		if n := c.sent(1); n != 0 {
			t.Errorf("anchor 1 sent %d times by the Log, want none", n)
		}
	})
	t.Run("at the next seq", func(t *testing.T) {
		src, c := &memSource{}, newFakeChain()
		src.add(3)
		path := filepath.Join(t.TempDir(), "log.db")
		r := start(t, fast, path, src, c, nil)
		waitFor(t, "3 leaves confirmed", settled(t, r.log, 3, anchor.StatusConfirmed))
		c.setDown(true) // the next anchor cannot go out...
		src.add(2)
		waitFor(t, "checkpoint 5", func() bool { return r.log.Size() == 5 })
		a1, _ := c.record(1)
		// ...and someone else anchors there meanwhile.
		c.foreign(anchor.Anchor{Seq: 2, Root: [32]byte{2}, TreeSize: 5, PrevRoot: a1.Root})
		c.setDown(false)
		select {
		case err := <-r.done:
			r.done <- err
			if !errors.Is(err, anchor.ErrForeignAnchor) {
				t.Errorf("Run = %v, want ErrForeignAnchor", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not stop")
		}
	})
}

// TestLogChainMismatch: a log anchored on one chain refuses another.
func TestLogChainMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	src, c := &memSource{}, newFakeChain()
	src.add(4)
	r := start(t, fast, path, src, c, nil)
	waitFor(t, "4 leaves confirmed", settled(t, r.log, 4, anchor.StatusConfirmed))
	r.stop()

	other := newFakeChain()
	other.info.ChainID = 1
	s := openStore(t, path)
	defer s.Close()
	if _, err := anchor.New(t.Context(), fast, s, src.Leaves, other, nil); !errors.Is(err, anchor.ErrChainMismatch) {
		t.Errorf("New on another chain id = %v, want ErrChainMismatch", err)
	}
	other = newFakeChain()
	other.info.Contract = "0x0000000000000000000000000000000000000001"
	if _, err := anchor.New(t.Context(), fast, s, src.Leaves, other, nil); !errors.Is(err, anchor.ErrChainMismatch) {
		t.Errorf("New on another contract = %v, want ErrChainMismatch", err)
	}

	// Same chain id and contract, but the confirmed anchors are gone (a
	// reset dev chain): Run stops rather than anchor a second history.
	l, err := anchor.New(t.Context(), fast, s, src.Leaves, newFakeChain(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := l.Run(ctx); !errors.Is(err, anchor.ErrChainMismatch) {
		t.Errorf("Run on a chain without the confirmed anchors = %v, want ErrChainMismatch", err)
	}
}

func TestLogReads(t *testing.T) {
	ctx := t.Context()
	src, c := &memSource{}, newFakeChain()
	src.add(20)
	r := start(t, fast, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	waitFor(t, "20 leaves confirmed", settled(t, r.log, 20, anchor.StatusConfirmed))
	leaves := src.data()

	for i, d := range leaves {
		h, err := r.log.LeafHash(ctx, uint64(i))
		if err != nil || !bytes.Equal(h, anchor.HashLeaf(d)) {
			t.Errorf("LeafHash(%d) = %x, %v; want %x", i, h, err, anchor.HashLeaf(d))
		}
	}
	if _, err := r.log.LeafHash(ctx, 20); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("LeafHash(20) = %v, want ErrNotFound", err)
	}
	if _, err := r.log.Receipt(ctx, 20); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("Receipt(20) = %v, want ErrNotFound", err)
	}

	// The vault's leaf 7 is altered: its receipt is refused.
	src.mu.Lock()
	src.leaves[7].Data[5] ^= 1
	src.mu.Unlock()
	if _, err := r.log.Receipt(ctx, 7); !errors.Is(err, anchor.ErrLeafMismatch) {
		t.Errorf("Receipt of an altered leaf = %v, want ErrLeafMismatch", err)
	}

	cps := checkpoints(t, r.log)
	last := cps[len(cps)-1].Size
	for _, tt := range []struct {
		from, to uint64
		want     error
	}{
		{0, last, anchor.ErrInvalidRange},
		{last, cps[0].Size, anchor.ErrInvalidRange},
		{cps[0].Size + 1, last, anchor.ErrNotFound},
		{cps[0].Size, last + 1, anchor.ErrNotFound},
	} {
		if _, err := r.log.Consistency(ctx, tt.from, tt.to); !errors.Is(err, tt.want) {
			t.Errorf("Consistency(%d, %d) = %v, want %v", tt.from, tt.to, err, tt.want)
		}
	}
	if p, err := r.log.Consistency(ctx, last, last); err != nil || len(p) != 0 {
		t.Errorf("Consistency(%d, %d) = %d hashes, %v; want an empty proof", last, last, len(p), err)
	}

	// Paging through the checkpoints gives the same as one page.
	var paged []anchor.Checkpoint
	for after := uint64(0); ; {
		page, err := r.log.Checkpoints(ctx, after, 1)
		if err != nil {
			t.Fatalf("Checkpoints(%d, 1): %v", after, err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1].Size
	}
	if diff := cmp.Diff(cps, paged); diff != "" {
		t.Errorf("paged checkpoints (-want +got):\n%s", diff)
	}
	if got, err := r.log.Checkpoints(ctx, 0, 0); err != nil || len(got) != 0 {
		t.Errorf("Checkpoints(0, 0) = %v, %v; want none", got, err)
	}

	// Run is single-writer.
	if err := r.log.Run(ctx); err == nil {
		t.Error("a second concurrent Run = nil, want an error")
	}
}

func TestNewErrors(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, filepath.Join(t.TempDir(), "log.db"))
	defer s.Close()
	src, c := &memSource{}, newFakeChain()
	if _, err := anchor.New(ctx, anchor.Config{MaxLeaves: -1}, s, src.Leaves, c, nil); err == nil {
		t.Error("New with a bad config = nil error")
	}
	if _, err := anchor.New(ctx, anchor.Config{}, nil, src.Leaves, c, nil); err == nil {
		t.Error("New without a store = nil error")
	}
	if _, err := anchor.New(ctx, anchor.Config{}, s, nil, c, nil); err == nil {
		t.Error("New without a leaf source = nil error")
	}
	if _, err := anchor.New(ctx, anchor.Config{}, s, src.Leaves, nil, nil); err == nil {
		t.Error("New without a chain = nil error")
	}
	l, err := anchor.New(ctx, anchor.Config{}, s, src.Leaves, c, nil)
	if err != nil || l.Size() != 0 {
		t.Errorf("New on an empty store = %v, size %d", err, l.Size())
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  anchor.Config
		ok   bool
	}{
		{"zero means defaults", anchor.Config{}, true},
		{"typical", anchor.Config{MaxLeaves: 16384, MaxDelay: 10 * time.Second, Confirmations: 12, Poll: time.Second, Retry: time.Second, Resubmit: time.Minute}, true},
		{"largest batch", anchor.Config{MaxLeaves: 1 << 20}, true},
		{"batch too large", anchor.Config{MaxLeaves: 1<<20 + 1}, false},
		{"negative batch", anchor.Config{MaxLeaves: -1}, false},
		{"negative delay", anchor.Config{MaxDelay: -time.Second}, false},
		{"negative poll", anchor.Config{Poll: -time.Second}, false},
		{"negative retry", anchor.Config{Retry: -time.Second}, false},
		{"negative resubmit", anchor.Config{Resubmit: -time.Second}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// TestLeafIndexes: the leaf at index i of the log is the i-th leaf of the
// source, whatever the batching.
func TestLeafIndexes(t *testing.T) {
	cfg := fast
	cfg.MaxLeaves = 7
	src, c := &memSource{}, newFakeChain()
	r := start(t, cfg, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	for _, n := range []int{1, 6, 13, 2, 30} {
		src.add(n)
		time.Sleep(time.Duration(n) * time.Millisecond)
	}
	waitFor(t, "52 leaves confirmed", settled(t, r.log, 52, anchor.StatusConfirmed))
	checkLog(t, r.log, src, c, anchor.StatusConfirmed)
	var types []uint8
	for i := range uint64(5) {
		rc, err := r.log.Receipt(t.Context(), i)
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, rc.LeafTypeNumber)
	}
	if !slices.Equal(types, []uint8{1, 2, 3, 4, 5}) {
		t.Errorf("leaf types of leaves 0-4 = %v, want 1-5", types)
	}
}

// TestLogTakesTurns: gateways sharing one database take turns running their
// Logs over one Store. A Log that does not run serves receipts of what the
// other anchored, and a Log that runs again picks up where the other left
// off: every leaf is anchored once, in one chain of anchors.
func TestLogTakesTurns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	src, c := &memSource{}, newFakeChain()
	logs := make([]*anchor.Log, 2)
	for i := range logs {
		store := openStore(t, path)
		t.Cleanup(func() { store.Close() })
		l, err := anchor.New(t.Context(), fast, store, src.Leaves, c, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		logs[i] = l
	}
	// turn runs logs[i] until n leaves are confirmed, then stops it.
	turn := func(i int, n uint64) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- logs[i].Run(ctx) }()
		waitFor(t, fmt.Sprintf("log %d: %d leaves confirmed", i, n), settled(t, logs[i], n, anchor.StatusConfirmed))
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("log %d: Run = %v", i, err)
		}
	}
	// receipts checks that the Log that is not running serves confirmed
	// receipts of every leaf.
	receipts := func(i int, n uint64) {
		t.Helper()
		for k := range n {
			r, err := logs[i].Receipt(t.Context(), k)
			if err != nil {
				t.Fatalf("log %d: Receipt(%d): %v", i, k, err)
			}
			if r.Status != anchor.StatusConfirmed {
				t.Fatalf("log %d: receipt of leaf %d is %s, want confirmed (anchored by the other log)", i, k, r.Status)
			}
			if err := anchor.VerifyReceipt(r); err != nil {
				t.Fatalf("log %d: receipt of leaf %d: %v", i, k, err)
			}
		}
	}
	src.add(40)
	turn(0, 40)
	receipts(1, 40)
	src.add(30)
	turn(1, 70)
	receipts(0, 70)
	src.add(20)
	turn(0, 90) // a second Run of the same Log reloads what log 1 wrote
	checkLog(t, logs[0], src, c, anchor.StatusConfirmed)
	for _, a := range c.anchors() {
		if c.sent(a.Seq) != 1 {
			t.Errorf("anchor %d sent %d times, want 1", a.Seq, c.sent(a.Seq))
		}
	}
}

// TestLogSignsCheckpoints: a Log with a key signs every checkpoint when it
// writes it and stores the note; each receipt carries the note of its tree
// and verifies with the Log's verifier key alone.
func TestLogSignsCheckpoints(t *testing.T) {
	ctx := t.Context()
	src, c := &memSource{}, newFakeChain()
	src.add(40)
	cfg := fast
	cfg.SigningKey, cfg.Origin = vectorSKey, vectorOrigin
	r := start(t, cfg, filepath.Join(t.TempDir(), "log.db"), src, c, nil)
	if got := r.log.VerifierKey(); got != vectorVKey {
		t.Fatalf("VerifierKey = %q, want %q", got, vectorVKey)
	}
	waitFor(t, "40 leaves confirmed", settled(t, r.log, 40, anchor.StatusConfirmed))
	v := mustVerifier(t, vectorVKey)

	stored, err := r.store.Checkpoints(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) < 3 {
		t.Fatalf("%d checkpoints, want several", len(stored))
	}
	for _, cp := range stored {
		b, err := anchor.VerifyCheckpoint([]byte(cp.Note), v)
		if err != nil {
			t.Fatalf("stored note of checkpoint %d: %v\n%s", cp.Size, err, cp.Note)
		}
		if b.Origin != vectorOrigin || b.Size != cp.Size || !bytes.Equal(b.Root, cp.Root) {
			t.Errorf("note of checkpoint %d signs %+v", cp.Size, b)
		}
	}
	listed := checkpoints(t, r.log)
	for i, cp := range listed {
		if cp.Note != stored[i].Note {
			t.Errorf("Checkpoints lists checkpoint %d with another note than stored", cp.Size)
		}
	}
	for i := range uint64(40) {
		rc, err := r.log.Receipt(ctx, i)
		if err != nil {
			t.Fatalf("Receipt(%d): %v", i, err)
		}
		if err := anchor.VerifyReceiptSigned(rc, v); err != nil {
			t.Errorf("VerifyReceiptSigned(receipt %d): %v", i, err)
		}
	}
}

// TestLogSignsOlderCheckpoints: checkpoints written before the Log had a
// key get a note when served (the same each time, not stored); those it
// writes afterwards are stored signed. A legacy checkpoint whose root no
// longer matches the stored tree is not signed.
func TestLogSignsOlderCheckpoints(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "log.db")
	src, c := &memSource{}, newFakeChain()
	src.add(20)
	r := start(t, fast, path, src, c, nil)
	waitFor(t, "20 leaves confirmed", settled(t, r.log, 20, anchor.StatusConfirmed))
	if r.log.VerifierKey() != "" {
		t.Errorf("VerifierKey of a Log without a key = %q", r.log.VerifierKey())
	}
	rc, err := r.log.Receipt(ctx, 3)
	if err != nil || rc.Checkpoint != "" {
		t.Fatalf("receipt of a Log without a key: checkpoint %q, %v; want none", rc.Checkpoint, err)
	}
	if err := anchor.VerifyReceiptSigned(rc, mustVerifier(t, vectorVKey)); !errors.Is(err, anchor.ErrUnsignedReceipt) {
		t.Errorf("VerifyReceiptSigned(unsigned receipt) = %v, want ErrUnsignedReceipt", err)
	}
	legacy := len(checkpoints(t, r.log))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	cfg := fast
	cfg.SigningKey = vectorSKey
	src.add(20)
	r = start(t, cfg, path, src, c, nil)
	waitFor(t, "40 leaves confirmed", settled(t, r.log, 40, anchor.StatusConfirmed))
	v := mustVerifier(t, vectorVKey)
	stored, err := r.store.Checkpoints(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	listed := checkpoints(t, r.log)
	for i, cp := range listed {
		if (stored[i].Note == "") != (i < legacy) {
			t.Errorf("checkpoint %d stored with note %q; legacy: %v", cp.Size, stored[i].Note, i < legacy)
		}
		b, err := anchor.VerifyCheckpoint([]byte(cp.Note), v)
		if err != nil || b.Size != cp.Size || !bytes.Equal(b.Root, cp.Root) {
			t.Errorf("listed note of checkpoint %d: %+v, %v", cp.Size, b, err)
		}
	}
	if again := checkpoints(t, r.log); cmp.Diff(listed, again) != "" {
		t.Error("a legacy checkpoint's note differs from one listing to the next")
	}
	for i := range uint64(40) {
		rc, err := r.log.Receipt(ctx, i)
		if err != nil {
			t.Fatalf("Receipt(%d): %v", i, err)
		}
		if err := anchor.VerifyReceiptSigned(rc, v); err != nil {
			t.Errorf("VerifyReceiptSigned(receipt %d): %v", i, err)
		}
	}

	// An intruder rewrites the root of the first (unsigned) checkpoint.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `UPDATE checkpoints SET root = zeroblob(32) WHERE size = ?`, int64(listed[0].Size)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.log.Checkpoints(ctx, 0, 100); err == nil {
		t.Error("Checkpoints signed a legacy checkpoint whose root is not its tree's")
	}
	if _, err := r.log.Receipt(ctx, 0); err == nil {
		t.Error("Receipt signed a legacy checkpoint whose root is not its tree's")
	}
}

func TestConfigValidateSigning(t *testing.T) {
	tests := []struct {
		name string
		cfg  anchor.Config
		ok   bool
	}{
		{"key alone", anchor.Config{SigningKey: vectorSKey}, true},
		{"key and its origin", anchor.Config{SigningKey: vectorSKey, Origin: vectorOrigin}, true},
		{"origin alone", anchor.Config{Origin: "example.org/log"}, true},
		{"key of another origin", anchor.Config{SigningKey: vectorSKey, Origin: "example.org/log"}, false},
		{"origin with a newline", anchor.Config{Origin: "a\nb"}, false},
		{"verifier key", anchor.Config{SigningKey: vectorVKey}, false},
		{"garbage", anchor.Config{SigningKey: "PRIVATE+KEY+x"}, false},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "AQAB") {
			t.Errorf("%s: Validate error quotes the key: %v", tt.name, err)
		}
	}
}
