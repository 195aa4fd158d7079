# Shared by the clients' run.sh scripts (source it; needs bash):
# start_fhiranchor builds fhiranchor, starts it on free local ports with a
# throwaway data directory under $tmp and sets $base (the HTTP root),
# $token (system/*.read system/*.write), $tmp and $server_pid; an EXIT trap
# stops the server, prints its log's tail on failure and removes $tmp.
# npm_ci_once installs a client's pinned packages if node_modules is absent.
# Needs go, node >= 20, npm, python3, curl.

clients_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
server_pid=""
tmp=""

_fhiranchor_cleanup() {
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
  if [[ $rc -ne 0 && -n "$tmp" && -s "$tmp/server.log" ]]; then
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$tmp/server.log" >&2 || true
  fi
  [[ -n "$tmp" ]] && rm -rf "$tmp"
  exit "$rc"
}

# start_fhiranchor NAME
start_fhiranchor() {
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fhiranchor-$1.XXXXXX")"
  trap _fhiranchor_cleanup EXIT

  echo "building fhiranchor" >&2
  (cd "$clients_root" && go build -o "$tmp/fhiranchor" ./cmd/fhiranchor)

  local http_port grpc_port
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

  local data="$tmp/data"
  base="http://127.0.0.1:$http_port"
  "$tmp/fhiranchor" serve --data "$data" --http "127.0.0.1:$http_port" --grpc "127.0.0.1:$grpc_port" \
    >"$tmp/server.log" 2>&1 &
  server_pid=$!

  local deadline=$((SECONDS + 60))
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
  echo "fhiranchor pid $server_pid serving on $base" >&2

  token="$("$tmp/fhiranchor" token --data "$data" --scope "system/*.read system/*.write")"
}

# npm_ci_once DIR
npm_ci_once() {
  if [[ ! -d "$1/node_modules" ]]; then
    (cd "$1" && npm ci --no-audit --no-fund --ignore-scripts)
  fi
}
