#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: repeatable on a
# noisy shared machine where req/s swings by 20% from run to run.
#
# Measures, one at a time, each proxying GET /hello to one `sluice echo-server`:
#   sluice       default config (circuit breaker + per-request metrics on)
#   sluice-bare  breaker and request metrics off (node.request_metrics: false)
#   nginx        master_process off, 1 worker, upstream keep-alive
# and prints user-space instructions per request (kernel work is not counted, and
# is about the same for all three: the same sockets and syscalls per request), the
# breaker+metrics cost (sluice vs sluice-bare, target < 2%) and sluice/nginx.
#
# Env: REQUESTS_SECONDS [6] (wrk run per target), SKIP_INSTALL, SKIP_BUILD, KEEP_TMP.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${REQUESTS_SECONDS:-6}"
UP=18391 SL=18392 SLA=18393 BARE=18394 BAREA=18395 NG=18396

log() { printf '==> %s\n' "$*" >&2; }

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
    missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v valgrind >/dev/null || missing+=(valgrind)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]} > 0)); then
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p sluice >&2
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sluice-cost.XXXXXX")"
chmod 755 "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    pkill -f "callgrind-out-file=$TMP" 2>/dev/null || true
    [[ "${KEEP_TMP:-0}" == 1 ]] || rm -rf "$TMP"
}
trap cleanup EXIT

wait_http() { # URL : up to 60 s (valgrind starts slowly)
    for _ in $(seq 1 120); do curl -sf -o /dev/null "$1" && return 0; sleep 0.5; done
    echo "no answer from $1" >&2
    return 1
}

"$BIN" echo-server --listen "127.0.0.1:$UP" --workers 1 >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP/hello"

sluice_config() { # DIR PORT ADMIN NODE_EXTRA SERVICE_EXTRA
    mkdir -p "$1"
    cat >"$1/sluice.yaml" <<EOF
node:
  id: 1
  listen: 127.0.0.1:$2
  admin_listen: 127.0.0.1:$3
  data_dir: $1/data
  workers: 1
$4
log:
  level: warn
services:
  bench:
    upstreams: [http://127.0.0.1:$UP]
$5
routes:
  - { path: /hello, service: bench, methods: [GET], auth: none }
EOF
}
sluice_config "$TMP/sluice" "$SL" "$SLA" "" ""
sluice_config "$TMP/bare" "$BARE" "$BAREA" "  request_metrics: false" "    circuit_breaker: { enabled: false }"
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx;
  fastcgi_temp_path $TMP/nginx; uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF

declare -A IPR=()
measure() { # NAME PORT COMMAND...
    local name="$1" port="$2"
    shift 2
    local out="$TMP/$name.callgrind"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$TMP/$name.log" 2>&1 &
    local pid=$!
    wait_http "http://127.0.0.1:$port/hello"
    wrk -t1 -c8 -d2s "http://127.0.0.1:$port/hello" >/dev/null # warm-up
    callgrind_control -z "$pid" >/dev/null
    local reqs
    reqs="$(wrk -t1 -c8 -d"${SECS}s" "http://127.0.0.1:$port/hello" | awk '/requests in/ { print $1 }')"
    callgrind_control -d "$pid" >/dev/null
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local ir
    ir="$(awk '/^(summary|totals):/ { print $2; exit }' "$out.1")"
    IPR[$name]=$((ir / reqs))
    printf '  %-12s %8s requests  %12s instructions  %8s per request\n' "$name" "$reqs" "$ir" "${IPR[$name]}"
}

printf 'User-space instructions per proxied request (callgrind, wrk -c8 for %ss each):\n' "$SECS"
measure sluice "$SL" "$BIN" run --config "$TMP/sluice"
measure sluice-bare "$BARE" "$BIN" run --config "$TMP/bare"
measure nginx "$NG" "$(command -v nginx)" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"

cost="$(awk -v a="${IPR[sluice]}" -v b="${IPR[sluice-bare]}" 'BEGIN { printf "%.1f", (a / b - 1) * 100 }')"
ratio="$(awk -v a="${IPR[sluice]}" -v b="${IPR[nginx]}" 'BEGIN { printf "%.2f", a / b }')"
printf '\nSummary: breaker+metrics cost %s%% instructions/request (target < 2%%) | sluice/nginx instructions/request %s\n' "$cost" "$ratio"
