#!/usr/bin/env bash
# Benchmark: webhooks on a local 3-node cluster (issue 10).
#
# What it does:
#   1. uses SLUICE_BIN, or builds sluice in release (CARGO_TARGET_DIR or ./target),
#   2. starts its own three-node cluster with scripts/cluster.sh in a temp dir, on
#      ports of its own (data 18381-18383, admin 19381-19383, upstream 19301), with
#      a `webhooks.yaml` next to each node's seed config allowing loopback targets,
#   3. runs scripts/bench-webhooks.py, which measures (receiver: a Python
#      ThreadingHTTPServer on 127.0.0.1:RECEIVER_PORT answering 200):
#      - events accepted per second (202 = committed to Raft) with 1 and with 32
#        concurrent publishers spread over the three nodes (ACCEPT_SECONDS each),
#      - deliveries per second to the fast receiver and the end-to-end latency
#        publish -> delivery, p50 and p99 (LAT_EVENTS events, 4 publishers),
#      - the drain time of a backlog: the receiver answers 503 for OUTAGE_SECONDS
#        while DRAIN_EVENTS events are published (retry schedule 0s 1s 2s 5s 5s...),
#        then answers 200; the time from then until every event was delivered,
#   4. prints a summary. Every process it started is stopped on exit; the temp
#      dir is removed unless KEEP_TMP=1 or the run failed.
#
# Environment (defaults in brackets):
#   ACCEPT_SECONDS [10], LAT_EVENTS [2000], DRAIN_EVENTS [10000], OUTAGE_SECONDS [60]
#   PARTS ["accept deliver drain"]
#   SLUICE_BIN (use this binary, no build), SKIP_BUILD [0], KEEP_TMP [0]
#   SLUICE_PORT_BASE [18380], SLUICE_ADMIN_PORT_BASE [19380], SLUICE_UPSTREAM_PORT [19301]
#   RECEIVER_PORT [19390]
# Needs: python3, curl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLUSTER_SH="$ROOT/scripts/cluster.sh"
KEEP_TMP="${KEEP_TMP:-0}"
export SLUICE_PORT_BASE="${SLUICE_PORT_BASE:-18380}"
export SLUICE_ADMIN_PORT_BASE="${SLUICE_ADMIN_PORT_BASE:-19380}"
export SLUICE_UPSTREAM_PORT="${SLUICE_UPSTREAM_PORT:-19301}"
export RECEIVER_PORT="${RECEIVER_PORT:-19390}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-webhooks: error: %s\n' "$*" >&2; exit 1; }

TMP=""
CLUSTER_STARTED=0
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$?
    set +e
    if ((CLUSTER_STARTED)); then
        log "stopping the cluster"
        "$CLUSTER_SH" down >>"$TMP/cluster.log" 2>&1
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "$KEEP_TMP" == 1 || $rc -ne 0 ]]; then
            log "temp dir kept: $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
}
trap cleanup EXIT

if [[ -z "${SLUICE_BIN:-}" ]]; then
    target="${CARGO_TARGET_DIR:-$ROOT/target}"
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        log "building sluice (release)"
        cargo build --release -p sluice
    fi
    export SLUICE_BIN="$target/release/sluice"
fi
[[ -x "$SLUICE_BIN" ]] || die "no sluice binary at $SLUICE_BIN"

TMP="$(mktemp -d -t sluice-bench-webhooks.XXXXXX)"
export SLUICE_CLUSTER_DIR="$TMP/cluster"
unset SLUICE_CLUSTER_SECRET SLUICE_ADMIN_TOKEN
export SLUICE_LOG_LEVEL="${SLUICE_LOG_LEVEL:-warn}"
log "temp dir: $TMP"
# cluster.sh writes node.yaml and gateway.yaml; every *.yaml of the dir is merged.
for n in 1 2 3; do
    mkdir -p "$SLUICE_CLUSTER_DIR/config/node-$n"
    printf 'webhooks:\n  allow_private_targets: true\n' >"$SLUICE_CLUSTER_DIR/config/node-$n/webhooks.yaml"
done

log "starting a 3-node cluster (log: $TMP/cluster.log)"
CLUSTER_STARTED=1
if ! SKIP_BUILD=1 "$CLUSTER_SH" up >"$TMP/cluster.log" 2>&1; then
    sed 's/^/    /' "$TMP/cluster.log" >&2
    die "the cluster did not come up"
fi
SLUICE_ADMIN_TOKEN="$(sed -n 's/^SLUICE_ADMIN_TOKEN=//p' "$SLUICE_CLUSTER_DIR/secrets.env")"
[[ -n "$SLUICE_ADMIN_TOKEN" ]] || die "no admin token in $SLUICE_CLUSTER_DIR/secrets.env"
export SLUICE_ADMIN_TOKEN
export ADMIN_PORTS="$((SLUICE_ADMIN_PORT_BASE + 1)) $((SLUICE_ADMIN_PORT_BASE + 2)) $((SLUICE_ADMIN_PORT_BASE + 3))"

# Wait until the seed (with the webhooks section) is applied on node 1.
for _ in $(seq 1 100); do
    if curl -fsS -H "authorization: Bearer $SLUICE_ADMIN_TOKEN" \
        "http://127.0.0.1:$((SLUICE_ADMIN_PORT_BASE + 1))/admin/config" 2>/dev/null |
        grep -q allow_private_targets; then
        break
    fi
    sleep 0.2
done

log "sluice: $SLUICE_BIN ($(nproc) cores)"
python3 "$ROOT/scripts/bench-webhooks.py"
