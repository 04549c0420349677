#!/usr/bin/env bash
# Benchmark: Sluice vs nginx vs a bare forwarder, all proxying the same upstream.
# The default run is issue 12's acceptance run.
#
# What it does:
#   1. installs wrk and nginx from Debian if they are missing (needs root),
#   2. builds sluice and the bare forwarder (chaos-tests/examples/bare_forwarder.rs)
#      in release (honours CARGO_TARGET_DIR, else ./target),
#   3. starts ONE upstream: nginx answering `return 200` itself (its own instance,
#      1 worker, access log off),
#   4. starts in front of it, each with WORKERS (1) worker(s) and keeping upstream
#      connections alive:
#        sluice          circuit breaker and request metrics on, log level warn
#        nginx           proxy_pass to an upstream block with keepalive
#        sluice-bare     breaker and request metrics off (BARE=1)
#        bare-forwarder  an actix-web handler forwarding with hyper 1.x's pooled
#                        client, nothing else: the floor (FORWARDER=1)
#        direct          the upstream itself, no proxy (DIRECT=1; off by default)
#   5. runs `wrk -t1 -c64 --latency` for 5 s against each, alternating targets (the
#      order rotates each round) for ROUNDS (5) rounds, a 1 s warm-up before each,
#   6. prints req/s, p50, p99 and CPU time per request per target (median across
#      rounds), the ratios vs nginx and vs the bare forwarder, and a summary line
#      with issue 12's targets: sluice >= 1.0x bare-forwarder req/s, >= 0.85x
#      nginx req/s, p99 <= 1.3x nginx's.
# Everything listens on 127.0.0.1; configs and logs live in a temp dir; every
# process the script started is stopped on exit (not the system nginx service).
#
# Authentication (AUTH=1; off by default): the same route is also measured with
# `auth: jwt` and `auth: api_key`, against `auth: none`, in the same rounds:
#   - auth-jwt     its own Sluice instance, route `auth: jwt`; AUTH_TOKENS distinct
#                  RS256 tokens (own sub and jti, exp an hour or more ahead) signed
#                  by a key pair made with openssl, `Authorization: Bearer`;
#   - auth-apikey  its own Sluice instance, route `auth: api_key`; AUTH_KEYS keys of
#                  one client created through its admin API, `X-API-Key`;
#   - auth-jwt-cold  auth-jwt's instance sent AUTH_COLD_TOKENS other tokens: more
#                  than the node's per-worker cache of verified tokens (20,000 per
#                  worker thread, cleared when full) holds, walked round-robin, so
#                  every request pays for an RS256 verification: the figure without
#                  the cache (auth-jwt, whose tokens all fit, is the one with it);
#   - none-tokens, none-keys   the `auth: none` baselines: the `sluice` instance
#                  sent exactly auth-jwt's, resp. auth-apikey's requests (a 640-byte
#                  token costs measurably more to receive than a 67-byte key, so
#                  each variant is compared with the same bytes, unchecked).
# Each wrk thread walks the credentials round-robin from its own offset
# (scripts/bench-auth.lua; every request is formatted once, in init), so the load
# is spread over all of them, not one replayed token. The three instances have
# the same config except the route's `auth` word: separate instances rather than
# three routes on one, so that every variant requests the same path and reaches
# the upstream with the same request line. Before measuring, the auth
# routes must answer 200 to a sample of the credentials and 401 to a missing or a
# bad one, and the `auth: none` route 200 to a bad one. The report adds jwt/none
# and api_key/none ratios of req/s, p99 and CPU per request (target: throughput
# >= 0.9; on a shared machine CPU per request is the steadier figure). Needs
# python3 with PyJWT and cryptography (installed with pip, else apt, unless
# SKIP_INSTALL=1) and openssl.
#
# Environment (defaults in brackets):
#   BARE [1]             also measure sluice-bare (breaker + request metrics off)
#   FORWARDER [1]        also measure bare-forwarder (the floor to compare with)
#   DIRECT [0]           also measure the upstream itself, no proxy in between
#   WORKERS [1]          worker threads/processes for each proxy (the upstream: 1)
#   ROUNDS [5]           measured runs per target, alternating targets
#   DURATION [5s]        length of each measured wrk run
#   WARMUP [1s]          wrk warm-up before each measured run ("0" = none)
#   CONNECTIONS [64]     wrk connections
#   THREADS [1]          wrk threads
#   UPSTREAM_PORT [18091], SLUICE_PORT [18080], SLUICE_BARE_PORT [18082], NGINX_PORT [18081],
#   FORWARDER_PORT [18085], SLUICE_ADMIN_PORT [18092]
#   BENCH_PATH [/hello]  path requested through both proxies
#   NGINX_FORWARD_HEADERS [0]  1: nginx also sends X-Request-ID and X-Forwarded-For/
#                        -Proto/-Host upstream, as Sluice does by design (see
#                        scripts/bench-nginx.sh); 0 is issue 12's plain proxy_pass
#   AUTH [0]             also measure auth-jwt, auth-apikey and their `auth: none`
#                        baselines none-tokens and none-keys (0 = skip)
#   AUTH_TOKENS [10000], AUTH_KEYS [10000]   distinct JWTs / API keys in the load
#   AUTH_COLD_TOKENS [50000 x WORKERS]       auth-jwt-cold's tokens (0 = skip it)
#   AUTH_KEY_JOBS [16]   API keys created in parallel through the admin API
#   AUTH_STRICT [1]      0 = only warn (instead of stopping) when an auth route lets
#                        a request without a valid credential through, e.g. to try
#                        the script on a build that does not enforce auth
#   SLUICE_JWT_PORT [18083], SLUICE_APIKEY_PORT [18084]   (their admin ports are
#                        SLUICE_ADMIN_PORT+2 and +3; sluice-bare's is +1)
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
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-1}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18091}"
SLUICE_PORT="${SLUICE_PORT:-18080}"
SLUICE_BARE_PORT="${SLUICE_BARE_PORT:-18082}"
NGINX_PORT="${NGINX_PORT:-18081}"
FORWARDER_PORT="${FORWARDER_PORT:-18085}"
SLUICE_ADMIN_PORT="${SLUICE_ADMIN_PORT:-18092}"
SLUICE_JWT_PORT="${SLUICE_JWT_PORT:-18083}"
SLUICE_APIKEY_PORT="${SLUICE_APIKEY_PORT:-18084}"
BENCH_PATH="${BENCH_PATH:-/hello}"
BARE="${BARE:-1}"
FORWARDER="${FORWARDER:-1}"
DIRECT="${DIRECT:-0}"
AUTH="${AUTH:-0}"
AUTH_TOKENS="${AUTH_TOKENS:-10000}"
AUTH_KEYS="${AUTH_KEYS:-10000}"
AUTH_KEY_JOBS="${AUTH_KEY_JOBS:-16}"
AUTH_COLD_TOKENS="${AUTH_COLD_TOKENS:-$((50000 * WORKERS))}"
AUTH_STRICT="${AUTH_STRICT:-1}"
KEEP_TMP="${KEEP_TMP:-0}"
SKIP_INSTALL="${SKIP_INSTALL:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
START_DEADLINE=30 # seconds to wait for each server to answer

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
AUTH_PY="$ROOT/scripts/bench-auth.py"
AUTH_LUA="$ROOT/scripts/bench-auth.lua"
# shellcheck source=scripts/bench-nginx.sh
source "$ROOT/scripts/bench-nginx.sh"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

