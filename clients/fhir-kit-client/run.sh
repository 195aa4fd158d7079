#!/usr/bin/env bash
# Builds fhiranchor, starts it on free local ports with a throwaway data
# directory (../lib.sh), and runs check.mjs (the third-party
# fhir-kit-client npm package) against it: CRUD, history, transactions and
# batches, then search and paging over a few Synthea Bundles. Exit status
# is check.mjs's. Needs go, node >= 20, npm, python3, curl; npm ci installs
# only what package-lock.json pins.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh"
start_fhiranchor kc
npm_ci_once "$here"

cd "$here"
set +e
FHIR_BASE="$base/fhir/r4" FHIR_TOKEN="$token" SYNTHEA_DIR="${FHIRANCHOR_SYNTHEA:-$clients_root/../shared/testdata/synthea}" node check.mjs
status=$?
set -e
exit "$status"
