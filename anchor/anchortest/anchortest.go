// Package anchortest checks that an anchor.Store keeps its contract, as
// testing/fstest does for file systems. Every backend runs the same suite
// from its own tests:
//
//	func TestStore(t *testing.T) {
//		anchortest.Exercise(t, func(t *testing.T) anchor.Store {
//			s, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "log.db")})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package anchortest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/fhiranchor/fhiranchor/anchor"
)

// Exercise runs the conformance suite against the stores newStore returns.
// Each subtest calls newStore once and needs a fresh, empty store; Exercise
// closes it when the subtest ends.
func Exercise(t *testing.T, newStore func(t *testing.T) anchor.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s anchor.Store)
	}{
		{"Empty", testEmpty},
		{"Append", testAppend},
		{"AppendConflict", testAppendConflict},
		{"AppendMany", testAppendMany},
		{"Anchors", testAnchors},
		{"AnchorConflict", testAnchorConflict},
		{"Concurrent", testConcurrent},
		{"Context", testContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
}

// base is the time of the first test checkpoint, with microsecond precision
// as a Store keeps it.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

// builder grows a real RFC 6962 tree and hands out what a Log would append.
type builder struct {
	rng   *compact.Range
	nodes map[compact.NodeID][]byte
}

func newBuilder() *builder {
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	return &builder{rng: f.NewEmptyRange(0), nodes: map[compact.NodeID][]byte{}}
}

// grow appends n leaves and returns the size before, the new nodes and the
// new checkpoint.
func (b *builder) grow(t *testing.T, n int) (uint64, []anchor.Node, anchor.Checkpoint) {
	t.Helper()
	from := b.rng.End()
	var nodes []anchor.Node
	for range n {
		i := b.rng.End()
		leaf := rfc6962.DefaultHasher.HashLeaf(fmt.Appendf(nil, "leaf %d", i))
		err := b.rng.Append(leaf, func(id compact.NodeID, hash []byte) {
			nodes = append(nodes, anchor.Node{ID: id, Hash: hash})
			b.nodes[id] = hash
		})
		if err != nil {
			t.Fatalf("append leaf %d: %v", i, err)
		}
	}
	root, err := b.rng.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	cp := anchor.Checkpoint{Size: b.rng.End(), Root: root, Time: base.Add(time.Duration(b.rng.End()) * time.Second)}
	if cp.Size%2 == 1 {
		// A Store keeps a checkpoint's signed note as given, and none as
		// none (a log without a key, or before it signed).
		cp.Note = fmt.Sprintf("fhiranchor.example/log\n%d\n%s\n\n— fhiranchor.example/log c2lnbmF0dXJl\n",
			cp.Size, base64.StdEncoding.EncodeToString(root))
	}
	return from, nodes, cp
}

// appendN grows b by n leaves and appends them to s.
func (b *builder) appendN(t *testing.T, s anchor.Store, n int) anchor.Checkpoint {
	t.Helper()
	from, nodes, cp := b.grow(t, n)
	if err := s.Append(t.Context(), from, nodes, cp); err != nil {
		t.Fatalf("Append(from %d, %d nodes, size %d): %v", from, len(nodes), cp.Size, err)
	}
	return cp
}

func hash(s string) anchor.Hex {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

var zeroRoot = anchor.Hex(make([]byte, sha256.Size))

// anchorOf returns a submitted anchor of cp at seq after prev.
func anchorOf(seq uint64, cp anchor.Checkpoint, prev anchor.Hex) anchor.AnchorRecord {
	return anchor.AnchorRecord{
		Seq:       seq,
		TreeSize:  cp.Size,
		Root:      cp.Root,
		PrevRoot:  prev,
		ChainID:   1337,
		Contract:  "0x5FbDB2315678afecb367f032d93F642f64180aa3",
		Status:    anchor.StatusSubmitted,
		TxHash:    hash(fmt.Sprintf("tx %d", seq)),
		Submitted: base.Add(time.Duration(seq) * time.Minute),
	}
}

// mined returns a with its transaction mined at block, with confs
// confirmations.
func mined(a anchor.AnchorRecord, block, confs uint64, status anchor.Status) anchor.AnchorRecord {
	a.Status = status
	a.BlockNumber = block
	a.BlockHash = hash(fmt.Sprintf("block %d", block))
	a.BlockTime = base.Add(time.Duration(block) * 12 * time.Second)
	a.Confirmations = confs
	return a
}

func put(t *testing.T, s anchor.Store, a anchor.AnchorRecord) {
	t.Helper()
	if err := s.PutAnchor(t.Context(), a); err != nil {
		t.Fatalf("PutAnchor(seq %d, size %d, %s): %v", a.Seq, a.TreeSize, a.Status, err)
	}
}

func testEmpty(t *testing.T, s anchor.Store) {
	ctx := t.Context()
	if _, err := s.LastCheckpoint(ctx); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("LastCheckpoint = %v, want ErrNotFound", err)
	}
	if _, err := s.LastAnchor(ctx); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("LastAnchor = %v, want ErrNotFound", err)
	}
	if _, err := s.AnchorCovering(ctx, 0); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("AnchorCovering(0) = %v, want ErrNotFound", err)
	}
	if _, err := s.Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, 0)}); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("Nodes((0, 0)) = %v, want ErrNotFound", err)
	}
	if got, err := s.Nodes(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Nodes(nil) = %v, %v; want none", got, err)
	}
	if got, err := s.Checkpoints(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Errorf("Checkpoints = %v, %v; want none", got, err)
	}
	if got, err := s.Anchors(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Errorf("Anchors = %v, %v; want none", got, err)
	}
	if got, err := s.Unconfirmed(ctx); err != nil || len(got) != 0 {
		t.Errorf("Unconfirmed = %v, %v; want none", got, err)
	}
}

