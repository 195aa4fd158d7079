// Package contract holds AnchorRegistry.sol, the Solidity contract that
// records fhiranchor's anchors, with the ABI and bytecode the pinned solc
// makes of it and their abigen v2 binding. Do not edit AnchorRegistry.abi,
// AnchorRegistry.bin or anchor_registry.gen.go: change the source and run
// generate.sh (or `make generate`), then commit all of them.
package contract

//go:generate ./generate.sh
