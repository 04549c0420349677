#!/usr/bin/env bash
# What an HTTP server stack costs per request before a proxy does anything: the CPU
# per request of servers that answer every request themselves with the same 200
# (the benchmark upstream's), at a fixed open-loop rate, one worker each:
#   nginx   `return 200` (scripts/bench-nginx.sh's upstream config),
#   actix        actix-web's HttpServer and `App` (chaos-tests/examples/bare_answer.rs),
#   actix-http   actix-http's `HttpService` on actix-server, no `App`: the stack
#                Sluice's data port is built on (node/src/listener.rs) (the same),
#   hyper        hyper 1.x's HTTP/1.1 connection on a current-thread tokio runtime,
#   hyper-local  the same on actix's runtime (a `LocalSet`, each connection a local
#                task), as a hyper data port inside Sluice would run.
# Together they tell what moving Sluice's data port from actix-http to hyper's
# server would save: actix-http against hyper-local.
# The server under test runs on CPU 0 and the load generator
# (chaos-tests/examples/openloop.rs) on CPU 1, as bench-openloop.sh's PIN=1.
# Prints, per server, the median over ROUNDS rounds of its CPU per request (every
# thread, from /proc, in clock ticks: good to a few per cent) and p50/p99, and each
# server's CPU over nginx's.
#
# Environment (defaults in brackets): RATE [40000], ROUNDS [5], DURATION [5],
# CONNECTIONS [32], NGINX_PORT [18481], ACTIX_PORT [18482], HYPER_PORT [18483],
# ACTIX_HTTP_PORT [18484], HYPER_LOCAL_PORT [18485],
# SKIP_INSTALL [0], SKIP_BUILD [0], KEEP_TMP [0].
set -euo pipefail

RATE="${RATE:-40000}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-32}"
NGINX_PORT="${NGINX_PORT:-18481}"
ACTIX_PORT="${ACTIX_PORT:-18482}"
HYPER_PORT="${HYPER_PORT:-18483}"
ACTIX_HTTP_PORT="${ACTIX_HTTP_PORT:-18484}"
HYPER_LOCAL_PORT="${HYPER_LOCAL_PORT:-18485}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/bench-nginx.sh
source "$ROOT/scripts/bench-nginx.sh"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-answer: error: %s\n' "$*" >&2; exit 1; }

install_missing nginx:nginx-light curl:curl
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
(($(nproc) >= 2)) || die "2 CPUs are needed"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building the chaos-tests examples (release) into $TARGET_DIR"
    CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p chaos-tests --example openloop --example bare_answer >&2
fi
OPENLOOP_BIN="$TARGET_DIR/release/examples/openloop"
ANSWER_BIN="$TARGET_DIR/release/examples/bare_answer"
NGINX_BIN="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
for b in "$OPENLOOP_BIN" "$ANSWER_BIN" "$NGINX_BIN"; do [[ -x "$b" ]] || die "$b not found"; done

bench_tmp sluice-answer

declare -A PID_OF=() URL=()
start() { # NAME PORT COMMAND... : on CPU 0, in the background, until it answers
    local name="$1" port="$2"
    shift 2
    taskset -c 0 "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    PID_OF[$name]=$!
    URL[$name]="http://127.0.0.1:$port/hello"
    for _ in $(seq 1 150); do
        kill -0 "${PID_OF[$name]}" 2>/dev/null || die "$name exited (log: $(cat "$TMP/$name.log"))"
        curl -sf -o /dev/null --max-time 1 "${URL[$name]}" && return 0
        sleep 0.2
    done
    die "$name did not answer ${URL[$name]}"
}
write_nginx_upstream_conf "$TMP/nginx" "$NGINX_PORT"
start nginx "$NGINX_PORT" "$NGINX_BIN" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
start actix "$ACTIX_PORT" "$ANSWER_BIN" actix "127.0.0.1:$ACTIX_PORT"
start actix-http "$ACTIX_HTTP_PORT" "$ANSWER_BIN" actix-http "127.0.0.1:$ACTIX_HTTP_PORT"
start hyper "$HYPER_PORT" "$ANSWER_BIN" hyper "127.0.0.1:$HYPER_PORT"
start hyper-local "$HYPER_LOCAL_PORT" "$ANSWER_BIN" hyper-local "127.0.0.1:$HYPER_LOCAL_PORT"
TARGETS=(nginx actix actix-http hyper hyper-local)

printf '\nServers answering themselves: %s req/s over %s connections, %s s per run, %s round(s), 1 worker each, server on CPU 0, load on CPU 1, %s\n' \
    "$RATE" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$(date -u '+%Y-%m-%d %H:%M UTC')"
for t in "${TARGETS[@]}"; do : >"$TMP/results-$t"; done
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
        t="${TARGETS[$(((i + r - 1) % ${#TARGETS[@]}))]}"
        taskset -c 1 "$OPENLOOP_BIN" "${URL[$t]}" "$RATE" "$CONNECTIONS" 1 >/dev/null # warm-up
        before="$(cpu_ticks "${PID_OF[$t]}")"
        line="$(taskset -c 1 "$OPENLOOP_BIN" "${URL[$t]}" "$RATE" "$CONNECTIONS" "$DURATION")"
        after="$(cpu_ticks "${PID_OF[$t]}")"
        line+="$(awk -v b="$before" -v a="$after" -v n="$(field "$line" requests)" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { if (n > 0) printf " cpu_us=%.2f", (a - b) * 1e6 / hz / n }')"
        record_round "$r" "$t" "$line"
    done
done

declare -A MED=()
printf '\nMedian of %s round(s):\n  %-11s %12s %8s %8s %12s\n' "$ROUNDS" server 'cpu us/req' p50_us p99_us 'cpu / nginx'
for t in "${TARGETS[@]}"; do
    for k in cpu_us p50_us p99_us; do
        fmt=%.0f
        [[ "$k" == cpu_us ]] && fmt=%.2f
        MED[$t.$k]="$(while read -r l; do field "$l" "$k"; done <"$TMP/results-$t" | median "$fmt")"
    done
done
summary=""
for t in "${TARGETS[@]}"; do
    ratio="$(awk -v a="${MED[$t.cpu_us]}" -v b="${MED[nginx.cpu_us]}" 'BEGIN { printf "%.2f", a / b }')"
    printf '  %-11s %12s %8s %8s %12s\n' "$t" "${MED[$t.cpu_us]}" "${MED[$t.p50_us]}" "${MED[$t.p99_us]}" "$ratio"
    summary+="$t ${MED[$t.cpu_us]} us ($ratio) | "
done
printf '\nSummary: cpu per request at %s req/s: %s\n' "$RATE" "${summary% | }"
