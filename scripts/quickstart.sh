#!/usr/bin/env bash
# Starts a working gateway on a fresh machine: builds sluice, starts the demo
# upstream (sluice echo-server on 127.0.0.1:9001) and runs a node on :8080 with
# ./config. Then: curl localhost:8080/api/v1/users/42
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sluice
bin="${CARGO_TARGET_DIR:-target}/release/sluice"
"$bin" echo-server --listen 127.0.0.1:9001 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
echo "demo upstream on 127.0.0.1:9001; gateway on :8080 — try: curl localhost:8080/api/v1/users/42"
"$bin" run --config ./config
