#!/usr/bin/env bash
# Benchmark: replicated admin writes (one Raft entry each) on a local 3-node cluster.
#
# What it does:
#   1. installs wrk from Debian if it is missing (needs root),
#   2. builds sluice in release (honours SLUICE_BIN, else CARGO_TARGET_DIR/./target),
#   3. starts its own three-node cluster with scripts/cluster.sh in a temp dir, on
#      ports of its own (data 18181-18183, admin 19181-19183, upstream 19101),
#   4. for each target (the leader, a follower that forwards to the leader) and each
#      client count (1 and 32): a short warm-up, then DURATION of wrk sending admin
#      writes, each a PUT /admin/services/bench with a new upstream list (WRITE=service)
#      or a PUT of a new route /admin/routes/bench-<run>-<thread>-<n> (WRITE=route),
#   5. checks that no acknowledged write was lost: CHECK_WRITES distinct routes are
#      written through a follower by CHECK_CONCURRENCY clients; once the cluster is
#      quiet, every acknowledged one must be in GET /admin/config of all three nodes,
#      the nodes must agree on applied_index and route count, the data plane of
#      every node must serve the last one, and the entries applied must be at least
#      the writes acknowledged during the whole run,
#   6. prints writes/s, p50 and p99 latency (as the client sees it: the commit
#      latency plus one HTTP round trip, plus the forward for a follower) and errors
#      (non-2xx answers and socket errors) per target x clients, the consistency
#      check and a one-line summary.
# Every process it started is stopped on exit (cluster.sh down); the temp dir is
# removed unless KEEP_TMP=1 or the run failed. Exit status 1 when the consistency
# check fails.
#
# Environment (defaults in brackets):
#   DURATION [10s]          length of each measured run
#   WARMUP [1s]             wrk warm-up before each measured run ("0" = none)
#   CLIENTS ["1 32"]        client counts; wrk uses -t1 for 1 client, else -t2
#   TARGETS ["leader follower"]
#   WRITE [service]         service: PUT /admin/services/bench (the config stays the
#                           same size); route: a new route per write (the config
#                           grows, so later runs validate and apply a bigger config)
#   CHECK_WRITES [200], CHECK_CONCURRENCY [8]   the lost-write check
#   WRK_TIMEOUT [10s]       wrk's per-request timeout (slower answers count as errors)
#   SLUICE_PORT_BASE [18180], SLUICE_ADMIN_PORT_BASE [19180], SLUICE_UPSTREAM_PORT [19101]
#   SLUICE_BIN              use this binary (no build)
#   KEEP_TMP [0]            1 = keep the temp dir (cluster data, logs, raw wrk output)
#   SKIP_INSTALL [0], SKIP_BUILD [0]
set -euo pipefail

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
CLIENTS="${CLIENTS:-1 32}"
TARGETS="${TARGETS:-leader follower}"
WRITE="${WRITE:-service}"
CHECK_WRITES="${CHECK_WRITES:-200}"
CHECK_CONCURRENCY="${CHECK_CONCURRENCY:-8}"
WRK_TIMEOUT="${WRK_TIMEOUT:-10s}"
KEEP_TMP="${KEEP_TMP:-0}"
SKIP_INSTALL="${SKIP_INSTALL:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
export SLUICE_PORT_BASE="${SLUICE_PORT_BASE:-18180}"
export SLUICE_ADMIN_PORT_BASE="${SLUICE_ADMIN_PORT_BASE:-19180}"
export SLUICE_UPSTREAM_PORT="${SLUICE_UPSTREAM_PORT:-19101}"
NODES=(1 2 3)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLUSTER_SH="$ROOT/scripts/cluster.sh"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-raft: error: %s\n' "$*" >&2; exit 1; }

case "$WRITE" in service | route) ;; *) die "WRITE must be service or route, got '$WRITE'" ;; esac
[[ "$CHECK_WRITES" =~ ^[0-9]+$ && "$CHECK_CONCURRENCY" =~ ^[1-9][0-9]*$ ]] ||
    die "CHECK_WRITES and CHECK_CONCURRENCY must be numbers"

# ---------------------------------------------------------------- cleanup ----
TMP=""
CLUSTER_STARTED=0
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local rc=$?
    set +e
    if ((CLUSTER_STARTED)); then
        log "stopping the cluster"
        "$CLUSTER_SH" down >>"$TMP/cluster.log" 2>&1 ||
            printf 'bench-raft: cluster.sh down failed; see %s/cluster.log\n' "$TMP" >&2
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
command -v wrk >/dev/null || die "wrk not found"
command -v curl >/dev/null || die "curl not found"
command -v python3 >/dev/null || die "python3 not found"

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

