#!/usr/bin/env bash
# Dependency audit: advisories (offline RustSec snapshot), licenses, sources, bans.
# Policy and the accepted advisories, each with its reason: deny.toml.
#   scripts/audit.sh            # needs cargo-deny (installs it when missing)
# ADVISORY_BUNDLE overrides where the snapshot bundle is (default ../shared/advisory-db/).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${ADVISORY_BUNDLE:-}"
if [[ -z "$bundle" ]]; then
  for dir in ../shared/advisory-db ../../shared/advisory-db /work/shared/advisory-db; do
    if [[ -f "$dir/rustsec-advisory-db.bundle" ]]; then
      bundle="$dir/rustsec-advisory-db.bundle"
      break
    fi
  done
fi
if [[ -z "$bundle" || ! -f "$bundle" ]]; then
  echo "scripts/audit.sh: no RustSec snapshot found (set ADVISORY_BUNDLE)" >&2
  exit 1
fi
if ! command -v cargo-deny >/dev/null 2>&1; then
  cargo install --locked cargo-deny
fi
# cargo-deny keeps each database under <db-path>/<name>-<hash of its URL>.
db=target/advisory-dbs/advisory-db-3157b0e258782691
if [[ ! -d "$db/.git" ]]; then
  rm -rf "$db"
  mkdir -p "$(dirname "$db")"
  git clone --quiet "$bundle" "$db"
else
  git -C "$db" fetch --quiet "$(realpath "$bundle")" '+refs/heads/*:refs/remotes/origin/*' \
    && git -C "$db" reset --quiet --hard "$(git -C "$db" for-each-ref --format='%(objectname)' refs/remotes/origin | head -1)"
fi
echo "advisory snapshot: $(git -C "$db" log -1 --format=%cs) ($(ls "$db"/crates | wc -l) crates with advisories)"
# cargo metadata needs every platform's crates on disk before --offline.
cargo fetch --locked --quiet
cargo deny --offline check advisories licenses sources bans
