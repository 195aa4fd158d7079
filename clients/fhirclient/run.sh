#!/usr/bin/env bash
# Builds fhiranchor, starts it on free local ports with a throwaway data
# directory (../lib.sh), and runs check.mjs (fhirclient, SMART on FHIR's
# JavaScript client, from npm) against it: the CapabilityStatement, patient
# scoped requests built from it, paging and reference resolution. Exit
# status is check.mjs's. Needs go, node >= 20, npm, python3, curl; npm ci
# installs only what package-lock.json pins (.npmrc: no peer dependencies).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib.sh"
start_fhiranchor fc
npm_ci_once "$here"

cd "$here"
set +e
FHIR_BASE="$base/fhir/r4" FHIR_TOKEN="$token" SYNTHEA_DIR="${FHIRANCHOR_SYNTHEA:-$clients_root/../shared/testdata/synthea}" node check.mjs
status=$?
set -e
exit "$status"