# admin_get PORT PATH : GET with the admin token (on curl's stdin, not in `ps`).
admin_get() {
    curl -sf --max-time 3 -K - "http://127.0.0.1:$1$2" <<<"header = \"Authorization: Bearer $TOKEN\""
}

# leader_view PORT : "leader_id term" as node at PORT sees it ("-" when none).
leader_view() {
    admin_get "$1" /admin/cluster | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d.get("leader_id") if d.get("leader_id") is not None else "-", d.get("term"))'
}

# current_leader : "leader_id term", asking the nodes in turn until one knows.
current_leader() {
    local n v deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        for n in "${NODES[@]}"; do
            if v="$(leader_view "$(admin_port "$n")")" && [[ "$v" != -* ]]; then
                echo "$v"
                return 0
            fi
        done
        sleep 0.3
    done
    return 1
}

fmt_ms() { awk -v v="$1" 'BEGIN { if (v < 10) printf "%.2fms", v; else printf "%.1fms", v }'; }

# ------------------------------------------------------------------ setup ----
for n in "${NODES[@]}"; do
    for p in "$(data_port "$n")" "$(admin_port "$n")"; do
        port_in_use "$p" && die "port 127.0.0.1:$p is already in use (set SLUICE_PORT_BASE / SLUICE_ADMIN_PORT_BASE)"
    done
done
port_in_use "$SLUICE_UPSTREAM_PORT" &&
    die "port 127.0.0.1:$SLUICE_UPSTREAM_PORT is already in use (set SLUICE_UPSTREAM_PORT)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-raft.XXXXXX")"
mkdir -p "$TMP/wrk"
export SLUICE_CLUSTER_DIR="$TMP/cluster"
# A fresh secret and token for this run (not the ones of a developer's cluster).
unset SLUICE_CLUSTER_SECRET SLUICE_ADMIN_TOKEN
export SLUICE_LOG_LEVEL="${SLUICE_LOG_LEVEL:-warn}"
log "temp dir: $TMP"

log "starting a 3-node cluster (scripts/cluster.sh up, log: $TMP/cluster.log)"
CLUSTER_STARTED=1
if ! SKIP_BUILD=1 "$CLUSTER_SH" up >"$TMP/cluster.log" 2>&1; then
    sed 's/^/    /' "$TMP/cluster.log" >&2
    die "the cluster did not come up"
fi
TOKEN="$(sed -n 's/^SLUICE_ADMIN_TOKEN=//p' "$SLUICE_CLUSTER_DIR/secrets.env")"
[[ -n "$TOKEN" ]] || die "no admin token in $SLUICE_CLUSTER_DIR/secrets.env"

# The wrk script: every request is one admin write; per-thread counters of 2xx
# answers and of every other status, summed in done() with the latency percentiles.
cat >"$TMP/write.lua" <<'EOF'
local token = os.getenv("BENCH_TOKEN")
local kind = os.getenv("BENCH_WRITE") or "service"
local run = os.getenv("BENCH_RUN") or "r"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

n = 0
ok = 0
bad = {}

function init(args)
  wrk.method = "PUT"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  if kind == "route" then
    local id = run .. "-" .. tid .. "-" .. n
    return wrk.format(nil, "/admin/routes/bench-" .. id, nil,
      '{"path":"/bench/' .. id .. '","service":"demo"}')
  end
  -- A different upstream list every time, so every write really changes the config.
  local port = 20000 + (tid * 7919 + n) % 40000
  return wrk.format(nil, "/admin/services/bench", nil,
    '{"upstreams":["http://127.0.0.1:' .. port .. '"]}')
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    local k = tostring(status)
    bad[k] = (bad[k] or 0) + 1
  end
end

function done(summary, latency, requests)
  local total_ok, codes, keys = 0, {}, {}
  for _, t in ipairs(threads) do
    total_ok = total_ok + (t:get("ok") or 0)
    for k, v in pairs(t:get("bad") or {}) do
      if codes[k] == nil then table.insert(keys, k) end
      codes[k] = (codes[k] or 0) + v
    end
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do table.insert(parts, k .. "x" .. codes[k]) end
  local e = summary.errors
  io.write(string.format(
    "BENCH ok=%d requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d timeout=%d codes=%s\n",
    total_ok, summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.timeout, table.concat(parts, ",")))
