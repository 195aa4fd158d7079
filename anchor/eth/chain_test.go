package eth_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth"
)

// maxAnchorGas is the budget for one anchor() under mainnet rules.
const maxAnchorGas = 60_000

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openChain(t testing.TB, cfg eth.Config) *eth.Chain {
	t.Helper()
	c, err := eth.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next is the anchor after prev, over a tree grown by 100 leaves; its root
// is a stand-in, the contract never looks inside.
func next(prev anchor.Anchor) anchor.Anchor {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], prev.Seq+1)
	return anchor.Anchor{
		Seq:      prev.Seq + 1,
		Root:     sha256.Sum256(append(prev.Root[:], b[:]...)),
		TreeSize: prev.TreeSize + 100,
		PrevRoot: prev.Root,
	}
}

// submit anchors n more anchors after prev and returns them with their
// transaction hashes.
func submit(t testing.TB, c anchor.Chain, prev anchor.Anchor, n int) ([]anchor.Anchor, [][32]byte) {
	t.Helper()
	var as []anchor.Anchor
	var txs [][32]byte
	for range n {
		a := next(prev)
		tx, err := c.Submit(t.Context(), a)
		if err != nil {
			t.Fatalf("Submit(%d): %v", a.Seq, err)
		}
		as, txs, prev = append(as, a), append(txs, tx), a
	}
	return as, txs
}