for v in AUTH_TOKENS AUTH_KEYS AUTH_KEY_JOBS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, got '${!v}'"
done
[[ "$AUTH_COLD_TOKENS" =~ ^[0-9]+$ ]] || die "AUTH_COLD_TOKENS must be a number, got '$AUTH_COLD_TOKENS'"

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
    local f
    for f in "$TMP/nginx/nginx.pid" "$TMP/upstream/nginx.pid"; do
        if [[ -n "$TMP" && -s "$f" ]]; then
            pid="$(cat "$f")"
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        fi
    done
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

# The auth variants sign their tokens with PyJWT + cryptography: pip first (the
# python3 on PATH may not be Debian's), else Debian's packages.
have_jwt_libs() { python3 -c 'import jwt, cryptography' 2>/dev/null; }
if [[ "$AUTH" == 1 ]]; then
    command -v python3 >/dev/null || die "python3 not found (AUTH=0 skips the auth variants)"
    command -v openssl >/dev/null || die "openssl not found (AUTH=0 skips the auth variants)"
    if [[ "$SKIP_INSTALL" != 1 ]] && ! have_jwt_libs; then
        log "installing PyJWT and cryptography (pip, else apt-get)"
        python3 -m pip install --quiet --disable-pip-version-check pyjwt cryptography >/dev/null 2>&1 ||
            python3 -m pip install --quiet --disable-pip-version-check --user pyjwt cryptography >/dev/null 2>&1 ||
            {
                export DEBIAN_FRONTEND=noninteractive
                "${SUDO[@]}" apt-get install -y -qq python3-jwt python3-cryptography >/dev/null
            } || true
    fi
    have_jwt_libs || die "python3 cannot import jwt and cryptography (pip install pyjwt cryptography; AUTH=0 skips the auth variants)"
fi

# ------------------------------------------------------------------ build ----
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
SLUICE_BIN="$TARGET_DIR/release/sluice"
FORWARDER_BIN="$TARGET_DIR/release/examples/bare_forwarder"
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building sluice (release) into $TARGET_DIR"
    CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p sluice
    if [[ "$FORWARDER" == 1 ]]; then
        log "building the bare forwarder (release)"
        CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p chaos-tests --examples
    fi