end
EOF

# bench_kv FILE KEY : a value from the BENCH line of a wrk output file.
bench_kv() { sed -n 's/^BENCH .*/&/p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# run_wrk NAME PORT CLIENTS DURATION : wrk against node admin PORT; output in wrk/NAME.txt
run_wrk() {
    local name="$1" port="$2" clients="$3" duration="$4" threads=2
    ((clients > 1)) || threads=1
    ((threads <= clients)) || threads="$clients"
    local out="$TMP/wrk/$name.txt"
    BENCH_TOKEN="$TOKEN" BENCH_WRITE="$WRITE" BENCH_RUN="$name" \
        wrk -t"$threads" -c"$clients" -d"$duration" --timeout "$WRK_TIMEOUT" --latency \
        -s "$TMP/write.lua" "http://127.0.0.1:$port" >"$out" 2>&1 ||
        die "wrk ($name) failed: $(cat "$out")"
    grep -q '^BENCH ' "$out" || die "wrk ($name) printed no result (script error?):
$(cat "$out")"
}

# ------------------------------------------------------------------- run -----
lt="$(current_leader)" || die "no node knows a leader"
read -r LEADER TERM0 <<<"$lt"
log "leader: node $LEADER (term $TERM0)"
APPLIED0="$(admin_get "$(admin_port "$LEADER")" /admin/cluster |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["applied_index"])')"

printf '\nRaft admin writes on a local 3-node cluster (%s cores): %s per run, warm-up %s, write = %s\n' \
    "$(nproc 2>/dev/null || echo '?')" "$DURATION" "$WARMUP" \
    "$([[ "$WRITE" == route ]] && echo 'PUT /admin/routes/bench-<n> (new route each)' ||
        echo 'PUT /admin/services/bench (new upstream list each)')"

ROWS=()          # "target clients node writes/s p50_ms p99_ms errors note"
SUMMARY=()
ANOMALIES=()
TOTAL_OK=0
for target in $TARGETS; do
    for clients in $CLIENTS; do
        [[ "$clients" =~ ^[1-9][0-9]*$ ]] || die "bad client count '$clients'"
        # Leadership can move between runs: pick the target afresh each time.
        lt="$(current_leader)" || die "no node knows a leader (before $target x$clients)"
        read -r leader term_before <<<"$lt"
        case "$target" in
            leader) node="$leader" ;;
            follower)
                node=""
                for n in "${NODES[@]}"; do [[ "$n" != "$leader" ]] && { node="$n"; break; }; done
                ;;
            *) die "unknown target '$target' (leader or follower)" ;;
        esac
        port="$(admin_port "$node")"
        name="$target-c$clients"
        if [[ "$WARMUP" != 0 && "$WARMUP" != 0s ]]; then
            run_wrk "$name-warmup" "$port" "$clients" "$WARMUP"
            TOTAL_OK=$((TOTAL_OK + $(bench_kv "$TMP/wrk/$name-warmup.txt" ok)))
        fi
        run_wrk "$name" "$port" "$clients" "$DURATION"
        out="$TMP/wrk/$name.txt"
        ok="$(bench_kv "$out" ok)"
        TOTAL_OK=$((TOTAL_OK + ok))
        dur_us="$(bench_kv "$out" duration_us)"
        wps="$(awk -v ok="$ok" -v d="$dur_us" 'BEGIN { printf "%.0f", (d > 0 ? ok / (d / 1e6) : 0) }')"
        p50="$(awk -v u="$(bench_kv "$out" p50_us)" 'BEGIN { printf "%.3f", u / 1000 }')"
        p99="$(awk -v u="$(bench_kv "$out" p99_us)" 'BEGIN { printf "%.3f", u / 1000 }')"
        errs=()
        codes="$(bench_kv "$out" codes)"
        [[ -z "$codes" ]] || errs+=("${codes//,/ }")
        for k in connect read write timeout; do
            v="$(bench_kv "$out" "$k")"
            ((v == 0)) || errs+=("$k x$v")
        done
        errtext="${errs[*]:-0}"
        note=""
        lt="$(current_leader)" || lt="- -"
        read -r leader_after term_after <<<"$lt"
        if [[ "$leader_after" != "$leader" || "$term_after" != "$term_before" ]]; then
            note="leader changed: node $leader term $term_before -> node $leader_after term $term_after"
            ANOMALIES+=("$name: $note")
        fi
        [[ "$errtext" == 0 ]] || ANOMALIES+=("$name: errors $errtext")
        ROWS+=("$target|$clients|$node|$wps|$p50|$p99|$errtext|$note")
        printf '  %-8s %3s client(s) via node %s: %6s writes/s  p50 %-9s p99 %-9s errors %s%s\n' \
            "$target" "$clients" "$node" "$wps" "$(fmt_ms "$p50")" "$(fmt_ms "$p99")" "$errtext" \
            "${note:+  ($note)}" >&2
        SUMMARY+=("$target x$clients $wps w/s p99 $(fmt_ms "$p99")")
    done
