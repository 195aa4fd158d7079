// Package eth implements anchor.Chain on an EVM chain holding the
// AnchorRegistry contract (package contract). It is the only package of
// fhiranchor that imports go-ethereum.
//
// Two kinds of chain sit behind the same Chain type. With an empty
// Config.RPCURL it is go-ethereum's in-process simulated chain, the embedded
// default that needs no server: a block is sealed right after every
// submission, and the chain is kept in Config.Dir as its genesis and the
// raw blocks, replayed on the next start (see New). Otherwise it is any
// EVM JSON-RPC endpoint (geth, or an L2 by chain id) over HTTP or WebSocket.
//
// The key only ever signs locally; neither it nor anything derived from it
// but the account address appears in errors.
package eth
