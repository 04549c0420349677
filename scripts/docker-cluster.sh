#!/usr/bin/env bash
# A three-node Sluice cluster in Docker containers, the way operators run it: three
# nodes behind one DNS name, a demo upstream, two networks.
#
#   scripts/docker-cluster.sh up          create what is missing (networks, volumes,
#                                         containers), start what is stopped, wait
#                                         for a leader, print where everything is
#   scripts/docker-cluster.sh status      per node: container state, Raft state,
#                                         leader, term, applied index, host ports
#   scripts/docker-cluster.sh down        remove the containers, networks, volumes
#                                         and the state dir (the cluster is gone)
#   scripts/docker-cluster.sh logs N|upstream [-f]   a container's log (-f: follow)
#   scripts/docker-cluster.sh load [ARGS] run `sluice load` (the DNS client) on the
#                                         public network; ARGS default to
#                                         --target http://gateway:8080/api/hello --duration 10s
#
# Built with plain `docker` commands rather than docker-compose: the chaos tests
# drive the same containers with the same CLI (kill, pause, network disconnect and
# connect, which must re-add the network-scoped alias), one tool serves both, and
# the names here are exactly the names a test or an operator types (compose v1
# prefixes networks and volumes with its project name).
#
# Layout (NAME = SLUICE_DOCKER_NAME, default `sluice`):
#   containers  NAME-1, NAME-2, NAME-3 (image SLUICE_IMAGE), NAME-upstream
#               (`sluice echo-server --listen 0.0.0.0:9001`: the demo upstream, and
#               a webhook receiver at http://upstream:9001/sink/... whose
#               GET /sink lists the webhook-ids it got)
#   networks    NAME-public: the nodes answer to the alias `gateway` (Docker's DNS
#                 returns all three, round-robin), the upstream to `upstream`;
#                 clients live here. Published ports go through this network.
#               NAME-cluster (internal): Raft RPC and admin traffic between nodes,
#                 which name each other NAME-N.cluster, an alias that resolves only
#                 on this network (container names resolve on every network two
#                 containers share, so Raft could leak onto the public one and a
#                 cut of this network would be no partition)
#   volumes     NAME-N-data mounted at /var/lib/sluice (the node's data_dir)
#   ports       node N: 8080 (data) and 9080 (admin, Raft) inside, published on
#               127.0.0.1:(DATA_PORT_BASE+N) and 127.0.0.1:(ADMIN_PORT_BASE+N):
#               fixed, so they survive restarts and network changes; the
#               upstream's 9001 on 127.0.0.1:UPSTREAM_PORT (to read its /sink)
#   state dir   SLUICE_DOCKER_DIR (default <repo>/data/docker-NAME):
#                 cluster.env   ports chosen at the first `up`
#                 secrets.env   SLUICE_CLUSTER_SECRET, SLUICE_ADMIN_TOKEN (mode 600;
#                               handed to the containers with --env-file)
#                 config/       node.yaml + gateway.yaml, mounted read-only at
#                               /etc/sluice in every node; ${SLUICE_NODE_ID} and the
#                               secrets are substituted by sluice at start
#
# Environment (defaults in brackets):
#   SLUICE_IMAGE [sluice:latest]      build it with scripts/docker-image.sh
#   SLUICE_DOCKER_NAME [sluice]       prefix of every container, network, volume
#   SLUICE_DOCKER_DIR [<repo>/data/docker-NAME]
#   SLUICE_DOCKER_PORT_BASE [18080], SLUICE_DOCKER_ADMIN_PORT_BASE [19080],
#   SLUICE_DOCKER_UPSTREAM_PORT [19001]
#                                     read at the first `up` only
#   SLUICE_ADMIN_TOKEN                the admin token (else one is generated, printed)
#   SLUICE_LOG_LEVEL [info]           written into a new node.yaml
#   SLUICE_ADMIN_TLS []               tls | mtls: at the first `up`, a CA and node
#                                     certificates in DIR/tls (mounted read-only at
#                                     /etc/sluice-tls, keys owned by the image's uid
#                                     10001) and node.admin_tls in node.yaml: Raft
#                                     and forwarded writes over TLS (mtls: mutual)
#   SLUICE_START_DEADLINE [60]        seconds `up` waits for a leader
#   SLUICE_FAULT                      handed to new node containers: a debug-build
#                                     image runs a deliberately broken store
#                                     (skip-flush, drop-apply[:N]; see
#                                     raft/src/store/fault.rs); release builds ignore it
#   SLUICE_LOG_LINES [50]             lines `logs` prints
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES=(1 2 3)
IMAGE="${SLUICE_IMAGE:-sluice:latest}"
NAME="${SLUICE_DOCKER_NAME:-sluice}"
DIR="${SLUICE_DOCKER_DIR:-$ROOT/data/docker-$NAME}"
SETTINGS="$DIR/cluster.env"
SECRETS="$DIR/secrets.env"
CFG="$DIR/config"
PUBLIC="$NAME-public"
CLUSTER="$NAME-cluster"
START_DEADLINE="${SLUICE_START_DEADLINE:-60}"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'docker-cluster: warning: %s\n' "$*" >&2; }
die() { printf 'docker-cluster: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

[[ "$NAME" =~ ^[a-z0-9][a-z0-9_.-]*$ ]] || die "SLUICE_DOCKER_NAME must be a lowercase docker name"

# ---------------------------------------------------------------- settings ----
kv_get() { if [[ -f "$1" ]]; then sed -n "s/^$2=//p" "$1" | tail -n 1; fi; }
is_port() { [[ "$1" =~ ^[0-9]+$ ]] && (("$1" > 0 && "$1" < 65536)); }

load_settings() {
    PORT_BASE="$(kv_get "$SETTINGS" PORT_BASE)"
    ADMIN_PORT_BASE="$(kv_get "$SETTINGS" ADMIN_PORT_BASE)"
    UPSTREAM_PORT="$(kv_get "$SETTINGS" UPSTREAM_PORT)"
    PORT_BASE="${PORT_BASE:-${SLUICE_DOCKER_PORT_BASE:-18080}}"
    ADMIN_PORT_BASE="${ADMIN_PORT_BASE:-${SLUICE_DOCKER_ADMIN_PORT_BASE:-19080}}"
    UPSTREAM_PORT="${UPSTREAM_PORT:-${SLUICE_DOCKER_UPSTREAM_PORT:-19001}}"
    is_port "$UPSTREAM_PORT" || die "bad upstream port $UPSTREAM_PORT"
    if ! is_port "$PORT_BASE" || ! is_port "$((PORT_BASE + 3))"; then die "bad port base $PORT_BASE"; fi
    if ! is_port "$ADMIN_PORT_BASE" || ! is_port "$((ADMIN_PORT_BASE + 3))"; then
        die "bad admin port base $ADMIN_PORT_BASE"
    fi
}

data_port() { echo $((PORT_BASE + $1)); }
admin_port() { echo $((ADMIN_PORT_BASE + $1)); }

gen_secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

# The cluster secret is made once per cluster (per state dir); the admin token comes
# from SLUICE_ADMIN_TOKEN when set. Nodes read both when they start.
load_secrets() {
    CLUSTER_SECRET="$(kv_get "$SECRETS" SLUICE_CLUSTER_SECRET)"
    ADMIN_TOKEN="${SLUICE_ADMIN_TOKEN:-$(kv_get "$SECRETS" SLUICE_ADMIN_TOKEN)}"
    [[ "$ADMIN_TOKEN" =~ ^[A-Za-z0-9._~+/=-]*$ ]] || die "SLUICE_ADMIN_TOKEN: use letters, digits and ._~+/=- only"
}

store_secrets() {
    load_secrets
    local generated=0
    [[ -n "$CLUSTER_SECRET" ]] || CLUSTER_SECRET="$(gen_secret)"
    if [[ -z "$ADMIN_TOKEN" ]]; then ADMIN_TOKEN="$(gen_secret)"; generated=1; fi
    if [[ "$(kv_get "$SECRETS" SLUICE_ADMIN_TOKEN)" != "$ADMIN_TOKEN" && -f "$SECRETS" ]]; then
        warn "SLUICE_ADMIN_TOKEN differs from $SECRETS; storing it (running nodes keep the old one until recreated)"
    fi
    (
        umask 077
        printf 'SLUICE_CLUSTER_SECRET=%s\nSLUICE_ADMIN_TOKEN=%s\n' "$CLUSTER_SECRET" "$ADMIN_TOKEN" >"$SECRETS.tmp"
    )
    mv -f "$SECRETS.tmp" "$SECRETS"
    ((generated)) && log "generated an admin token: $ADMIN_TOKEN (stored in $SECRETS)"
    return 0
}

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
    local n
    for n in "${NODES[@]}"; do
        # Peers call each other as NAME-N.cluster; the CLI on the host as 127.0.0.1.
        TLS_EXTRA_SANS="DNS:$NAME-$n.cluster,DNS:$NAME-$n" \
            "$ROOT/scripts/tls-certs.sh" "$TLS_DIR" "node-$n" >/dev/null
    done
    [[ "$SLUICE_ADMIN_TLS" == mtls ]] && touch "$TLS_DIR/mtls"
    chmod 755 "$TLS_DIR"
    # The nodes run as uid 10001 in the image; the host's client key stays private.
    for n in "${NODES[@]}"; do chown 10001:10001 "$TLS_DIR/node-$n.key"; done
    return 0
}

