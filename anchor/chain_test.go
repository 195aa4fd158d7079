package anchor_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fhiranchor/fhiranchor/anchor"
)

// errChainDown is what fakeChain returns while it is unreachable.
var errChainDown = errors.New("fake chain: connection refused")

// fakeChain is an in-memory anchor.Chain with the AnchorRegistry's rules:
// an anchor is recorded only if it follows the last one (Seq and PrevRoot);
// otherwise its transaction is mined but reverted. Each transaction is mined
// in a block of its own at once, unless hold is set. Tests break it on
// purpose: down, drop (a reorg that loses anchors), remine (a reorg that
// moves one), and onSubmit (a crash right after a Submit).
type fakeChain struct {
	mu       sync.Mutex
	info     anchor.ChainInfo
	head     uint64
	records  []fakeRecord // the contract: records[i] is seq i+1
	txs      map[[32]byte]*fakeTx
	ntx      int
	sends    map[uint64]int // Submit calls that took effect, per seq
	down     bool
	hold     bool // leave new transactions in the mempool until mine
	mempool  [][32]byte
	onSubmit func() // called after a Submit took effect, before it returns
}

type fakeRecord struct {
	a  anchor.Anchor
	tx [32]byte
}

type fakeTx struct {
	a        anchor.Anchor
	block    uint64 // 0 while not mined
	reverted bool
}

var _ anchor.Chain = (*fakeChain)(nil)

func newFakeChain() *fakeChain {
	return &fakeChain{
		info:  anchor.ChainInfo{Name: "fake", ChainID: 1337, Contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3"},
		txs:   map[[32]byte]*fakeTx{},
		sends: map[uint64]int{},
	}
}

func (c *fakeChain) Info() anchor.ChainInfo { return c.info }

func (c *fakeChain) Submit(ctx context.Context, a anchor.Anchor) ([32]byte, error) {
	c.mu.Lock()
	if c.down {
		c.mu.Unlock()
		return [32]byte{}, errChainDown
	}
	c.ntx++
	tx := sha256.Sum256(fmt.Appendf(nil, "tx %d", c.ntx))
	c.txs[tx] = &fakeTx{a: a}
	c.sends[a.Seq]++
	if c.hold {
		c.mempool = append(c.mempool, tx)
	} else {
		c.mineLocked(tx)
	}
	hook := c.onSubmit
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	return tx, ctx.Err()
}

// mineLocked mines tx in a new block, applying the contract's rules.
func (c *fakeChain) mineLocked(tx [32]byte) {
	c.head++
	t := c.txs[tx]
	t.block = c.head
	var last [32]byte
	if n := len(c.records); n > 0 {
		last = c.records[n-1].a.Root
	}
	if t.a.Seq != uint64(len(c.records))+1 || t.a.PrevRoot != last {
		t.reverted = true
		return
	}
	c.records = append(c.records, fakeRecord{a: t.a, tx: tx})
}

// mine mines the mempool, in order.
func (c *fakeChain) mine() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tx := range c.mempool {
		c.mineLocked(tx)
	}
	c.mempool = nil
}

// advance adds n empty blocks.
func (c *fakeChain) advance(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.head += n
}

func (c *fakeChain) inclusionLocked(tx [32]byte, block uint64) anchor.Inclusion {
	return anchor.Inclusion{
		TxHash:        tx,
		BlockNumber:   block,
		BlockHash:     sha256.Sum256(fmt.Appendf(nil, "block %d", block)),
		BlockTime:     time.Unix(1_700_000_000+int64(block)*12, 0),
		Confirmations: c.head - block + 1,
	}
}

func (c *fakeChain) Inclusion(ctx context.Context, tx [32]byte) (anchor.Inclusion, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return anchor.Inclusion{}, errChainDown
	}
	t, ok := c.txs[tx]
	if !ok || t.block == 0 {
		return anchor.Inclusion{}, anchor.ErrNotOnChain
	}
	// A reverted transaction is mined too: the Log must ask the contract.
	return c.inclusionLocked(tx, t.block), nil
}

func (c *fakeChain) Lookup(ctx context.Context, seq uint64) (anchor.Anchor, anchor.Inclusion, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return anchor.Anchor{}, anchor.Inclusion{}, errChainDown
	}
	if seq == 0 || seq > uint64(len(c.records)) {
		return anchor.Anchor{}, anchor.Inclusion{}, anchor.ErrNotOnChain
	}
	r := c.records[seq-1]
	return r.a, c.inclusionLocked(r.tx, c.txs[r.tx].block), nil
}

func (c *fakeChain) Latest(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return 0, errChainDown
	}
	return uint64(len(c.records)), nil
}

func (c *fakeChain) setDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
}

// drop is a reorg that loses the blocks of anchors seq and after: the
// contract forgets them and their transactions are gone, mempool included.
func (c *fakeChain) drop(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.records[seq-1:] {
		c.txs[r.tx].block = 0
	}
	c.records = c.records[:seq-1]
}

// remine is a reorg after which anchor seq is recorded by another copy of its
// transaction, in a new block: its old transaction is not on chain, the
// contract still holds the anchor.
func (c *fakeChain) remine(seq uint64) [32]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &c.records[seq-1]
	c.txs[r.tx].block = 0
	c.ntx++
	tx := sha256.Sum256(fmt.Appendf(nil, "tx %d", c.ntx))
	c.head++
	c.txs[tx] = &fakeTx{a: r.a, block: c.head}
	r.tx = tx
	return tx
}

// foreign mines a transaction another writer sent, even while the chain is
// down for the Log.
func (c *fakeChain) foreign(a anchor.Anchor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ntx++
	tx := sha256.Sum256(fmt.Appendf(nil, "tx %d", c.ntx))
	c.txs[tx] = &fakeTx{a: a}
	c.mineLocked(tx)
}

// anchors returns what the contract holds.
func (c *fakeChain) anchors() []anchor.Anchor {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]anchor.Anchor, len(c.records))
	for i, r := range c.records {
		out[i] = r.a
	}
	return out
}

// record returns the contract's record at seq and the transaction that made it.
func (c *fakeChain) record(seq uint64) (anchor.Anchor, [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.records[seq-1]
	return r.a, r.tx
}

// sent returns how many times anchor seq was submitted.
func (c *fakeChain) sent(seq uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sends[seq]
}
