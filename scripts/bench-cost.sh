#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: repeatable on a
# noisy shared machine where req/s swings by 20% from run to run.
#
# Measures, one at a time, each proxying GET /hello to the same upstream (nginx
# answering `return 200` itself, its own instance, 1 worker, not under valgrind):
#   sluice          default config (circuit breaker + per-request metrics on)
#   sluice-bare     breaker and request metrics off (node.request_metrics: false)
#   bare-forwarder  chaos-tests/examples/bare_forwarder.rs: actix-web + hyper-util's
#                   pooled client, nothing else (the floor)
#   nginx           master_process off, 1 worker, upstream keep-alive
# and prints user-space instructions per request (kernel work is not counted, and
# is about the same for all: the same sockets and syscalls per request; every thread
# of the process is counted, background ones included), the breaker+metrics cost
# (sluice vs sluice-bare, target < 2%), sluice/bare-forwarder (issue 12's target
# <= 1.05) and sluice/nginx.
#
# Env: REQUESTS_SECONDS [6] (wrk run, and idle count, per target), FORWARDER [1] (0 = skip the bare
# forwarder), SKIP_INSTALL, SKIP_BUILD, KEEP_TMP.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${REQUESTS_SECONDS:-6}"
FORWARDER="${FORWARDER:-1}"
UP=18391 SL=18392 SLA=18393 BARE=18394 BAREA=18395 NG=18396 FW=18397
# shellcheck source=scripts/bench-nginx.sh
source "$ROOT/scripts/bench-nginx.sh"

log() { printf '==> %s\n' "$*" >&2; }

install_missing wrk:wrk valgrind:valgrind nginx:nginx-light curl:curl
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p sluice >&2
    [[ "$FORWARDER" != 1 ]] || cargo build --release -p chaos-tests --examples >&2
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice"
FW_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bare_forwarder"
NGINX_BIN="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"

bench_tmp sluice-cost

wait_http() { # URL : up to 60 s (valgrind starts slowly)
    for _ in $(seq 1 120); do curl -sf -o /dev/null "$1" && return 0; sleep 0.5; done
    echo "no answer from $1" >&2
    return 1
}

write_nginx_upstream_conf "$TMP/upstream" "$UP"
"$NGINX_BIN" -p "$TMP/upstream" -e "$TMP/upstream/error.log" -c "$TMP/upstream/nginx.conf" >"$TMP/upstream.log" 2>&1 &
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
write_nginx_proxy_conf "$TMP/nginx" "$NG" "$UP" 1 off

declare -A IPR=()
# measure NAME PORT COMMAND... : COMMAND under callgrind; counts SECS seconds idle
# (timers, background tasks: the same whatever the load), then SECS seconds under
# wrk, and records (loaded - idle) / requests, so a process whose background work
# is heavier is not charged for it per request (valgrind makes every request ~50x
# slower, and the idle work would otherwise weigh on a few thousand requests).
measure() {
    local name="$1" port="$2"
    shift 2
    local out="$TMP/$name.callgrind"
    valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$out" "$@" >"$TMP/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/hello"
    wrk -t1 -c8 -d2s "http://127.0.0.1:$port/hello" >/dev/null # warm-up
    callgrind_control -z "$pid" >/dev/null 2>&1
    sleep "$SECS"
    callgrind_control -d "$pid" >/dev/null 2>&1 # -> $out.1: idle
    callgrind_control -z "$pid" >/dev/null 2>&1
    local reqs
    reqs="$(wrk -t1 -c8 -d"${SECS}s" "http://127.0.0.1:$port/hello" | awk '/requests in/ { print $1 }')"
    callgrind_control -d "$pid" >/dev/null 2>&1 # -> $out.2: loaded
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local idle ir
    idle="$(awk '/^(summary|totals):/ { print $2; exit }' "$out.1")"
    ir="$(awk '/^(summary|totals):/ { print $2; exit }' "$out.2")"
    IPR[$name]=$(((ir - idle) / reqs))
    printf '  %-15s %8s requests  %12s instructions  %10s idle  %8s per request (%s gross)\n' \
        "$name" "$reqs" "$ir" "$idle" "${IPR[$name]}" "$((ir / reqs))"
}

printf 'User-space instructions per proxied request (callgrind, wrk -c8 for %ss each;\n' "$SECS"
printf 'per request = (loaded - idle over the same %ss) / requests, gross = loaded / requests):\n' "$SECS"
measure sluice "$SL" "$BIN" run --config "$TMP/sluice"
measure sluice-bare "$BARE" "$BIN" run --config "$TMP/bare"
if [[ "$FORWARDER" == 1 ]]; then
    measure bare-forwarder "$FW" "$FW_BIN" "127.0.0.1:$FW" "http://127.0.0.1:$UP"
fi
measure nginx "$NG" "$NGINX_BIN" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cost="$(awk -v a="${IPR[sluice]}" -v b="${IPR[sluice-bare]}" 'BEGIN { printf "%.1f", (a / b - 1) * 100 }')"
summary="breaker+metrics cost $cost% instructions/request (target < 2%)"
if [[ "$FORWARDER" == 1 ]]; then
    fw="$(ratio "${IPR[sluice]}" "${IPR[bare-forwarder]}")"
    verdict="$(awk -v r="$fw" 'BEGIN { print (r + 0 <= 1.05) ? "ok" : "MISSED" }')"
    summary+=" | sluice/bare-forwarder $fw (target <= 1.05: $verdict)"
    summary+=" | sluice-bare/bare-forwarder $(ratio "${IPR[sluice-bare]}" "${IPR[bare-forwarder]}")"
fi
summary+=" | sluice/nginx $(ratio "${IPR[sluice]}" "${IPR[nginx]}")"
printf '\nSummary (instructions per request): %s\n' "$summary"