func TestSimulatedRoundTrip(t *testing.T) {
	ctx := t.Context()
	c := openChain(t, eth.Config{Dir: t.TempDir(), Key: newKey(t)})

	info := c.Info()
	if info.Name != "simulated" || info.ChainID != 1337 {
		t.Errorf("Info() = %+v, want simulated chain 1337", info)
	}
	if !common.IsHexAddress(info.Contract) || common.HexToAddress(info.Contract).Hex() != info.Contract {
		t.Errorf("Info().Contract = %q, want an EIP-55 address", info.Contract)
	}
	if seq, err := c.Latest(ctx); err != nil || seq != 0 {
		t.Fatalf("Latest() on a new contract = %d, %v; want 0", seq, err)
	}

	as, txs := submit(t, c, anchor.Anchor{}, 3)
	for i, a := range as {
		in, err := c.Inclusion(ctx, txs[i])
		if err != nil {
			t.Fatalf("Inclusion(anchor %d): %v", a.Seq, err)
		}
		if in.TxHash != txs[i] || in.BlockNumber == 0 || in.BlockHash == ([32]byte{}) || in.BlockTime.IsZero() {
			t.Errorf("Inclusion(anchor %d) = %+v", a.Seq, in)
		}
		// One block per submission: the last anchor has one confirmation.
		if want := uint64(len(as) - i); in.Confirmations != want {
			t.Errorf("Inclusion(anchor %d).Confirmations = %d, want %d", a.Seq, in.Confirmations, want)
		}
		got, gotIn, err := c.Lookup(ctx, a.Seq)
		if err != nil {
			t.Fatalf("Lookup(%d): %v", a.Seq, err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("Lookup(%d) anchor (-want +got):\n%s", a.Seq, diff)
		}
		if diff := cmp.Diff(in, gotIn); diff != "" {
			t.Errorf("Lookup(%d) inclusion differs from Inclusion (-want +got):\n%s", a.Seq, diff)
		}
	}
	if seq, err := c.Latest(ctx); err != nil || seq != 3 {
		t.Errorf("Latest() = %d, %v; want 3", seq, err)
	}
	for _, seq := range []uint64{0, 4, 1 << 40} {
		if _, _, err := c.Lookup(ctx, seq); !errors.Is(err, anchor.ErrNotOnChain) {
			t.Errorf("Lookup(%d) err = %v, want ErrNotOnChain", seq, err)
		}
	}
	if _, err := c.Inclusion(ctx, sha256.Sum256([]byte("no such transaction"))); !errors.Is(err, anchor.ErrNotOnChain) {
		t.Errorf("Inclusion(unknown tx) err = %v, want ErrNotOnChain", err)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Latest(ctx); !errors.Is(err, eth.ErrClosed) {
		t.Errorf("Latest() after Close err = %v, want ErrClosed", err)
	}
	if _, err := c.Submit(ctx, next(as[2])); !errors.Is(err, eth.ErrClosed) {
		t.Errorf("Submit() after Close err = %v, want ErrClosed", err)
	}
}

func TestSubmitRejected(t *testing.T) {
	ctx := t.Context()
	c := openChain(t, eth.Config{Key: newKey(t)}) // no Dir: nothing kept
	as, _ := submit(t, c, anchor.Anchor{}, 2)
	last := as[1]

	tests := []struct {
		name   string
		a      anchor.Anchor
		reason string
	}{
		{"same anchor again", last, "SeqMismatch(expected 3, got 2)"},
		{"seq skips one", func() anchor.Anchor { a := next(next(last)); a.PrevRoot = last.Root; return a }(), "SeqMismatch(expected 3, got 4)"},
		{"seq zero", anchor.Anchor{Root: [32]byte{1}, TreeSize: 1000}, "SeqMismatch(expected 3, got 0)"},
		{"wrong prevRoot", func() anchor.Anchor { a := next(last); a.PrevRoot = as[0].Root; return a }(), "PrevRootMismatch("},
		{"zero prevRoot", func() anchor.Anchor { a := next(last); a.PrevRoot = [32]byte{}; return a }(), "PrevRootMismatch("},
		{"tree shrinks", func() anchor.Anchor { a := next(last); a.TreeSize = last.TreeSize - 1; return a }(), "TreeSizeNotIncreasing(last 200, got 199)"},
		{"tree same size", func() anchor.Anchor { a := next(last); a.TreeSize = last.TreeSize; return a }(), "TreeSizeNotIncreasing(last 200, got 200)"},
		{"zero root", func() anchor.Anchor { a := next(last); a.Root = [32]byte{}; return a }(), "ZeroRoot()"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Submit(ctx, tt.a)
			var re *eth.RejectedError
			if !errors.As(err, &re) || !errors.Is(err, eth.ErrRejected) {
				t.Fatalf("Submit err = %v, want a RejectedError", err)
			}
			if !strings.HasPrefix(re.Reason, tt.reason) {
				t.Errorf("Reason = %q, want prefix %q", re.Reason, tt.reason)
			}
		})
	}
	// Nothing was sent: the nonce did not move, so the next anchor goes in
	// at once, and nothing was recorded.
	if _, err := c.Submit(ctx, next(last)); err != nil {
		t.Fatalf("Submit(next) after rejections: %v", err)
	}
	if seq, err := c.Latest(ctx); err != nil || seq != 3 {
		t.Errorf("Latest() = %d, %v; want 3", seq, err)
	}
}

func TestAnchorers(t *testing.T) {
	ctx := t.Context()
	owner := openChain(t, eth.Config{Key: newKey(t)})
	other := owner.WithKey(newKey(t))
	if _, err := owner.Transfer(ctx, other.Address(), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}

	a1 := next(anchor.Anchor{})
	if _, err := other.Submit(ctx, a1); !errors.Is(err, eth.ErrRejected) || !strings.Contains(err.Error(), "NotAnchorer("+other.Address()+")") {
		t.Fatalf("Submit by a stranger err = %v, want NotAnchorer", err)
	}
	if _, err := other.AddAnchorer(ctx, other.Address()); !errors.Is(err, eth.ErrRejected) || !strings.Contains(err.Error(), "NotOwner(") {
		t.Fatalf("AddAnchorer by a stranger err = %v, want NotOwner", err)
	}
	if _, err := owner.AddAnchorer(ctx, other.Address()); err != nil {
		t.Fatalf("AddAnchorer: %v", err)
	}
	tx, err := other.Submit(ctx, a1)
	if err != nil {
		t.Fatalf("Submit by an added anchorer: %v", err)
	}
	// Only the owner skips the anchorers mapping; the others pay 2,100 more.
	if gas, err := other.GasUsed(ctx, tx); err != nil || gas > maxAnchorGas {
		t.Errorf("anchor by an added anchorer: %d gas, %v; budget %d", gas, err, maxAnchorGas)
	} else {
		t.Logf("anchor 1 by an added anchorer: %d gas", gas)
	}
	if _, err := owner.RemoveAnchorer(ctx, other.Address()); err != nil {
		t.Fatalf("RemoveAnchorer: %v", err)
	}
	if _, err := other.Submit(ctx, next(a1)); !errors.Is(err, eth.ErrRejected) {
		t.Fatalf("Submit by a removed anchorer err = %v, want rejected", err)
	}
	// The owner cannot remove itself.
	if _, err := owner.RemoveAnchorer(ctx, owner.Address()); err != nil {
		t.Fatalf("RemoveAnchorer(owner): %v", err)
	}
	if _, err := owner.Submit(ctx, next(a1)); err != nil {
		t.Fatalf("Submit by the owner: %v", err)
	}
	if _, err := owner.AddAnchorer(ctx, "0x0000000000000000000000000000000000000000"); !errors.Is(err, eth.ErrRejected) {
		t.Errorf("AddAnchorer(zero address) err = %v, want rejected", err)
	}

}

func TestRestart(t *testing.T) {
	ctx := t.Context()
	dir, key := t.TempDir(), newKey(t)
	c := openChain(t, eth.Config{Dir: dir, Key: key})
	as, txs := submit(t, c, anchor.Anchor{}, 5)
	var ins []anchor.Inclusion
	for _, tx := range txs {
		in, err := c.Inclusion(ctx, tx)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
	}
	info := c.Info()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c = openChain(t, eth.Config{Dir: dir, Key: key})
	if diff := cmp.Diff(info, c.Info()); diff != "" {
		t.Errorf("Info() after restart (-before +after):\n%s", diff)
	}
	if seq, err := c.Latest(ctx); err != nil || seq != 5 {
		t.Fatalf("Latest() after restart = %d, %v; want 5", seq, err)
	}
	ignoreConf := cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Confirmations" }, cmp.Ignore())
	for i, a := range as {
		got, in, err := c.Lookup(ctx, a.Seq)
		if err != nil {
			t.Fatalf("Lookup(%d) after restart: %v", a.Seq, err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("Lookup(%d) after restart (-before +after):\n%s", a.Seq, diff)
		}
		// The very same blocks: transaction, block hash and time unchanged.
		if diff := cmp.Diff(ins[i], in, ignoreConf); diff != "" {
			t.Errorf("Lookup(%d) inclusion after restart (-before +after):\n%s", a.Seq, diff)
		}
		if in2, err := c.Inclusion(ctx, txs[i]); err != nil || in2.BlockHash != ins[i].BlockHash {
			t.Errorf("Inclusion(tx of %d) after restart = %+v, %v", a.Seq, in2, err)
		}
	}

	more, _ := submit(t, c, as[4], 2)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openChain(t, eth.Config{Dir: dir, Key: key})
	if seq, err := c.Latest(ctx); err != nil || seq != 7 {
		t.Fatalf("Latest() after second restart = %d, %v; want 7", seq, err)
	}
	if got, _, err := c.Lookup(ctx, 7); err != nil || got != more[1] {
		t.Errorf("Lookup(7) after second restart = %+v, %v; want %+v", got, err, more[1])
	}
	c.Close()

	// The chain in dir funds its own key only.
	if _, err := eth.New(ctx, eth.Config{Dir: dir, Key: newKey(t)}); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Errorf("New with another key err = %v, want one naming the key", err)
	}
}

func TestRestartTornBlock(t *testing.T) {
	ctx := t.Context()
	dir, key := t.TempDir(), newKey(t)
	c := openChain(t, eth.Config{Dir: dir, Key: key})
	as, _ := submit(t, c, anchor.Anchor{}, 2)
	c.Close()

	// A crash in the middle of appending a third block.
	f, err := os.OpenFile(filepath.Join(dir, "blocks.rlp"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{0xf9, 0x02, 0x50, 0xf9}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	c = openChain(t, eth.Config{Dir: dir, Key: key})
	if seq, err := c.Latest(ctx); err != nil || seq != 2 {
		t.Fatalf("Latest() = %d, %v; want 2", seq, err)
	}
	submit(t, c, as[1], 1)
	c.Close()
	c = openChain(t, eth.Config{Dir: dir, Key: key})
	if seq, err := c.Latest(ctx); err != nil || seq != 3 {
		t.Fatalf("Latest() after the repaired file = %d, %v; want 3", seq, err)
	}
}

func TestDevKey(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	c := openChain(t, eth.Config{Dir: dir})
	addr := c.Address()
	as, _ := submit(t, c, anchor.Anchor{}, 1)
	c.Close()
	if fi, err := os.Stat(filepath.Join(dir, "simulated.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("simulated.key: %v, %v; want mode 0600", fi, err)
	}
	c = openChain(t, eth.Config{Dir: dir})
	if c.Address() != addr {
		t.Errorf("Address() after restart = %s, want %s", c.Address(), addr)
	}
	if got, _, err := c.Lookup(ctx, 1); err != nil || got != as[0] {
		t.Errorf("Lookup(1) = %+v, %v", got, err)
	}
}

func TestReorg(t *testing.T) {
	ctx := t.Context()
	dir, key := t.TempDir(), newKey(t)
	c := openChain(t, eth.Config{Dir: dir, Key: key})
	as, txs := submit(t, c, anchor.Anchor{}, 2)
	before, err := c.Inclusion(ctx, txs[1])
	if err != nil {
		t.Fatal(err)
	}

	// Anchor 2's block is dropped and its transaction goes back to the pool.
	dropBlockOf(t, c, txs[1], false)
	if _, _, err := c.Lookup(ctx, 2); !errors.Is(err, anchor.ErrNotOnChain) {
		t.Errorf("Lookup(2) after the reorg err = %v, want ErrNotOnChain", err)
	}
	if seq, err := c.Latest(ctx); err != nil || seq != 1 {
		t.Errorf("Latest() after the reorg = %d, %v; want 1", seq, err)
	}

	// The next block mines it again, in a block of another hash.
	c.Sim().Commit()
	after, err := c.Inclusion(ctx, txs[1])
	if err != nil {
		t.Fatalf("Inclusion(re-mined tx): %v", err)
	}
	if after.BlockHash == before.BlockHash {
		t.Errorf("re-mined in the same block %x", after.BlockHash)
	}
	if err := c.SyncBlocks(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// The kept chain is the new canonical one.
	c = openChain(t, eth.Config{Dir: dir, Key: key})
	got, in, err := c.Lookup(ctx, 2)
	if err != nil || got != as[1] || in.BlockHash != after.BlockHash {
		t.Errorf("Lookup(2) after restart = %+v, %+v, %v; want block %x", got, in, err, after.BlockHash)
	}
}

// dropBlockOf rewinds the simulated chain to the parent of tx's block, so
// that the block is dropped; with clearPool its transactions are gone too,
// else they are back in the pool.
func dropBlockOf(t *testing.T, c *eth.Chain, tx [32]byte, clearPool bool) {
	t.Helper()
	ctx := t.Context()
	in, err := c.Inclusion(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	sim := c.Sim()
	parent, err := sim.Client().HeaderByNumber(ctx, new(big.Int).SetUint64(in.BlockNumber-1))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Fork(parent.Hash()); err != nil {
		t.Fatal(err)
	}
	if clearPool {
		sim.Rollback()
	}
	if _, err := c.Inclusion(ctx, tx); !errors.Is(err, anchor.ErrNotOnChain) {
		t.Fatalf("Inclusion(dropped tx) err = %v, want ErrNotOnChain", err)
	}
}

// TestResubmit sends an anchor again after its transaction was dropped: the
// new transaction takes the dropped one's nonce.
func TestResubmit(t *testing.T) {
	ctx := t.Context()
	dir, key := t.TempDir(), newKey(t)
	c := openChain(t, eth.Config{Dir: dir, Key: key})
	as, txs := submit(t, c, anchor.Anchor{}, 2)

	// Gone from chain and pool: the replacement reuses its nonce, or the
	// anchors after it would wait behind a gap forever.
	dropBlockOf(t, c, txs[1], true)
	tx2, err := c.Submit(ctx, as[1])
	if err != nil {
		t.Fatalf("Submit(2) again: %v", err)
	}
	if tx2 == txs[1] {
		t.Error("the replacement has the dropped transaction's hash")
	}
	if _, in, err := c.Lookup(ctx, 2); err != nil || in.TxHash != tx2 {
		t.Fatalf("Lookup(2) = %+v, %v; want recorded by %x", in, err, tx2)
	}
	more, txs3 := submit(t, c, as[1], 1)
	if _, err := c.Inclusion(ctx, txs3[0]); err != nil {
		t.Fatalf("Inclusion(anchor 3) after the replacement: %v", err)
	}

	// Back in the pool with fees at the caps: no room to outbid it, so
	// Submit sends it again and returns its hash.
	stuck := txs3[0]
	tx, _, err := c.Sim().Client().TransactionByHash(ctx, stuck)
	if err != nil {
		t.Fatal(err)
	}
	dropBlockOf(t, c, stuck, false)
	c.SetFeeCaps(tx.GasFeeCap(), tx.GasTipCap())
	again, err := c.Submit(ctx, more[0])
	if err != nil {
		t.Fatalf("Submit(3) again at the caps: %v", err)
	}
	if again != stuck {
		t.Errorf("Submit(3) again at the caps = %x, want the earlier %x", again, stuck)
	}
	if _, err := c.Inclusion(ctx, stuck); err != nil {
		t.Errorf("Inclusion(anchor 3) = %v", err)
	}
	c.Close()

	c = openChain(t, eth.Config{Dir: dir, Key: key})
	if seq, err := c.Latest(ctx); err != nil || seq != 3 {
		t.Errorf("Latest() after restart = %d, %v; want 3", seq, err)
	}
}

// TestGasPerAnchor measures anchor() under mainnet (Osaka) rules, which the
// simulated chain follows.
func TestGasPerAnchor(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	c := openChain(t, eth.Config{Dir: dir, Key: newKey(t)})
	var rec struct{ DeployTx string }
	if data, err := os.ReadFile(filepath.Join(dir, "contract.json")); err != nil || json.Unmarshal(data, &rec) != nil {
		t.Fatalf("read contract.json: %v", err)
	}
	gas, err := c.GasUsed(ctx, common.HexToHash(rec.DeployTx))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deployment: %d gas", gas)
	_, txs := submit(t, c, anchor.Anchor{}, 5)
	for i, tx := range txs {
		gas, err := c.GasUsed(ctx, tx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("anchor %d: %d gas", i+1, gas)
		if gas > maxAnchorGas {
			t.Errorf("anchor %d used %d gas, budget %d", i+1, gas, maxAnchorGas)
		}
	}
}

func TestNewErrors(t *testing.T) {
	ctx := t.Context()
	key := newKey(t)
	tests := []struct {
		name string
		cfg  eth.Config
		want string
	}{
		{"simulated chain id", eth.Config{Key: key, ChainID: 1}, "1337"},
		{"bad contract address", eth.Config{Key: key, Contract: "0x1234"}, "not an address"},
		{"no contract there", eth.Config{Key: key, Contract: "0x000000000000000000000000000000000000dEaD"}, "no contract"},
		{"tiny gas limit", eth.Config{Key: key, GasLimit: 100}, "gas limit"},
		{"RPC without key", eth.Config{RPCURL: "http://127.0.0.1:1"}, "key is required"},
		{"RPC unreachable", eth.Config{RPCURL: "http://127.0.0.1:1/v3/SECRETAPIKEY", Key: key}, "http://127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := eth.New(ctx, tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New err = %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRETAPIKEY") {
				t.Errorf("New err = %v: leaks the endpoint's path", err)
			}
		})
	}
}

// TestConcurrentSubmit sends the same anchor from several goroutines: the
// contract records it once and refuses the rest.
func TestConcurrentSubmit(t *testing.T) {
	ctx := t.Context()
	c := openChain(t, eth.Config{Key: newKey(t)})
	a := next(anchor.Anchor{})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = c.Submit(ctx, a) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, eth.ErrRejected):
			t.Errorf("Submit err = %v, want nil or rejected", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d identical submissions succeeded, want 1", ok, len(errs))
	}
	if seq, err := c.Latest(ctx); err != nil || seq != 1 {
		t.Errorf("Latest() = %d, %v; want 1", seq, err)
	}
}

// BenchmarkSubmitSimulated is Submit on the simulated chain kept in a Dir:
// sign, mine, append the block to blocks.rlp and fsync it.
func BenchmarkSubmitSimulated(b *testing.B) {
	c := openChain(b, eth.Config{Dir: b.TempDir(), Key: newKey(b)})
	prev := anchor.Anchor{}
	for b.Loop() {
		a := next(prev)
		if _, err := c.Submit(b.Context(), a); err != nil {
			b.Fatal(err)
		}
		prev = a
	}
}
