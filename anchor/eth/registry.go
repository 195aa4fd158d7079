package eth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	ethereum "github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/fhiranchor/fhiranchor/anchor/eth/contract"
)

// Files in Config.Dir.
const (
	recordFile  = "contract.json" // the deployed contract, any chain
	genesisFile = "genesis.json"  // the simulated chain's genesis
	blocksFile  = "blocks.rlp"    // the simulated chain's blocks, geth export format
	devKeyFile  = "simulated.key" // the simulated chain's key when Config.Key is nil
)

// record is contract.json: the contract New deployed, and on which chain,
// so that the next start binds it again instead of deploying another.
type record struct {
	ChainID     uint64 `json:"chainId"`
	Genesis     string `json:"genesis"` // hash of block 0: tells a reset dev chain from the old one
	Address     string `json:"address"`
	DeployTx    string `json:"deployTx"`
	DeployBlock uint64 `json:"deployBlock"`
}

func readRecord(dir string) (*record, error) {
	if dir == "" {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, recordFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read contract record: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil || !common.IsHexAddress(r.Address) {
		return nil, fmt.Errorf("read contract record %s: malformed", filepath.Join(dir, recordFile))
	}
	return &r, nil
}

// bind sets the contract address: cfg.Contract, else the one recorded in
// cfg.Dir, else a new deployment (recorded in cfg.Dir). It then checks that
// a contract is there and that the key may anchor to it.
func (c *Chain) bind(ctx context.Context, cfg Config) error {
	genesis, err := c.node.HeaderByNumber(ctx, big.NewInt(0))
	if err != nil {
		return fmt.Errorf("eth: get genesis block: %w", err)
	}
	rec, err := readRecord(cfg.Dir)
	if err != nil {
		return fmt.Errorf("eth: %w", err)
	}
	if rec != nil && (rec.ChainID != c.chainID.Uint64() || rec.Genesis != genesis.Hash().Hex()) {
		if cfg.Contract == "" {
			return fmt.Errorf("eth: %s records a contract on chain %d (genesis %s), but this is chain %d (genesis %s); "+
				"set the contract address, or move the file away to deploy a new contract",
				filepath.Join(cfg.Dir, recordFile), rec.ChainID, rec.Genesis, c.chainID, genesis.Hash().Hex())
		}
		rec = nil
	}
	switch {
	case cfg.Contract != "":
		if !common.IsHexAddress(cfg.Contract) {
			return fmt.Errorf("eth: contract %q is not an address", cfg.Contract)
		}
		c.address = common.HexToAddress(cfg.Contract)
		if rec != nil && common.HexToAddress(rec.Address) == c.address {
			c.deployBlock = rec.DeployBlock
		}
	case rec != nil:
		c.address, c.deployBlock = common.HexToAddress(rec.Address), rec.DeployBlock
	case cfg.Dir == "" && c.sim == nil:
		return errors.New("eth: an RPC chain needs Contract, or Dir to remember the contract it deploys")
	default:
		if err := c.deploy(ctx, cfg.Dir, genesis.Hash()); err != nil {
			return fmt.Errorf("eth: deploy AnchorRegistry: %w", err)
		}
	}

	code, err := c.node.CodeAt(ctx, c.address, nil)
	if err != nil {
		return fmt.Errorf("eth: get code at %s: %w", c.address.Hex(), err)
	}
	if len(code) == 0 {
		return fmt.Errorf("eth: no contract at %s on chain %d", c.address.Hex(), c.chainID)
	}
	if c.readOnly {
		return nil
	}
	out, err := c.call(ctx, c.registry.PackIsAnchorer(c.from), nil)
	if err != nil {
		return fmt.Errorf("eth: ask %s whether %s is an anchorer: %w", c.address.Hex(), c.from.Hex(), err)
	}
	ok, err := c.registry.UnpackIsAnchorer(out)
	if err != nil {
		return fmt.Errorf("eth: %s is not an AnchorRegistry: %w", c.address.Hex(), err)
	}
	if !ok {
		return fmt.Errorf("eth: account %s is not an anchorer of %s", c.from.Hex(), c.address.Hex())
	}
	c.info.ChainID = c.chainID.Uint64()
	c.info.Contract = c.address.Hex()
	return nil
}

// deploy creates the contract, waits for it to be mined, and records it in
// dir.
func (c *Chain) deploy(ctx context.Context, dir string, genesis common.Hash) error {
	tx, err := c.send(ctx, nil, nil, common.FromHex(contract.AnchorRegistryMetaData.Bin), 0, 0)
	if err != nil {
		return err
	}
	r, err := c.waitMined(ctx, tx.Hash())
	if err != nil {
		return err
	}
	if r.Status != types.ReceiptStatusSuccessful {
		return fmt.Errorf("deployment %s reverted", tx.Hash().Hex())
	}
	c.address = crypto.CreateAddress(c.from, tx.Nonce())
	c.deployBlock = r.BlockNumber.Uint64()
	if dir == "" {
		return nil
	}
	data, err := json.MarshalIndent(record{
		ChainID:     c.chainID.Uint64(),
		Genesis:     genesis.Hex(),
		Address:     c.address.Hex(),
		DeployTx:    tx.Hash().Hex(),
		DeployBlock: c.deployBlock,
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, recordFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("record contract: %w", err)
	}
	return nil
}

// waitMined polls for the receipt of tx, quickly at first (a dev node mines
// at once) and then once a second, until ctx ends.
func (c *Chain) waitMined(ctx context.Context, tx common.Hash) (*types.Receipt, error) {
	wait := 10 * time.Millisecond
	for {
		r, err := c.node.TransactionReceipt(ctx, tx)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, ethereum.NotFound) && ctx.Err() != nil {
			return nil, fmt.Errorf("wait for %s: %w", tx.Hex(), err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for %s to be mined: %w", tx.Hex(), ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// writeFileAtomic replaces path with data: a crash leaves the old file or
// the new one, never a torn one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	// An RPC chain has no other state in Dir, so it may not exist yet.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