// testAppendMany appends a checkpoint of a thousand leaves (a busy
// second's; some two thousand nodes, more than one statement's worth for a
// Store that batches them) and reads every node back.
func testAppendMany(t *testing.T, s anchor.Store) {
	b := newBuilder()
	b.appendN(t, s, 3)
	cp := b.appendN(t, s, 1000)
	var ids []compact.NodeID
	var want [][]byte
	for id, h := range b.nodes {
		ids = append(ids, id)
		want = append(want, h)
	}
	got, err := s.Nodes(t.Context(), ids)
	if err != nil {
		t.Fatalf("Nodes(%d ids): %v", len(ids), err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}
	if last, err := s.LastCheckpoint(t.Context()); err != nil || last.Size != cp.Size {
		t.Errorf("LastCheckpoint = %d, %v; want %d", last.Size, err, cp.Size)
	}
}

func testAppend(t *testing.T, s anchor.Store) {
	ctx := t.Context()
	b := newBuilder()
	var cps []anchor.Checkpoint
	for _, n := range []int{1, 4, 7, 16, 3} {
		cps = append(cps, b.appendN(t, s, n))
	}

	// Every node reads back, one at a time and all at once.
	var ids []compact.NodeID
	var want [][]byte
	for id, h := range b.nodes {
		ids = append(ids, id)
		want = append(want, h)
	}
	got, err := s.Nodes(ctx, ids)
	if err != nil {
		t.Fatalf("Nodes(%d ids): %v", len(ids), err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}
	// A node of a perfect subtree not complete yet is not stored.
	if _, err := s.Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, 0), compact.NewNodeID(5, 0)}); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("Nodes with (5, 0) of a 31-leaf tree = %v, want ErrNotFound", err)
	}

	last, err := s.LastCheckpoint(ctx)
	if err != nil {
		t.Fatalf("LastCheckpoint: %v", err)
	}
	if diff := cmp.Diff(cps[len(cps)-1], last); diff != "" {
		t.Errorf("LastCheckpoint (-want +got):\n%s", diff)
	}
	all, err := s.Checkpoints(ctx, 0, 100)
	if err != nil {
		t.Fatalf("Checkpoints: %v", err)
	}
	if diff := cmp.Diff(cps, all); diff != "" {
		t.Errorf("Checkpoints (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		after uint64
		limit int
		want  []anchor.Checkpoint
	}{
		{0, 2, cps[:2]},
		{1, 2, cps[1:3]},
		{4, 100, cps[1:]},
		{5, 1, cps[2:3]},
		{31, 10, nil},
		{0, 0, nil},
		{0, -1, nil},
	} {
		got, err := s.Checkpoints(ctx, tt.after, tt.limit)
		if err != nil {
			t.Fatalf("Checkpoints(%d, %d): %v", tt.after, tt.limit, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Checkpoints(%d, %d) (-want +got):\n%s", tt.after, tt.limit, diff)
		}
	}
	for _, cp := range all {
		if cp.Time.Location() != time.UTC || cp.Anchor != nil {
			t.Errorf("checkpoint %d: time in %v, anchor %v; want UTC, nil", cp.Size, cp.Time.Location(), cp.Anchor)
		}
	}
}

func testAppendConflict(t *testing.T, s anchor.Store) {
	ctx := t.Context()
	b := newBuilder()
	first := b.appendN(t, s, 3)

	// From a stale size: nothing of it is kept.
	_, nodes, cp := b.grow(t, 2)
	if err := s.Append(ctx, 0, nodes, cp); !errors.Is(err, anchor.ErrConflict) {
		t.Errorf("Append from 0 after 3 = %v, want ErrConflict", err)
	}
	if err := s.Append(ctx, 4, nodes, cp); !errors.Is(err, anchor.ErrConflict) {
		t.Errorf("Append from 4 after 3 = %v, want ErrConflict", err)
	}
	if _, err := s.Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, 3)}); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("node (0, 3) after failed Appends: %v, want ErrNotFound", err)
	}
	if last, err := s.LastCheckpoint(ctx); err != nil || last.Size != first.Size {
		t.Errorf("LastCheckpoint after failed Appends = %d, %v; want %d", last.Size, err, first.Size)
	}

	// A checkpoint that does not grow the tree.
	if err := s.Append(ctx, 3, nil, first); !errors.Is(err, anchor.ErrConflict) {
		t.Errorf("Append of checkpoint 3 from 3 = %v, want ErrConflict", err)
	}
	// A node stored already: the whole Append fails.
	dup := append([]anchor.Node{{ID: compact.NewNodeID(0, 0), Hash: hash("other")}}, nodes...)
	if err := s.Append(ctx, 3, dup, cp); !errors.Is(err, anchor.ErrConflict) {
		t.Errorf("Append with a stored node = %v, want ErrConflict", err)
	}
	if _, err := s.Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, 3)}); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("node (0, 3) after a failed Append: %v, want ErrNotFound", err)
	}
	if got, err := s.Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, 0)}); err != nil || string(got[0]) != string(b.nodes[compact.NewNodeID(0, 0)]) {
		t.Errorf("node (0, 0) after a failed Append = %x, %v; want it unchanged", got, err)
	}

	// The right Append still works.
	if err := s.Append(ctx, 3, nodes, cp); err != nil {
		t.Fatalf("Append from 3: %v", err)
	}
}