write_configs() {
    mkdir -p "$CFG"
    chmod 755 "$DIR" "$CFG"
    make_certs
    local n peers="" first=1
    for n in "${NODES[@]}"; do
        ((first)) || peers+=", "
        peers+="$n: $NAME-$n.cluster:9080"
        first=0
    done
    if [[ ! -f "$CFG/node.yaml" ]]; then
        cat >"$CFG/node.yaml" <<EOF
# Every node of the Docker cluster reads this file (written by
# scripts/docker-cluster.sh; edit freely, then recreate the containers).
# SLUICE_NODE_ID is set per container; the secrets come from $SECRETS.
node:
  id: \${SLUICE_NODE_ID}
  listen: 0.0.0.0:8080
  admin_listen: 0.0.0.0:9080
  data_dir: /var/lib/sluice
  shutdown_timeout: 5s
$(admin_tls_on && printf '  admin_tls: { cert_file: %s, key_file: %s, ca_file: /etc/sluice-tls/ca.pem, client_auth: %s }' \
    '/etc/sluice-tls/node-${SLUICE_NODE_ID}.pem' '/etc/sluice-tls/node-${SLUICE_NODE_ID}.key' \
    "$([[ -f "$TLS_DIR/mtls" ]] && echo true || echo false)")
cluster:
  # Names that resolve only on the $CLUSTER network.
  peers: { $peers }
  secret: "\${SLUICE_CLUSTER_SECRET}"
admin:
  token: "\${SLUICE_ADMIN_TOKEN}"
log:
  level: ${SLUICE_LOG_LEVEL:-info}
  format: json
EOF
    fi
    if [[ ! -f "$CFG/gateway.yaml" ]]; then
        cat >"$CFG/gateway.yaml" <<EOF
# The seed gateway config: proposed to the cluster once, at its first start.
# Later changes go through the admin API (or sluice apply).
services:
  demo:
    upstreams: [http://upstream:9001]
routes:
  - path: /api/*
    service: demo
    auth: none
  - path: /limited/*
    service: demo
    auth: none
# One limit shared by every caller (the chaos suite checks no window ever
# admits more than this, whatever node is killed, paused or cut off).
rate_limits:
  - name: limited
    endpoint: /limited/*
    limit: ${SLUICE_CHAOS_LIMIT:-100}
    window: 5s
    scope: endpoint
EOF
    fi
    chmod 644 "$CFG"/*.yaml
}

# ------------------------------------------------------------------ docker ----
exists() { docker "$1" inspect "$2" >/dev/null 2>&1; }
state_of() { docker container inspect -f '{{.State.Status}}' "$1" 2>/dev/null || echo absent; }

ensure_network() { # NAME [--internal]
    exists network "$1" && return 0
    log "creating network $1 ${2:-}"
    docker network create --driver bridge ${2:+"$2"} "$1" >/dev/null
}

start_container() { # NAME
    case "$(state_of "$1")" in
        running) return 0 ;;
        paused) log "unpausing $1"; docker unpause "$1" >/dev/null ;;
        *) log "starting $1"; docker start "$1" >/dev/null ;;
    esac
}

create_upstream() {
    local c="$NAME-upstream"
    exists container "$c" || {
        log "creating $c (sluice echo-server) on $PUBLIC as 'upstream', 127.0.0.1:$UPSTREAM_PORT"
        docker create --name "$c" --hostname upstream --network "$PUBLIC" --network-alias upstream \
            -p "127.0.0.1:$UPSTREAM_PORT:9001" \
            --label "sluice.cluster=$NAME" "$IMAGE" echo-server --listen 0.0.0.0:9001 --workers 2 >/dev/null
    }
    start_container "$c"
}

create_node() { # N
    local n="$1" c="$NAME-$1"
    if ! exists container "$c"; then
        log "creating $c: data 127.0.0.1:$(data_port "$n"), admin 127.0.0.1:$(admin_port "$n"), volume $c-data"
        local fault=() tls_mount=()
        admin_tls_on && tls_mount=(-v "$TLS_DIR:/etc/sluice-tls:ro")
        if [[ -n "${SLUICE_FAULT:-}" ]]; then
            warn "$c gets SLUICE_FAULT=$SLUICE_FAULT: a debug build runs a deliberately broken store"
            fault=(-e "SLUICE_FAULT=$SLUICE_FAULT")
        fi
        # Created on the public network (which therefore carries the published
        # ports and the default route), then joined to the internal cluster network.
        docker create --name "$c" --hostname "$c" \
            --network "$PUBLIC" --network-alias gateway \
            -p "127.0.0.1:$(data_port "$n"):8080" -p "127.0.0.1:$(admin_port "$n"):9080" \
            -v "$c-data:/var/lib/sluice" -v "$CFG:/etc/sluice:ro" \
            ${tls_mount[@]+"${tls_mount[@]}"} \
            --env-file "$SECRETS" -e "SLUICE_NODE_ID=$n" ${fault[@]+"${fault[@]}"} \
            --stop-timeout 10 --label "sluice.cluster=$NAME" --label "sluice.node=$n" \
            "$IMAGE" run --config /etc/sluice >/dev/null
        docker network connect --alias "$c.cluster" "$CLUSTER" "$c"
    fi
    start_container "$c"
}

# ---------------------------------------------------------------- admin API ----
admin_get() { # PORT PATH
    local tls
    mapfile -t tls < <(curl_tls)
    curl -sf --max-time 2 ${tls[@]+"${tls[@]}"} -K - "$(admin_scheme)://127.0.0.1:$1$2" \
        <<<"header = \"Authorization: Bearer $ADMIN_TOKEN\""
}

PY_VIEW='
import json, sys
try:
    d = json.load(sys.stdin)
except Exception:
    sys.exit(1)
def f(k):
    v = d.get(k)
    return "-" if v is None or v == "" else str(v)
print(f("state"), f("leader_id"), f("term"), f("applied_index"))
'
node_view() { # N -> "state leader term applied"
    local body
    body="$(admin_get "$(admin_port "$1")" /admin/cluster)" || return 1
    python3 -c "$PY_VIEW" <<<"$body"
}

# wait_leader SECONDS : until one node says Leader and every running node names it;
# prints "leader term".
wait_leader() {
    local deadline=$((SECONDS + $1)) n view state lid term leader lterm agree
    while :; do
        leader="" lterm="" agree=1
        for n in "${NODES[@]}"; do
            [[ "$(state_of "$NAME-$n")" == running ]] || continue
            view="$(node_view "$n")" || { agree=0; continue; }
            read -r state lid term _ <<<"$view"
            [[ "$state" == Leader ]] && { leader="$n"; lterm="$term"; }
            [[ "$lid" == "-" ]] && agree=0
        done
        if [[ -n "$leader" && "$agree" == 1 ]]; then
            for n in "${NODES[@]}"; do
                [[ "$(state_of "$NAME-$n")" == running ]] || continue
                view="$(node_view "$n")" || { agree=0; break; }
                read -r state lid _ <<<"$view"
                [[ "$lid" == "$leader" ]] || agree=0
            done
            ((agree)) && { echo "$leader $lterm"; return 0; }
        fi
        for n in "${NODES[@]}"; do
            [[ "$(state_of "$NAME-$n")" == exited ]] && {
                printf 'docker-cluster: %s exited; its last lines:\n' "$NAME-$n" >&2
                docker logs --tail 15 "$NAME-$n" 2>&1 | sed 's/^/    /' >&2
                return 1
            }
        done
        ((SECONDS < deadline)) || return 1
        sleep 0.3
    done
}

# ---------------------------------------------------------------- commands ----
cmd_up() {
    local t0=$SECONDS n
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE: run scripts/docker-image.sh first"
    mkdir -p "$DIR"
    [[ -f "$SETTINGS" ]] || printf 'PORT_BASE=%s\nADMIN_PORT_BASE=%s\nUPSTREAM_PORT=%s\n' \
        "$PORT_BASE" "$ADMIN_PORT_BASE" "$UPSTREAM_PORT" >"$SETTINGS"
    store_secrets
    write_configs
    ensure_network "$PUBLIC"
    ensure_network "$CLUSTER" --internal
    create_upstream
    for n in "${NODES[@]}"; do create_node "$n"; done
    log "waiting up to ${START_DEADLINE}s for a leader"
    local lt
    if ! lt="$(wait_leader "$START_DEADLINE")"; then
        printf 'docker-cluster: no leader within %ss\n' "$START_DEADLINE" >&2
        cmd_status >&2 || true
        exit 1
    fi
    for n in "${NODES[@]}"; do
        local deadline=$((SECONDS + 10))
        until curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$(data_port "$n")/health"; do
            ((SECONDS < deadline)) || { warn "node $n: GET /health does not answer 200"; break; }
            sleep 0.2
        done
    done
    printf '\nSluice cluster %s up in %ss: leader node %s (term %s)\n\n' "$NAME" "$((SECONDS - t0))" "${lt% *}" "${lt#* }"
    cmd_status
    cat <<EOF

  admin token: $ADMIN_TOKEN   (cluster secret and token in $SECRETS)
Try:
  curl http://127.0.0.1:$(data_port 1)/api/hello
  curl $(curl_tls | tr '\n' ' ')-H 'Authorization: Bearer $ADMIN_TOKEN' $(admin_scheme)://127.0.0.1:$(admin_port 2)/admin/cluster
  $0 load --target http://gateway:8080/api/hello --duration 5s
  $0 status | logs N [-f] | down
EOF
}

cmd_status() {
    [[ -f "$SETTINGS" ]] || die "no cluster $NAME (no $SETTINGS; run up first)"
    load_secrets
    local n c st view state lid term applied
    printf '%-16s %-9s %-10s %-7s %-5s %-8s %-24s %s\n' container docker raft leader term applied "data plane" admin
    for n in "${NODES[@]}"; do
        c="$NAME-$n"
        st="$(state_of "$c")"
        state=- lid=- term=- applied=-
        if [[ "$st" == running ]] && view="$(node_view "$n")"; then
            read -r state lid term applied <<<"$view"
        elif [[ "$st" == running ]]; then
            state="no-answer"
        fi
        printf '%-16s %-9s %-10s %-7s %-5s %-8s %-24s %s\n' "$c" "$st" "$state" "$lid" "$term" "$applied" \
            "http://127.0.0.1:$(data_port "$n")" "$(admin_scheme)://127.0.0.1:$(admin_port "$n")"
    done
    printf '%-16s %-9s http://upstream:9001 on the public network; http://127.0.0.1:%s (webhook sink: GET /sink)\n' \
        "$NAME-upstream" "$(state_of "$NAME-upstream")" "$UPSTREAM_PORT"
    printf 'networks: %s (alias gateway), %s (internal, NAME-N.cluster)\n' "$PUBLIC" "$CLUSTER"
}

cmd_down() {
    local n c
    # The nodes and the upstream, anything else labelled as this cluster's (the
    # chaos tests' load client), and whatever is still attached to its networks
    # (a network with a container on it cannot be removed).
    local containers=("$NAME-1" "$NAME-2" "$NAME-3" "$NAME-upstream")
    containers+=($(docker ps -aq --filter "label=sluice.cluster=$NAME" 2>/dev/null || true))
    for c in "$PUBLIC" "$CLUSTER"; do
        exists network "$c" || continue
        containers+=($(docker network inspect -f '{{range .Containers}}{{.Name}} {{end}}' "$c" 2>/dev/null || true))
    done
    for c in $(printf '%s\n' "${containers[@]}" | awk 'NF && !seen[$0]++'); do
        exists container "$c" && { log "removing $c"; docker rm -f "$c" >/dev/null 2>&1 || true; }
    done
    for n in "${NODES[@]}"; do
        exists volume "$NAME-$n-data" && { log "removing volume $NAME-$n-data"; docker volume rm "$NAME-$n-data" >/dev/null; }
    done
    for c in "$PUBLIC" "$CLUSTER"; do
        exists network "$c" && { log "removing network $c"; docker network rm "$c" >/dev/null; }
    done
    if [[ -d "$DIR" ]]; then
        log "removing $DIR"
        rm -rf "$DIR"
    fi
}

cmd_logs() {
    local who="${1:-}" follow="${2:-}"
    case "$who" in
        1 | 2 | 3 | upstream) ;;
        *) die "logs: expected 1, 2, 3 or upstream" ;;
    esac
    local args=(--tail "${SLUICE_LOG_LINES:-50}")
    [[ "$follow" == -f ]] && args+=(-f)
    [[ -z "$follow" || "$follow" == -f ]] || die "unknown option '$follow' (logs N [-f])"
    exec docker logs "${args[@]}" "$NAME-$who"
}

cmd_load() {
    exists network "$PUBLIC" || die "no network $PUBLIC (run up first)"
    (($# > 0)) || set -- --target http://gateway:8080/api/hello --duration 10s
    exec docker run --rm --network "$PUBLIC" "$IMAGE" load "$@"
}

# -------------------------------------------------------------------- main ----
command -v docker >/dev/null || die "docker is required"
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"
cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    -h | --help | help) usage 0 ;;
    "") usage ;;
esac
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers"
load_settings
case "$cmd" in
    up) cmd_up ;;
    status) cmd_status ;;
    down) cmd_down ;;
    logs) cmd_logs "$@" ;;
    load) cmd_load "$@" ;;
    *) printf 'docker-cluster: unknown command %s\n\n' "$cmd" >&2; usage ;;
esac
