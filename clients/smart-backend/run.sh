#!/usr/bin/env bash
# Builds fhiranchor, starts it on free local ports with a throwaway data
# directory and one SMART Backend Services client whose jwks_url points at
# a port check.mjs then serves, and runs check.mjs (the jose npm package
# signing assertions, everything else from the specification). Exit status
# is check.mjs's. Needs go, node >= 20, npm, python3, curl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/fhiranchor-smart.XXXXXX")"
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

read -r http_port grpc_port jwks_port < <(python3 -c '
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
')

client_id="smart-check"
cat >"$tmp/config.yaml" <<YAML
auth:
  jwks_min_refresh: 1s
  clients:
    - client_id: $client_id
      scopes: [system/Patient.cruds]
      purpose_of_use: TREAT
      jwks_url: http://127.0.0.1:$jwks_port/jwks.json
YAML

data="$tmp/data"
"$tmp/fhiranchor" serve --config "$tmp/config.yaml" --data "$data" --http "127.0.0.1:$http_port" --grpc "127.0.0.1:$grpc_port" \
  >"$tmp/server.log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + 60))
until curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1; do
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
echo "fhiranchor pid $server_pid serving on 127.0.0.1:$http_port" >&2

admin_token="$("$tmp/fhiranchor" token --data "$data" --scope "fhiranchor/admin")"

cd "$here"
if [[ ! -d node_modules ]]; then
  npm ci --no-audit --no-fund
fi

set +e
FHIR_BASE="http://127.0.0.1:$http_port/fhir/r4" JWKS_PORT="$jwks_port" CLIENT_ID="$client_id" ADMIN_TOKEN="$admin_token" node check.mjs
status=$?
set -e
exit "$status"
