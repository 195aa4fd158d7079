#!/usr/bin/env bash
# FHIR Bulk Data $export, driven by a client we did not shape to the server:
# bulk.mjs, written from the Bulk Data IG v2 on node's fetch alone. Builds
# fhiranchor, starts it with a throwaway data directory, pushes the Synthea
# Bundles, then exports
#   1. [base]/$export of four types with a system/*.read token (identified),
#   2. Patient/$export with a _typeFilter,
#   3. Group/[id]/$export of a Group that defines a cohort by criteria
#      (created by an EHR token), with a research token (de-identified),
# and validates every downloaded NDJSON resource with the `fhir` npm package
# (clients/fhir-validator/check.sh). Exit status is non-zero if any step
# fails or any resource is invalid. Needs go, node >= 20, npm, python3, curl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
synthea="${FHIRANCHOR_SYNTHEA:-$root/../shared/testdata/synthea}"

# The server: built and started by ../lib.sh on free ports, in a throwaway
# data directory it removes on exit.
source "$here/../lib.sh"
start_fhiranchor bulk
data="$tmp/data"

echo "pushing $(ls "$synthea"/*.json | wc -l) Synthea Bundles" >&2
if ! "$tmp/fhiranchor" push --data "$data" --server "$base/fhir/r4" --no-progress "$synthea" >"$tmp/push.log" 2>&1; then
  tail -n 20 "$tmp/push.log" >&2
  exit 1
fi

system="$("$tmp/fhiranchor" token --data "$data" --client bulk-system --purpose TREAT --scope "system/*.read")"
ehr="$("$tmp/fhiranchor" token --data "$data" --client bulk-ehr --purpose TREAT --scope "system/*.read system/*.write")"
research="$("$tmp/fhiranchor" token --data "$data" --client bulk-research --purpose HRESCH \
  --scope "fhiranchor/cohort.query fhiranchor/cohort.export")"

# A Group that defines a cohort: every female patient.
group="$(curl -fsS -H "Authorization: Bearer $ehr" -H 'Content-Type: application/fhir+json' -X POST "$base/fhir/r4/Group" \
  --data '{"resourceType":"Group","type":"person","actual":false,"name":"female patients",
    "extension":[{"url":"https://fhiranchor.dev/fhir/StructureDefinition/cohort-criteria","valueString":"{\"gender\":\"female\"}"}]}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"

cd "$here"
out="$tmp/out"
run() { # token kick-off-path out-subdir
  FHIR_BASE="$base/fhir/r4" FHIR_TOKEN="$1" node bulk.mjs "$2" "$out/$3" | tee "$tmp/$3.json"
  python3 - "$tmp/$3.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
if s["resources"] == 0:
    sys.exit("run.sh: " + s["kickOff"] + " exported nothing")
PY
}
run "$system" '$export?_type=Patient,Condition,Observation,Encounter' system
run "$system" 'Patient/$export?_type=Patient,Observation&_typeFilter=Observation%3Fcategory%3Dvital-signs' patient
run "$research" "Group/$group/\$export?_type=Patient,Condition" group

"$root/clients/fhir-validator/check.sh" "$out"
