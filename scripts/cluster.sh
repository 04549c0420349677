#!/usr/bin/env bash
# A three-node Sluice cluster on this machine, for development and chaos drills.
#
#   scripts/cluster.sh up           start the demo upstream and nodes 1-3 (skips what
#                                   already runs), wait for a leader, print where
#                                   everything is (URLs, admin token, logs)
#   scripts/cluster.sh status       per node: process, Raft state, leader, term,
#                                   applied index; then the cluster's members
#   scripts/cluster.sh down         SIGTERM every node (SIGKILL after a timeout) and
#                                   the upstream; data stays for the next `up`
#   scripts/cluster.sh kill N       kill -9 node N (crash it)
#   scripts/cluster.sh restart N    start node N again from its data dir (a running
#                                   node is stopped with SIGTERM first)
#   scripts/cluster.sh logs N|upstream [-f]   last lines of a log (-f: follow)
#
# Node N listens on 127.0.0.1:(SLUICE_PORT_BASE+N) for the data plane and on
# 127.0.0.1:(SLUICE_ADMIN_PORT_BASE+N) for the admin API and Raft RPC, i.e. 8081-8083
# and 9081-9083 by default. The demo upstream is `sluice echo-server` on
# 127.0.0.1:SLUICE_UPSTREAM_PORT (9001); the public route /api/* (auth: none) ->
# service demo -> upstream.
#
# Layout of the cluster dir (SLUICE_CLUSTER_DIR, default <repo>/data/cluster):
#   cluster.env          ports chosen at the first `up` (later runs reuse them)
#   secrets.env          SLUICE_CLUSTER_SECRET and SLUICE_ADMIN_TOKEN (chmod 600)
#   config/node-N/       node.yaml (node-local settings) + gateway.yaml (the seed
#                        gateway config, proposed to the cluster once); written at
#                        the first `up` only, edit them freely afterwards
#   data/node-N/         the node's sled files (Raft log and state)
#   logs/node-N.log      the node's JSON log (appended across restarts)
#   logs/upstream.log
#   run/*.pid            pid files of the processes this script started
# Run a node by hand:  set -a; . DIR/secrets.env; set +a; sluice run --config DIR/config/node-1
# Start over:          scripts/cluster.sh down && rm -rf DIR
#
# Environment (defaults in brackets):
#   SLUICE_CLUSTER_DIR [<repo>/data/cluster]
#   SLUICE_BIN           sluice binary to run; unset: `cargo build --release -p sluice`
#                        (on `up`) and ${CARGO_TARGET_DIR:-target}/release/sluice
#   SLUICE_CLUSTER_SECRET, SLUICE_ADMIN_TOKEN
#                        override the generated ones; `up`/`restart` store them in
#                        secrets.env (running nodes keep the values they started with)
#   SLUICE_PORT_BASE [8080], SLUICE_ADMIN_PORT_BASE [9080], SLUICE_UPSTREAM_PORT [9001]
#                        only read at the first `up` of a cluster dir
#   SLUICE_LOG_LEVEL [info]  log level written into new configs
#   SLUICE_START_DEADLINE [30]  seconds `up`/`restart` wait for a leader
#   SLUICE_STOP_TIMEOUT [15]    seconds `down` waits after SIGTERM before SIGKILL
#   SLUICE_LOG_LINES [50]       lines `logs` prints
#   SKIP_BUILD [0]       1 = never run cargo (use the binary that is there)
#   SLUICE_ADMIN_TLS []  tls | mtls: at the first `up` of a cluster dir, make a CA and
#                        node certificates in DIR/tls (scripts/tls-certs.sh) and set
#                        node.admin_tls (mtls: with client_auth, and the admin calls
#                        here present DIR/tls/client.pem). Admin URLs are then https.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES=(1 2 3)

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'cluster: warning: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# ------------------------------------------------------------------ paths ----
abspath() { [[ "$1" = /* ]] && printf '%s\n' "$1" || printf '%s\n' "$PWD/$1"; }
DIR="$(abspath "${SLUICE_CLUSTER_DIR:-$ROOT/data/cluster}")"
DIR="${DIR%/}"
CFG="$DIR/config"
DATA="$DIR/data"
LOGS="$DIR/logs"
RUN="$DIR/run"
SECRETS="$DIR/secrets.env"
SETTINGS="$DIR/cluster.env"
START_DEADLINE="${SLUICE_START_DEADLINE:-30}"
STOP_TIMEOUT="${SLUICE_STOP_TIMEOUT:-15}"

# ------------------------------------------------------- settings (ports) ----
# kv_get FILE KEY : the raw value after `KEY=` (no shell evaluation of the file).
kv_get() { if [[ -f "$1" ]]; then sed -n "s/^$2=//p" "$1" | tail -n 1; fi; }

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && (("$1" > 0 && "$1" < 65536)); }

# Ports come from cluster.env once the cluster dir exists, so `status` & co. need
# no environment; a different SLUICE_*PORT* later is ignored with a warning.
load_settings() {
    local key var value stored
    for key in PORT_BASE ADMIN_PORT_BASE UPSTREAM_PORT; do
        var="SLUICE_$key"
        stored="$(kv_get "$SETTINGS" "$key")"
        if [[ -n "$stored" ]]; then
            if [[ -n "${!var:-}" && "${!var}" != "$stored" ]]; then
                warn "ignoring $var=${!var}: the cluster in $DIR uses $key=$stored (use another SLUICE_CLUSTER_DIR for other ports)"
            fi
            value="$stored"
        else
            case "$key" in
                PORT_BASE) value="${SLUICE_PORT_BASE:-8080}" ;;
                ADMIN_PORT_BASE) value="${SLUICE_ADMIN_PORT_BASE:-9080}" ;;
                UPSTREAM_PORT) value="${SLUICE_UPSTREAM_PORT:-9001}" ;;
            esac
        fi
        printf -v "$key" '%s' "$value"
    done
    if ! is_port "$PORT_BASE" || ! is_port "$((PORT_BASE + ${#NODES[@]}))"; then
        die "bad port base: $PORT_BASE"
    fi
    if ! is_port "$ADMIN_PORT_BASE" || ! is_port "$((ADMIN_PORT_BASE + ${#NODES[@]}))"; then
        die "bad admin port base: $ADMIN_PORT_BASE"
    fi
    is_port "$UPSTREAM_PORT" || die "bad upstream port: $UPSTREAM_PORT"
}

save_settings() {
    [[ -f "$SETTINGS" ]] && return 0
    printf 'PORT_BASE=%s\nADMIN_PORT_BASE=%s\nUPSTREAM_PORT=%s\n' \
        "$PORT_BASE" "$ADMIN_PORT_BASE" "$UPSTREAM_PORT" >"$SETTINGS"
}

data_port() { echo $((PORT_BASE + $1)); }
admin_port() { echo $((ADMIN_PORT_BASE + $1)); }

# ---------------------------------------------------------------- secrets ----
gen_secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

# load_secrets [store] : CLUSTER_SECRET and ADMIN_TOKEN from the environment, else
# secrets.env, else freshly generated. With `store`, secrets.env is (re)written
# when it is missing or the environment overrides it.
load_secrets() {
    local store="${1:-}" stored_secret stored_token
    stored_secret="$(kv_get "$SECRETS" SLUICE_CLUSTER_SECRET)"
    stored_token="$(kv_get "$SECRETS" SLUICE_ADMIN_TOKEN)"
    CLUSTER_SECRET="${SLUICE_CLUSTER_SECRET:-$stored_secret}"
    ADMIN_TOKEN="${SLUICE_ADMIN_TOKEN:-$stored_token}"
    [[ "$CLUSTER_SECRET$ADMIN_TOKEN" != *$'\n'* ]] || die "secrets must be one line"
    # They are quoted in YAML and in curl's config: no quote, no backslash.
    local both="$CLUSTER_SECRET$ADMIN_TOKEN" bad="\"\\"
    [[ "$both" != *["$bad"]* ]] || die "secrets must not contain a double quote or a backslash"
    [[ "$store" == store ]] || return 0
    [[ -n "$CLUSTER_SECRET" ]] || CLUSTER_SECRET="$(gen_secret)"
    [[ -n "$ADMIN_TOKEN" ]] || ADMIN_TOKEN="$(gen_secret)"
    if [[ -f "$SECRETS" && "$CLUSTER_SECRET" == "$stored_secret" && "$ADMIN_TOKEN" == "$stored_token" ]]; then
        return 0
    fi
    if [[ -n "$stored_secret" && "$CLUSTER_SECRET" != "$stored_secret" ]]; then
        warn "SLUICE_CLUSTER_SECRET differs from $SECRETS; storing the new one (running nodes keep the old one: restart them all)"
    fi
    if [[ -n "$stored_token" && "$ADMIN_TOKEN" != "$stored_token" ]]; then
        warn "SLUICE_ADMIN_TOKEN differs from $SECRETS; storing the new one (running nodes keep accepting the old one until restarted)"
    fi
    (
        umask 077
        printf 'SLUICE_CLUSTER_SECRET=%s\nSLUICE_ADMIN_TOKEN=%s\n' "$CLUSTER_SECRET" "$ADMIN_TOKEN" >"$SECRETS.tmp"
    )
    chmod 600 "$SECRETS.tmp"
    mv -f "$SECRETS.tmp" "$SECRETS"
}

require_token() {
    load_secrets
    [[ -n "$ADMIN_TOKEN" ]] || die "no admin token: $SECRETS is missing and SLUICE_ADMIN_TOKEN is unset"
}

# ----------------------------------------------------------------- config ----
TLS_DIR="$DIR/tls"
# shellcheck source=scripts/admin-tls.sh
. "$ROOT/scripts/admin-tls.sh"

make_certs() {
    case "${SLUICE_ADMIN_TLS:-}" in
        "") return 0 ;;
        tls | mtls) ;;
        *) die "SLUICE_ADMIN_TLS must be tls or mtls, not ${SLUICE_ADMIN_TLS}" ;;
    esac
    admin_tls_on && return 0
    local names=() n
    for n in "${NODES[@]}"; do names+=("node-$n"); done
    "$ROOT/scripts/tls-certs.sh" "$TLS_DIR" "${names[@]}" >/dev/null
    [[ "$SLUICE_ADMIN_TLS" == mtls ]] && touch "$TLS_DIR/mtls"
    return 0
}

write_configs() {
    local n peers="" first=1
    make_certs
    for n in "${NODES[@]}"; do
        ((first)) || peers+=", "
        peers+="$n: 127.0.0.1:$(admin_port "$n")"
        first=0
    done
    for n in "${NODES[@]}"; do
        mkdir -p "$CFG/node-$n"
        if [[ ! -f "$CFG/node-$n/node.yaml" ]]; then
            cat >"$CFG/node-$n/node.yaml" <<EOF
# Node $n of the local cluster (written by scripts/cluster.sh; edit freely).
# The secrets come from the environment: scripts/cluster.sh sets them from
# $SECRETS.
node:
  id: $n
  listen: 127.0.0.1:$(data_port "$n")
  admin_listen: 127.0.0.1:$(admin_port "$n")
  data_dir: $DATA/node-$n
  shutdown_timeout: 5s
$(admin_tls_on && printf '  admin_tls: { cert_file: %s, key_file: %s, ca_file: %s, client_auth: %s }' \
    "$TLS_DIR/node-$n.pem" "$TLS_DIR/node-$n.key" "$TLS_DIR/ca.pem" \
    "$([[ -f "$TLS_DIR/mtls" ]] && echo true || echo false)")
cluster:
  peers: { $peers }
  secret: "\${SLUICE_CLUSTER_SECRET}"
admin:
  token: "\${SLUICE_ADMIN_TOKEN}"
log:
  level: ${SLUICE_LOG_LEVEL:-info}
  format: json
EOF
        fi
        if [[ ! -f "$CFG/node-$n/gateway.yaml" ]]; then
            cat >"$CFG/node-$n/gateway.yaml" <<EOF
# The seed gateway config: proposed to the cluster once, at its first start.
# Later changes go through the admin API (or SIGHUP / sluice apply).
services:
  demo:
    upstreams: [http://127.0.0.1:$UPSTREAM_PORT]
routes:
  - path: /api/*
    service: demo
    auth: none
EOF
        fi
    done
}

# ------------------------------------------------------------------ binary ----
BIN=""
find_bin() { # [build]
    if [[ -n "${SLUICE_BIN:-}" ]]; then
        BIN="$(abspath "$SLUICE_BIN")"
        [[ -x "$BIN" ]] || die "SLUICE_BIN=$SLUICE_BIN is not an executable"
        return 0
    fi
    local target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" = /* ]] || target="$ROOT/$target"
    BIN="$target/release/sluice"
    if [[ "${1:-}" == build && "${SKIP_BUILD:-0}" != 1 ]]; then
        log "building sluice (release) into $target"
        (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --release -p sluice)
    fi
    [[ -x "$BIN" ]] || {
        [[ "${1:-}" == optional ]] && { BIN=""; return 0; }
        die "$BIN not found (build it, or set SLUICE_BIN)"
    }
}

# --------------------------------------------------------------- processes ----
pidfile() { echo "$RUN/$1.pid"; }

# marker NAME : a string the process's command line contains (guards against a
# recycled pid).
marker() {
    if [[ "$1" == upstream ]]; then echo "127.0.0.1:$UPSTREAM_PORT"; else echo "$CFG/$1"; fi
}

# running NAME : prints the pid when the process from NAME's pid file is alive.
running() {
    local f pid
    f="$(pidfile "$1")"
    [[ -s "$f" ]] || return 1
    pid="$(cat "$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        local cmdline
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
        [[ "$cmdline" == *"$(marker "$1")"* ]] || return 1
    fi
    echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# mimalloc hands freed memory back at once (MADV_DONTNEED) instead of leaving it
# counted in RSS until the kernel needs it (README, Benchmarks).
export MIMALLOC_PURGE_DECOMMITS="${MIMALLOC_PURGE_DECOMMITS:-1}"

# spawn NAME LOGFILE CMD... : start CMD detached (own session: a Ctrl-C in this
# terminal does not reach it), output appended to LOGFILE, pid in run/NAME.pid.
spawn() {
    local name="$1" logfile="$2"
    shift 2
    printf '\n---- %s: %s\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$*" >>"$logfile"
    if command -v setsid >/dev/null; then
        # A background job of a non-interactive shell is no process group leader,
        # so setsid execs in place and $! is the node's own pid.
        setsid "$@" >>"$logfile" 2>&1 </dev/null &
    else
        nohup "$@" >>"$logfile" 2>&1 </dev/null &
    fi
    echo "$!" >"$(pidfile "$name")"
}

# stop NAME SIGNAL TIMEOUT : signal the process, wait until it is gone (SIGKILL
# after TIMEOUT seconds), remove its pid file.
stop() {
    local name="$1" sig="$2" timeout="$3" pid waited=0
    pid="$(running "$name")" || { rm -f "$(pidfile "$name")"; return 0; }
    kill "-$sig" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < timeout * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name (pid $pid) still running ${timeout}s after SIG$sig; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$(pidfile "$name")"
}

log_tail() {
    printf '  last lines of %s:\n' "$1" >&2
    tail -n "${2:-20}" "$1" 2>/dev/null | sed 's/^/    /' >&2 || true
}

start_upstream() {
    local pid
    if pid="$(running upstream)"; then
        log "upstream already running (pid $pid)"
        return 0
    fi
    if port_in_use "$UPSTREAM_PORT"; then
        warn "127.0.0.1:$UPSTREAM_PORT is in use by a process this script did not start; using it as the demo upstream"
        return 0
    fi
    log "starting the demo upstream: sluice echo-server on 127.0.0.1:$UPSTREAM_PORT"
    spawn upstream "$LOGS/upstream.log" "$BIN" echo-server --listen "127.0.0.1:$UPSTREAM_PORT"
    local deadline=$((SECONDS + 10))
    while ! curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$UPSTREAM_PORT/hello"; do
        if ! running upstream >/dev/null; then
            log_tail "$LOGS/upstream.log"
            die "the demo upstream exited"
        fi
        ((SECONDS < deadline)) || die "the demo upstream does not answer on 127.0.0.1:$UPSTREAM_PORT"
        sleep 0.2
    done
}

start_node() {
    local n="$1" pid p
    if pid="$(running "node-$n")"; then
        log "node $n already running (pid $pid)"
        return 0
    fi
    [[ -f "$CFG/node-$n/node.yaml" ]] || die "no config for node $n in $CFG/node-$n (run up first)"
    for p in "$(data_port "$n")" "$(admin_port "$n")"; do
        port_in_use "$p" && die "127.0.0.1:$p (node $n) is in use by a process this script did not start"
    done
    mkdir -p "$DATA/node-$n"
    log "starting node $n (data 127.0.0.1:$(data_port "$n"), admin 127.0.0.1:$(admin_port "$n"))"
    SLUICE_CLUSTER_SECRET="$CLUSTER_SECRET" SLUICE_ADMIN_TOKEN="$ADMIN_TOKEN" \
        spawn "node-$n" "$LOGS/node-$n.log" "$BIN" run --config "$CFG/node-$n"
}

# ----------------------------------------------------------------- admin API ----
# admin_get PORT PATH : GET with the admin token (given to curl on stdin, so it
# does not show in `ps`); prints the body, fails on a non-2xx answer.
admin_get() {
    local tls
    mapfile -t tls < <(curl_tls)
    curl -sf --max-time "${CURL_TIMEOUT:-2}" "${tls[@]}" -K - "$(admin_scheme)://127.0.0.1:$1$2" \
        <<<"header = \"Authorization: Bearer $ADMIN_TOKEN\""
}

# admin_code PORT : the HTTP status of GET /admin/cluster (000: no answer).
admin_code() {
    local tls
    mapfile -t tls < <(curl_tls)
    curl -s -o /dev/null -w '%{http_code}' --max-time "${CURL_TIMEOUT:-2}" "${tls[@]}" -K - \
        "$(admin_scheme)://127.0.0.1:$1/admin/cluster" <<<"header = \"Authorization: Bearer $ADMIN_TOKEN\"" || true
}

# why_no_view N : a short reason node N's /admin/cluster gave no view.
why_no_view() {
    local code
    code="$(admin_code "$(admin_port "$1")")"
    case "$code" in
        000 | "") echo "no answer" ;;
        401) echo "401: token?" ;;
        *) echo "HTTP $code" ;;
    esac
}

# node_view N : "state leader term applied last_log config_version" from node N's
# /admin/cluster ("-" for unknown), or fails when it does not answer.
PY_VIEW='
import json, sys
try:
    d = json.load(sys.stdin)
except Exception:
    sys.exit(1)
def f(k):
    v = d.get(k)
    return "-" if v is None or v == "" else str(v)
print(f("state"), f("leader_id"), f("term"), f("applied_index"), f("last_log_index"), f("config_version"))
'
node_view() {
    local body
    body="$(admin_get "$(admin_port "$1")" /admin/cluster)" || return 1
    python3 -c "$PY_VIEW" <<<"$body"
}

# wait_leader DEADLINE_SECONDS : until a node reports itself leader and every
# running node names it. Prints the leader id and term.
wait_leader() {
    local deadline=$((SECONDS + $1)) n view leader term agree state lid t
    while :; do
        leader="" term="" agree=1
        for n in "${NODES[@]}"; do
            running "node-$n" >/dev/null || continue
            if ! view="$(node_view "$n")"; then
                agree=0
                if [[ "$(admin_code "$(admin_port "$n")")" == 401 ]]; then
                    printf 'cluster: node %s rejects the admin token (401); it was started with another one: restart it, or set SLUICE_ADMIN_TOKEN\n' "$n" >&2
                    return 1
                fi
                continue
            fi
            read -r state lid t _ <<<"$view"
            if [[ "$state" == Leader ]]; then leader="$n" term="$t"; fi
        done
        if [[ -n "$leader" ]]; then
            for n in "${NODES[@]}"; do
                running "node-$n" >/dev/null || continue
                view="$(node_view "$n")" || { agree=0; continue; }
                read -r state lid t _ <<<"$view"
                [[ "$lid" == "$leader" ]] || agree=0
            done
            if ((agree)); then
                echo "$leader $term"
                return 0
            fi
        fi
        for n in "${NODES[@]}"; do
            if [[ -f "$(pidfile "node-$n")" ]] && ! running "node-$n" >/dev/null; then
                printf 'cluster: node %s exited while waiting for a leader\n' "$n" >&2
                log_tail "$LOGS/node-$n.log"
                rm -f "$(pidfile "node-$n")"
                return 1
            fi
        done
        ((SECONDS < deadline)) || return 1
        sleep 0.3
    done
}

# ---------------------------------------------------------------- commands ----
cmd_up() {
    mkdir -p "$DIR" "$CFG" "$DATA" "$LOGS" "$RUN"
    save_settings
    load_secrets store
    write_configs
    find_bin build
    start_upstream
    local n
    for n in "${NODES[@]}"; do start_node "$n"; done
    log "waiting up to ${START_DEADLINE}s for a leader"
    local lt
    if ! lt="$(wait_leader "$START_DEADLINE")"; then
        printf 'cluster: no leader within %ss; per-node view:\n' "$START_DEADLINE" >&2
        cmd_status >&2 || true
        for n in "${NODES[@]}"; do log_tail "$LOGS/node-$n.log" 10; done
        exit 1
    fi
    local leader="${lt% *}" term="${lt#* }"
    # Every node serves its data plane once it is up; wait for /health too.
    for n in "${NODES[@]}"; do
        local deadline=$((SECONDS + 10))
        until curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$(data_port "$n")/health"; do
            ((SECONDS < deadline)) || { warn "node $n: GET /health does not answer 200"; break; }
            sleep 0.2
        done
    done
    print_summary "$leader" "$term"
}

print_summary() {
    local leader="$1" term="$2" n pid up_pid
    printf '\nSluice cluster up: %s nodes, leader node %s (term %s); cluster dir %s\n\n' \
        "${#NODES[@]}" "$leader" "$term" "$DIR"
    printf '  %-9s %-8s %-24s %-24s %s\n' "" pid "data plane" admin log
    for n in "${NODES[@]}"; do
        pid="$(running "node-$n" || echo -)"
        printf '  %-9s %-8s %-24s %-24s %s\n' "node $n" "$pid" "http://127.0.0.1:$(data_port "$n")" \
            "$(admin_scheme)://127.0.0.1:$(admin_port "$n")" "$LOGS/node-$n.log"
    done
    up_pid="$(running upstream || echo "(external)")"
    printf '  %-9s %-8s %-24s %-24s %s\n' upstream "$up_pid" "http://127.0.0.1:$UPSTREAM_PORT" \
        "(sluice echo-server)" "$LOGS/upstream.log"
    cat <<EOF

  admin token:     $ADMIN_TOKEN
  cluster secret:  $CLUSTER_SECRET
  (both in $SECRETS, mode 600)
  configs:         $CFG/node-N/{node,gateway}.yaml    data: $DATA/node-N

Try:
  curl http://127.0.0.1:$(data_port 1)/api/hello
  curl $(curl_tls | tr '\n' ' ')-H 'Authorization: Bearer $ADMIN_TOKEN' $(admin_scheme)://127.0.0.1:$(admin_port 1)/admin/cluster
  curl -X PUT -H 'Authorization: Bearer $ADMIN_TOKEN' -H 'Content-Type: application/json' \\
       $(curl_tls | tr '\n' ' ')-d '{"path":"/hello","service":"demo"}' $(admin_scheme)://127.0.0.1:$(admin_port 2)/admin/routes/hello
  curl http://127.0.0.1:$(data_port 3)/hello
  $0 status | kill N | restart N | logs N [-f] | down
EOF
    if [[ "$DIR" != "$ROOT/data/cluster" ]]; then
        printf '  (with SLUICE_CLUSTER_DIR=%s)\n' "$DIR"
    fi
}

cmd_down() {
    [[ -d "$RUN" ]] || { log "nothing to stop in $DIR"; return 0; }
    local n pid any=0
    # SIGTERM all nodes at once (they drain in parallel), then wait for each.
    for n in "${NODES[@]}"; do
        if pid="$(running "node-$n")"; then
            log "stopping node $n (pid $pid, SIGTERM)"
            kill -TERM "$pid" 2>/dev/null || true
            any=1
        fi
    done
    for n in "${NODES[@]}"; do stop "node-$n" TERM "$STOP_TIMEOUT"; done
    if pid="$(running upstream)"; then
        log "stopping the demo upstream (pid $pid)"
        any=1
    fi
    stop upstream TERM 5
    if ((any)); then log "stopped; data kept in $DATA"; else log "nothing was running"; fi
}

node_arg() {
    local n="${1:-}" m
    for m in "${NODES[@]}"; do [[ "$n" == "$m" ]] && return 0; done
    die "expected a node number (${NODES[*]}), got '${n}'"
}

cmd_kill() {
    node_arg "${1:-}"
    local n="$1" pid
    pid="$(running "node-$n")" || die "node $n is not running"
    log "kill -9 node $n (pid $pid)"
    stop "node-$n" KILL 5
}

cmd_restart() {
    node_arg "${1:-}"
    local n="$1" pid lt view
    [[ -f "$CFG/node-$n/node.yaml" ]] || die "no cluster in $DIR (run up first)"
    mkdir -p "$LOGS" "$RUN"
    load_secrets store
    find_bin
    if pid="$(running "node-$n")"; then
        log "stopping node $n (pid $pid, SIGTERM)"
        stop "node-$n" TERM "$STOP_TIMEOUT"
    fi
    start_node "$n"
    local deadline=$((SECONDS + START_DEADLINE))
    until view="$(node_view "$n")"; do
        if ! running "node-$n" >/dev/null; then
            log_tail "$LOGS/node-$n.log"
            die "node $n exited"
        fi
        ((SECONDS < deadline)) || die "node $n: admin API does not answer (log: $LOGS/node-$n.log)"
        sleep 0.2
    done
    if lt="$(wait_leader $((deadline - SECONDS > 0 ? deadline - SECONDS : 1)))"; then
        view="$(node_view "$n")"
        log "node $n is up (pid $(running "node-$n")): $(fmt_view "$view"); leader node ${lt% *}"
    else
        warn "node $n is up but the running nodes agree on no leader yet (is a quorum up?)"
        cmd_status
    fi
}

fmt_view() {
    local state lid term applied last
    read -r state lid term applied last _ <<<"$1"
    echo "$state, leader $lid, term $term, applied $applied"
}

cmd_logs() {
    local name="${1:-}" follow="${2:-}"
    [[ "$name" == upstream ]] || { node_arg "$name"; name="node-$name"; }
    local f="$LOGS/$name.log"
    [[ -f "$f" ]] || die "no log at $f"
    if [[ "$follow" == -f ]]; then
        exec tail -n "${SLUICE_LOG_LINES:-50}" -F "$f"
    fi
    [[ -z "$follow" ]] || die "unknown option '$follow' (logs N [-f])"
    printf '==> %s <==\n' "$f" >&2
    tail -n "${SLUICE_LOG_LINES:-50}" "$f"
}

PY_MEMBERS='
import json, sys
d = json.load(sys.stdin)
print("Cluster as seen by node %s: leader %s, term %s, voters %s, learners %s, applied %s, last log %s" % (
    d.get("node_id"), d.get("leader_id"), d.get("term"), d.get("voters"), d.get("learners"),
    d.get("applied_index"), d.get("last_log_index")))
for m in d.get("nodes") or []:
    role = "voter" if m.get("voter") else "learner"
    if m.get("leader"):
        role += ", leader"
    matched = m.get("matched_index")
    extra = "" if matched is None else "  matched index %s" % matched
    print("  member %-3s %-22s %s%s" % (m.get("id"), m.get("addr"), role, extra))
'

cmd_status() {
    [[ -f "$SETTINGS" ]] || die "no cluster in $DIR (run up first)"
    require_token
    local n pid view proc state lid term applied last first_up=""
    printf '%-6s %-16s %-11s %-7s %-6s %-8s %-9s %-24s %s\n' \
        node process state leader term applied last_log "data plane" admin
    for n in "${NODES[@]}"; do
        if pid="$(running "node-$n")"; then proc="up (pid $pid)"; else proc="down"; fi
        state=- lid=- term=- applied=- last=-
        if view="$(node_view "$n")"; then
            read -r state lid term applied last _ <<<"$view"
            [[ -n "$first_up" ]] || first_up="$n"
            [[ "$proc" == down ]] && proc="answering (no pid)"
        elif [[ "$proc" != down ]]; then
            state="$(why_no_view "$n")"
        fi
        printf '%-6s %-16s %-11s %-7s %-6s %-8s %-9s %-24s %s\n' "$n" "$proc" "$state" "$lid" "$term" \
            "$applied" "$last" "http://127.0.0.1:$(data_port "$n")" "$(admin_scheme)://127.0.0.1:$(admin_port "$n")"
    done
    local up_pid
    up_pid="$(running upstream || true)"
    printf 'upstream: %s (127.0.0.1:%s)\n' "$(if [[ -n "$up_pid" ]]; then echo "up (pid $up_pid)"; else echo down; fi)" \
        "$UPSTREAM_PORT"
    if [[ -z "$first_up" ]]; then
        printf '\nNo node answers on its admin API.\n'
        return 0
    fi
    # Prefer the leader's view: it knows how far each member has replicated.
    for n in "${NODES[@]}"; do
        view="$(node_view "$n")" || continue
        read -r state _ <<<"$view"
        if [[ "$state" == Leader ]]; then first_up="$n"; break; fi
    done
    echo
    find_bin optional
    if [[ -n "$BIN" ]] && "$BIN" cluster status --help >/dev/null 2>&1; then
        printf '$ sluice cluster status --admin %s://127.0.0.1:%s\n' "$(admin_scheme)" "$(admin_port "$first_up")"
        if admin_tls_on; then
            export SLUICE_ADMIN_CA="$TLS_DIR/ca.pem"
            if [[ -f "$TLS_DIR/mtls" ]]; then
                export SLUICE_ADMIN_CERT="$TLS_DIR/client.pem" SLUICE_ADMIN_KEY="$TLS_DIR/client.key"
            fi
        fi
        "$BIN" cluster status --admin "$(admin_scheme)://127.0.0.1:$(admin_port "$first_up")" --token "$ADMIN_TOKEN" ||
            warn "sluice cluster status failed (exit $?)"
    else
        admin_get "$(admin_port "$first_up")" /admin/cluster | python3 -c "$PY_MEMBERS" ||
            warn "cannot read /admin/cluster from node $first_up"
    fi
}

# ------------------------------------------------------------------- main ----
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    -h | --help | help) usage 0 ;;
    "") usage ;;
esac
load_settings
case "$cmd" in
    up) cmd_up ;;
    down | stop) cmd_down ;;
    status) cmd_status ;;
    kill) cmd_kill "${1:-}" ;;
    restart | start) cmd_restart "${1:-}" ;;
    logs) cmd_logs "$@" ;;
    *) printf 'cluster: unknown command %s\n\n' "$cmd" >&2; usage ;;
esac
