#!/usr/bin/env bash
# Benchmark: Sluice vs nginx, both proxying the same tiny upstream.
#
# What it does:
#   1. installs wrk and nginx from Debian if they are missing (needs root),
#   2. builds sluice in release (honours CARGO_TARGET_DIR, else ./target),
#   3. starts ONE upstream (`sluice echo-server`, 1 worker, GET /hello),
#   4. starts Sluice and nginx in front of it with the same worker count, both
#      keeping upstream connections alive,
#   5. runs wrk --latency against each, alternating targets for ROUNDS rounds
#      (a short warm-up before every measured run),
#   6. prints req/s, p50 and p99 per target (median across rounds), the
#      Sluice/nginx ratios and a one-line summary.
# Everything listens on 127.0.0.1; configs and logs live in a temp dir; every
# process the script started is stopped on exit (not the system nginx service).
#
# Environment (defaults in brackets):
#   BARE [1]             also measure sluice-bare (breaker + request metrics off)
#   WORKERS [1]          worker threads/processes for Sluice and for nginx
#   ROUNDS [3]           measured runs per target, alternating targets
#   DURATION [10s]       length of each measured wrk run
#   WARMUP [2s]          wrk warm-up before each measured run ("0" = none)
#   CONNECTIONS [64]     wrk connections
#   THREADS [2]          wrk threads
#   UPSTREAM_PORT [18091], SLUICE_PORT [18080], SLUICE_BARE_PORT [18082], NGINX_PORT [18081],
#   SLUICE_ADMIN_PORT [18092]
#   BENCH_PATH [/hello]  path requested through both proxies
#   KEEP_TMP [0]         1 = keep the temp dir (configs, logs, raw wrk output)
#   SKIP_INSTALL [0], SKIP_BUILD [0]
#
# Adding a variant (e.g. Sluice with the circuit breaker and metrics off):
# write another config with write_sluice_config (EXTRA_YAML for the extra keys),
# start it with start_sluice on its own port, and call
# `register_target NAME URL` before the measurement loop. Every registered
# target is measured by bench_target NAME URL in each round and compared with
# nginx in the report.
set -euo pipefail

WORKERS="${WORKERS:-1}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18091}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
SLUICE_BARE_PORT="${SLUICE_BARE_PORT:-18082}"
NGINX_PORT="${NGINX_PORT:-18081}"
SLUICE_ADMIN_PORT="${SLUICE_ADMIN_PORT:-18092}"
BENCH_PATH="${BENCH_PATH:-/hello}"
KEEP_TMP="${KEEP_TMP:-0}"
SKIP_INSTALL="${SKIP_INSTALL:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
START_DEADLINE=30 # seconds to wait for each server to answer

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup ----
TMP=""
PIDS=()      # every background process we started
NAMES=()     # their names, same order

cleanup() {
    local rc=$?
    set +e
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[$i]}"
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[$i]}"
        local n=0
        while kill -0 "$pid" 2>/dev/null && ((n < 50)); do sleep 0.1; n=$((n + 1)); done
        if kill -0 "$pid" 2>/dev/null; then
            log "${NAMES[$i]} (pid $pid) ignored SIGTERM, killing"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    # nginx workers normally exit with their master; catch any stragglers by
    # the pid file of *our* instance only.
    if [[ -n "$TMP" && -s "$TMP/nginx.pid" ]]; then
        pid="$(cat "$TMP/nginx.pid")"
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "$KEEP_TMP" == 1 || $rc -ne 0 ]]; then
            log "temp dir kept: $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers ----
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# spawn NAME LOGFILE CMD... : start CMD in the background, remember its pid.
spawn() {
    local name="$1" logfile="$2"
    shift 2
    "$@" >"$logfile" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
    LAST_PID=$!
}

# wait_ready NAME PID URL LOGFILE : until URL answers 2xx, PID dies, or deadline.
wait_ready() {
    local name="$1" pid="$2" url="$3" logfile="$4"
    local deadline=$((SECONDS + START_DEADLINE))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            printf 'bench: %s exited before answering; its log (%s):\n' "$name" "$logfile" >&2
            tail -n 40 "$logfile" | sed 's/^/    /' >&2
            if grep -q 'not yet implemented' "$logfile"; then
                # shellcheck disable=SC2016 # the backquotes are literal
                printf 'bench: %s hit a `not yet implemented` panic (unfinished code)\n' "$name" >&2
            fi
            return 1
        fi
        if curl -sf -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.2
    done
    printf 'bench: %s did not answer %s within %ss; its log:\n' "$name" "$url" "$START_DEADLINE" >&2
    tail -n 40 "$logfile" | sed 's/^/    /' >&2
    return 1
}

