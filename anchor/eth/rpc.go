package eth

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"

	ethereum "github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
)

// networks names the chains an operator is likely to anchor on.
var networks = map[uint64]string{
	1:        "mainnet",
	11155111: "sepolia",
	17000:    "holesky",
	560048:   "hoodi",
	137:      "polygon",
	80002:    "polygon-amoy",
	42161:    "arbitrum-one",
	421614:   "arbitrum-sepolia",
	10:       "optimism",
	11155420: "optimism-sepolia",
	8453:     "base",
	84532:    "base-sepolia",
	1337:     "dev",
}

func networkName(id uint64) string {
	if n, ok := networks[id]; ok {
		return n
	}
	return fmt.Sprintf("chain-%d", id)
}

// openRPC connects to cfg.RPCURL and checks its chain id.
func (c *Chain) openRPC(ctx context.Context, cfg Config) error {
	key := cfg.Key
	if key == nil && cfg.ReadOnly {
		// Reads need no key; the signer wants one anyway: a throwaway.
		var err error
		if key, err = crypto.GenerateKey(); err != nil {
			return fmt.Errorf("eth: %w", err)
		}
	}
	if key == nil {
		return errors.New("eth: a key is required for an RPC chain")
	}
	if err := c.setKey(key); err != nil {
		return err
	}
	shown := redactURL(cfg.RPCURL)
	client, err := ethclient.DialContext(ctx, cfg.RPCURL)
	if err != nil {
		return fmt.Errorf("eth: dial %s: %s", shown, redact(err, cfg.RPCURL, shown))
	}
	c.closeFn = client.Close
	c.node = &redactingBackend{backend: client, secret: cfg.RPCURL, shown: shown}
	id, err := c.node.ChainID(ctx)
	if err != nil {
		return fmt.Errorf("eth: get chain id from %s: %w", shown, err)
	}
	if cfg.ChainID != 0 && id.Uint64() != cfg.ChainID {
		return fmt.Errorf("eth: %s serves chain id %d, configured %d", shown, id, cfg.ChainID)
	}
	c.chainID = id
	c.signer = types.LatestSignerForChainID(id)
	c.info.Name = cfg.Name
	if c.info.Name == "" {
		c.info.Name = networkName(id.Uint64())
	}
	return nil
}

// redactURL keeps the scheme and host of an endpoint URL: paths, queries and
// user info often carry an API key.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "the RPC endpoint"
	}
	return u.Scheme + "://" + u.Host
}

// redactedError is err with the endpoint URL cut out of its text; errors.Is
// and errors.As still see err.
type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// ErrorData keeps the revert data of a node's error reachable through
// errors.As(err, &rpc.DataError).
func (e *redactedError) ErrorData() any {
	var de interface{ ErrorData() any }
	if errors.As(e.err, &de) {
		return de.ErrorData()
	}
	return nil
}

func redact(err error, secret, shown string) error {
	if err == nil || secret == shown || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{err: err, msg: strings.ReplaceAll(err.Error(), secret, shown)}
}

// redactingBackend keeps the endpoint URL, which may hold an API key, out of
// every error (net/http puts the whole URL in its errors).
type redactingBackend struct {
	backend
	secret, shown string
}

func (r *redactingBackend) redact(err error) error { return redact(err, r.secret, r.shown) }

func (r *redactingBackend) ChainID(ctx context.Context) (*big.Int, error) {
	v, err := r.backend.ChainID(ctx)
	return v, r.redact(err)
}

func (r *redactingBackend) BlockNumber(ctx context.Context) (uint64, error) {
	v, err := r.backend.BlockNumber(ctx)
	return v, r.redact(err)
}

func (r *redactingBackend) HeaderByNumber(ctx context.Context, n *big.Int) (*types.Header, error) {
	v, err := r.backend.HeaderByNumber(ctx, n)
	return v, r.redact(err)
}

func (r *redactingBackend) TransactionReceipt(ctx context.Context, h common.Hash) (*types.Receipt, error) {
	v, err := r.backend.TransactionReceipt(ctx, h)
	return v, r.redact(err)
}

func (r *redactingBackend) CodeAt(ctx context.Context, a common.Address, n *big.Int) ([]byte, error) {
	v, err := r.backend.CodeAt(ctx, a, n)
	return v, r.redact(err)
}

func (r *redactingBackend) CallContract(ctx context.Context, msg ethereum.CallMsg, n *big.Int) ([]byte, error) {
	v, err := r.backend.CallContract(ctx, msg, n)
	return v, r.redact(err)
}

func (r *redactingBackend) FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error) {
	v, err := r.backend.FilterLogs(ctx, q)
	return v, r.redact(err)
}

func (r *redactingBackend) EstimateGas(ctx context.Context, msg ethereum.CallMsg) (uint64, error) {
	v, err := r.backend.EstimateGas(ctx, msg)
	return v, r.redact(err)
}

func (r *redactingBackend) SuggestGasTipCap(ctx context.Context) (*big.Int, error) {
	v, err := r.backend.SuggestGasTipCap(ctx)
	return v, r.redact(err)
}

func (r *redactingBackend) PendingNonceAt(ctx context.Context, a common.Address) (uint64, error) {
	v, err := r.backend.PendingNonceAt(ctx, a)
	return v, r.redact(err)
}

func (r *redactingBackend) NonceAt(ctx context.Context, a common.Address, n *big.Int) (uint64, error) {
	v, err := r.backend.NonceAt(ctx, a, n)
	return v, r.redact(err)
}

func (r *redactingBackend) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	return r.redact(r.backend.SendTransaction(ctx, tx))
}
