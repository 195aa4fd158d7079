#!/usr/bin/env bash
# The derived AuditEvents and Provenances, checked by a validator we did not
# write: builds fhiranchor, starts it with a throwaway data directory, pushes
# three Synthea Bundles, reads and searches their data, provokes a denial (a
# marketing purpose), then fetches every AuditEvent page (as an auditor) and
# the Provenance of every version of the patients and of a sample of other
# resources, and validates them all with the `fhir` npm package (check.sh).
# Exit status is non-zero if any resource is invalid or any step fails.
# Needs go, node >= 20, npm, python3, curl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
synthea="${FHIRANCHOR_SYNTHEA:-$root/../shared/testdata/synthea}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/fhiranchor-audit.XXXXXX")"
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
    echo "audit.sh: fhiranchor exited before becoming healthy" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "audit.sh: fhiranchor not healthy within 60s" >&2
    exit 1
  fi
  sleep 0.2
done

# The three smallest patient Bundles: enough records of every access kind.
mapfile -t files < <(ls -S -r "$synthea"/*.json | grep -v -e hospitalInformation -e practitionerInformation | head -n 3)
echo "pushing ${#files[@]} Synthea Bundles" >&2
if ! "$tmp/fhiranchor" push --data "$data" --server "$base/fhir/r4" --no-progress "${files[@]}" >"$tmp/push.log" 2>&1; then
  tail -n 20 "$tmp/push.log" >&2
  exit 1
fi

ehr="$("$tmp/fhiranchor" token --data "$data" --client audit-check-ehr)"
auditor="$("$tmp/fhiranchor" token --data "$data" --client audit-check-auditor --scope fhiranchor/audit)"
get() { # token path -> body on stdout; fails on a non-2xx
  curl -fsS -H "Authorization: Bearer $1" "$base/fhir/r4$2"
}

mkdir -p "$tmp/out"
get "$ehr" "/Patient?_count=10" >"$tmp/patients.json"
mapfile -t patients < <(python3 -c '
import json, sys
for e in json.load(open(sys.argv[1])).get("entry", []):
    print(e["resource"]["id"])' "$tmp/patients.json")
if ((${#patients[@]} == 0)); then
  echo "audit.sh: no patients found" >&2
  exit 1
fi
targets=()
for p in "${patients[@]}"; do
  get "$ehr" "/Patient/$p" >/dev/null
  get "$ehr" "/Observation?patient=$p&_count=5" >"$tmp/obs.json"
  mapfile -t obs < <(python3 -c '
import json, sys
for e in json.load(open(sys.argv[1])).get("entry", []):
    print(e["resource"]["resourceType"] + "/" + e["resource"]["id"])' "$tmp/obs.json")
  targets+=("Patient/$p" "${obs[@]}")
  # A denial: marketing is no purpose the default policy implies.
  code="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ehr" -H 'X-Purpose-Of-Use: HMARKT' "$base/fhir/r4/Patient/$p")"
  if [[ "$code" != 403 ]]; then
    echo "audit.sh: a marketing read answered $code, want 403" >&2
    exit 1
  fi
done

# Every AuditEvent page, as the auditor.
next="/AuditEvent?_count=200"
pages=0
while [[ -n "$next" ]]; do
  pages=$((pages + 1))
  get "$auditor" "$next" >"$tmp/out/auditevents-$pages.json"
  next="$(python3 -c '
import json, sys
b = json.load(open(sys.argv[1]))
for l in b.get("link", []):
    if l["relation"] == "next":
        print(l["url"].split("/fhir/r4", 1)[1])' "$tmp/out/auditevents-$pages.json")"
done
n=0
for t in "${targets[@]}"; do
  n=$((n + 1))
  get "$ehr" "/Provenance?target=$t" >"$tmp/out/provenance-$n.json"
done

summary="$("$here/check.sh" "$tmp/out" | tail -n 1)"
echo "$summary" >&2
python3 - "$summary" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
ae = s["byType"].get("AuditEvent", {}).get("resources", 0)
pv = s["byType"].get("Provenance", {}).get("resources", 0)
if ae < 10 or pv < 5:
    sys.exit(f"audit.sh: only {ae} AuditEvents and {pv} Provenances validated")
PY