fi
[[ -x "$SLUICE_BIN" ]] || die "$SLUICE_BIN not found (build failed?)"
[[ "$FORWARDER" != 1 || -x "$FORWARDER_BIN" ]] || die "$FORWARDER_BIN not found (build failed?)"

# ------------------------------------------------------------------ setup ----
PORTS=("$UPSTREAM_PORT" "$SLUICE_PORT" "$NGINX_PORT" "$SLUICE_ADMIN_PORT")
[[ "$BARE" == 1 ]] && PORTS+=("$SLUICE_BARE_PORT" "$((SLUICE_ADMIN_PORT + 1))")
[[ "$FORWARDER" == 1 ]] && PORTS+=("$FORWARDER_PORT")
[[ "$AUTH" == 1 ]] && PORTS+=("$SLUICE_JWT_PORT" "$((SLUICE_ADMIN_PORT + 2))" "$SLUICE_APIKEY_PORT" "$((SLUICE_ADMIN_PORT + 3))")
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

# start_sluice NAME PORT CONFIG_DIR [READY_PATH] : READY_PATH (default BENCH_PATH)
# must answer 2xx; routes that need a credential are checked on /ready instead.
# The admin token (configs with an `admin:` section) comes from the environment,
# not from the command line.
start_sluice() {
    local name="$1" port="$2" dir="$3" ready_path="${4:-$BENCH_PATH}"
    SLUICE_ADMIN_TOKEN="$ADMIN_TOKEN" spawn "$name" "$TMP/$name.log" "$SLUICE_BIN" run --config "$dir"
    wait_ready "$name" "$LAST_PID" "http://127.0.0.1:$port$ready_path" "$TMP/$name.log" ||
        die "$name failed to start (config: $dir/sluice.yaml)"
}
ADMIN_TOKEN="" # set by the auth setup

# ---------------------------------------------------------------- targets ----
TARGETS=()     # names, in run order
declare -A TARGET_URL=() TARGET_PID=() TARGET_CRED_FILE=() TARGET_CRED_HEADER=() TARGET_CRED_PREFIX=()

# register_target NAME URL [PID [CRED_FILE CRED_HEADER [CRED_PREFIX]]] : PID (the
# proxy's main process) lets the report show CPU time per request, which a noisy
# shared machine disturbs far less than throughput. With CRED_FILE, wrk runs
# scripts/bench-auth.lua: each request sends `CRED_HEADER: CRED_PREFIX<line>` with
# the next line of CRED_FILE.
register_target() {
    TARGETS+=("$1")
    TARGET_URL["$1"]="$2"
    TARGET_PID["$1"]="${3:-}"
    TARGET_CRED_FILE["$1"]="${4:-}"
    TARGET_CRED_HEADER["$1"]="${5:-}"
    TARGET_CRED_PREFIX["$1"]="${6:-}"
    : >"$TMP/results-$1.tsv"
}

# wrk_run NAME URL DURATION OUT [--latency] : one wrk run against NAME, with its
# credential script if it has one.
wrk_run() {
    local name="$1" url="$2" duration="$3" out="$4"
    shift 4
    local script=() script_args=()
    if [[ -n "${TARGET_CRED_FILE[$name]:-}" ]]; then
        script=(-s "$AUTH_LUA")
        script_args=(-- "${TARGET_CRED_FILE[$name]}" "${TARGET_CRED_HEADER[$name]}"
            "${TARGET_CRED_PREFIX[$name]}" "$THREADS")
    fi
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" "$@" "${script[@]}" "$url" "${script_args[@]}" >"$out" 2>&1
}

# target_get NAME URL BODY_FILE [CREDENTIAL] : the status of one GET to URL (body
# into BODY_FILE), with `CRED_HEADER: CREDENTIAL` of NAME when CREDENTIAL is given
# (the header reaches curl on stdin, never on its command line).
target_get() {
    local name="$1" url="$2" body="$3" cred="${4:-}" cfg="" code
    if [[ -n "$cred" ]]; then cfg="header = \"${TARGET_CRED_HEADER[$name]}: $cred\""; fi
    code="$(curl -s -o "$body" -w '%{http_code}' --max-time 5 -K - "$url" <<<"$cfg")" || code="curl-failed"
    echo "$code"
}

