#!/usr/bin/env bash
# The research copy, checked by a validator we did not write: builds
# fhiranchor, starts it with a throwaway data directory, pushes the 60
# Synthea Bundles, exports every patient's de-identified resources through
# the cohort export API (Bulk Data style: kick-off, poll, manifest, files),
# and validates every exported resource with the `fhir` npm package
# (check.sh). Then the same for the PHI corpus (testdata/phi-corpus, pushed
# after Synthea): its research copies are the ones a de-identifier is most
# likely to break, since every free-text element it cleans or removes there
# holds something. Exit status is non-zero if any resource is invalid or any
# step fails. Needs go, node >= 20, npm, python3, curl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
synthea="${FHIRANCHOR_SYNTHEA:-$root/../shared/testdata/synthea}"
corpus="$root/testdata/phi-corpus"

# The server: built and started by ../lib.sh on free ports, in a throwaway
# data directory it removes on exit.
source "$here/../lib.sh"
start_fhiranchor fv
data="$tmp/data"

echo "pushing $(ls "$synthea"/*.json | wc -l) Synthea Bundles" >&2
if ! "$tmp/fhiranchor" push --data "$data" --server "$base/fhir/r4" --no-progress "$synthea" >"$tmp/push.log" 2>&1; then
  tail -n 20 "$tmp/push.log" >&2
  exit 1
fi

# The corpus's Bundles by name: the folder also holds phi.json, its oracle,
# which is not a Bundle.
corpus_files=("$corpus"/[0-9]*.json)
echo "pushing ${#corpus_files[@]} PHI corpus Bundles" >&2
if ! "$tmp/fhiranchor" push --data "$data" --server "$base/fhir/r4" --no-progress "${corpus_files[@]}" >"$tmp/push-corpus.log" 2>&1; then
  tail -n 20 "$tmp/push-corpus.log" >&2
  exit 1
fi

token="$("$tmp/fhiranchor" token --data "$data" --client research-check --purpose HRESCH \
  --scope "fhiranchor/cohort.query fhiranchor/cohort.export")"
auth=(-H "Authorization: Bearer $token")

# Every patient: male or female or neither.
query='{"criteria": {"any": [{"gender": "male"}, {"not": {"gender": "male"}}]}}'
status_url="$(curl -fsS -o /dev/null -D - "${auth[@]}" -H 'Content-Type: application/json' \
  -X POST --data "$query" "$base/v1/cohorts:export" | tr -d '\r' | awk 'tolower($1)=="content-location:" {print $2}')"
if [[ -z "$status_url" ]]; then
  echo "run.sh: the export kick-off returned no Content-Location" >&2
  exit 1
fi

deadline=$((SECONDS + 300))
while :; do
  code="$(curl -sS -o "$tmp/manifest.json" -w '%{http_code}' "${auth[@]}" "$status_url")"
  [[ "$code" == 200 ]] && break
  if [[ "$code" != 202 ]] || ((SECONDS >= deadline)); then
    echo "run.sh: export status $code" >&2
    cat "$tmp/manifest.json" >&2
    exit 1
  fi
  sleep 0.5
done

mkdir -p "$tmp/export"
python3 - "$tmp/manifest.json" >"$tmp/urls" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for o in m["output"]:
    print(o["type"], o["count"], o["url"])
print("patients", m["extension"]["patients"], "-", file=sys.stderr)
PY
total=0
while read -r type count url; do
  curl -fsS "${auth[@]}" -o "$tmp/export/$type.ndjson" "$url"
  lines="$(wc -l <"$tmp/export/$type.ndjson")"
  if [[ "$lines" != "$count" ]]; then
    echo "run.sh: $type.ndjson has $lines lines, the manifest says $count" >&2
    exit 1
  fi
  total=$((total + lines))
done <"$tmp/urls"
echo "exported $total de-identified resources in $(wc -l <"$tmp/urls") files" >&2
if ((total < 10000)); then
  echo "run.sh: expected the whole Synthea set (over 10,000 patient resources)" >&2
  exit 1
fi

"$here/check.sh" "$tmp/export"
