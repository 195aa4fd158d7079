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

tmp="$(mktemp -d "${TMPDIR:-/tmp}/fhiranchor-fv.XXXXXX")"
server_pid=""
cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -s "$tmp/server.log" ]]; then
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$tmp/server.log" >&2 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

echo "building fhiranchor" >&2
(cd "$root" && go build -o "$tmp/fhiranchor" ./cmd/fhiranchor)

read -r http_port grpc_port < <(python3 -c '
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
')

data="$tmp/data"
base="http://127.0.0.1:$http_port"
"$tmp/fhiranchor" serve --data "$data" --http "127.0.0.1:$http_port" --grpc "127.0.0.1:$grpc_port" \
  >"$tmp/server.log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + 60))
until curl -fsS "$base/healthz" >/dev/null 2>&1; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: fhiranchor exited before becoming healthy" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "run.sh: fhiranchor not healthy within 60s" >&2
    exit 1
  fi
  sleep 0.2
done

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