# sanity NAME URL : the proxy answers 200 with the upstream's body (to a request
# with NAME's first credential, if it has any).
sanity() {
    local name="$1" url="$2" code body cred=""
    if [[ -n "${TARGET_CRED_FILE[$name]:-}" ]]; then
        cred="${TARGET_CRED_PREFIX[$name]}$(head -n 1 "${TARGET_CRED_FILE[$name]}")"
    fi
    code="$(target_get "$name" "$url" "$TMP/sanity-$name.body" "$cred")"
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
        wrk_run "$name" "$url" "$WARMUP" "$TMP/wrk/$name-round$round-warmup.txt" ||
            die "wrk warm-up against $name failed: $(cat "$TMP/wrk/$name-round$round-warmup.txt")"
    fi
    local ticks_before ticks_after
    ticks_before="$(cpu_ticks "${TARGET_PID[$name]:-}")"
    wrk_run "$name" "$url" "$DURATION" "$out" --latency ||
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

# seconds_of DURATION : whole seconds of a wrk duration (10s, 2m, 1h, 30).
seconds_of() {
    awk -v v="$1" 'BEGIN {
        if (!match(v, /^[0-9.]+/)) { print 0; exit }
        n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
        f = (u == "m") ? 60 : (u == "h") ? 3600 : 1
        printf "%d\n", n * f + 0.999 }'
}

# expect_refused NAME URL WHAT [CREDENTIAL] : NAME must answer 401 to a request
# with CREDENTIAL (none when empty). AUTH_STRICT=0 turns a failure into a warning.
AUTH_WARNINGS=()
expect_refused() {
    local name="$1" url="$2" what="$3" cred="${4:-}" code
    code="$(target_get "$name" "$url" "$TMP/refused-$name.body" "$cred")"
    if [[ "$code" == 401 ]]; then
        log "auth: $name refuses $what (401)"
        return 0
    fi
    auth_problem "$name answered $code to $what (expected 401): this build does not enforce the route's auth"
}

# expect_ignored NAME WHAT CREDENTIAL : the `auth: none` route must answer 200 to
# a bad credential (it checks nothing).
expect_ignored() {
    local name="$1" what="$2" cred="$3" code
    code="$(target_get "$name" "${TARGET_URL[$name]}" "$TMP/ignored-$name.body" "$cred")"
    if [[ "$code" == 200 ]]; then
        log "auth: the auth: none route ignores $what (200)"
        return 0
    fi
    auth_problem "the auth: none route answered $code to $what (expected 200): the $name baseline checks credentials"
}

# auth_problem MESSAGE : stop (AUTH_STRICT=1), else warn in the report.
auth_problem() {
    [[ "$AUTH_STRICT" == 1 ]] && die "$1 (AUTH_STRICT=0 measures it anyway, AUTH=0 skips the auth variants)"
    printf '    WARNING %s\n' "$1" >&2
    AUTH_WARNINGS+=("$1")
}

# check_credentials NAME : a sample of NAME's credentials (and the first and the
# last) must all be let through with 200.
check_credentials() {
    local name="$1"
    python3 "$AUTH_PY" check --url "${TARGET_URL[$name]}" --file "${TARGET_CRED_FILE[$name]}" \
        --header "${TARGET_CRED_HEADER[$name]}" --prefix "${TARGET_CRED_PREFIX[$name]}" --sample 200 ||
        die "$name does not accept its credentials"
}

# ------------------------------------------------------------------- run -----
log "temp dir: $TMP"

# The auth material comes first: every Sluice config of the auth comparison
# carries the same `admin` and `auth` sections, so the instances differ only in
# their route's `auth` word.
AUTH_YAML=""
if [[ "$AUTH" == 1 ]]; then
    AUTH_DIR="$TMP/auth" # private key, tokens, API keys: 0700
    mkdir -m 700 "$AUTH_DIR"
    ADMIN_TOKEN="$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$AUTH_DIR/bench-rsa.pem" 2>/dev/null ||
        die "openssl genpkey failed"
    openssl pkey -in "$AUTH_DIR/bench-rsa.pem" -pubout -out "$TMP/bench-rsa.pub.pem" 2>/dev/null ||
        die "openssl pkey -pubout failed"
    AUTH_ISSUER="https://bench.sluice.invalid"
    AUTH_AUDIENCE="sluice-bench"
    AUTH_YAML="admin:
  token: \"\${SLUICE_ADMIN_TOKEN}\"
auth:
  jwt:
    issuer: $AUTH_ISSUER
    audience: $AUTH_AUDIENCE
    keys:
      - { kid: bench-rsa, alg: RS256, public_key_file: bench-rsa.pub.pem }"
    # Tokens must outlive the run: an hour, or the whole run plus ten minutes.
    n_targets=$((6 + BARE + FORWARDER + DIRECT))
    ((AUTH_COLD_TOKENS > 0)) && n_targets=$((n_targets + 1))
    run_seconds=$((ROUNDS * n_targets * ($(seconds_of "$DURATION") + $(seconds_of "$WARMUP")) + 600))
    TOKEN_TTL=$((run_seconds > 3600 ? run_seconds : 3600))
    TOKENS_FILE="$AUTH_DIR/tokens.txt"
    COLD_TOKENS_FILE="$AUTH_DIR/tokens-cold.txt"
    KEYS_FILE="$AUTH_DIR/api-keys.txt"
    # sign_tokens NAME COUNT FILE : in the background; waited for before the run.
    SIGNERS=()
    sign_tokens() {
        spawn "$1" "$TMP/$1.log" python3 "$AUTH_PY" tokens \
            --private-key "$AUTH_DIR/bench-rsa.pem" --kid bench-rsa --issuer "$AUTH_ISSUER" \
            --audience "$AUTH_AUDIENCE" --count "$2" --ttl "$TOKEN_TTL" --out "$3"
        SIGNERS+=("$1:$LAST_PID")
    }
    log "signing $AUTH_TOKENS (+ $AUTH_COLD_TOKENS for auth-jwt-cold) RS256 tokens in the background (valid ${TOKEN_TTL}s)"
    sign_tokens token-signer "$AUTH_TOKENS" "$TOKENS_FILE"
    if ((AUTH_COLD_TOKENS > 0)); then sign_tokens cold-token-signer "$AUTH_COLD_TOKENS" "$COLD_TOKENS_FILE"; fi
