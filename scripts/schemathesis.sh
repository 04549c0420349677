#!/usr/bin/env bash
# Fuzzes the admin API from its own OpenAPI document: one node on loopback,
# schemathesis with every check but positive_data_acceptance (valid-looking ids of
# things that do not exist are rightly refused), bounded in time. Exit 1 on any
# failure. Used by .ci/run.
#   scripts/schemathesis.sh [SECONDS]      (default 120)
# SLUICE_BIN: the binary (default ${CARGO_TARGET_DIR:-target}/debug/sluice).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
bin="${SLUICE_BIN:-${CARGO_TARGET_DIR:-target}/debug/sluice}"
[[ -x "$bin" ]] || { echo "schemathesis.sh: no sluice binary at $bin (cargo build -p sluice)" >&2; exit 1; }
command -v schemathesis >/dev/null || python3 -m pip install -q schemathesis \
  || python3 -m pip install -q --break-system-packages schemathesis
dir="$(mktemp -d /tmp/sluice-schemathesis.XXXXXX)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
data_port="$(free_port)" admin_port="$(free_port)"
token="st-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$dir/node.yaml" <<YAML
node:
  id: 1
  listen: 127.0.0.1:$data_port
  admin_listen: 127.0.0.1:$admin_port
  data_dir: $dir/data
  workers: 1
admin:
  token: $token
log:
  level: warn
services:
  s: { upstreams: [http://127.0.0.1:9] }
routes:
  - { path: /x, service: s, auth: none }
YAML
"$bin" run --config "$dir" >"$dir/sluice.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$admin_port/admin/openapi.json" && break
  sleep 0.2
done
status=0
schemathesis run "http://127.0.0.1:$admin_port/admin/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance \
  -H "Authorization: Bearer $token" \
  --max-examples 30 --max-time "$secs" --workers 1 --no-shrink --seed 1 || status=$?
if ! kill -0 $pid 2>/dev/null; then
  echo "schemathesis.sh: the node died during the run; its log:" >&2
  tail -50 "$dir/sluice.log" >&2
  status=1
fi
if [[ $status -eq 0 ]]; then rm -rf "$dir"; else echo "node files kept in $dir" >&2; fi
exit $status