func testAnchors(t *testing.T, s anchor.Store) {
	ctx := t.Context()
	b := newBuilder()
	cp1 := b.appendN(t, s, 5)
	cp2 := b.appendN(t, s, 3)
	cp3 := b.appendN(t, s, 8)

	a1 := anchorOf(1, cp1, zeroRoot)
	put(t, s, a1)
	last, err := s.LastAnchor(ctx)
	if err != nil {
		t.Fatalf("LastAnchor: %v", err)
	}
	if diff := cmp.Diff(a1, last); diff != "" {
		t.Errorf("LastAnchor (-want +got):\n%s", diff)
	}

	// The chain moves it along: mined, confirmed; the Store keeps the latest.
	a1 = mined(a1, 7, 1, anchor.StatusAnchored)
	put(t, s, a1)
	a1 = mined(a1, 7, 3, anchor.StatusConfirmed)
	a1.Submitted = time.Time{} // adopted from the chain: no send time
	put(t, s, a1)
	a2 := mined(anchorOf(2, cp2, cp1.Root), 9, 1, anchor.StatusAnchored)
	put(t, s, a2)
	a3 := anchorOf(3, cp3, cp2.Root)
	put(t, s, a3)

	all, err := s.Anchors(ctx, 0, 10)
	if err != nil {
		t.Fatalf("Anchors: %v", err)
	}
	if diff := cmp.Diff([]anchor.AnchorRecord{a1, a2, a3}, all); diff != "" {
		t.Errorf("Anchors (-want +got):\n%s", diff)
	}
	for _, a := range all {
		if a.Submitted.Location() != time.UTC || a.BlockTime.Location() != time.UTC {
			t.Errorf("anchor %d: times not in UTC", a.Seq)
		}
	}
	if got, err := s.Anchors(ctx, 1, 1); err != nil || len(got) != 1 || got[0].Seq != 2 {
		t.Errorf("Anchors(1, 1) = %v, %v; want anchor 2", got, err)
	}
	if got, err := s.Anchors(ctx, 3, 1); err != nil || len(got) != 0 {
		t.Errorf("Anchors(3, 1) = %v, %v; want none", got, err)
	}
	if got, err := s.Anchors(ctx, 0, 0); err != nil || len(got) != 0 {
		t.Errorf("Anchors(0, 0) = %v, %v; want none", got, err)
	}
	unconfirmed, err := s.Unconfirmed(ctx)
	if err != nil {
		t.Fatalf("Unconfirmed: %v", err)
	}
	if diff := cmp.Diff([]anchor.AnchorRecord{a2, a3}, unconfirmed); diff != "" {
		t.Errorf("Unconfirmed (-want +got):\n%s", diff)
	}
	if last, err := s.LastAnchor(ctx); err != nil || last.Seq != 3 {
		t.Errorf("LastAnchor = %d, %v; want 3", last.Seq, err)
	}

	// The first anchor whose tree holds the leaf.
	for _, tt := range []struct {
		index uint64
		seq   uint64
	}{{0, 1}, {4, 1}, {5, 2}, {7, 2}, {8, 3}, {15, 3}} {
		got, err := s.AnchorCovering(ctx, tt.index)
		if err != nil || got.Seq != tt.seq {
			t.Errorf("AnchorCovering(%d) = %d, %v; want %d", tt.index, got.Seq, err, tt.seq)
		}
	}
	if _, err := s.AnchorCovering(ctx, 16); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("AnchorCovering(16) = %v, want ErrNotFound", err)
	}

	// A reorg sends anchor 2 back to submitted, with no block.
	a2.Status, a2.BlockNumber, a2.BlockHash, a2.BlockTime, a2.Confirmations, a2.Submitted = anchor.StatusSubmitted, 0, nil, time.Time{}, 0, time.Time{}
	put(t, s, a2)
	if got, err := s.AnchorCovering(ctx, 6); err != nil {
		t.Errorf("AnchorCovering(6): %v", err)
	} else if diff := cmp.Diff(a2, got); diff != "" {
		t.Errorf("anchor 2 after reorg (-want +got):\n%s", diff)
	}
}

