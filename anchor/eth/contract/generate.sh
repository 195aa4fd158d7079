#!/usr/bin/env bash
# Regenerates AnchorRegistry.abi, AnchorRegistry.bin (solc, pinned in
# package.json) and anchor_registry.gen.go (abigen v2, pinned in
# tools/abigen.mod). Run from anywhere; `make generate` and `go generate` call it.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
node compile.mjs
root="$(cd ../../.. && pwd)"
go tool -modfile="$root/tools/abigen.mod" abigen --v2 --abi AnchorRegistry.abi --bin AnchorRegistry.bin \
  --pkg contract --type AnchorRegistry --out anchor_registry.gen.go