fi

# write_sluice_config plus, with AUTH=1, the auth sections and the public key.
write_auth_config() {
    local dir="$1" port="$2" admin_port="$3" route_auth="$4"
    write_sluice_config "$dir" "$port" "$admin_port" "$AUTH_YAML" "" "" "$route_auth"
    if [[ "$AUTH" == 1 ]]; then cp "$TMP/bench-rsa.pub.pem" "$dir/"; fi
}

# start_nginx NAME PREFIX PORT : an nginx instance with PREFIX/nginx.conf.
start_nginx() {
    local name="$1" prefix="$2" port="$3"
    "$NGINX_BIN" -t -q -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" ||
        die "$name: nginx rejected its config: $(cat "$prefix/error.log")"
    spawn "$name" "$prefix/nginx.out" "$NGINX_BIN" -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf"
    wait_ready "$name" "$LAST_PID" "http://127.0.0.1:$port$BENCH_PATH" "$prefix/error.log" ||
        die "$name (nginx) failed to start"
}

log "starting upstream: nginx return 200 on 127.0.0.1:$UPSTREAM_PORT (1 worker), $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')"
write_nginx_upstream_conf "$TMP/upstream" "$UPSTREAM_PORT"
start_nginx upstream "$TMP/upstream" "$UPSTREAM_PORT"
UPSTREAM_PID="$LAST_PID"
UPSTREAM_BODY="$(curl -sf --max-time 5 "http://127.0.0.1:$UPSTREAM_PORT$BENCH_PATH")"

log "starting sluice on 127.0.0.1:$SLUICE_PORT ($WORKERS worker(s))"
write_auth_config "$TMP/sluice-config" "$SLUICE_PORT" "$SLUICE_ADMIN_PORT" none
start_sluice sluice "$SLUICE_PORT" "$TMP/sluice-config"
SLUICE_PID="$LAST_PID"

# The cost of the circuit breaker and per-request metrics: the same node with
# both switched off (BARE=0 skips this variant).
if [[ "$BARE" == 1 ]]; then
    log "starting sluice-bare on 127.0.0.1:$SLUICE_BARE_PORT (breaker and request metrics off)"
    write_sluice_config "$TMP/sluice-bare-config" "$SLUICE_BARE_PORT" "$((SLUICE_ADMIN_PORT + 1))" "" \
        "  request_metrics: false" "    circuit_breaker: { enabled: false }"
    start_sluice sluice-bare "$SLUICE_BARE_PORT" "$TMP/sluice-bare-config"
    SLUICE_BARE_PID="$LAST_PID"
fi

# The cost of authentication: the same route with `auth: jwt` and `auth: api_key`
# (AUTH=0 skips them); the `auth: none` baselines run on the `sluice` instance above.
if [[ "$AUTH" == 1 ]]; then
    log "starting sluice-jwt on 127.0.0.1:$SLUICE_JWT_PORT (route auth: jwt)"
    write_auth_config "$TMP/sluice-jwt-config" "$SLUICE_JWT_PORT" "$((SLUICE_ADMIN_PORT + 2))" jwt
    start_sluice sluice-jwt "$SLUICE_JWT_PORT" "$TMP/sluice-jwt-config" /ready
    SLUICE_JWT_PID="$LAST_PID"
    log "starting sluice-apikey on 127.0.0.1:$SLUICE_APIKEY_PORT (route auth: api_key)"
    write_auth_config "$TMP/sluice-apikey-config" "$SLUICE_APIKEY_PORT" "$((SLUICE_ADMIN_PORT + 3))" api_key
    start_sluice sluice-apikey "$SLUICE_APIKEY_PORT" "$TMP/sluice-apikey-config" /ready
    SLUICE_APIKEY_PID="$LAST_PID"

    log "creating $AUTH_KEYS API keys through sluice-apikey's admin API ($AUTH_KEY_JOBS in parallel)"
    SLUICE_ADMIN_TOKEN="$ADMIN_TOKEN" python3 "$AUTH_PY" keys --admin "http://127.0.0.1:$((SLUICE_ADMIN_PORT + 3))" \
        --count "$AUTH_KEYS" --concurrency "$AUTH_KEY_JOBS" --out "$KEYS_FILE" ||
        die "creating API keys failed (sluice-apikey's log: $TMP/sluice-apikey.log)"
    for signer in "${SIGNERS[@]}"; do
        wait "${signer#*:}" || die "signing tokens failed: $(tail -n 20 "$TMP/${signer%%:*}.log")"
        cat "$TMP/${signer%%:*}.log" >&2
    done