done

# ----------------------------------------------------- lost-write check ------
lt="$(current_leader)" || die "no node knows a leader (after the runs)"
read -r leader _ <<<"$lt"
follower=""
for n in "${NODES[@]}"; do [[ "$n" != "$leader" ]] && { follower="$n"; break; }; done
log "lost-write check: $CHECK_WRITES routes through follower node $follower, $CHECK_CONCURRENCY clients"
ports=()
for n in "${NODES[@]}"; do ports+=("$n:$(admin_port "$n"):$(data_port "$n")"); done
set +e
CHECK_OUT="$(BENCH_TOKEN="$TOKEN" python3 - "$follower" "$CHECK_WRITES" "$CHECK_CONCURRENCY" \
    "$APPLIED0" "$TOTAL_OK" "${ports[@]}" <<'EOF'
import http.client, json, os, sys, time
from concurrent.futures import ThreadPoolExecutor

follower, count, conc, applied0, acked_before = (int(a) for a in sys.argv[1:6])
nodes = {}
for spec in sys.argv[6:]:
    n, admin, data = (int(x) for x in spec.split(":"))
    nodes[n] = (admin, data)
token = os.environ["BENCH_TOKEN"]
auth = {"Authorization": "Bearer " + token}
run = "chk%d" % int(time.time())

def call(port, method, path, body=None, timeout=15):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = dict(auth)
        if body is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    except Exception as e:
        return None, str(e).encode()
    finally:
        c.close()

def put(i):
    rid = "%s-%d" % (run, i)
    body = json.dumps({"path": "/bench-check/%s/%d" % (run, i), "service": "demo", "auth": "none"})
    status, _ = call(nodes[follower][0], "PUT", "/admin/routes/" + rid, body)
    return rid, status

with ThreadPoolExecutor(conc) as pool:
    results = list(pool.map(put, range(count)))
acked = [rid for rid, s in results if s is not None and 200 <= s < 300]
failed = {}
for rid, s in results:
    if not (s is not None and 200 <= s < 300):
        failed[str(s)] = failed.get(str(s), 0) + 1

def cluster(n):
    s, b = call(nodes[n][0], "GET", "/admin/cluster")
    return json.loads(b) if s == 200 else None

# Quiet: every node has applied the same index, twice in a row.
deadline, last, quiet = time.time() + 20, None, False
while time.time() < deadline:
    views = {n: cluster(n) for n in nodes}
    idx = tuple(v["applied_index"] if v else None for v in views.values())
    if None not in idx and len(set(idx)) == 1 and idx == last:
        quiet = True
        break
    last = idx
    time.sleep(0.3)
views = {n: cluster(n) for n in nodes}

problems = []
if not quiet:
    problems.append("nodes did not converge within 20 s: applied_index %s" %
                    {n: (v or {}).get("applied_index") for n, v in views.items()})
route_counts, check_counts = {}, {}
for n in nodes:
    s, b = call(nodes[n][0], "GET", "/admin/config")
    if s != 200:
        problems.append("node %d: GET /admin/config answered %s" % (n, s))
        continue
    ids = set()
    for r in json.loads(b).get("routes") or []:
        ids.add(r.get("id") or r.get("path"))
    route_counts[n] = len(ids)
    mine = {i for i in ids if i.startswith(run + "-")}
    check_counts[n] = len(mine)
    missing = [rid for rid in acked if rid not in mine]
    if missing:
        problems.append("node %d lacks %d acknowledged route(s), e.g. %s" % (n, len(missing), missing[:3]))
