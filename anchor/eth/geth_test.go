package eth_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/google/go-cmp/cmp"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth"
	"github.com/fhiranchor/fhiranchor/internal/testonly"
)

// waitIncluded polls Inclusion until tx is mined. On a real chain the next
// anchor can only be submitted then: Submit checks it against the latest
// block.
func waitIncluded(t testing.TB, c anchor.Chain, tx [32]byte) anchor.Inclusion {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		in, err := c.Inclusion(ctx, tx)
		if err == nil {
			return in
		}
		if !errors.Is(err, anchor.ErrNotOnChain) && ctx.Err() != nil {
			t.Fatalf("Inclusion(%x): %v", tx, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Inclusion(%x): not mined: %v", tx, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// anchorAll submits n anchors after prev one at a time, each once the one
// before is mined, and returns them, their inclusions and the latencies from
// Submit to a mined receipt.
func anchorAll(t testing.TB, c *eth.Chain, prev anchor.Anchor, n int) ([]anchor.Anchor, []anchor.Inclusion, []time.Duration) {
	t.Helper()
	var (
		as   []anchor.Anchor
		ins  []anchor.Inclusion
		lats []time.Duration
	)
	for range n {
		a := next(prev)
		start := time.Now()
		tx, err := c.Submit(t.Context(), a)
		if err != nil {
			t.Fatalf("Submit(%d): %v", a.Seq, err)
		}
		ins = append(ins, waitIncluded(t, c, tx))
		lats = append(lats, time.Since(start))
		as, prev = append(as, a), a
	}
	return as, ins, lats
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestGeth runs the RPC chain against a geth --dev node, and stops and
// restarts the node in the middle.
func TestGeth(t *testing.T) {
	start := time.Now()
	g := testonly.StartGeth(t)
	t.Logf("geth --dev ready in %v", time.Since(start))
	ctx := t.Context()
	key := g.FundedKey(t)
	dir := t.TempDir()
	cfg := eth.Config{RPCURL: g.RPCURL, Dir: dir, Key: key, ChainID: 1337}

	start = time.Now()
	c := openChain(t, cfg)
	t.Logf("New with deployment: %v", time.Since(start))
	info := c.Info()
	if info.Name != "dev" || info.ChainID != 1337 {
		t.Errorf("Info() = %+v, want dev chain 1337", info)
	}

	as, ins, lats := anchorAll(t, c, anchor.Anchor{}, 10)
	t.Logf("Submit to mined receipt over 10 anchors: median %v, max %v", median(lats), slices.Max(lats))
	// geth --dev may seal blocks of its own between anchors, so the oracle
	// for confirmations is the node's head, read over a separate client
	// before and after each lookup.
	rpc, err := ethclient.DialContext(ctx, g.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rpc.Close()
	for i, a := range as {
		before, err := rpc.BlockNumber(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, in, err := c.Lookup(ctx, a.Seq)
		if err != nil {
			t.Fatalf("Lookup(%d): %v", a.Seq, err)
		}
		after, err := rpc.BlockNumber(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != a || in.TxHash != ins[i].TxHash || in.BlockHash != ins[i].BlockHash || in.BlockNumber != ins[i].BlockNumber {
			t.Errorf("Lookup(%d) = %+v, %+v; want %+v in %+v", a.Seq, got, in, a, ins[i])
		}
		if i > 0 && ins[i].BlockNumber <= ins[i-1].BlockNumber {
			t.Errorf("anchor %d in block %d, not after anchor %d's block %d", a.Seq, ins[i].BlockNumber, as[i-1].Seq, ins[i-1].BlockNumber)
		}
		lo, hi := before-in.BlockNumber+1, after-in.BlockNumber+1
		if in.Confirmations < lo || in.Confirmations > hi {
			t.Errorf("Lookup(%d).Confirmations = %d, want head-block+1 in [%d, %d]", a.Seq, in.Confirmations, lo, hi)
		}
	}
	for i, in := range ins {
		gas, err := c.GasUsed(ctx, in.TxHash)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 || i == len(ins)-1 {
			t.Logf("anchor %d: %d gas (geth --dev rules, not mainnet's)", i+1, gas)
		}
	}
	last := as[len(as)-1]
	if _, _, err := c.Lookup(ctx, last.Seq+1); !errors.Is(err, anchor.ErrNotOnChain) {
		t.Errorf("Lookup(%d) err = %v, want ErrNotOnChain", last.Seq+1, err)
	}

	// Refused at estimation, over JSON-RPC too.
	bad := next(last)
	bad.PrevRoot = as[0].Root
	if _, err := c.Submit(ctx, bad); !errors.Is(err, eth.ErrRejected) || !strings.Contains(err.Error(), "PrevRootMismatch") {
		t.Errorf("Submit(wrong prevRoot) err = %v, want PrevRootMismatch", err)
	}
	if _, err := c.Submit(ctx, last); !errors.Is(err, eth.ErrRejected) || !strings.Contains(err.Error(), "SeqMismatch") {
		t.Errorf("Submit(last anchor again) err = %v, want SeqMismatch", err)
	}

	// A new Chain on the same Dir binds the recorded contract.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openChain(t, cfg)
	if diff := cmp.Diff(info, c.Info()); diff != "" {
		t.Errorf("Info() after reopening (-before +after):\n%s", diff)
	}
	// Another funded key is no anchorer of it.
	if _, err := eth.New(ctx, eth.Config{RPCURL: g.RPCURL, Key: g.FundedKey(t), Contract: info.Contract}); err == nil || !strings.Contains(err.Error(), "not an anchorer") {
		t.Errorf("New with a stranger's key err = %v, want not an anchorer", err)
	}
	if _, err := eth.New(ctx, eth.Config{RPCURL: g.RPCURL, Key: key, ChainID: 1}); err == nil || !strings.Contains(err.Error(), "chain id 1337") {
		t.Errorf("New with chain id 1 err = %v, want a chain id mismatch", err)
	}

	// The node goes away: calls fail fast, and never claim the anchors are
	// gone.
	start = time.Now()
	g.Stop()
	t.Logf("geth stopped in %v", time.Since(start))
	down := next(last)
	for name, call := range map[string]func(ctx context.Context) error{
		"Submit":    func(ctx context.Context) error { _, err := c.Submit(ctx, down); return err },
		"Inclusion": func(ctx context.Context) error { _, err := c.Inclusion(ctx, ins[0].TxHash); return err },
		"Lookup":    func(ctx context.Context) error { _, _, err := c.Lookup(ctx, 1); return err },
		"Latest":    func(ctx context.Context) error { _, err := c.Latest(ctx); return err },
	} {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		err := call(cctx)
		cancel()
		if err == nil || errors.Is(err, anchor.ErrNotOnChain) || errors.Is(err, eth.ErrRejected) {
			t.Errorf("%s with geth down err = %v, want a transient error", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s with geth down took %v", name, d)
		}
	}

	start = time.Now()
	g.Start()
	t.Logf("geth restarted in %v", time.Since(start))
	if seq, err := c.Latest(ctx); err != nil || seq != last.Seq {
		t.Fatalf("Latest() after the node restarted = %d, %v; want %d", seq, err, last.Seq)
	}
	for i, a := range as {
		got, in, err := c.Lookup(ctx, a.Seq)
		if err != nil || got != a || in.BlockHash != ins[i].BlockHash {
			t.Errorf("Lookup(%d) after the node restarted = %+v, %+v, %v", a.Seq, got, in, err)
		}
	}
	if in := waitIncluded(t, c, ins[0].TxHash); in.BlockHash != ins[0].BlockHash {
		t.Errorf("Inclusion(anchor 1) after the node restarted = %+v, want block %x", in, ins[0].BlockHash)
	}
	more, _, _ := anchorAll(t, c, last, 2)
	if got, _, err := c.Lookup(ctx, more[1].Seq); err != nil || got != more[1] {
		t.Errorf("Lookup(%d) = %+v, %v; want %+v", more[1].Seq, got, err, more[1])
	}
}
