package eth

import (
	"context"
	"crypto/ecdsa"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
)

// Sim is the simulated backend, for tests that fork the chain.
func (c *Chain) Sim() *simulated.Backend { return c.sim }

// SyncBlocks persists blocks a test sealed through Sim.
func (c *Chain) SyncBlocks(ctx context.Context) error {
	if c.blocks == nil {
		return nil
	}
	return c.blocks.sync(ctx, c.node)
}

// WithKey is a Chain on the same node and contract that signs with key.
// Closing it would close c's chain too: don't.
func (c *Chain) WithKey(key *ecdsa.PrivateKey) *Chain {
	k, err := normalizeKey(key)
	if err != nil {
		panic(err)
	}
	return &Chain{
		node: c.node, sim: c.sim, blocks: c.blocks,
		info: c.info, chainID: c.chainID, signer: c.signer, registry: c.registry,
		address: c.address, deployBlock: c.deployBlock,
		feeCap: c.feeCap, tipCap: c.tipCap, gasLimit: c.gasLimit,
		key: k, from: crypto.PubkeyToAddress(k.PublicKey),
	}
}

// Transfer sends wei from c's account to the address to.
func (c *Chain) Transfer(ctx context.Context, to string, wei *big.Int) ([32]byte, error) {
	addr := common.HexToAddress(to)
	tx, err := c.send(ctx, &addr, wei, nil, 0, 0)
	if err != nil {
		return [32]byte{}, err
	}
	return tx.Hash(), nil
}

// SetFeeCaps changes the fee caps of later transactions.
func (c *Chain) SetFeeCaps(feeCap, tipCap *big.Int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.feeCap, c.tipCap = feeCap, tipCap
}