if len(set(route_counts.values())) > 1:
    problems.append("route counts differ: %s" % route_counts)
if len(set(check_counts.values())) > 1:
    problems.append("check-route counts differ: %s" % check_counts)
applied = {n: (v or {}).get("applied_index") for n, v in views.items()}
# Every acknowledged write is one applied entry (plus no-ops, membership, seed...).
entries = (max(a for a in applied.values() if a is not None) - applied0) if any(applied.values()) else 0
acked_total = acked_before + len(acked)
if entries < acked_total:
    problems.append("%d writes acknowledged but only %d entries applied since the start" % (acked_total, entries))
# The data plane of every node serves the last acknowledged route.
if acked:
    last_id = max(acked, key=lambda r: int(r.rsplit("-", 1)[1]))
    path = "/bench-check/%s/%s" % (run, last_id.rsplit("-", 1)[1])
    for n in nodes:
        c = http.client.HTTPConnection("127.0.0.1", nodes[n][1], timeout=5)
        try:
            c.request("GET", path)
            st = c.getresponse().status
        except Exception as e:
            st = str(e)
        finally:
            c.close()
        if st != 200:
            problems.append("node %d data plane: GET %s -> %s" % (n, path, st))

print("acked=%d" % len(acked))
print("failed=%s" % (",".join("%sx%d" % kv for kv in sorted(failed.items())) or "0"))
print("present=%s" % ",".join("%d:%d" % kv for kv in sorted(check_counts.items())))
print("routes=%s" % ",".join("%d:%d" % kv for kv in sorted(route_counts.items())))
print("applied=%s" % ",".join("%d:%s" % kv for kv in sorted(applied.items())))
print("entries=%d" % entries)
print("acked_total=%d" % acked_total)
for p in problems:
    print("problem=" + p)
sys.exit(1 if problems else 0)
EOF
)"
CHECK_RC=$?
set -e
printf '%s\n' "$CHECK_OUT" >"$TMP/check.txt"
ck() { sed -n "s/^$1=//p" "$TMP/check.txt"; }
[[ -n "$(ck acked)" ]] || { cat "$TMP/check.txt" >&2; die "the lost-write check did not run"; }

# ----------------------------------------------------------------- report ----
printf '\n  %-9s %7s %5s %10s %10s %10s  %s\n' target clients node writes/s p50 p99 errors
for row in "${ROWS[@]}"; do
    IFS='|' read -r t c nd w p50 p99 e note <<<"$row"
    printf '  %-9s %7s %5s %10s %10s %10s  %s%s\n' "$t" "$c" "$nd" "$w" "$(fmt_ms "$p50")" "$(fmt_ms "$p99")" \
        "$e" "${note:+  ($note)}"
done

printf '\nLost-write check (%s routes through follower node %s, %s clients): %s acknowledged' \
    "$CHECK_WRITES" "$follower" "$CHECK_CONCURRENCY" "$(ck acked)"
[[ "$(ck failed)" == 0 ]] || printf ', failed: %s' "$(ck failed)"
printf '\n  present per node (node:count): %s; all routes: %s\n' "$(ck present)" "$(ck routes)"
printf '  applied_index per node: %s; %s entries applied since start >= %s writes acknowledged\n' \
    "$(ck applied)" "$(ck entries)" "$(ck acked_total)"
if ((CHECK_RC == 0)); then
    CONSISTENCY="consistency OK ($(ck acked)/$CHECK_WRITES acked, all on 3 nodes)"
    printf '  result: OK, no acknowledged write lost; the nodes agree\n'
else
    CONSISTENCY="consistency FAILED"
    printf '  result: FAILED\n'
    ck problem | sed 's/^/    - /'
fi
[[ "$(ck failed)" == 0 ]] || ANOMALIES+=("lost-write check: writes failed: $(ck failed)")

if ((${#ANOMALIES[@]} > 0)); then
    printf '\nWARNING (raw wrk output in %s/wrk; KEEP_TMP=1 keeps it):\n' "$TMP"
    printf '  %s\n' "${ANOMALIES[@]}"
fi

summary_line="$(
    IFS='|'
    printf '%s' "${SUMMARY[*]}"
)"
summary_line="${summary_line//|/ | } | $CONSISTENCY"
((${#ANOMALIES[@]} == 0)) || summary_line+=" | WARNING: see above"
printf '\nSummary: %s\n' "$summary_line"
exit "$CHECK_RC"
