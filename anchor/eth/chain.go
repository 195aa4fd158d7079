package eth

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	ethereum "github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient/simulated"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth/contract"
)

var _ anchor.Chain = (*Chain)(nil)

// Default fee caps, used when Config leaves them nil: the node's suggestion
// is taken up to these. Anchors can wait out a fee spike, so they are low.
var (
	DefaultGasFeeCap = big.NewInt(100e9) // 100 gwei
	DefaultGasTipCap = big.NewInt(2e9)   // 2 gwei
)

// ErrClosed is returned by the methods of a closed Chain.
var ErrClosed = errors.New("eth: chain closed")

// Config says which chain to anchor on and how.
type Config struct {
	// Name is ChainInfo.Name. Empty means "simulated" for the simulated
	// chain, a well-known network name for the chain id (mainnet, sepolia,
	// polygon, arbitrum-one, ...), "dev" for chain id 1337, else
	// "chain-<id>".
	Name string
	// RPCURL is an http(s):// or ws(s):// JSON-RPC endpoint. Empty means the
	// in-process simulated chain.
	RPCURL string
	// Dir holds the simulated chain (genesis.json, blocks.rlp, and
	// simulated.key when Key is nil) and, for any chain, contract.json: the
	// contract deployed on first start. Empty means nothing is kept: a
	// simulated chain starts afresh, and an RPC chain then needs Contract.
	Dir string
	// ChainID is the chain id the RPC endpoint must report; 0 takes the
	// node's. The simulated chain's id is always 1337.
	ChainID uint64
	// Contract is the AnchorRegistry's address. Empty means the one recorded
	// in Dir, or deploy one on first start and record it there. The key must
	// be one of its anchorers.
	Contract string
	// Key signs the anchor transactions. Required for an RPC chain; the
	// simulated chain makes its own (kept in Dir) when nil.
	Key *ecdsa.PrivateKey
	// GasFeeCap and GasTipCap cap the EIP-1559 fees in wei: the fee cap paid
	// is min(2*base fee + tip, GasFeeCap), the tip min(node's suggestion,
	// GasTipCap). Nil means DefaultGasFeeCap and DefaultGasTipCap.
	GasFeeCap, GasTipCap *big.Int
	// ReadOnly opens an RPC chain's existing contract (Contract required)
	// only to read anchors, as a verifier does: no key is needed, nothing is
	// deployed, Submit fails.
	ReadOnly bool
	// GasLimit is the gas limit of each anchor transaction; 0 means the
	// estimate plus 20%. Every transaction is estimated first either way, so
	// one the contract would reject is never sent.
	GasLimit uint64
}

// backend is what Chain needs of a node; *ethclient.Client and the simulated
// backend's client both have it.
type backend interface {
	ChainID(ctx context.Context) (*big.Int, error)
	BlockNumber(ctx context.Context) (uint64, error)
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	TransactionReceipt(ctx context.Context, txHash common.Hash) (*types.Receipt, error)
	CodeAt(ctx context.Context, account common.Address, blockNumber *big.Int) ([]byte, error)
	CallContract(ctx context.Context, msg ethereum.CallMsg, blockNumber *big.Int) ([]byte, error)
	FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error)
	EstimateGas(ctx context.Context, msg ethereum.CallMsg) (uint64, error)
	SuggestGasTipCap(ctx context.Context) (*big.Int, error)
	PendingNonceAt(ctx context.Context, account common.Address) (uint64, error)
	NonceAt(ctx context.Context, account common.Address, blockNumber *big.Int) (uint64, error)
	SendTransaction(ctx context.Context, tx *types.Transaction) error
}

// Chain is an AnchorRegistry contract on a simulated or RPC chain. It is
// safe for concurrent use; submissions are serialized, since each needs the
// next nonce.
type Chain struct {
	node    backend
	sim     *simulated.Backend // nil on an RPC chain
	blocks  *blockLog          // the simulated chain's blocks in Dir; nil if none
	closeFn func()             // closes the RPC client

	info        anchor.ChainInfo
	chainID     *big.Int
	signer      types.Signer
	registry    *contract.AnchorRegistry
	address     common.Address
	deployBlock uint64 // where to start looking for events; 0 if unknown
	readOnly    bool

	feeCap, tipCap *big.Int
	gasLimit       uint64

	mu      sync.Mutex // guards everything below, and serializes sending
	key     *ecdsa.PrivateKey
	from    common.Address
	nonce   uint64
	nonceOK bool // false: read the nonce from the node before the next send
	last    *lastAnchor
	closed  bool
}

