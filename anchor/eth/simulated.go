package eth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"time"

	ethereum "github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/ethereum/go-ethereum/rpc"
)

// simulatedChainID is the simulated backend's fixed chain id.
const simulatedChainID = 1337

// openSimulated starts the in-process chain and replays the blocks kept in
// cfg.Dir into it.
func (c *Chain) openSimulated(ctx context.Context, cfg Config) error {
	if cfg.ChainID != 0 && cfg.ChainID != simulatedChainID {
		return fmt.Errorf("eth: the simulated chain's id is %d, not %d", simulatedChainID, cfg.ChainID)
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return fmt.Errorf("eth: %w", err)
		}
	}
	key := cfg.Key
	if key == nil {
		k, err := loadOrCreateDevKey(cfg.Dir)
		if err != nil {
			return fmt.Errorf("eth: %w", err)
		}
		key = k
	}
	if err := c.setKey(key); err != nil {
		return err
	}

	gen, err := loadGenesis(cfg.Dir)
	if err != nil {
		return fmt.Errorf("eth: %w", err)
	}
	if gen == nil {
		gen = newGenesis(c.from)
		if cfg.Dir != "" {
			if err := saveGenesis(cfg.Dir, gen); err != nil {
				return fmt.Errorf("eth: %w", err)
			}
		}
	} else if _, ok := gen.Alloc[c.from]; !ok {
		return fmt.Errorf("eth: the simulated chain in %s was made for another key, not %s", cfg.Dir, c.from.Hex())
	}

	sim, err := startSimulated(gen)
	if err != nil {
		return fmt.Errorf("eth: %w", err)
	}
	c.sim = sim
	c.node = sim.Client()
	c.chainID = new(big.Int).Set(gen.Config.ChainID)
	c.signer = types.LatestSignerForChainID(c.chainID)
	c.info.Name = cfg.Name
	if c.info.Name == "" {
		c.info.Name = "simulated"
	}
	if cfg.Dir == "" {
		return nil
	}

	rc, err := rpcClientOf(sim.Client())
	if err != nil {
		return fmt.Errorf("eth: %w", err)
	}
	genesis, err := c.node.HeaderByNumber(ctx, big.NewInt(0))
	if err != nil {
		return fmt.Errorf("eth: get genesis block: %w", err)
	}
	c.blocks, err = openBlockLog(ctx, filepath.Join(cfg.Dir, blocksFile), rc, genesis.Hash())
	if err != nil {
		return fmt.Errorf("eth: %w", err)
	}
	head, err := c.node.HeaderByNumber(ctx, nil)
	if err != nil {
		return fmt.Errorf("eth: get head block: %w", err)
	}
	if head.Hash() != c.blocks.hash {
		return fmt.Errorf("eth: replayed simulated chain ends in block %d %s, %s ends in %d %s",
			head.Number, head.Hash().Hex(), c.blocks.path, c.blocks.n, c.blocks.hash.Hex())
	}
	// Blocks sealed faster than one a second get timestamps ahead of the
	// clock. The simulated beacon seals at the wall clock time, which would
	// then be older than the replayed head; one empty block one second after
	// the head puts the beacon's clock past it.
	if head.Number.Sign() > 0 && head.Time >= uint64(time.Now().Unix()) {
		if err := c.sim.AdjustTime(time.Second); err != nil {
			return fmt.Errorf("eth: advance simulated clock: %w", err)
		}
		if err := c.blocks.sync(ctx, c.node); err != nil {
			return fmt.Errorf("eth: persist simulated chain: %w", err)
		}
	}
	return nil
}

// newGenesis is a dev chain with mainnet's current (Osaka) rules rather than
// the simulated backend's default, which also switches on the future
// Amsterdam rules and with them gas costs that mean nothing on mainnet
// (anchor() costs 2.7 times as much). funded holds the ether.
func newGenesis(funded common.Address) *core.Genesis {
	cfg := *params.AllDevChainProtocolChanges
	cfg.AmsterdamTime, cfg.BogotaTime = nil, nil
	alloc := core.SystemContractAllocs()
	alloc[funded] = types.Account{Balance: new(big.Int).Lsh(big.NewInt(1), 128)}
	return &core.Genesis{
		Config:     &cfg,
		GasLimit:   ethconfig.Defaults.Miner.GasCeil,
		Difficulty: big.NewInt(0),
		BaseFee:    big.NewInt(params.InitialBaseFee),
		Alloc:      alloc,
	}
}

// The genesis is kept rather than rebuilt so that a go-ethereum upgrade that
// changes the dev chain's defaults cannot orphan the blocks in Dir.
func loadGenesis(dir string) (*core.Genesis, error) {
	if dir == "" {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, genesisFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read simulated chain genesis: %w", err)
	}
	var g core.Genesis
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("read simulated chain genesis %s: %w", filepath.Join(dir, genesisFile), err)
	}
	if g.Config == nil || g.Config.ChainID == nil {
		return nil, fmt.Errorf("read simulated chain genesis %s: no chain config", filepath.Join(dir, genesisFile))
	}
	return &g, nil
}

func saveGenesis(dir string, g *core.Genesis) error {
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return fmt.Errorf("encode simulated chain genesis: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, genesisFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("store simulated chain genesis: %w", err)
	}
	return nil
}

// startSimulated starts an in-memory simulated chain from gen; the backend
// panics where it could return an error.
func startSimulated(gen *core.Genesis) (sim *simulated.Backend, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start simulated chain: %v", r)
		}
	}()
	return simulated.NewBackend(nil, func(_ *node.Config, ec *ethconfig.Config) {
		ec.Genesis = gen
	}), nil
}

