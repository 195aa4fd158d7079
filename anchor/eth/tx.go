package eth

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"

	ethereum "github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/fhiranchor/fhiranchor/anchor/eth/contract"
)

// ErrRejected matches every *RejectedError with errors.Is.
var ErrRejected = errors.New("rejected by AnchorRegistry")

// RejectedError reports that the AnchorRegistry contract refuses a call:
// found at gas estimation (nothing was sent) or, for Inclusion, a mined
// transaction that reverted (nothing was recorded). Retrying the same call
// cannot succeed.
type RejectedError struct {
	// Reason is the contract's custom error with its arguments, e.g.
	// "SeqMismatch(expected 4, got 3)", or a plain reason.
	Reason string
}

func (e *RejectedError) Error() string { return "rejected by AnchorRegistry: " + e.Reason }

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// contractError turns a node's error for a call or estimation into a
// *RejectedError when it carries the contract's revert data, and wraps it
// with op otherwise.
func (c *Chain) contractError(op string, err error) error {
	var de rpc.DataError
	if errors.As(err, &de) {
		if s, ok := de.ErrorData().(string); ok {
			if reason := c.revertReason(common.FromHex(s)); reason != "" {
				return &RejectedError{Reason: reason}
			}
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// revertReason names the contract's custom error in revert data, or "".
func (c *Chain) revertReason(data []byte) string {
	if len(data) < 4 {
		return ""
	}
	v, err := c.registry.UnpackError(data)
	if err != nil {
		return ""
	}
	switch e := v.(type) {
	case *contract.AnchorRegistrySeqMismatch:
		return fmt.Sprintf("SeqMismatch(expected %d, got %d)", e.Expected, e.Got)
	case *contract.AnchorRegistryPrevRootMismatch:
		return fmt.Sprintf("PrevRootMismatch(expected %x, got %x)", e.Expected, e.Got)
	case *contract.AnchorRegistryTreeSizeNotIncreasing:
		return fmt.Sprintf("TreeSizeNotIncreasing(last %d, got %d)", e.Last, e.Got)
	case *contract.AnchorRegistryNotAnchorer:
		return fmt.Sprintf("NotAnchorer(%s)", e.Caller.Hex())
	case *contract.AnchorRegistryNotOwner:
		return fmt.Sprintf("NotOwner(%s)", e.Caller.Hex())
	case *contract.AnchorRegistryZeroRoot:
		return "ZeroRoot()"
	case *contract.AnchorRegistryZeroAddress:
		return "ZeroAddress()"
	}
	return fmt.Sprintf("%T", v)
}

// send estimates, prices, signs and sends a transaction to `to` (nil:
// contract creation), and on the simulated chain mines it. gasLimit 0 means
// the estimate plus 20%. seq is the anchor the transaction records, 0 if
// none: see Submit on replacing.
func (c *Chain) send(ctx context.Context, to *common.Address, value *big.Int, data []byte, gasLimit, seq uint64) (*types.Transaction, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	msg := ethereum.CallMsg{From: c.from, To: to, Value: value, Data: data}
	est, err := c.node.EstimateGas(ctx, msg)
	if err != nil {
		return nil, c.contractError("estimate gas", err)
	}
	switch {
	case gasLimit == 0:
		gasLimit = est + est/5
	case est > gasLimit:
		return nil, fmt.Errorf("needs %d gas, over the configured limit of %d", est, gasLimit)
	}
	tipCap, feeCap, err := c.fees(ctx)
	if err != nil {
		return nil, err
	}
	if value == nil {
		value = new(big.Int)
	}
	if seq != 0 && c.last != nil && c.last.seq == seq {
		tx, done, err := c.replace(ctx, tipCap, feeCap, gasLimit)
		if err != nil || done {
			return tx, err
		}
	}
	for attempt := 0; ; attempt++ {
		if !c.nonceOK {
			n, err := c.node.PendingNonceAt(ctx, c.from)
			if err != nil {
				return nil, fmt.Errorf("get nonce of %s: %w", c.from.Hex(), err)
			}
			c.nonce, c.nonceOK = n, true
		}
		tx, err := types.SignNewTx(c.key, c.signer, &types.DynamicFeeTx{
			ChainID:   c.chainID,
			Nonce:     c.nonce,
			GasTipCap: tipCap,
			GasFeeCap: feeCap,
			Gas:       gasLimit,
			To:        to,
			Value:     value,
			Data:      data,
		})
		if err != nil {
			return nil, fmt.Errorf("sign transaction: %w", err)
		}
		err = c.node.SendTransaction(ctx, tx)
		switch {
		case err == nil:
			c.nonce++
		case isAlreadyKnown(err):
			// The node has this very transaction (an earlier send whose reply
			// was lost); it is ours. Re-read the nonce next time to be sure.
			c.nonceOK = false
		case isStaleNonce(err) && attempt == 0:
			// Someone else used the key, or our count ran ahead of a node that
			// lost transactions: resync once and sign again.
			c.nonceOK = false
			continue
		default:
			// The node may or may not have taken it (a timeout, say): resync
			// before the next send rather than guess.
			c.nonceOK = false
			return nil, fmt.Errorf("send transaction: %w", err)
		}
		if seq != 0 {
			c.last = &lastAnchor{seq: seq, tx: tx}
		}
		return tx, c.commitIfSimulated(ctx)
	}
}

// replace sends the last anchor transaction again, outbidding it with the
// same nonce, if that nonce is still unused. It reports done = false when a
// fresh transaction is wanted instead. The caller holds c.mu.
func (c *Chain) replace(ctx context.Context, tip, feeCap *big.Int, gasLimit uint64) (tx *types.Transaction, done bool, err error) {
	old := c.last.tx
	mined, err := c.node.NonceAt(ctx, c.from, nil)
	if err != nil {
		return nil, false, fmt.Errorf("get mined nonce of %s: %w", c.from.Hex(), err)
	}
	if mined > old.Nonce() {
		// Its nonce is used (by it, reverted, or by another transaction of
		// this key): only a new transaction can record the anchor.
		c.last = nil
		return nil, false, nil
	}
	tip = bigMax(tip, bump(old.GasTipCap()))
	feeCap = bigMax(feeCap, bump(old.GasFeeCap()))
	if tip.Cmp(c.tipCap) > 0 || feeCap.Cmp(c.feeCap) > 0 {
		// No room under the caps to outbid it: make sure the node still has
		// it, and keep waiting for it.
		if err := c.node.SendTransaction(ctx, old); err != nil && !isAlreadyKnown(err) && !isStaleNonce(err) {
			return nil, true, fmt.Errorf("send transaction again: %w", err)
		}
		return old, true, c.commitIfSimulated(ctx)
	}
	tx, err = types.SignNewTx(c.key, c.signer, &types.DynamicFeeTx{
		ChainID:   c.chainID,
		Nonce:     old.Nonce(),
		GasTipCap: tip,
		GasFeeCap: feeCap,
		Gas:       max(gasLimit, old.Gas()),
		To:        old.To(),
		Value:     old.Value(),
		Data:      old.Data(),
	})
	if err != nil {
		return nil, true, fmt.Errorf("sign transaction: %w", err)
	}
	err = c.node.SendTransaction(ctx, tx)
	switch {
	case err == nil || isAlreadyKnown(err):
	case strings.Contains(err.Error(), "nonce too low"):
		// Mined while we were at it: Inclusion of the earlier one tells.
		c.last = nil
		return old, true, nil
	default:
		return nil, true, fmt.Errorf("send replacement transaction: %w", err)
	}
	c.last.tx = tx
	if old.Nonce() >= c.nonce {
		c.nonce = old.Nonce() + 1
	}
	return tx, true, c.commitIfSimulated(ctx)
}

func (c *Chain) commitIfSimulated(ctx context.Context) error {
	if c.sim == nil {
		return nil
	}
	return c.commit(ctx)
}

// bump raises a fee by the 10% (plus one wei) a node requires of a
// replacement transaction.
func bump(x *big.Int) *big.Int {
	y := new(big.Int).Div(x, big.NewInt(10))
	return y.Add(y, x).Add(y, big.NewInt(1))
}

func bigMax(a, b *big.Int) *big.Int {
	if a.Cmp(b) >= 0 {
		return a
	}
	return b
}

// fees returns the tip and fee cap for the next transaction: the node's
// suggested tip and twice the latest base fee plus tip, each capped.
func (c *Chain) fees(ctx context.Context) (tip, feeCap *big.Int, err error) {
	tip, err = c.node.SuggestGasTipCap(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("suggest gas tip: %w", err)
	}
	head, err := c.node.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("get head block: %w", err)
	}
	if tip.Cmp(c.tipCap) > 0 {
		tip = new(big.Int).Set(c.tipCap)
	}
	feeCap = new(big.Int).Set(tip)
	if head.BaseFee != nil {
		feeCap.Add(feeCap, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	}
	if feeCap.Cmp(c.feeCap) > 0 {
		feeCap = new(big.Int).Set(c.feeCap)
	}
	if tip.Cmp(feeCap) > 0 {
		tip = new(big.Int).Set(feeCap)
	}
	return tip, feeCap, nil
}

// The transaction pool's errors reach us as text over JSON-RPC.
func isAlreadyKnown(err error) bool {
	return strings.Contains(err.Error(), "already known")
}

func isStaleNonce(err error) bool {
	s := err.Error()
	return strings.Contains(s, "nonce too low") || strings.Contains(s, "replacement transaction underpriced")
}