# wrk prints latencies as e.g. 850.00us, 1.23ms, 2.00s, 1.50m; convert to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (match(v, /^[0-9.]+/)) { n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1) } else { print "nan"; exit }
        if (u == "us") f = 0.001; else if (u == "ms") f = 1; else if (u == "s") f = 1000;
        else if (u == "m") f = 60000; else if (u == "h") f = 3600000; else { print "nan"; exit }
        printf "%.3f\n", n * f }'
}

# median of the numbers on stdin (one per line)
median() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf "%.3f\n", a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.2f\n", a / b }'; }
fmt_ms() { awk -v v="$1" 'BEGIN { if (v < 10) printf "%.2fms", v; else printf "%.1fms", v }'; }
fmt_rps() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }

# ---------------------------------------------------------------- install ----
SUDO=()
if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null; then SUDO=(sudo); fi

find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

if [[ "$SKIP_INSTALL" != 1 ]]; then
    if ! command -v wrk >/dev/null || [[ -z "$(find_nginx)" ]] || ! command -v curl >/dev/null; then
        log "installing wrk, nginx and curl (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" apt-get install -y -qq wrk nginx-light curl >/dev/null ||
            "${SUDO[@]}" apt-get install -y -qq wrk nginx curl >/dev/null
    fi
fi
command -v wrk >/dev/null || die "wrk not found"
command -v curl >/dev/null || die "curl not found"
NGINX_BIN="$(find_nginx)"
[[ -n "$NGINX_BIN" ]] || die "nginx not found"

# ------------------------------------------------------------------ build ----
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
SLUICE_BIN="$TARGET_DIR/release/sluice"
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building sluice (release) into $TARGET_DIR"
    CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p sluice
fi
[[ -x "$SLUICE_BIN" ]] || die "$SLUICE_BIN not found (build failed?)"

# ------------------------------------------------------------------ setup ----
PORTS=("$UPSTREAM_PORT" "$SLUICE_PORT" "$NGINX_PORT" "$SLUICE_ADMIN_PORT")
[[ "${BARE:-1}" == 1 ]] && PORTS+=("$SLUICE_BARE_PORT" "$((SLUICE_ADMIN_PORT + 1))")
for p in "${PORTS[@]}"; do
    port_in_use "$p" && die "port 127.0.0.1:$p is already in use (set *_PORT to move it)"
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")"
chmod 755 "$TMP" # nginx workers may run as another user
mkdir -p "$TMP/wrk"

