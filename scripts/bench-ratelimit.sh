#!/usr/bin/env bash
# Benchmark: cluster-wide rate limits on a local 3-node cluster (issue 9).
#
# What it does:
#   1. installs wrk and curl from Debian if they are missing (needs root),
#   2. builds sluice in release (honours SLUICE_BIN, else CARGO_TARGET_DIR/./target),
#   3. starts its own three-node cluster with scripts/cluster.sh in a temp dir, on
#      ports of its own (data 18281-18283, admin 19281-19283, upstream 19201), with
#      node.trusted_proxies [127.0.0.1] (so wrk can name a client address in
#      X-Forwarded-For) and the routes and policies below in the seed config,
#   4. measures:
#      (a) overhead: req/s and p99 of GET /lim/x (policy bench-lim: scope ip, one
#          key, limit 10,000,000 per 60 s: it never refuses, but past its floor the
#          node needs grants, so the reports run too) against GET /open/x (the same
#          route without a policy), wrk against node 1, alternating the two for
#          ROUNDS rounds of DURATION (median): ratio limited/unlimited, target >= 0.9;
#      (b) accuracy: one key (ip 127.0.0.1) under bench-acc, ACC_LIMIT per
#          ACC_WINDOW seconds (default 1000 per 10 s: the shape of 1,000/min on a
#          6x shorter window; ACC_WINDOW=60 for the real thing), hammered at
#          ACC_FACTOR (20) times its rate, split evenly over the three nodes (one
#          paced wrk per node), for two consecutive fixed windows (each run starts
#          200 ms after a window starts and stops before it ends, so every request
#          is decided in the window it is counted in): admitted / limit per window,
#          target <= 1.01 (the invariant: <= 1.0 with no rounding term);
#      (d) Raft traffic with KEYS_SMALL (10,000) and KEYS_LARGE (100,000) active keys:
#          the ip scope under bench-keys (1000 per 60 s: the keys never run out),
#          each request naming one of the keys in X-Forwarded-For, every key
#          cycled through by each of three paced wrk (one per node, from different
#          starts) at KEYS_RATE req/s in all (so every node sees every key, as with
#          DNS round-robin); after a warm-up (KEYS_WARMUP, or the time each node
#          takes to see every key, if longer), for KEYS_SECONDS (one window by
#          default): Raft entries/s
#          (the leader's last_log_index), Raft RPC bytes/s (request bytes received
#          on the three admin/Raft listeners: reports forwarded to the leader and
#          AppendEntries to the two followers, HTTP framing included; per TCP
#          connection from `ss -ti`, sampled every 0.5 s), and the growth of the
#          leader's data dir (sled: the log plus sled's own page overhead;
#          snapshots are off for this part so the log is not purged meanwhile);
#          and, for comparison, the same with no traffic (heartbeats only);
#      (c) memory: RSS of each node (VmRSS, and the peak VmHWM) idle, then with
#          100,000 and with 1,000,000 active keys, all sent to node 1 (so node 1
#          holds every key twice: its node-local window state and the replicated
#          ledger; nodes 2 and 3 hold the ledger only) under bench-rss (ip scope,
#          1000 per 600 s, so no key goes idle during the run), unpaced wrk with
#          a distinct X-Forwarded-For per request until node 1's
#          gateway_rate_limit_keys reaches the count. This part runs last, on a
#          fresh cluster (same ports) with the default snapshot_every (500), so the
#          figure includes snapshots of the ledger as an operator would have them,
#   5. prints a summary table.
# Every process it started is stopped on exit (cluster.sh down); the temp dir is
# removed unless KEEP_TMP=1 or the run failed. Exit status 1 when a part could not
# be measured (not when a target is missed: the report says so).
#
# Environment (defaults in brackets):
#   PARTS ["a b d c"]        which parts to run (in this order)
#   ROUNDS [3], DURATION [10s], WARMUP [2s], CONNECTIONS [64], THREADS [2]   part (a)
#   ACC_LIMIT [1000], ACC_WINDOW [10], ACC_FACTOR [20], ACC_DELAY_MS [10]    part (b)
#                            (each paced connection waits ACC_DELAY_MS between its
#                            requests; the connection count makes up the rate)
#   KEYS_SMALL [10000], KEYS_LARGE [100000], KEYS_RATE [6000], KEYS_WARMUP [10],
#   KEYS_SECONDS [60], KEYS_IDLE_SECONDS [10]                                part (d)
#   RSS_KEYS ["100000 1000000"], RSS_DEADLINE [600] (seconds per step),
#   RSS_MAX_MIB [6144] (a step stops early when a node's RSS passes it)     part (c)
#   RSS_SNAPSHOT_EVERY [500] (snapshot_every of the part (c) cluster)        part (c)
#   SLUICE_PORT_BASE [18280], SLUICE_ADMIN_PORT_BASE [19280], SLUICE_UPSTREAM_PORT [19201]
#   SLUICE_BIN               use this binary (no build)
#   KEEP_TMP [0]             1 = keep the temp dir (cluster data, logs, raw wrk output)
#   SKIP_INSTALL [0], SKIP_BUILD [0]
# Needs: wrk (apt package `wrk`, installed unless SKIP_INSTALL=1), curl, python3,
# ss (iproute2), du.
set -euo pipefail

