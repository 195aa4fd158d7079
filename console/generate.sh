#!/usr/bin/env bash
# Rebuilds dist/ (the console's committed, embedded output) from src/ with
# the npm packages pinned in package.json and package-lock.json. The same
# sources and lockfile give the same bytes; make generate runs this and CI
# fails if dist/ changes. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"

npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
node build.mjs