// lastAnchor is the last anchor transaction sent, which a resubmission of
// the same anchor replaces.
type lastAnchor struct {
	seq uint64
	tx  *types.Transaction
}

// New connects to the chain cfg describes, or starts the simulated one, and
// binds (or deploys) the AnchorRegistry contract.
//
// The simulated chain lives in memory and is kept in Dir as its genesis
// (genesis.json) and every block it seals, appended and synced to
// blocks.rlp as it is sealed. New replays those blocks into a fresh
// simulated chain, so blocks, transactions, hashes and timestamps, and with
// them every anchor, are exactly as before. (Letting go-ethereum keep its
// own database in Dir does not work: the simulated backend rewinds its chain
// to genesis whenever it starts.)
//
// New waits for a deployment to be mined; give ctx a deadline on a chain
// that may be slow to mine.
func New(ctx context.Context, cfg Config) (*Chain, error) {
	if cfg.GasLimit != 0 && cfg.GasLimit < 21000 {
		return nil, fmt.Errorf("eth: gas limit %d is below the 21000 of any transaction", cfg.GasLimit)
	}
	c := &Chain{
		registry: contract.NewAnchorRegistry(),
		feeCap:   orDefault(cfg.GasFeeCap, DefaultGasFeeCap),
		tipCap:   orDefault(cfg.GasTipCap, DefaultGasTipCap),
		gasLimit: cfg.GasLimit,
		readOnly: cfg.ReadOnly,
	}
	if cfg.ReadOnly && (cfg.RPCURL == "" || cfg.Contract == "") {
		return nil, errors.New("eth: read-only needs an RPC chain and a Contract")
	}
	var err error
	if cfg.RPCURL == "" {
		err = c.openSimulated(ctx, cfg)
	} else {
		err = c.openRPC(ctx, cfg)
	}
	if err == nil {
		err = c.bind(ctx, cfg)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func orDefault(v, def *big.Int) *big.Int {
	if v == nil {
		return new(big.Int).Set(def)
	}
	return new(big.Int).Set(v)
}

// setKey sets the signing key; the caller holds no lock (New only).
func (c *Chain) setKey(key *ecdsa.PrivateKey) error {
	k, err := normalizeKey(key)
	if err != nil {
		return fmt.Errorf("eth: key: %w", err)
	}
	c.key, c.from = k, crypto.PubkeyToAddress(k.PublicKey)
	return nil
}

// Close stops the simulated chain or disconnects from the node. Anchors on
// a simulated chain with a Dir are already on disk.
func (c *Chain) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var err error
	if c.sim != nil {
		err = c.sim.Close()
	}
	if c.blocks != nil {
		err = errors.Join(err, c.blocks.close())
	}
	if c.closeFn != nil {
		c.closeFn()
	}
	if err != nil {
		return fmt.Errorf("close chain: %w", err)
	}
	return nil
}

// Info identifies the chain and the contract.
func (c *Chain) Info() anchor.ChainInfo { return c.info }

// Address is the account that signs this Chain's transactions.
func (c *Chain) Address() string { return c.from.Hex() }

// Submit sends the transaction that anchors a and returns its hash; on the
// simulated chain it is mined before Submit returns. An anchor the contract
// would refuse (a is not the next one, or the key is not an anchorer) is
// refused at gas estimation with a *RejectedError and never sent. Since that
// check runs against the latest block, anchor N+1 can only be submitted once
// anchor N is mined.
//
// Submitting the anchor of this Chain's last transaction again while that
// transaction's nonce is unused (it is stuck in the pool, or was dropped)
// replaces it: same nonce, fees raised by the 10% nodes require, within
// the caps. With no room left under the caps, Submit sends the earlier
// transaction again and returns its hash.
func (c *Chain) Submit(ctx context.Context, a anchor.Anchor) ([32]byte, error) {
	if c.readOnly {
		return [32]byte{}, errors.New("submit anchor: the chain was opened read-only")
	}
	data := c.registry.PackAnchor(a.Seq, a.Root, a.TreeSize, a.PrevRoot)
	tx, err := c.send(ctx, &c.address, nil, data, c.gasLimit, a.Seq)
	if err != nil {
		return [32]byte{}, fmt.Errorf("submit anchor %d: %w", a.Seq, err)
	}
	return tx.Hash(), nil
}

// AddAnchorer lets account (a 0x address) anchor too; only the contract's
// owner, the key that deployed it, may. It returns the transaction's hash.
func (c *Chain) AddAnchorer(ctx context.Context, account string) ([32]byte, error) {
	if !common.IsHexAddress(account) {
		return [32]byte{}, fmt.Errorf("add anchorer: %q is not an address", account)
	}
	tx, err := c.send(ctx, &c.address, nil, c.registry.PackAddAnchorer(common.HexToAddress(account)), 0, 0)
	if err != nil {
		return [32]byte{}, fmt.Errorf("add anchorer %s: %w", account, err)
	}
	return tx.Hash(), nil
}

// RemoveAnchorer stops account from anchoring; only the owner may.
func (c *Chain) RemoveAnchorer(ctx context.Context, account string) ([32]byte, error) {
	if !common.IsHexAddress(account) {
		return [32]byte{}, fmt.Errorf("remove anchorer: %q is not an address", account)
	}
	tx, err := c.send(ctx, &c.address, nil, c.registry.PackRemoveAnchorer(common.HexToAddress(account)), 0, 0)
	if err != nil {
		return [32]byte{}, fmt.Errorf("remove anchorer %s: %w", account, err)
	}
	return tx.Hash(), nil
}

// Inclusion reports where tx was mined. It returns anchor.ErrNotOnChain
// while tx is pending, when the node does not know it, and when the block
// its receipt names is no longer canonical (a reorg dropped it). A mined
// transaction that reverted is reported as mined, as anchor.Chain allows:
// it recorded nothing, which Lookup tells.
func (c *Chain) Inclusion(ctx context.Context, tx [32]byte) (anchor.Inclusion, error) {
	if err := c.checkOpen(); err != nil {
		return anchor.Inclusion{}, err
	}
	h := common.Hash(tx)
	r, err := c.node.TransactionReceipt(ctx, h)
	if errors.Is(err, ethereum.NotFound) {
		return anchor.Inclusion{}, fmt.Errorf("transaction %s: %w", h, anchor.ErrNotOnChain)
	}
	if err != nil {
		return anchor.Inclusion{}, fmt.Errorf("get receipt of %s: %w", h, err)
	}
	return c.inclusion(ctx, h, r.BlockNumber.Uint64(), r.BlockHash)
}

// inclusion checks that block number n is canonical with hash want, and
// describes tx in it.
func (c *Chain) inclusion(ctx context.Context, tx common.Hash, n uint64, want common.Hash) (anchor.Inclusion, error) {
	hdr, err := c.node.HeaderByNumber(ctx, new(big.Int).SetUint64(n))
	if errors.Is(err, ethereum.NotFound) {
		return anchor.Inclusion{}, fmt.Errorf("transaction %s: block %d gone: %w", tx, n, anchor.ErrNotOnChain)
	}
	if err != nil {
		return anchor.Inclusion{}, fmt.Errorf("get block %d: %w", n, err)
	}
	if hdr.Hash() != want {
		return anchor.Inclusion{}, fmt.Errorf("transaction %s: block %d reorganized away: %w", tx, n, anchor.ErrNotOnChain)
	}
	head, err := c.node.BlockNumber(ctx)
	if err != nil {
		return anchor.Inclusion{}, fmt.Errorf("get head block number: %w", err)
	}
	conf := uint64(0)
	if head >= n {
		conf = head - n + 1
	}
	return anchor.Inclusion{
		TxHash:        tx,
		BlockNumber:   n,
		BlockHash:     want,
		BlockTime:     time.Unix(int64(hdr.Time), 0).UTC(),
		Confirmations: conf,
	}, nil
}

// Lookup returns the anchor the contract records at seq, read from its
// storage (root, previous root) and its Anchored event (tree size, and
// where it was recorded), or anchor.ErrNotOnChain.
func (c *Chain) Lookup(ctx context.Context, seq uint64) (anchor.Anchor, anchor.Inclusion, error) {
	if err := c.checkOpen(); err != nil {
		return anchor.Anchor{}, anchor.Inclusion{}, err
	}
	head, err := c.node.BlockNumber(ctx)
	if err != nil {
		return anchor.Anchor{}, anchor.Inclusion{}, fmt.Errorf("lookup anchor %d: get head block number: %w", seq, err)
	}
	at := new(big.Int).SetUint64(head)
	out, err := c.call(ctx, c.registry.PackAnchorAt(seq), at)
	if err != nil {
		return anchor.Anchor{}, anchor.Inclusion{}, fmt.Errorf("lookup anchor %d: %w", seq, err)
	}
	stored, err := c.registry.UnpackAnchorAt(out)
	if err != nil {
		return anchor.Anchor{}, anchor.Inclusion{}, fmt.Errorf("lookup anchor %d: decode: %w", seq, err)
	}
	if stored.Root == ([32]byte{}) {
		return anchor.Anchor{}, anchor.Inclusion{}, fmt.Errorf("lookup anchor %d: %w", seq, anchor.ErrNotOnChain)
	}
	ev, err := c.anchoredEvent(ctx, seq, head)
	if err != nil {
		return anchor.Anchor{}, anchor.Inclusion{}, fmt.Errorf("lookup anchor %d: %w", seq, err)
	}
	if ev.Root != stored.Root || ev.PrevRoot != stored.PrevRoot {
		// Storage and event come from the same transaction; a mismatch means
		// the chain changed between the two reads.
		return anchor.Anchor{}, anchor.Inclusion{}, fmt.Errorf("lookup anchor %d: event and storage disagree (reorg in progress?)", seq)
	}
	in, err := c.inclusion(ctx, ev.Raw.TxHash, ev.Raw.BlockNumber, ev.Raw.BlockHash)
	if err != nil {
		return anchor.Anchor{}, anchor.Inclusion{}, fmt.Errorf("lookup anchor %d: %w", seq, err)
	}
	return anchor.Anchor{Seq: seq, Root: stored.Root, TreeSize: ev.TreeSize, PrevRoot: stored.PrevRoot}, in, nil
}

// logWindow is the block range of one eth_getLogs query when the node
// refuses to search the whole chain at once, as public endpoints do.
const logWindow = 2000

// anchoredEvent finds the Anchored event of seq in blocks up to head: in one
// query if the node allows it, else in windows walking back from head
// (recent anchors are the ones looked up most).
func (c *Chain) anchoredEvent(ctx context.Context, seq, head uint64) (*contract.AnchorRegistryAnchored, error) {
	topics := [][]common.Hash{
		{c.registry.GetABI().Events[contract.AnchorRegistryAnchoredEventName].ID},
		{common.BigToHash(new(big.Int).SetUint64(seq))},
	}
	find := func(from, to uint64) (*contract.AnchorRegistryAnchored, error) {
		logs, err := c.node.FilterLogs(ctx, ethereum.FilterQuery{
			FromBlock: new(big.Int).SetUint64(from),
			ToBlock:   new(big.Int).SetUint64(to),
			Addresses: []common.Address{c.address},
			Topics:    topics,
		})
		if err != nil {
			return nil, err
		}
		for i := range logs {
			if logs[i].Removed {
				continue
			}
			ev, err := c.registry.UnpackAnchoredEvent(&logs[i])
			if err != nil {
				return nil, fmt.Errorf("decode Anchored event: %w", err)
			}
			if ev.Seq == seq {
				return ev, nil
			}
		}
		return nil, nil
	}
	ev, err := find(c.deployBlock, head)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("get Anchored events: %w", err)
		}
		for to := head; ; to -= logWindow {
			from := c.deployBlock
			if to >= from+logWindow {
				from = to - logWindow + 1
			}
			if ev, err = find(from, to); err != nil {
				return nil, fmt.Errorf("get Anchored events in blocks %d-%d: %w", from, to, err)
			}
			if ev != nil || from == c.deployBlock {
				break
			}
		}
	}
	if ev == nil {
		return nil, fmt.Errorf("no Anchored event (reorg in progress?): %w", anchor.ErrNotOnChain)
	}
	return ev, nil
}

