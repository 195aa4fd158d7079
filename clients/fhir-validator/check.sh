#!/usr/bin/env bash
# Validates FHIR R4 JSON resources (*.json, Bundles, *.ndjson) offline with the
# third-party `fhir` npm package (FHIR.js) pinned in package-lock.json.
#   clients/fhir-validator/check.sh <file-or-dir>...
# Exit status is validate.mjs's: 0 all valid, 1 some invalid, 2 usage/IO error.
# Needs node >= 20 and npm; npm ci installs only what package-lock.json pins.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ ! -d "$here/node_modules" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund) >&2
fi

exec node "$here/validate.mjs" "$@"