// rpcClientOf returns the RPC client under the simulated backend's client,
// which New needs for the admin_importChain and debug_getRawBlock methods
// that keep the chain in Dir. The backend hides its *ethclient.Client in a
// struct{ *ethclient.Client } (go-ethereum v1.17); should that change, New
// fails here, and TestRestart with it.
func rpcClientOf(c simulated.Client) (*rpc.Client, error) {
	v := reflect.ValueOf(c)
	if v.Kind() == reflect.Struct {
		if f := v.FieldByName("Client"); f.IsValid() && f.CanInterface() {
			if ec, ok := f.Interface().(*ethclient.Client); ok && ec != nil {
				return ec.Client(), nil
			}
		}
	}
	return nil, fmt.Errorf("simulated backend client %T holds no *ethclient.Client", c)
}

// commit seals the pending transactions into a block and appends it to Dir.
func (c *Chain) commit(ctx context.Context) error {
	c.sim.Commit()
	if c.blocks == nil {
		return nil
	}
	if err := c.blocks.sync(ctx, c.node); err != nil {
		return fmt.Errorf("persist simulated chain: %w", err)
	}
	return nil
}

// blockLog is the simulated chain's canonical blocks after genesis, as the
// concatenated RLP that `geth export` writes and admin_importChain reads.
type blockLog struct {
	path    string
	rpc     *rpc.Client
	genesis common.Hash
	f       *os.File    // path, opened for appending
	n       uint64      // number of the last block in the file, 0 if none
	hash    common.Hash // hash of block n (genesis when n is 0)
}

// openBlockLog replays the blocks at path into the simulated chain behind
// rc, first cutting off a torn last block (a crash during an append: that
// block's Submit had not returned).
func openBlockLog(ctx context.Context, path string, rc *rpc.Client, genesis common.Hash) (*blockLog, error) {
	l := &blockLog{path: path, rpc: rc, genesis: genesis, hash: genesis}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read simulated chain blocks: %w", err)
	}
	var last []byte
	count, good := uint64(0), 0
	for rest := data; len(rest) > 0; count++ {
		_, _, r, err := rlp.Split(rest)
		if err != nil {
			break
		}
		last, rest = rest[:len(rest)-len(r)], r
		good = len(data) - len(rest)
	}
	if good < len(data) {
		if err := os.Truncate(path, int64(good)); err != nil {
			return nil, fmt.Errorf("cut torn block off %s: %w", path, err)
		}
	}
	if count > 0 {
		var b types.Block
		if err := rlp.DecodeBytes(last, &b); err != nil {
			return nil, fmt.Errorf("read simulated chain blocks %s: last block: %w", path, err)
		}
		if b.NumberU64() != count {
			return nil, fmt.Errorf("read simulated chain blocks %s: %d blocks end with block %d", path, count, b.NumberU64())
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		var ok bool
		if err := rc.CallContext(ctx, &ok, "admin_importChain", abs); err != nil {
			return nil, fmt.Errorf("replay simulated chain from %s: %w", path, err)
		}
		l.n, l.hash = b.NumberU64(), b.Hash()
	}
	if l.f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, fmt.Errorf("open simulated chain blocks: %w", err)
	}
	return l, nil
}

// sync appends the blocks sealed since the last call and flushes them to
// disk. If the chain reorganized away from the file's last block (only
// tests make the simulated chain do that), it rewrites the file.
func (l *blockLog) sync(ctx context.Context, node backend) error {
	head, err := node.BlockNumber(ctx)
	if err != nil {
		return err
	}
	if l.n > 0 {
		h, err := node.HeaderByNumber(ctx, new(big.Int).SetUint64(l.n))
		if err != nil && !errors.Is(err, ethereum.NotFound) {
			return err
		}
		if err != nil || h.Hash() != l.hash {
			return l.rewrite(ctx, head)
		}
	}
	for n := l.n + 1; n <= head; n++ {
		raw, b, err := l.rawBlock(ctx, n)
		if err != nil {
			return err
		}
		if b.ParentHash() != l.hash {
			return l.rewrite(ctx, head)
		}
		if _, err := l.f.Write(raw); err != nil {
			return fmt.Errorf("append block %d: %w", n, err)
		}
		l.n, l.hash = n, b.Hash()
	}
	return l.f.Sync()
}

// rewrite replaces the file with canonical blocks 1 to head.
func (l *blockLog) rewrite(ctx context.Context, head uint64) error {
	tmp, err := os.CreateTemp(filepath.Dir(l.path), "."+filepath.Base(l.path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	hash := l.genesis
	for n := uint64(1); n <= head; n++ {
		raw, b, err := l.rawBlock(ctx, n)
		if err != nil {
			tmp.Close()
			return err
		}
		if _, err := tmp.Write(raw); err != nil {
			tmp.Close()
			return err
		}
		hash = b.Hash()
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(l.path)); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	l.f.Close()
	l.f = f
	l.n, l.hash = head, hash
	return nil
}

func (l *blockLog) rawBlock(ctx context.Context, n uint64) ([]byte, *types.Block, error) {
	var raw hexutil.Bytes
	if err := l.rpc.CallContext(ctx, &raw, "debug_getRawBlock", hexutil.EncodeUint64(n)); err != nil {
		return nil, nil, fmt.Errorf("get raw block %d: %w", n, err)
	}
	b := new(types.Block)
	if err := rlp.DecodeBytes(raw, b); err != nil {
		return nil, nil, fmt.Errorf("decode block %d: %w", n, err)
	}
	return raw, b, nil
}

func (l *blockLog) close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}