fi

log "starting nginx on 127.0.0.1:$NGINX_PORT ($WORKERS worker(s), upstream keepalive)"
write_nginx_proxy_conf "$TMP/nginx" "$NGINX_PORT" "$UPSTREAM_PORT" "$WORKERS" on "${NGINX_FORWARD_HEADERS:-0}"
start_nginx nginx "$TMP/nginx" "$NGINX_PORT"
NGINX_PID="$LAST_PID"

if [[ "$FORWARDER" == 1 ]]; then
    log "starting bare-forwarder on 127.0.0.1:$FORWARDER_PORT ($WORKERS worker(s), hyper-util pooled client)"
    spawn bare-forwarder "$TMP/bare-forwarder.log" "$FORWARDER_BIN" "127.0.0.1:$FORWARDER_PORT" \
        "http://127.0.0.1:$UPSTREAM_PORT" "$WORKERS"
    FORWARDER_PID="$LAST_PID"
    wait_ready bare-forwarder "$LAST_PID" "http://127.0.0.1:$FORWARDER_PORT$BENCH_PATH" "$TMP/bare-forwarder.log" ||
        die "the bare forwarder failed to start"
fi

register_target sluice "http://127.0.0.1:$SLUICE_PORT$BENCH_PATH" "$SLUICE_PID"
register_target nginx "http://127.0.0.1:$NGINX_PORT$BENCH_PATH" "$NGINX_PID"
if [[ "$BARE" == 1 ]]; then
    register_target sluice-bare "http://127.0.0.1:$SLUICE_BARE_PORT$BENCH_PATH" "$SLUICE_BARE_PID"
fi
if [[ "$FORWARDER" == 1 ]]; then
    register_target bare-forwarder "http://127.0.0.1:$FORWARDER_PORT$BENCH_PATH" "$FORWARDER_PID"
fi
if [[ "$DIRECT" == 1 ]]; then
    register_target direct "http://127.0.0.1:$UPSTREAM_PORT$BENCH_PATH" "$UPSTREAM_PID"
fi
if [[ "$AUTH" == 1 ]]; then
    # Each variant right after its baseline: the same requests to `auth: none`.
    register_target none-tokens "http://127.0.0.1:$SLUICE_PORT$BENCH_PATH" "$SLUICE_PID" \
        "$TOKENS_FILE" Authorization "Bearer "
    register_target auth-jwt "http://127.0.0.1:$SLUICE_JWT_PORT$BENCH_PATH" "$SLUICE_JWT_PID" \
        "$TOKENS_FILE" Authorization "Bearer "
    if ((AUTH_COLD_TOKENS > 0)); then
        register_target auth-jwt-cold "http://127.0.0.1:$SLUICE_JWT_PORT$BENCH_PATH" "$SLUICE_JWT_PID" \
            "$COLD_TOKENS_FILE" Authorization "Bearer "
    fi
    register_target none-keys "http://127.0.0.1:$SLUICE_PORT$BENCH_PATH" "$SLUICE_PID" \
        "$KEYS_FILE" X-API-Key ""
    register_target auth-apikey "http://127.0.0.1:$SLUICE_APIKEY_PORT$BENCH_PATH" "$SLUICE_APIKEY_PID" \
        "$KEYS_FILE" X-API-Key ""
fi
# Later variants: start them above and register_target them here.

for t in "${TARGETS[@]}"; do sanity "$t" "${TARGET_URL[$t]}"; done
if [[ "$AUTH" == 1 ]]; then
    check_credentials auth-jwt
    if ((AUTH_COLD_TOKENS > 0)); then check_credentials auth-jwt-cold; fi
    check_credentials auth-apikey
    # A well-formed token whose signature belongs to another token, and a key
    # nobody issued.
    first_token="$(sed -n 1p "$TOKENS_FILE")"
    other_token="$(sed -n 2p "$TOKENS_FILE")"
    forged_token="${first_token%.*}.${other_token##*.}"
    unknown_key="sk_$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    expect_refused auth-jwt "${TARGET_URL[auth-jwt]}" "no credential"
    expect_refused auth-jwt "${TARGET_URL[auth-jwt]}" "a token with another token's signature" "Bearer $forged_token"
    expect_refused auth-jwt "${TARGET_URL[auth-jwt]}" "an API key instead of a token" "Bearer $(sed -n 1p "$KEYS_FILE")"
    expect_refused auth-apikey "${TARGET_URL[auth-apikey]}" "no credential"
    expect_refused auth-apikey "${TARGET_URL[auth-apikey]}" "an unknown API key" "$unknown_key"
    # The baselines must not check what they are sent, or they would measure it.
    expect_ignored none-tokens "a token with another token's signature" "Bearer $forged_token"
    expect_ignored none-keys "an unknown API key" "$unknown_key"
