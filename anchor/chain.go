package anchor

import (
	"context"
	"errors"
	"time"
)

// ErrNotOnChain means a transaction is not (or no longer) mined, or the
// contract holds no anchor at a sequence number.
var ErrNotOnChain = errors.New("anchor: not on chain")

// Anchor is what the AnchorRegistry contract records for one Merkle root:
// anchors form a chain, each naming the root before it, so the log can only
// grow.
type Anchor struct {
	Seq      uint64   // 1, 2, ... as the contract numbers them
	Root     [32]byte // RFC 6962 root of the first TreeSize leaves
	TreeSize uint64
	PrevRoot [32]byte // Root of anchor Seq-1; zero for Seq 1
}

// Inclusion says where an anchor transaction sits on chain.
type Inclusion struct {
	TxHash        [32]byte
	BlockNumber   uint64
	BlockHash     [32]byte
	BlockTime     time.Time
	Confirmations uint64 // head - BlockNumber + 1
}

// ChainInfo identifies the chain and contract anchors go to.
type ChainInfo struct {
	Name     string // "simulated", "geth", a configured network name
	ChainID  uint64
	Contract string // 0x-prefixed, EIP-55 checksummed address
}

// Chain is an EVM chain holding an AnchorRegistry contract. anchor/eth
// implements it; it is the only code that speaks to a chain. Every method
// is safe for concurrent use and MUST return errors that never contain
// PHI (there is none to give them).
type Chain interface {
	// Info identifies the chain and the contract.
	Info() ChainInfo
	// Submit sends the transaction that anchors a and returns its hash
	// without waiting for it to be mined. The contract rejects an anchor
	// whose Seq or PrevRoot does not follow the last one, so submitting the
	// same anchor twice can never record it twice. A Log submits an anchor
	// again when its transaction stays unmined for Config.Resubmit or a
	// reorg dropped it; an implementation may replace the earlier
	// transaction (same nonce, higher fee) rather than queue behind it.
	Submit(ctx context.Context, a Anchor) ([32]byte, error)
	// Inclusion reports where a submitted transaction was mined, or
	// ErrNotOnChain while it is pending or after a reorg dropped it. It may
	// report a transaction the contract reverted as mined: a Log confirms
	// with Lookup that the contract holds the anchor before trusting it.
	Inclusion(ctx context.Context, tx [32]byte) (Inclusion, error)
	// Lookup returns the anchor the contract records at seq and where it was
	// recorded, or ErrNotOnChain. The Inclusion is that of the transaction
	// that recorded it, Confirmations counted from the current head: a Log
	// adopts it as is after a crash or a reorg.
	Lookup(ctx context.Context, seq uint64) (Anchor, Inclusion, error)
	// Latest returns the contract's last sequence number, 0 when empty.
	Latest(ctx context.Context) (uint64, error)
}