func testAnchorConflict(t *testing.T, s anchor.Store) {
	ctx := t.Context()
	b := newBuilder()
	cp1 := b.appendN(t, s, 5)
	cp2 := b.appendN(t, s, 3)
	cp3 := b.appendN(t, s, 2)

	bad := func(name string, a anchor.AnchorRecord) {
		t.Helper()
		if err := s.PutAnchor(ctx, a); err == nil {
			t.Errorf("PutAnchor(%s) = nil, want an error", name)
		}
	}
	conflict := func(name string, a anchor.AnchorRecord) {
		t.Helper()
		if err := s.PutAnchor(ctx, a); !errors.Is(err, anchor.ErrConflict) {
			t.Errorf("PutAnchor(%s) = %v, want ErrConflict", name, err)
		}
	}

	conflict("seq 2 first", anchorOf(2, cp1, zeroRoot))
	conflict("seq 1 with a previous root", anchorOf(1, cp1, cp1.Root))
	wrongRoot := anchorOf(1, cp1, zeroRoot)
	wrongRoot.Root = cp2.Root
	conflict("root of another checkpoint", wrongRoot)
	noCheckpoint := anchorOf(1, cp1, zeroRoot)
	noCheckpoint.TreeSize = 6
	conflict("no checkpoint of that size", noCheckpoint)
	bad("status pending", func() anchor.AnchorRecord { a := anchorOf(1, cp1, zeroRoot); a.Status = anchor.StatusPending; return a }())
	bad("short transaction hash", func() anchor.AnchorRecord { a := anchorOf(1, cp1, zeroRoot); a.TxHash = a.TxHash[:8]; return a }())
	bad("seq 0", anchorOf(0, cp1, zeroRoot))
	if _, err := s.LastAnchor(ctx); !errors.Is(err, anchor.ErrNotFound) {
		t.Fatalf("LastAnchor after refused PutAnchors = %v, want ErrNotFound", err)
	}

	a1 := anchorOf(1, cp1, zeroRoot)
	put(t, s, a1)
	conflict("seq 2 with a wrong previous root", anchorOf(2, cp2, zeroRoot))
	conflict("seq 2 on the same checkpoint", anchorOf(2, cp1, cp1.Root))
	conflict("seq 3 before seq 2", anchorOf(3, cp3, cp2.Root))

	// What an anchor is never changes.
	other := anchorOf(1, cp2, zeroRoot)
	conflict("seq 1 rebound to another checkpoint", other)
	moved := a1
	moved.ChainID = 1
	conflict("seq 1 moved to another chain", moved)
	moved = a1
	moved.Contract = "0x0000000000000000000000000000000000000001"
	conflict("seq 1 moved to another contract", moved)

	a2 := anchorOf(2, cp2, cp1.Root)
	put(t, s, a2)
	if got, err := s.Anchors(ctx, 0, 10); err != nil || len(got) != 2 {
		t.Fatalf("Anchors = %v, %v; want 2", got, err)
	} else if diff := cmp.Diff([]anchor.AnchorRecord{a1, a2}, got); diff != "" {
		t.Errorf("Anchors after refused PutAnchors (-want +got):\n%s", diff)
	}
}