PARTS="${PARTS:-a b d c}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
ACC_LIMIT="${ACC_LIMIT:-1000}"
ACC_WINDOW="${ACC_WINDOW:-10}"
ACC_FACTOR="${ACC_FACTOR:-20}"
ACC_DELAY_MS="${ACC_DELAY_MS:-10}"
KEYS_SMALL="${KEYS_SMALL:-10000}"
KEYS_LARGE="${KEYS_LARGE:-100000}"
KEYS_RATE="${KEYS_RATE:-6000}"
KEYS_WARMUP="${KEYS_WARMUP:-10}"
KEYS_SECONDS="${KEYS_SECONDS:-60}"
KEYS_IDLE_SECONDS="${KEYS_IDLE_SECONDS:-10}"
RSS_KEYS="${RSS_KEYS:-100000 1000000}"
RSS_DEADLINE="${RSS_DEADLINE:-600}"
RSS_MAX_MIB="${RSS_MAX_MIB:-6144}"
KEEP_TMP="${KEEP_TMP:-0}"
SKIP_INSTALL="${SKIP_INSTALL:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
export SLUICE_PORT_BASE="${SLUICE_PORT_BASE:-18280}"
export SLUICE_ADMIN_PORT_BASE="${SLUICE_ADMIN_PORT_BASE:-19280}"
export SLUICE_UPSTREAM_PORT="${SLUICE_UPSTREAM_PORT:-19201}"
NODES=(1 2 3)
# No snapshots while the Raft log growth is measured (part d); part (c) starts
# a fresh cluster with the default.
SNAPSHOT_OFF=1000000000
SNAPSHOT_DEFAULT="${RSS_SNAPSHOT_EVERY:-500}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLUSTER_SH="$ROOT/scripts/cluster.sh"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-ratelimit: error: %s\n' "$*" >&2; exit 1; }

for v in ROUNDS CONNECTIONS THREADS ACC_LIMIT ACC_WINDOW ACC_FACTOR ACC_DELAY_MS KEYS_SMALL \
    KEYS_LARGE KEYS_RATE KEYS_WARMUP KEYS_SECONDS KEYS_IDLE_SECONDS RSS_DEADLINE RSS_MAX_MIB; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, got '${!v}'"
done
((ACC_WINDOW >= 3)) || die "ACC_WINDOW must be at least 3 (seconds)"
for p in $PARTS; do [[ "$p" =~ ^[abcd]$ ]] || die "PARTS: unknown part '$p' (a, b, c, d)"; done
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- cleanup ----
TMP=""
CLUSTER_STARTED=0
WRK_PIDS=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$? p
    set +e
    for p in "${WRK_PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
    for p in "${WRK_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    if ((CLUSTER_STARTED)); then
        log "stopping the cluster"
        "$CLUSTER_SH" down >>"$TMP/cluster.log" 2>&1 ||
            printf 'bench-ratelimit: cluster.sh down failed; see %s/cluster.log\n' "$TMP" >&2
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "$KEEP_TMP" == 1 || $rc -ne 0 ]]; then
            log "temp dir kept: $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- install ----
SUDO=()
if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null; then SUDO=(sudo); fi
if [[ "$SKIP_INSTALL" != 1 ]] && { ! command -v wrk >/dev/null || ! command -v curl >/dev/null; }; then
    log "installing wrk and curl (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq wrk curl >/dev/null
fi
for tool in wrk curl python3 ss du; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

