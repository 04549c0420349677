#!/usr/bin/env bash
# Build the container image sluice:latest FROM scratch (no base image: no registry is
# needed, and nothing but Sluice and what it links against is in the image).
#
#   scripts/docker-image.sh                 cargo build --release -p sluice, then the image
#   scripts/docker-image.sh --binary PATH   the image from a binary already built (no
#                                           cargo): CI makes its test image from the
#                                           debug build `cargo test --workspace` left
#                                           in ${CARGO_TARGET_DIR:-target}/debug/sluice
#   scripts/docker-image.sh --tag NAME:TAG  another tag than sluice:latest
#
# The image holds:
#   /usr/local/bin/sluice        the binary (release, or --binary), stripped
#   the shared libraries `ldd` lists for it, and the dynamic loader, at their paths
#   /etc/ssl/certs/ca-certificates.crt   CA certificates (HTTPS upstreams, webhooks)
#   /etc/passwd, /etc/group      user and group `sluice` (uid/gid 10001); the image
#                                runs as that user (USER)
#   /var/lib/sluice              the data directory, owned by sluice: a fresh named
#                                volume mounted there copies that ownership, so the
#                                non-root node can write its sled files
#   /etc/sluice                  where the config directory is mounted (read-only)
#   /tmp                         mode 1777
# Entrypoint `sluice`, default command `--help`; `docker run IMAGE run --config
# /etc/sluice` starts a node.
#
# The build context is a small temporary directory this script assembles (the repo
# holds gigabytes of target/). Cargo reuses its cache and the legacy builder
# reuses its layers, so a second run with no change takes seconds.
#
# Environment (defaults in brackets):
#   SLUICE_IMAGE [sluice:latest]   tag to build (--tag)
#   SLUICE_BIN     use this binary instead of building one (--binary; a stripped
#                  copy goes into the image, the file itself is left alone). A debug
#                  binary honours SLUICE_FAULT (a deliberately broken store, for the
#                  chaos suite's demonstration); a release binary never does.
#   SKIP_BUILD [0] 1 = do not run cargo; use ${CARGO_TARGET_DIR:-target}/release/sluice
#   SLUICE_UID [10001]             uid and gid of the user `sluice`
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${SLUICE_IMAGE:-sluice:latest}"
USER_ID="${SLUICE_UID:-10001}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'docker-image: error: %s\n' "$*" >&2; exit 1; }

while (($# > 0)); do
    case "$1" in
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --binary) (($# > 1)) || die "--binary needs a path"; SLUICE_BIN="$2"; shift 2 ;;
        --binary=*) SLUICE_BIN="${1#--binary=}"; shift ;;
        --tag) (($# > 1)) || die "--tag needs a name"; IMAGE="$2"; shift 2 ;;
        --tag=*) IMAGE="${1#--tag=}"; shift ;;
        *) die "unexpected argument '$1' (see --help)" ;;
    esac
done

command -v docker >/dev/null || die "docker is required"
command -v ldd >/dev/null || die "ldd is required"
command -v strip >/dev/null || die "strip (binutils) is required"
[[ "$USER_ID" =~ ^[1-9][0-9]*$ ]] || die "SLUICE_UID must be a positive number"
[[ -r "$CA_BUNDLE" ]] || die "no CA bundle at $CA_BUNDLE (apt-get install ca-certificates)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers"

# ------------------------------------------------------------------ binary ----
start=$SECONDS
if [[ -n "${SLUICE_BIN:-}" ]]; then
    BIN="$SLUICE_BIN"
    log "image from the given binary $BIN (no cargo build)"
else
    target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" = /* ]] || target="$ROOT/$target"
    BIN="$target/release/sluice"
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        log "cargo build --release -p sluice (target dir $target)"
        (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --release -p sluice)
    fi
fi
[[ -x "$BIN" ]] || die "$BIN is not an executable (build it, or set SLUICE_BIN)"
build_secs=$((SECONDS - start))

# ------------------------------------------------------------- context dir ----
CTX="$(mktemp -d "${TMPDIR:-/tmp}/sluice-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
ROOTFS="$CTX/rootfs"
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/etc/ssl/certs" "$ROOTFS/etc/sluice" "$CTX/data"

strip -o "$ROOTFS/usr/local/bin/sluice" "$BIN"
# Pin the mtime: the legacy builder's cache key covers file metadata, so an
# unchanged binary must look unchanged.
touch -d @0 "$ROOTFS/usr/local/bin/sluice"

# Every library ldd resolves (`name => /path (addr)`) and the loader (`/path (addr)`),
# copied (symlinks followed) to the path the loader will look for it at.
libs=()
while read -r line; do
    case "$line" in
        *"=> not found"*) die "ldd: $line" ;;
        *"=> /"*) lib="${line#*=> }"; libs+=("${lib%% (*}") ;;
        /*) libs+=("${line%% (*}") ;;
    esac
done < <(ldd "$BIN")
((${#libs[@]} > 0)) || die "ldd lists no libraries for $BIN (a static binary needs none: drop this check)"
for lib in "${libs[@]}"; do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
    touch -d @0 "$ROOTFS$lib"
done

cp -L "$CA_BUNDLE" "$ROOTFS$CA_BUNDLE"
touch -d @0 "$ROOTFS$CA_BUNDLE"
cat >"$ROOTFS/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
sluice:x:$USER_ID:$USER_ID:Sluice gateway:/var/lib/sluice:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<EOF
root:x:0:
sluice:x:$USER_ID:
nogroup:x:65534:
EOF
# glibc resolves hostnames (peers, upstreams, `gateway`) through these.
printf 'hosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
mkdir -p "$ROOTFS/tmp" "$ROOTFS/var/lib"
chmod 1777 "$ROOTFS/tmp"
find "$CTX" -exec touch -h -d @0 {} +

cat >"$CTX/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=$USER_ID:$USER_ID data/ /var/lib/sluice/
USER $USER_ID:$USER_ID
# mimalloc hands freed memory back at once (MADV_DONTNEED) instead of leaving
# it counted in RSS until the kernel needs it (README, Benchmarks).
ENV MIMALLOC_PURGE_DECOMMITS=1
WORKDIR /var/lib/sluice
EXPOSE 8080 9080
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]
EOF

log "docker build -t $IMAGE (context $(du -sh "$CTX" | cut -f1), ${#libs[@]} shared libraries)"
start=$SECONDS
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$CTX" >/dev/null 2> >(grep -v -i 'deprecated\|legacy builder\|buildx\|BuildKit is currently disabled\|environment-variable\|^ *$' >&2 || true)
image_secs=$((SECONDS - start))

size="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
docker run --rm "$IMAGE" --version >/dev/null || die "$IMAGE does not start (docker run --rm $IMAGE --version)"
log "built $IMAGE: $((size / 1024 / 1024)) MiB ($size bytes); cargo ${build_secs}s, docker build ${image_secs}s"
((size < 50 * 1024 * 1024)) || die "$IMAGE is $size bytes, over the 50 MB budget"
