package eth

import (
	"context"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"

	ethereum "github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/fhiranchor/fhiranchor/anchor"
	"github.com/fhiranchor/fhiranchor/anchor/eth/contract"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://mainnet.infura.io/v3/0123456789abcdef": "https://mainnet.infura.io",
		"wss://user:pass@node.example:8546/ws?key=k":    "wss://node.example:8546",
		"http://127.0.0.1:8545":                         "http://127.0.0.1:8545",
		"not a url":                                     "the RPC endpoint",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

type dataErr struct{ msg, data string }

func (e dataErr) Error() string          { return e.msg }
func (e dataErr) ErrorData() interface{} { return e.data }

func TestRedact(t *testing.T) {
	const secret = "https://node.example/v3/SECRETKEY"
	shown := redactURL(secret)
	inner := &url.Error{Op: "Post", URL: secret, Err: errors.New("connection refused")}
	err := redact(inner, secret, shown)
	if strings.Contains(err.Error(), "SECRETKEY") || !strings.Contains(err.Error(), shown) {
		t.Errorf("redact = %q, want the URL cut to %s", err, shown)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Error("redact hides the *url.Error from errors.As")
	}

	// Revert data stays reachable for contractError.
	err = redact(dataErr{msg: "execution reverted at " + secret, data: "0x1234"}, secret, shown)
	var de rpc.DataError
	if !errors.As(err, &de) || de.ErrorData() != "0x1234" || strings.Contains(de.Error(), "SECRETKEY") {
		t.Errorf("redact(DataError) = %v, lost the data or kept the key", err)
	}
	if redact(nil, secret, shown) != nil {
		t.Error("redact(nil) != nil")
	}
}

// narrowLogs is a node that, like public endpoints, refuses eth_getLogs
// over more than logWindow blocks.
type narrowLogs struct {
	backend // nil: only FilterLogs is called
	logs    []types.Log
	queries int
}

func (n *narrowLogs) FilterLogs(_ context.Context, q ethereum.FilterQuery) ([]types.Log, error) {
	n.queries++
	from, to := q.FromBlock.Uint64(), q.ToBlock.Uint64()
	if to-from+1 > logWindow {
		return nil, errors.New("query exceeds max block range 2000")
	}
	var out []types.Log
	for _, l := range n.logs {
		if l.BlockNumber >= from && l.BlockNumber <= to && l.Topics[1] == q.Topics[1][0] {
			out = append(out, l)
		}
	}
	return out, nil
}

func TestAnchoredEventWindows(t *testing.T) {
	reg := contract.NewAnchorRegistry()
	ev := reg.GetABI().Events[contract.AnchorRegistryAnchoredEventName]
	mkLog := func(seq, block uint64) types.Log {
		data, err := ev.Inputs.NonIndexed().Pack([32]byte{byte(seq)}, seq*10, [32]byte{byte(seq - 1)}, uint64(1700000000))
		if err != nil {
			t.Fatal(err)
		}
		return types.Log{
			Topics:      []common.Hash{ev.ID, common.BigToHash(new(big.Int).SetUint64(seq))},
			Data:        data,
			BlockNumber: block,
		}
	}
	node := &narrowLogs{logs: []types.Log{mkLog(1, 7), mkLog(2, 4_500), mkLog(3, 9_999)}}
	c := &Chain{node: node, registry: reg, deployBlock: 5}
	for _, tt := range []struct {
		seq, block uint64
		queries    int // the whole range, then windows back from head
	}{
		{3, 9_999, 2},
		{2, 4_500, 4},
		{1, 7, 6},
	} {
		node.queries = 0
		got, err := c.anchoredEvent(t.Context(), tt.seq, 10_000)
		if err != nil {
			t.Fatalf("anchoredEvent(%d): %v", tt.seq, err)
		}
		if got.Seq != tt.seq || got.TreeSize != tt.seq*10 || got.Raw.BlockNumber != tt.block {
			t.Errorf("anchoredEvent(%d) = seq %d, tree size %d, block %d", tt.seq, got.Seq, got.TreeSize, got.Raw.BlockNumber)
		}
		if node.queries != tt.queries {
			t.Errorf("anchoredEvent(%d) made %d queries, want %d", tt.seq, node.queries, tt.queries)
		}
	}
	if _, err := c.anchoredEvent(t.Context(), 4, 10_000); !errors.Is(err, anchor.ErrNotOnChain) {
		t.Errorf("anchoredEvent(4) err = %v, want ErrNotOnChain", err)
	}
}
