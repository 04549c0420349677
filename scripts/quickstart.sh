#!/usr/bin/env bash
# Starts a working gateway on a fresh machine: builds sluice, starts the demo
# upstream (sluice echo-server on 127.0.0.1:9001) and runs a node on :8080 (admin
# API on 127.0.0.1:9080) with ./config. Then:
#   curl localhost:8080/api/v1/users/42          # a public route (auth: none)
#   curl localhost:8080/api/v1/admin/stats       # a protected one: 401 without a key
# The README shows how to create an API key with the admin token, which is
# $SLUICE_ADMIN_TOKEN if set, else a new random one; either way it is written to
# data/quickstart/admin-token (mode 600).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sluice
bin="${CARGO_TARGET_DIR:-target}/release/sluice"

# ./config names no admin token (a default one would be a well-known secret), so
# the node reads data/quickstart/config: a link to every entry of ./config (edit
# those files and send SIGHUP as usual) plus admin.yaml, which adds the token.
run="data/quickstart"
umask 077
mkdir -p "$run"
if [[ -z "${SLUICE_ADMIN_TOKEN:-}" ]]; then
    SLUICE_ADMIN_TOKEN="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
fi
case "$SLUICE_ADMIN_TOKEN" in
*[\"\\]* | *$'\n'*)
    echo "quickstart: SLUICE_ADMIN_TOKEN must be one line without quotes or backslashes" >&2
    exit 1
    ;;
esac
export SLUICE_ADMIN_TOKEN
printf '%s\n' "$SLUICE_ADMIN_TOKEN" >"$run/admin-token"
rm -rf "$run/config"
mkdir "$run/config"
for entry in config/*; do
    ln -s "$PWD/$entry" "$run/config/"
done
# Substituted from the environment when the node reads it: the file holds no secret.
# shellcheck disable=SC2016
printf 'admin:\n  token: "${SLUICE_ADMIN_TOKEN}"\n' >"$run/config/admin.yaml"

"$bin" echo-server --listen 127.0.0.1:9001 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
cat <<MSG
demo upstream on 127.0.0.1:9001; gateway on :8080, admin API on 127.0.0.1:9080
  public:    curl localhost:8080/api/v1/users/42
  protected: curl localhost:8080/api/v1/admin/stats   (401 without a credential)
  admin token in $run/admin-token; create an API key as the README shows
MSG
"$bin" run --config "$run/config"
