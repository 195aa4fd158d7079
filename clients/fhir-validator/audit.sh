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

# The server: built and started by ../lib.sh on free ports, in a throwaway
# data directory it removes on exit.
source "$here/../lib.sh"
start_fhiranchor audit
data="$tmp/data"

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