# write_sluice_config DIR PORT ADMIN_PORT [EXTRA_YAML [NODE_LINES [SERVICE_LINES [ROUTE_AUTH]]]] :
# a one-route config proxying BENCH_PATH to the upstream. EXTRA_YAML is appended
# verbatim (extra top-level sections); NODE_LINES and SERVICE_LINES are added
# (already indented) under `node:` and under the bench service. ROUTE_AUTH is the
# route's `auth` (default none: a route without it requires a credential).
write_sluice_config() {
    local dir="$1" port="$2" admin_port="$3" extra="${4:-}" node_lines="${5:-}" svc_lines="${6:-}"
    local route_auth="${7:-none}"
    mkdir -p "$dir"
    cat >"$dir/sluice.yaml" <<EOF
node:
  id: 1
  listen: 127.0.0.1:$port
  admin_listen: 127.0.0.1:$admin_port
  data_dir: $dir/data
  workers: $WORKERS
$node_lines
log:
  level: warn
services:
  bench:
    upstreams: [http://127.0.0.1:$UPSTREAM_PORT]
$svc_lines
routes:
  - path: $BENCH_PATH
    service: bench
    methods: [GET]
    auth: $route_auth
EOF
    if [[ -n "$extra" ]]; then printf '%s\n' "$extra" >>"$dir/sluice.yaml"; fi
}

# start_sluice NAME PORT CONFIG_DIR
start_sluice() {
    local name="$1" port="$2" dir="$3"
    spawn "$name" "$TMP/$name.log" "$SLUICE_BIN" run --config "$dir"
    wait_ready "$name" "$LAST_PID" "http://127.0.0.1:$port$BENCH_PATH" "$TMP/$name.log" ||
        die "$name failed to start (config: $dir/sluice.yaml)"
}

write_nginx_config() {
    local conf="$TMP/nginx.conf" m
    {
        cat <<EOF
worker_processes $WORKERS;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $TMP/nginx-tmp/body;
    proxy_temp_path $TMP/nginx-tmp/proxy;
EOF
        # Temp paths of the optional modules only if this nginx build has them.
        for m in fastcgi uwsgi scgi; do
            if ! "$NGINX_BIN" -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
                printf '    %s_temp_path %s/nginx-tmp/%s;\n' "$m" "$TMP" "$m"
            fi
        done
        cat <<EOF
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location $BENCH_PATH {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$conf"
}

# ---------------------------------------------------------------- targets ----
TARGETS=()     # names, in run order
declare -A TARGET_URL=() TARGET_PID=()

# register_target NAME URL [PID] : PID (the proxy's main process) lets the report
# show CPU time per request, which a noisy shared machine disturbs far less than
# throughput.
register_target() {
    TARGETS+=("$1")
    TARGET_URL["$1"]="$2"
    TARGET_PID["$1"]="${3:-}"
    : >"$TMP/results-$1.tsv"
}

# cpu_ticks PID : user+system clock ticks of PID and its children processes (all
# threads included), e.g. nginx's master and workers.
cpu_ticks() {
    local pid="$1" total=0 p t
    [[ -z "$pid" ]] && { echo 0; return; }
    for p in "$pid" $(pgrep -P "$pid" || true); do
        t="$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)"
        total=$((total + t))
    done
    echo "$total"
}

# sanity NAME URL : the proxy answers 200 with the upstream's body.
sanity() {
    local name="$1" url="$2" code body
    code="$(curl -s -o "$TMP/sanity-$name.body" -w '%{http_code}' --max-time 5 "$url")" || code="curl-failed"
    [[ "$code" == 200 ]] || die "sanity check: $name $url answered $code"
    body="$(cat "$TMP/sanity-$name.body")"
    [[ "$body" == "$UPSTREAM_BODY" ]] ||
        die "sanity check: $name body differs from the upstream's: '$body'"
    log "sanity: $name $url -> 200 ($(wc -c <"$TMP/sanity-$name.body") bytes)"
}

# bench_target NAME URL [ROUND] : one warm-up + one measured wrk run; appends
# "rps p50_ms p99_ms requests non2xx socket_errors" to results-NAME.tsv and
# prints the run's line (plus any non-2xx/socket errors wrk reported).
bench_target() {
    local name="$1" url="$2" round="${3:-0}"
    local out="$TMP/wrk/$name-round$round.txt"
    if [[ "$WARMUP" != 0 && "$WARMUP" != 0s ]]; then
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$url" >"$TMP/wrk/$name-round$round-warmup.txt" 2>&1 ||
            die "wrk warm-up against $name failed: $(cat "$TMP/wrk/$name-round$round-warmup.txt")"
    fi
    local ticks_before ticks_after
    ticks_before="$(cpu_ticks "${TARGET_PID[$name]:-}")"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$out" 2>&1 ||
        die "wrk against $name failed: $(cat "$out")"
    ticks_after="$(cpu_ticks "${TARGET_PID[$name]:-}")"

    local rps p50 p99 reqs non2xx sockerr
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
    p50="$(awk '/Latency Distribution/ { d = 1; next } d && $1 == "50%" { print $2; exit }' "$out")"
    p99="$(awk '/Latency Distribution/ { d = 1; next } d && $1 == "99%" { print $2; exit }' "$out")"
    reqs="$(awk '/requests in/ { print $1; exit }' "$out")"
    [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || die "could not parse wrk output for $name ($out):
$(cat "$out")"
    p50="$(to_ms "$p50")"
    p99="$(to_ms "$p99")"
    non2xx="$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2; exit }' "$out")"
    sockerr="$(grep -m1 'Socket errors' "$out" | sed 's/^ *Socket errors: *//' || true)"
    # CPU microseconds per request (clock ticks are 1/100 s): empty without a pid.
    local cpu_us=""
    if [[ -n "${TARGET_PID[$name]:-}" && "${reqs:-0}" -gt 0 ]]; then
        cpu_us="$(awk -v t=$((ticks_after - ticks_before)) -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { printf "%.1f", t * 1000000 / hz / n }')"
    fi
    printf '%s %s %s %s %s %s %s\n' "$rps" "$p50" "$p99" "${reqs:-0}" "${non2xx:-0}" \
        "$([[ -n "$sockerr" ]] && echo 1 || echo 0)" "${cpu_us:-0}" >>"$TMP/results-$name.tsv"

    printf '  round %s  %-14s %9s req/s  p50 %-9s p99 %-9s cpu %6s us/req (%s requests)\n' \
        "$round" "$name" "$(fmt_rps "$rps")" "$(fmt_ms "$p50")" "$(fmt_ms "$p99")" "${cpu_us:--}" "${reqs:-?}"
    if [[ -n "$non2xx" ]]; then
        printf '    WARNING %s: Non-2xx or 3xx responses: %s\n' "$name" "$non2xx"
        ANOMALIES+=("$name round $round: Non-2xx or 3xx responses: $non2xx")
    fi
    if [[ -n "$sockerr" ]]; then
        printf '    WARNING %s: Socket errors: %s\n' "$name" "$sockerr"
        ANOMALIES+=("$name round $round: Socket errors: $sockerr")
    fi
}
ANOMALIES=()

# ------------------------------------------------------------------- run -----
log "temp dir: $TMP"

log "starting upstream: sluice echo-server on 127.0.0.1:$UPSTREAM_PORT (1 worker)"
spawn upstream "$TMP/upstream.log" "$SLUICE_BIN" echo-server --listen "127.0.0.1:$UPSTREAM_PORT" --workers 1
wait_ready upstream "$LAST_PID" "http://127.0.0.1:$UPSTREAM_PORT$BENCH_PATH" "$TMP/upstream.log" ||
    die "the upstream failed to start"
UPSTREAM_BODY="$(curl -sf --max-time 5 "http://127.0.0.1:$UPSTREAM_PORT$BENCH_PATH")"

log "starting sluice on 127.0.0.1:$SLUICE_PORT ($WORKERS worker(s))"
write_sluice_config "$TMP/sluice-config" "$SLUICE_PORT" "$SLUICE_ADMIN_PORT"
start_sluice sluice "$SLUICE_PORT" "$TMP/sluice-config"
SLUICE_PID="$LAST_PID"

# The cost of the circuit breaker and per-request metrics: the same node with
# both switched off (BARE=0 skips this variant).
if [[ "${BARE:-1}" == 1 ]]; then
    log "starting sluice-bare on 127.0.0.1:$SLUICE_BARE_PORT (breaker and request metrics off)"
    write_sluice_config "$TMP/sluice-bare-config" "$SLUICE_BARE_PORT" "$((SLUICE_ADMIN_PORT + 1))" "" \
        "  request_metrics: false" "    circuit_breaker: { enabled: false }"
    start_sluice sluice-bare "$SLUICE_BARE_PORT" "$TMP/sluice-bare-config"
    SLUICE_BARE_PID="$LAST_PID"
fi

log "starting nginx on 127.0.0.1:$NGINX_PORT ($WORKERS worker(s)), $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')"
write_nginx_config
mkdir -p "$TMP/nginx-tmp"
"$NGINX_BIN" -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" ||
    die "nginx rejected its config: $(cat "$TMP/nginx-error.log")"
spawn nginx "$TMP/nginx.out" "$NGINX_BIN" -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf"
NGINX_PID="$LAST_PID"
wait_ready nginx "$LAST_PID" "http://127.0.0.1:$NGINX_PORT$BENCH_PATH" "$TMP/nginx-error.log" ||
    die "nginx failed to start"

register_target sluice "http://127.0.0.1:$SLUICE_PORT$BENCH_PATH" "$SLUICE_PID"
register_target nginx "http://127.0.0.1:$NGINX_PORT$BENCH_PATH" "$NGINX_PID"
if [[ "${BARE:-1}" == 1 ]]; then
    register_target sluice-bare "http://127.0.0.1:$SLUICE_BARE_PORT$BENCH_PATH" "$SLUICE_BARE_PID"
fi
# Later variants: start them above and register_target them here.

for t in "${TARGETS[@]}"; do sanity "$t" "${TARGET_URL[$t]}"; done

printf '\nSluice vs nginx: %s round(s) x %s per target (warm-up %s), wrk %s threads / %s connections, %s worker(s) each, %s cores\n' \
    "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$CONNECTIONS" "$WORKERS" "$(nproc 2>/dev/null || echo '?')"
for ((r = 1; r <= ROUNDS; r++)); do
    for t in "${TARGETS[@]}"; do bench_target "$t" "${TARGET_URL[$t]}" "$r"; done
done

# ----------------------------------------------------------------- report ----
declare -A MED_RPS=() MED_P50=() MED_P99=() MED_CPU=()
for t in "${TARGETS[@]}"; do
    MED_RPS[$t]="$(awk '{ print $1 }' "$TMP/results-$t.tsv" | median)"
    MED_P50[$t]="$(awk '{ print $2 }' "$TMP/results-$t.tsv" | median)"
    MED_P99[$t]="$(awk '{ print $3 }' "$TMP/results-$t.tsv" | median)"
    MED_CPU[$t]="$(awk '{ print $7 }' "$TMP/results-$t.tsv" | median)"
done

printf '\nMedian of %s round(s):\n' "$ROUNDS"
printf '  %-14s %12s %10s %10s %14s\n' target req/s p50 p99 'cpu us/req'
for t in "${TARGETS[@]}"; do
    printf '  %-14s %12s %10s %10s %14s\n' "$t" "$(fmt_rps "${MED_RPS[$t]}")" \
        "$(fmt_ms "${MED_P50[$t]}")" "$(fmt_ms "${MED_P99[$t]}")" "${MED_CPU[$t]}"
done

printf '\nRatios vs nginx (throughput = X/nginx req/s, higher is better; p99 = X/nginx p99, lower is better):\n'
summary=()
for t in "${TARGETS[@]}"; do
    summary+=("$t: $(fmt_rps "${MED_RPS[$t]}") req/s p50 $(fmt_ms "${MED_P50[$t]}") p99 $(fmt_ms "${MED_P99[$t]}")")
done
for t in "${TARGETS[@]}"; do
    [[ "$t" == nginx ]] && continue
    tr="$(ratio "${MED_RPS[$t]}" "${MED_RPS[nginx]}")"
    pr="$(ratio "${MED_P99[$t]}" "${MED_P99[nginx]}")"
    printf '  %-14s throughput %s, p99 %s\n' "$t" "$tr" "$pr"
    if [[ "$t" == sluice ]]; then
        summary+=("ratio throughput $tr, p99 $pr, cpu/req $(ratio "${MED_CPU[$t]}" "${MED_CPU[nginx]}")")
    else
        summary+=("$t/nginx throughput $tr, p99 $pr")
    fi
done

if [[ -n "${MED_RPS[sluice-bare]:-}" ]]; then
    cost="$(awk -v a="${MED_RPS[sluice]}" -v b="${MED_RPS[sluice-bare]}" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.1f", (1 - a / b) * 100 }')"
    cpu_cost="$(awk -v a="${MED_CPU[sluice]}" -v b="${MED_CPU[sluice-bare]}" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.1f", (a / b - 1) * 100 }')"
    printf '\nCircuit breaker + request metrics cost: %s%% throughput, %s%% CPU per request (sluice vs sluice-bare; target < 2%%)\n' "$cost" "$cpu_cost"
    summary+=("breaker+metrics cost ${cost}% throughput, ${cpu_cost}% cpu/req")
fi

if ((${#ANOMALIES[@]} > 0)); then
    printf '\nWARNING: wrk reported errors (see above; raw output in %s/wrk, set KEEP_TMP=1 to keep it):\n' "$TMP"
    printf '  %s\n' "${ANOMALIES[@]}"
fi

summary_line="$(
    IFS='|'
    printf '%s' "${summary[*]}"
)"
summary_line="${summary_line//|/ | }"
if ((${#ANOMALIES[@]} > 0)); then summary_line+=" | WARNING: wrk reported non-2xx/socket errors"; fi
printf '\nSummary: %s\n' "$summary_line"