fi

printf '\nSluice vs nginx: %s round(s) x %s per target (warm-up %s), wrk %s thread(s) / %s connections, %s worker(s) each,\n' \
    "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$CONNECTIONS" "$WORKERS"
printf 'upstream nginx return 200 (1 worker), %s cores, %s\n' "$(nproc 2>/dev/null || echo '?')" "$(date -u '+%Y-%m-%d %H:%M UTC')"
if [[ "$AUTH" == 1 ]]; then
    printf 'auth-*, none-*: the same route with auth jwt / api_key / none, load spread round-robin over %s RS256 tokens\n' "$AUTH_TOKENS"
    printf '(auth-jwt-cold: %s) / %s API keys\n' "$AUTH_COLD_TOKENS" "$AUTH_KEYS"
fi
# The order rotates each round, so no target always runs right after the same one.
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
        t="${TARGETS[$(((i + r - 1) % ${#TARGETS[@]}))]}"
        bench_target "$t" "${TARGET_URL[$t]}" "$r"
    done
done

# ----------------------------------------------------------------- report ----
declare -A MED_RPS=() MED_P50=() MED_P99=() MED_CPU=()
for t in "${TARGETS[@]}"; do
    MED_RPS[$t]="$(awk '{ print $1 }' "$TMP/results-$t.tsv" | median %.3f)"
    MED_P50[$t]="$(awk '{ print $2 }' "$TMP/results-$t.tsv" | median %.3f)"
    MED_P99[$t]="$(awk '{ print $3 }' "$TMP/results-$t.tsv" | median %.3f)"
    MED_CPU[$t]="$(awk '{ print $7 }' "$TMP/results-$t.tsv" | median %.3f)"
done

printf '\nMedian of %s round(s):\n' "$ROUNDS"
printf '  %-14s %12s %18s %10s %10s %14s\n' target req/s 'req/s min-max' p50 p99 'cpu us/req'
for t in "${TARGETS[@]}"; do
    range="$(awk 'NR == 1 || $1 < lo { lo = $1 } NR == 1 || $1 > hi { hi = $1 } END { printf "%.0f-%.0f", lo, hi }' "$TMP/results-$t.tsv")"
    printf '  %-14s %12s %18s %10s %10s %14s\n' "$t" "$(fmt_rps "${MED_RPS[$t]}")" "$range" \
        "$(fmt_ms "${MED_P50[$t]}")" "$(fmt_ms "${MED_P99[$t]}")" "${MED_CPU[$t]}"
done

# paired_ratio A B : the median over rounds of A's req/s / B's req/s in the same
# round; steadier than the ratio of medians when the machine's speed drifts.
paired_ratio() {
    paste -d' ' <(awk '{ print $1 }' "$TMP/results-$1.tsv") <(awk '{ print $1 }' "$TMP/results-$2.tsv") |
        awk '$2 > 0 { printf "%.4f\n", $1 / $2 }' | median %.3f | awk '{ printf "%.2f\n", $1 }'
}
have() { [[ -n "${MED_RPS[$1]:-}" ]]; }

printf '\nRatios (req/s = X/Y req/s, higher is better; p99 = X/Y p99 and cpu = X/Y cpu per request, lower is better;\n'
printf 'paired = median over rounds of the same round'"'"'s req/s ratio):\n'
summary=()
for t in "${TARGETS[@]}"; do
    summary+=("$t: $(fmt_rps "${MED_RPS[$t]}") req/s p50 $(fmt_ms "${MED_P50[$t]}") p99 $(fmt_ms "${MED_P99[$t]}")")
done
for base in nginx bare-forwarder; do
    have "$base" || continue
    for t in "${TARGETS[@]}"; do
        # auth-* and none-* runs send a credential per request through wrk's Lua:
        # they are compared with each other below, not with the proxies.
        [[ "$t" == "$base" || "$t" == auth-* || "$t" == none-* ]] && continue
        [[ "$base" == bare-forwarder && "$t" == nginx ]] && continue
        printf '  %-14s vs %-14s req/s %s (paired %s), p99 %s, cpu %s\n' "$t" "$base" \
            "$(ratio "${MED_RPS[$t]}" "${MED_RPS[$base]}")" "$(paired_ratio "$t" "$base")" \
            "$(ratio "${MED_P99[$t]}" "${MED_P99[$base]}")" "$(ratio "${MED_CPU[$t]}" "${MED_CPU[$base]}")"
    done