// testConcurrent reads while one writer appends and anchors, as a Log's
// receipts do while its Run goes on (run it with -race).
func testConcurrent(t *testing.T, s anchor.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b := newBuilder()
	first := b.appendN(t, s, 4)
	put(t, s, anchorOf(1, first, zeroRoot))
	leaf0 := b.nodes[compact.NewNodeID(0, 0)]

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				got, err := s.Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, 0), compact.NewNodeID(2, 0)})
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("Nodes: %v", err)
					}
					return
				}
				if string(got[0]) != string(leaf0) {
					t.Errorf("node (0, 0) changed")
					return
				}
				cp, err := s.LastCheckpoint(ctx)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("LastCheckpoint: %v", err)
					}
					return
				}
				// Nodes and checkpoint are written together: a reader who
				// sees a checkpoint sees its leaves.
				if _, err := s.Nodes(ctx, []compact.NodeID{compact.NewNodeID(0, cp.Size-1)}); err != nil && ctx.Err() == nil {
					t.Errorf("checkpoint %d visible before its last leaf: %v", cp.Size, err)
					return
				}
				if _, err := s.AnchorCovering(ctx, 0); err != nil && ctx.Err() == nil {
					t.Errorf("AnchorCovering: %v", err)
					return
				}
			}
		})
	}
	prev := first
	for seq := uint64(2); seq <= 40; seq++ {
		cp := b.appendN(t, s, int(seq%5)+1)
		put(t, s, anchorOf(seq, cp, prev.Root))
		prev = cp
	}
	cancel()
	wg.Wait()
}

func testContext(t *testing.T, s anchor.Store) {
	b := newBuilder()
	first := b.appendN(t, s, 2)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()

	from, nodes, cp := b.grow(t, 3)
	if err := s.Append(canceled, from, nodes, cp); err == nil {
		t.Errorf("Append(canceled ctx) = nil, want an error")
	}
	if err := s.PutAnchor(canceled, anchorOf(1, first, zeroRoot)); err == nil {
		t.Errorf("PutAnchor(canceled ctx) = nil, want an error")
	}
	if _, err := s.Nodes(canceled, []compact.NodeID{compact.NewNodeID(0, 0)}); err == nil || errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("Nodes(canceled ctx) = %v, want a context error", err)
	}
	if _, err := s.LastCheckpoint(canceled); err == nil || errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("LastCheckpoint(canceled ctx) = %v, want a context error", err)
	}
	if _, err := s.Checkpoints(canceled, 0, 10); err == nil {
		t.Errorf("Checkpoints(canceled ctx) = nil error")
	}
	if _, err := s.Anchors(canceled, 0, 10); err == nil {
		t.Errorf("Anchors(canceled ctx) = nil error")
	}
	if _, err := s.Unconfirmed(canceled); err == nil {
		t.Errorf("Unconfirmed(canceled ctx) = nil error")
	}
	if _, err := s.LastAnchor(canceled); err == nil || errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("LastAnchor(canceled ctx) = %v, want a context error", err)
	}
	if _, err := s.AnchorCovering(canceled, 0); err == nil || errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("AnchorCovering(canceled ctx) = %v, want a context error", err)
	}

	// Nothing the canceled writes attempted is kept.
	if last, err := s.LastCheckpoint(t.Context()); err != nil || last.Size != 2 {
		t.Errorf("LastCheckpoint = %d, %v; want 2", last.Size, err)
	}
	if _, err := s.LastAnchor(t.Context()); !errors.Is(err, anchor.ErrNotFound) {
		t.Errorf("LastAnchor = %v, want ErrNotFound", err)
	}
	if err := s.Append(t.Context(), from, nodes, cp); err != nil {
		t.Errorf("Append after the canceled one: %v", err)
	}
}