// Latest returns the contract's last sequence number, 0 when empty.
func (c *Chain) Latest(ctx context.Context) (uint64, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	out, err := c.call(ctx, c.registry.PackLatest(), nil)
	if err != nil {
		return 0, fmt.Errorf("latest anchor: %w", err)
	}
	l, err := c.registry.UnpackLatest(out)
	if err != nil {
		return 0, fmt.Errorf("latest anchor: decode: %w", err)
	}
	return l.Seq, nil
}

// call runs a view function of the contract at block at (nil: latest).
func (c *Chain) call(ctx context.Context, data []byte, at *big.Int) ([]byte, error) {
	out, err := c.node.CallContract(ctx, ethereum.CallMsg{From: c.from, To: &c.address, Data: data}, at)
	if err != nil {
		return nil, c.contractError("call contract", err)
	}
	return out, nil
}

func (c *Chain) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// GasUsed returns the gas an anchor transaction used, for operators' cost
// reports and benchmarks.
func (c *Chain) GasUsed(ctx context.Context, tx [32]byte) (uint64, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	r, err := c.node.TransactionReceipt(ctx, common.Hash(tx))
	if err != nil {
		return 0, fmt.Errorf("gas used by %x: %w", tx, err)
	}
	return r.GasUsed, nil
}