# ------------------------------------------------------------------ build ----
if [[ -z "${SLUICE_BIN:-}" ]]; then
    TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
    [[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
    SLUICE_BIN="$TARGET_DIR/release/sluice"
    if [[ "$SKIP_BUILD" != 1 ]]; then
        log "building sluice (release) into $TARGET_DIR"
        CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p sluice
    fi
fi
[[ "$SLUICE_BIN" = /* ]] || SLUICE_BIN="$ROOT/$SLUICE_BIN"
[[ -x "$SLUICE_BIN" ]] || die "$SLUICE_BIN not found (build failed?)"
export SLUICE_BIN

# ---------------------------------------------------------------- helpers ----
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
data_port() { echo $((SLUICE_PORT_BASE + $1)); }
admin_port() { echo $((SLUICE_ADMIN_PORT_BASE + $1)); }

# admin_get N PATH : GET on node N's admin API with the token (on curl's stdin).
admin_get() {
    curl -sf --max-time 5 -K - "http://127.0.0.1:$(admin_port "$1")$2" \
        <<<"header = \"Authorization: Bearer $TOKEN\""
}

# cluster_field N KEY : one field of node N's GET /admin/cluster.
cluster_field() {
    admin_get "$1" /admin/cluster | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2'))"
}

# leader : the leader's id, asking the nodes in turn.
leader() {
    local n v deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        for n in "${NODES[@]}"; do
            v="$(cluster_field "$n" leader_id 2>/dev/null)" || continue
            [[ "$v" =~ ^[0-9]+$ ]] && { echo "$v"; return 0; }
        done
        sleep 0.3
    done
    return 1
}

# metric N NAME : the value of an unlabelled sample on node N's /metrics (0 if none).
metric() {
    curl -sf --max-time 5 "http://127.0.0.1:$(data_port "$1")/metrics" |
        awk -v m="$2" '$1 == m { v = $2 } END { print (v == "" ? 0 : v + 0) }'
}

node_pid() { cat "$SLUICE_CLUSTER_DIR/run/node-$1.pid"; }

# rss_kib N FIELD : VmRSS or VmHWM of node N, KiB.
rss_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$(node_pid "$1")/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

# cpu_ticks N : user+system clock ticks of node N so far (all its threads).
HZ="$(getconf CLK_TCK 2>/dev/null || echo 100)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$(node_pid "$1")/stat"; }

# dir_bytes N : apparent size of node N's data dir.
dir_bytes() { du -sb "$SLUICE_CLUSTER_DIR/data/node-$1" | awk '{ print $1 }'; }

# wrk prints latencies as 850.00us, 1.23ms, 2.00s; convert to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (match(v, /^[0-9.]+/)) { n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1) } else { print "nan"; exit }
        if (u == "us") f = 0.001; else if (u == "ms") f = 1; else if (u == "s") f = 1000;
        else if (u == "m") f = 60000; else { print "nan"; exit }
        printf "%.3f\n", n * f }'
}
median() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf "%.3f\n", a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.3f\n", a / b }'; }
fmt_ms() { awk -v v="$1" 'BEGIN { if (v < 10) printf "%.2fms", v; else printf "%.1fms", v }'; }

# sleep_until_ms UNIX_MS
sleep_until_ms() {
    python3 -c "import time,sys; d = int(sys.argv[1]) / 1000 - time.time(); time.sleep(max(d, 0))" "$1"
}
now_ms() { python3 -c 'import time; print(int(time.time() * 1000))'; }

# ------------------------------------------------------------------ setup ----
for n in "${NODES[@]}"; do
    for p in "$(data_port "$n")" "$(admin_port "$n")"; do
        port_in_use "$p" && die "port 127.0.0.1:$p is already in use (set SLUICE_PORT_BASE / SLUICE_ADMIN_PORT_BASE)"
    done
done
port_in_use "$SLUICE_UPSTREAM_PORT" &&
    die "port 127.0.0.1:$SLUICE_UPSTREAM_PORT is already in use (set SLUICE_UPSTREAM_PORT)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-ratelimit.XXXXXX")"
mkdir -p "$TMP/wrk"
export SLUICE_CLUSTER_DIR="$TMP/cluster"
unset SLUICE_CLUSTER_SECRET SLUICE_ADMIN_TOKEN
export SLUICE_LOG_LEVEL="${SLUICE_LOG_LEVEL:-warn}"
log "temp dir: $TMP"

# cluster.sh writes a node's configs only when they are missing: these are its
# own, plus trusted_proxies and snapshot_every, and the bench's routes.
write_configs() {
    local n peers="" first=1
    for n in "${NODES[@]}"; do
        ((first)) || peers+=", "
        peers+="$n: 127.0.0.1:$(admin_port "$n")"
        first=0
    done
    for n in "${NODES[@]}"; do
        mkdir -p "$SLUICE_CLUSTER_DIR/config/node-$n"
        cat >"$SLUICE_CLUSTER_DIR/config/node-$n/node.yaml" <<EOF
# Node $n of the rate-limit benchmark (scripts/bench-ratelimit.sh).
node:
  id: $n
  listen: 127.0.0.1:$(data_port "$n")
  admin_listen: 127.0.0.1:$(admin_port "$n")
  data_dir: $SLUICE_CLUSTER_DIR/data/node-$n
  shutdown_timeout: 5s
  trusted_proxies: [127.0.0.1]
cluster:
  peers: { $peers }
  secret: "\${SLUICE_CLUSTER_SECRET}"
  snapshot_every: $SNAPSHOT_OFF
admin:
  token: "\${SLUICE_ADMIN_TOKEN}"
log:
  level: $SLUICE_LOG_LEVEL
  format: json
EOF
        cat >"$SLUICE_CLUSTER_DIR/config/node-$n/gateway.yaml" <<EOF
services:
  demo:
    upstreams: [http://127.0.0.1:$SLUICE_UPSTREAM_PORT]
routes:
  - { path: /api/*, service: demo, auth: none }
  - { path: /open/*, service: demo, auth: none }
  - { path: /lim/*, service: demo, auth: none }
  - { path: /acc/*, service: demo, auth: none }
  - { path: /keys/*, service: demo, auth: none }
  - { path: /rss/*, service: demo, auth: none }
rate_limits:
  - { name: bench-lim, endpoint: /lim/*, limit: 10000000, window: 60s, scope: ip }
  - { name: bench-acc, endpoint: /acc/*, limit: $ACC_LIMIT, window: ${ACC_WINDOW}s, scope: ip }
  - { name: bench-keys, endpoint: /keys/*, limit: 1000, window: 60s, scope: ip }
  - { name: bench-rss, endpoint: /rss/*, limit: 1000, window: 600s, scope: ip }
EOF
    done
}
write_configs

log "starting a 3-node cluster (scripts/cluster.sh up, log: $TMP/cluster.log)"
CLUSTER_STARTED=1
if ! SKIP_BUILD=1 "$CLUSTER_SH" up >"$TMP/cluster.log" 2>&1; then
    sed 's/^/    /' "$TMP/cluster.log" >&2
    die "the cluster did not come up"
fi
TOKEN="$(sed -n 's/^SLUICE_ADMIN_TOKEN=//p' "$SLUICE_CLUSTER_DIR/secrets.env")"
[[ -n "$TOKEN" ]] || die "no admin token in $SLUICE_CLUSTER_DIR/secrets.env"

# wait_served PATH POLICY : every node answers PATH 200 under POLICY (the seeded
# routes and policies have reached its data plane).
wait_served() {
    local n deadline
    for n in "${NODES[@]}"; do
        deadline=$((SECONDS + 30))
        until [[ "$(curl -s -o /dev/null -w '%{http_code}' -D "$TMP/h.txt" --max-time 2 \
            "http://127.0.0.1:$(data_port "$n")$1")" == 200 ]] &&
            grep -qi "^ratelimit-policy: \"$2\"" "$TMP/h.txt"; do
            ((SECONDS < deadline)) || die "node $n does not serve the rate-limited $1 (see $TMP/cluster)"
            sleep 0.3
        done
    done
}
wait_served /acc/ready bench-acc

# The wrk script: counts statuses per thread (2xx vs each other code) and prints a
# BENCH line in done(). With BENCH_KEYS > 0 each request names a client address
# in X-Forwarded-For: key i (offset + i) is 10.a.b.c, the threads walking the
# keys in turn. load-paced.lua adds delay(): BENCH_DELAY_MS between requests on
# each connection.
cat >"$TMP/load.lua" <<'EOF'
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

ok = 0
bad = {}
local nkeys, offset, nthreads, path, k = 0, 0, 1, "/", 0

function init(args)
  nkeys = tonumber(os.getenv("BENCH_KEYS") or "0")
  offset = tonumber(os.getenv("BENCH_KEY_OFFSET") or "0")
  nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  path = os.getenv("BENCH_PATH") or "/"
  k = (tid - 1) + tonumber(os.getenv("BENCH_KEY_START") or "0")
end

function request()
  if nkeys > 0 then
    local i = offset + (k % nkeys)
    k = k + nthreads
    local ip = string.format("10.%d.%d.%d", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
    return wrk.format("GET", path, { ["X-Forwarded-For"] = ip })
  end
  return wrk.format("GET", path)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    local c = tostring(status)
    bad[c] = (bad[c] or 0) + 1
  end
end

function done(summary, latency, requests)
  local total_ok, codes, keys = 0, {}, {}
  for _, t in ipairs(threads) do
    total_ok = total_ok + (t:get("ok") or 0)
    for c, v in pairs(t:get("bad") or {}) do
      if codes[c] == nil then table.insert(keys, c) end
      codes[c] = (codes[c] or 0) + v
    end
  end
  table.sort(keys)
  local parts = {}
  for _, c in ipairs(keys) do table.insert(parts, c .. "x" .. codes[c]) end
  local e = summary.errors
  io.write(string.format(
    "BENCH ok=%d requests=%d duration_us=%d p99_us=%d errors=%d codes=%s\n",
    total_ok, summary.requests, summary.duration, latency:percentile(99),
    e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ",")))
end
EOF
{
    cat "$TMP/load.lua"
    printf '\nlocal pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")\nfunction delay() return pause end\n'
} >"$TMP/load-paced.lua"

# bench_kv FILE KEY : a value of the BENCH line of a wrk output file.
bench_kv() { sed -n 's/^BENCH .*/&/p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# wrk_bg OUT NODE PATH THREADS CONNS DURATION [ENV=VALUE...] : wrk with load.lua (or
# load-paced.lua when BENCH_DELAY_MS is among the ENV) against node NODE, in the
# background; its pid is appended to WRK_PIDS.
wrk_bg() {
    local out="$1" node="$2" path="$3" threads="$4" conns="$5" duration="$6" script="$TMP/load.lua"
    shift 6
    [[ " $* " == *" BENCH_DELAY_MS="* ]] && script="$TMP/load-paced.lua"
    env BENCH_PATH="$path" BENCH_THREADS="$threads" "$@" \
        wrk -t"$threads" -c"$conns" -d"$duration" --timeout 10s -s "$script" \
        "http://127.0.0.1:$(data_port "$node")$path" >"$out" 2>&1 &
    WRK_PIDS+=("$!")
    LAST_WRK=$!
}

# wait_wrk PID OUT : waits for a background wrk; fails when it printed no BENCH line.
wait_wrk() {
    wait "$1" || true
    grep -q '^BENCH ' "$2" || die "wrk printed no result ($2):
$(cat "$2")"
}

# raft_sampler SECONDS OUT : request bytes received on the three admin/Raft
# listeners over SECONDS, per TCP connection (ss -ti every 0.5 s: a connection's
# growth since it was first seen, or all of it when it opened meanwhile). Runs
# in the background; the total lands in OUT.
raft_sampler() {
    python3 - "$1" "$(admin_port 1)" "$(admin_port 2)" "$(admin_port 3)" >"$2" <<'EOF' &
import re, subprocess, sys, time
secs = float(sys.argv[1])
ports = sys.argv[2:]
flt = "( " + " or ".join("sport = :%s" % p for p in ports) + " )"
addr = re.compile(r"(\S+:\d+)\s+(\S+:\d+)")
rx = re.compile(r"bytes_received:(\d+)")
def sample():
    out = subprocess.run(["ss", "-tinHO", "state", "established", flt],
                         capture_output=True, text=True).stdout
    seen = {}
    for line in out.splitlines():
        a, b = addr.search(line), rx.search(line)
        if a:
            seen[(a.group(1), a.group(2))] = int(b.group(1)) if b else 0
    return seen
first = sample()
base, last = dict(first), dict(first)
end = time.time() + secs
while time.time() < end:
    time.sleep(0.5)
    for conn, v in sample().items():
        if conn not in base:
            base[conn] = 0
        last[conn] = max(last.get(conn, 0), v)
print(sum(last[c] - base[c] for c in last))
EOF
    SAMPLER_PID=$!
}

ROWS_A=() ROWS_B=() ROWS_C=() ROWS_D=()
SUMMARY=()
WARNINGS=()

# ------------------------------------------------------------ (a) overhead ----
part_a() {
    log "(a) overhead: /open/x vs /lim/x on node 1, $ROUNDS rounds of $DURATION"
    local round target path out rps p99 non2xx reqs t0 t1 cpu_us
    : >"$TMP/a-open.tsv"
    : >"$TMP/a-lim.tsv"
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in open lim; do
            path="/$target/x"
            if [[ "$WARMUP" != 0 && "$WARMUP" != 0s ]]; then
                wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "http://127.0.0.1:$(data_port 1)$path" >/dev/null 2>&1
            fi
            out="$TMP/wrk/a-$target-$round.txt"
            t0="$(cpu_ticks 1)"
            wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
                "http://127.0.0.1:$(data_port 1)$path" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
            t1="$(cpu_ticks 1)"
            rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
            p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
            non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"
            reqs="$(awk '/requests in/ { print $1 }' "$out")"
            cpu_us="$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
            printf '%s\t%s\t%s\t%s\n' "$rps" "$p99" "${non2xx:-0}" "$cpu_us" >>"$TMP/a-$target.tsv"
            printf '  round %s %-4s %8.0f req/s  p99 %-9s node 1 CPU %6s us/req  non-2xx %s\n' "$round" \
                "$target" "$rps" "$(fmt_ms "$p99")" "$cpu_us" "${non2xx:-0}" >&2
        done
    done
    local o_rps o_p99 o_cpu l_rps l_p99 l_cpu l_bad r_rps r_p99 r_cpu verdict
    o_rps="$(cut -f1 "$TMP/a-open.tsv" | median)"
    o_p99="$(cut -f2 "$TMP/a-open.tsv" | median)"
    o_cpu="$(cut -f4 "$TMP/a-open.tsv" | median)"
    l_rps="$(cut -f1 "$TMP/a-lim.tsv" | median)"
    l_p99="$(cut -f2 "$TMP/a-lim.tsv" | median)"
    l_cpu="$(cut -f4 "$TMP/a-lim.tsv" | median)"
    l_bad="$(awk -F'\t' '{ s += $3 } END { print s + 0 }' "$TMP/a-lim.tsv")"
    r_rps="$(ratio "$l_rps" "$o_rps")"
    r_p99="$(ratio "$l_p99" "$o_p99")"
    r_cpu="$(ratio "$l_cpu" "$o_cpu")"
    verdict="$(awk -v r="$r_rps" 'BEGIN { print (r >= 0.9 ? "req/s meets >= 0.9" : "req/s MISSES >= 0.9") }')"
    ROWS_A+=("unlimited /open/x|$(printf '%.0f' "$o_rps")|$(fmt_ms "$o_p99")|$o_cpu|")
    ROWS_A+=("limited /lim/x|$(printf '%.0f' "$l_rps")|$(fmt_ms "$l_p99")|$l_cpu|$l_bad non-2xx")
    ROWS_A+=("limited / unlimited|$r_rps|$r_p99|$r_cpu|$verdict")
    ((l_bad == 0)) || WARNINGS+=("(a) the limited route refused $l_bad requests (it should never refuse)")
    SUMMARY+=("(a) limited/unlimited req/s $r_rps, p99 x$r_p99, CPU/req x$r_cpu")
}

# ------------------------------------------------------------ (b) accuracy ----
part_b() {
    local rate conns w start_ms wend out n ok req codes secs
    rate=$((ACC_LIMIT * ACC_FACTOR / ACC_WINDOW))
    # Each connection sends one request every ACC_DELAY_MS (plus the round trip).
    conns=$(((rate * ACC_DELAY_MS + 1500) / 3000))
    ((conns >= 1)) || conns=1
    log "(b) accuracy: $ACC_LIMIT per ${ACC_WINDOW}s, offered ~$rate req/s ($ACC_FACTOR x) over 3 nodes, two windows"
    for w in 1 2; do
        if ((w == 1)); then
            start_ms=$((($(now_ms) / (ACC_WINDOW * 1000) + 1) * ACC_WINDOW * 1000))
        else
            start_ms=$((start_ms + ACC_WINDOW * 1000))
        fi
        sleep_until_ms $((start_ms + 200))
        secs=$((ACC_WINDOW - 1))
        local pids=()
        for n in "${NODES[@]}"; do
            wrk_bg "$TMP/wrk/b-w$w-n$n.txt" "$n" /acc/x 1 "$conns" "${secs}s" BENCH_DELAY_MS="$ACC_DELAY_MS"
            pids+=("$LAST_WRK")
        done
        ok=0 req=0 codes=""
        for n in "${NODES[@]}"; do
            out="$TMP/wrk/b-w$w-n$n.txt"
            wait_wrk "${pids[$((n - 1))]}" "$out"
            ok=$((ok + $(bench_kv "$out" ok)))
            req=$((req + $(bench_kv "$out" requests)))
            codes+="$(bench_kv "$out" codes) "
        done
        wend=$(now_ms)
        ((wend < start_ms + ACC_WINDOW * 1000)) ||
            WARNINGS+=("(b) window $w: the last answers arrived $((wend - start_ms - ACC_WINDOW * 1000)) ms after the window ended")
        local frac offered
        frac="$(ratio "$ok" "$ACC_LIMIT")"
        offered="$(awk -v r="$req" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')"
        codes="$(tr ' ' '\n' <<<"$codes" | awk -F'x' 'NF == 2 { c[$1] += $2 } END { for (k in c) printf "%sx%d ", k, c[k] }')"
        ROWS_B+=("window $w ($start_ms)|$req|$offered|$ok|$frac|${codes:-none}")
        printf '  window %s: %s requests (%s req/s), admitted %s = %s of the limit; other answers: %s\n' \
            "$w" "$req" "$offered" "$ok" "$frac" "${codes:-none}" >&2
        [[ "$codes" =~ ^(429x[0-9]+ )?$ ]] || WARNINGS+=("(b) window $w: answers other than 200/429: $codes")
        SUMMARY+=("(b) window $w admitted/limit $frac")
    done
}

# ------------------------------------------------------------ (d) raft ----
raft_measure() { # LABEL KEYS : KEYS=0 measures idle heartbeats
    local label="$1" keys="$2" lead secs n out conns e0 e1 d0 d1 bytes ok req codes
    lead="$(leader)" || die "no leader"
    local pids=()
    local warmup=$((3 * keys / KEYS_RATE + 2))
    ((warmup >= KEYS_WARMUP)) || warmup="$KEYS_WARMUP"
    if ((keys > 0)); then
        secs=$((warmup + KEYS_SECONDS + 5))
        # Per node KEYS_RATE/3 req/s: connections each sending one request every 10 ms.
        conns=$(((KEYS_RATE * 10 + 1500) / 3000))
        ((conns >= 2)) || conns=2
        for n in "${NODES[@]}"; do
            wrk_bg "$TMP/wrk/d-$label-n$n.txt" "$n" /keys/x 2 "$conns" "${secs}s" BENCH_KEYS="$keys" \
                BENCH_KEY_START="$(((n - 1) * keys / 3))" BENCH_DELAY_MS=10
            pids+=("$LAST_WRK")
        done
        sleep "$warmup"
        secs="$KEYS_SECONDS"
    else
        secs="$KEYS_IDLE_SECONDS"
    fi
    e0="$(cluster_field "$lead" last_log_index)"
    d0="$(dir_bytes "$lead")"
    raft_sampler "$secs" "$TMP/d-$label-bytes.txt"
    wait "$SAMPLER_PID"
    e1="$(cluster_field "$lead" last_log_index)"
    d1="$(dir_bytes "$lead")"
    local active
    active="$(metric 1 gateway_rate_limit_keys | cut -d. -f1)"
    ok=0 req=0 codes=""
    for n in "${!pids[@]}"; do
        out="$TMP/wrk/d-$label-n$((n + 1)).txt"
        wait_wrk "${pids[$n]}" "$out"
        ok=$((ok + $(bench_kv "$out" ok)))
        req=$((req + $(bench_kv "$out" requests)))
        codes+="$(bench_kv "$out" codes)"
    done
    bytes="$(cat "$TMP/d-$label-bytes.txt")"
    [[ "$bytes" =~ ^[0-9]+$ ]] || die "the Raft byte sampler failed: $bytes"
    local eps bps dps offered
    eps="$(awk -v a="$e0" -v b="$e1" -v s="$secs" 'BEGIN { printf "%.1f", (b - a) / s }')"
    bps="$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.0f", b / s }')"
    dps="$(awk -v a="$d0" -v b="$d1" -v s="$secs" 'BEGIN { printf "%.0f", (b - a) / s }')"
    offered="-"
    ((keys == 0)) || offered="$(awk -v r="$req" -v s="$((warmup + KEYS_SECONDS + 5))" 'BEGIN { printf "%.0f", r / s }')"
    local per_key="-"
    ((keys == 0)) || per_key="$(awk -v r="$offered" -v k="$keys" 'BEGIN { printf "%.1f", r * 60 / k }')"
    ROWS_D+=("$label|$offered|$per_key|$active|$eps|$bps|$dps|${codes:-}")
    printf '  %s: offered %s req/s, node 1 holds %s keys, %s entries/s, %s B/s Raft RPC, %s B/s leader data dir%s\n' \
        "$label" "$offered" "$active" "$eps" "$bps" "$dps" "${codes:+, non-2xx $codes}" >&2
    [[ -z "$codes" ]] || WARNINGS+=("(d) $label: non-2xx answers $codes")
    SUMMARY+=("(d) $label $(awk -v b="$bps" 'BEGIN { printf "%.1f", b / 1024 }') KiB/s Raft RPC")
}

part_d() {
    log "(d) Raft traffic: idle, $KEYS_SMALL and $KEYS_LARGE active keys at $KEYS_RATE req/s over 3 nodes"
    raft_measure idle 0
    raft_measure "$KEYS_SMALL keys" "$KEYS_SMALL"
    raft_measure "$KEYS_LARGE keys" "$KEYS_LARGE"
}

# ------------------------------------------------------------ (c) memory ----
rss_row() { # LABEL
    local n cells=""
    for n in "${NODES[@]}"; do
        cells+="$(mib "$(rss_kib "$n" VmRSS)") / $(mib "$(rss_kib "$n" VmHWM)")|"
    done
    local keys
    keys="$(metric 1 gateway_rate_limit_keys | cut -d. -f1)"
    ROWS_C+=("$1|$keys|$cells")
    printf '  %s: node 1 holds %s keys; RSS / peak MiB: %s\n' "$1" "$keys" "${cells//|/  }" >&2
}

part_c() {
    # A fresh cluster: nothing left of the other parts' keys, in memory or in the
    # ledger the log would replay.
    log "(c) memory: a fresh cluster with snapshot_every $SNAPSHOT_DEFAULT"
    local n
    "$CLUSTER_SH" down >>"$TMP/cluster.log" 2>&1 || die "cluster.sh down failed"
    rm -rf "$SLUICE_CLUSTER_DIR/data"
    for n in "${NODES[@]}"; do
        sed -i "s/snapshot_every: $SNAPSHOT_OFF/snapshot_every: $SNAPSHOT_DEFAULT/" \
            "$SLUICE_CLUSTER_DIR/config/node-$n/node.yaml"
    done
    SKIP_BUILD=1 "$CLUSTER_SH" up >>"$TMP/cluster.log" 2>&1 || die "the fresh cluster did not come up"
    wait_served /rss/ready bench-rss
    sleep 3
    rss_row "idle"
    local target offset=0 out ok req codes
    for target in $RSS_KEYS; do
        [[ "$target" =~ ^[1-9][0-9]*$ ]] || die "RSS_KEYS: bad count '$target'"
        ((target > offset)) || continue
        log "(c) $target active keys: new keys $offset..$((target - 1)) to node 1"
        out="$TMP/wrk/c-$target.txt"
        wrk_bg "$out" 1 /rss/x 2 32 "${RSS_DEADLINE}s" BENCH_KEYS="$((target - offset))" BENCH_KEY_OFFSET="$offset"
        local pid="$LAST_WRK" started=$SECONDS have=0 over="" label="$target keys"
        while :; do
            have="$(metric 1 gateway_rate_limit_keys | cut -d. -f1)"
            ((have >= target)) && break
            kill -0 "$pid" 2>/dev/null || die "wrk stopped before node 1 held $target keys (it holds $have): $(cat "$out")"
            for n in "${NODES[@]}"; do
                (($(rss_kib "$n" VmRSS) / 1024 < RSS_MAX_MIB)) || over="node $n"
            done
            if [[ -n "$over" ]]; then
                WARNINGS+=("(c) stopped at $have of $target keys: $over passed RSS_MAX_MIB=$RSS_MAX_MIB")
                label="$have keys (stopped)"
                break
            fi
            sleep 1
        done
        kill -INT "$pid" 2>/dev/null || true
        wait_wrk "$pid" "$out"
        req="$(bench_kv "$out" requests)"
        codes="$(bench_kv "$out" codes)"
        [[ -z "$codes" ]] || WARNINGS+=("(c) $target keys: non-2xx answers $codes")
        printf '  %s requests in %ss\n' "$req" "$((SECONDS - started))" >&2
        # Let the last reports apply everywhere.
        sleep 5
        rss_row "$label"
        SUMMARY+=("(c) $label node 1 $(mib "$(rss_kib 1 VmRSS)") MiB")
        [[ -z "$over" ]] || break
        offset="$target"
    done
}

# ------------------------------------------------------------------- run -----
printf '\nRate limits on a local 3-node cluster (%s cores; sluice %s)\n' "$(nproc 2>/dev/null || echo '?')" "$SLUICE_BIN" >&2
for p in $PARTS; do "part_$p"; done

# ----------------------------------------------------------------- report ----
printf '\nRate-limit benchmark: 3 local nodes, %s cores, release build\n' "$(nproc 2>/dev/null || echo '?')"
if ((${#ROWS_A[@]})); then
    printf '\n(a) overhead, wrk -t%s -c%s against node 1, median of %s x %s\n' "$THREADS" "$CONNECTIONS" "$ROUNDS" "$DURATION"
    printf '  %-22s %10s %10s %14s  %s\n' route req/s p99 "CPU us/req" note
    for r in "${ROWS_A[@]}"; do
        IFS='|' read -r a b c d e <<<"$r"
        printf '  %-22s %10s %10s %14s  %s\n' "$a" "$b" "$c" "$d" "$e"
    done
fi
if ((${#ROWS_B[@]})); then
    printf '\n(b) accuracy, one key, limit %s per %ss, offered %sx its rate over 3 nodes (target <= 1.01)\n' \
        "$ACC_LIMIT" "$ACC_WINDOW" "$ACC_FACTOR"
    printf '  %-26s %9s %9s %9s %13s  %s\n' window requests req/s admitted admitted/limit "other answers"
    for r in "${ROWS_B[@]}"; do
        IFS='|' read -r a b c d e f <<<"$r"
        printf '  %-26s %9s %9s %9s %13s  %s\n' "$a" "$b" "$c" "$d" "$e" "$f"
    done
fi
if ((${#ROWS_D[@]})); then
    printf '\n(d) Raft traffic, policy 1000 per 60s (ip), every key on every node, %s s measured after a warm-up\n' "$KEYS_SECONDS"
    printf '  %-14s %9s %14s %12s %10s %14s %16s\n' load req/s "hits/key/min" "node 1 keys" \
        entries/s "Raft RPC B/s" "leader disk B/s"
    for r in "${ROWS_D[@]}"; do
        IFS='|' read -r a b c d e f g _ <<<"$r"
        printf '  %-14s %9s %14s %12s %10s %14s %16s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
    done
fi
if ((${#ROWS_C[@]})); then
    printf '\n(c) memory (RSS / peak, MiB); all keys sent to node 1 (nodes 2 and 3 hold the ledger only)\n'
    printf '  %-22s %12s %14s %14s %14s\n' state "node 1 keys" "node 1" "node 2" "node 3"
    for r in "${ROWS_C[@]}"; do
        IFS='|' read -r a b c d e _ <<<"$r"
        printf '  %-22s %12s %14s %14s %14s\n' "$a" "$b" "$c" "$d" "$e"
    done
fi
if ((${#WARNINGS[@]})); then
    printf '\nWARNING:\n'
    printf '  %s\n' "${WARNINGS[@]}"
fi
summary_line="$(
    IFS='|'
    printf '%s' "${SUMMARY[*]}"
)"
printf '\nSummary: %s\n' "${summary_line//|/ | }"