done

# Issue 12's acceptance targets, on this run.
verdict() { awk -v v="$1" -v op="$2" -v lim="$3" 'BEGIN {
    ok = (op == ">=") ? (v + 0 >= lim) : (v + 0 <= lim); printf "%s %s %s %s", v, op, lim, ok ? "ok" : "MISSED" }'; }
acceptance=()
if have bare-forwarder; then
    acceptance+=("sluice/bare-forwarder req/s $(verdict "$(ratio "${MED_RPS[sluice]}" "${MED_RPS[bare-forwarder]}")" ">=" 1.0)")
fi
acceptance+=("sluice/nginx req/s $(verdict "$(ratio "${MED_RPS[sluice]}" "${MED_RPS[nginx]}")" ">=" 0.85)")
acceptance+=("sluice/nginx p99 $(verdict "$(ratio "${MED_P99[sluice]}" "${MED_P99[nginx]}")" "<=" 1.3)")
acceptance_line="$(
    IFS=';'
    printf '%s' "${acceptance[*]}"
)"
acceptance_line="${acceptance_line//;/; }"
printf '\nTargets (issue 12): %s\n' "$acceptance_line"
summary+=("targets: $acceptance_line")

if [[ -n "${MED_RPS[sluice-bare]:-}" ]]; then
    cost="$(awk -v a="${MED_RPS[sluice]}" -v b="${MED_RPS[sluice-bare]}" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.1f", (1 - a / b) * 100 }')"
    cpu_cost="$(awk -v a="${MED_CPU[sluice]}" -v b="${MED_CPU[sluice-bare]}" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.1f", (a / b - 1) * 100 }')"
    printf '\nCircuit breaker + request metrics cost: %s%% throughput, %s%% CPU per request (sluice vs sluice-bare; target < 2%%)\n' "$cost" "$cpu_cost"
    summary+=("breaker+metrics cost ${cost}% throughput, ${cpu_cost}% cpu/req")
fi

if [[ "$AUTH" == 1 ]]; then
    printf '\nAuthentication cost, each vs the same requests to the same route with auth: none (jwt: auth-jwt/none-tokens,\n'
    printf 'jwt uncached: auth-jwt-cold/none-tokens, api_key: auth-apikey/none-keys):\n'
    printf 'throughput = X/none req/s (target >= 0.9), p99 and cpu/req = X/none (lower is better)\n'
    triples=("jwt:auth-jwt:none-tokens")
    if [[ -n "${MED_RPS[auth-jwt-cold]:-}" ]]; then triples+=("jwt uncached:auth-jwt-cold:none-tokens"); fi
    triples+=("api_key:auth-apikey:none-keys")
    for triple in "${triples[@]}"; do
        IFS=: read -r label t base <<<"$triple"
        tr="$(ratio "${MED_RPS[$t]}" "${MED_RPS[$base]}")"
        pr="$(ratio "${MED_P99[$t]}" "${MED_P99[$base]}")"
        cr="$(ratio "${MED_CPU[$t]}" "${MED_CPU[$base]}")"
        verdict="$(awk -v r="$tr" 'BEGIN { print (r + 0 >= 0.9) ? "meets the target" : "BELOW the 0.9 target" }')"
        printf '  %-18s throughput %s (%s), p99 %s, cpu/req %s\n' "$label/none" "$tr" "$verdict" "$pr" "$cr"
        summary+=("$label/none throughput $tr, p99 $pr, cpu/req $cr")
    done
    # An RS256 verification costs more than proxying the request: without it
    # showing, the cache must have kept auth-jwt-cold's tokens after all.
    if [[ -n "${MED_RPS[auth-jwt-cold]:-}" ]] &&
        awk -v c="${MED_CPU[auth-jwt-cold]}" -v h="${MED_CPU[auth-jwt]}" 'BEGIN { exit !(c < 1.2 * h) }'; then
        msg="auth-jwt-cold costs under 1.2x auth-jwt's CPU per request: the token cache may hold its $AUTH_COLD_TOKENS tokens (raise AUTH_COLD_TOKENS)"
        printf '  WARNING %s\n' "$msg"
        AUTH_WARNINGS+=("$msg")
    fi
fi

if ((${#AUTH_WARNINGS[@]} > 0)); then
    printf '\nWARNING: the auth figures may not measure what they should:\n'
    printf '  %s\n' "${AUTH_WARNINGS[@]}"
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
if ((${#AUTH_WARNINGS[@]} > 0)); then summary_line+=" | WARNING: auth figures questionable (see the report)"; fi
if ((${#ANOMALIES[@]} > 0)); then summary_line+=" | WARNING: wrk reported non-2xx/socket errors"; fi
printf '\nSummary: %s\n' "$summary_line"
