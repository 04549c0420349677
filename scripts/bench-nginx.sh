# shellcheck shell=bash
# nginx configs, a CPU counter and a few helpers, shared by scripts/bench.sh,
# scripts/bench-cost.sh, scripts/bench-openloop.sh and scripts/bench-answer.sh
# (sourced, not run). Every proxy in the benchmarks
# forwards to the same upstream: an nginx server that answers `return 200` itself,
# in its own nginx instance (so it never shares the proxy nginx's worker).
# `keepalive_requests` is raised from nginx's default (1,000 requests, then the
# connection is closed) on every side: the other proxies keep their connections
# open indefinitely, and the reconnects would be charged to whoever hit them.

# nginx_temp_paths PREFIX : the temp-path lines for an nginx instance rooted at
# PREFIX (only the modules this nginx build has), so it never touches /var/lib/nginx.
nginx_temp_paths() {
    local prefix="$1" m bin
    bin="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
    mkdir -p "$prefix/tmp"
    printf '    client_body_temp_path %s/tmp/body;\n    proxy_temp_path %s/tmp/proxy;\n' "$prefix" "$prefix"
    for m in fastcgi uwsgi scgi; do
        if ! "$bin" -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
            printf '    %s_temp_path %s/tmp/%s;\n' "$m" "$prefix" "$m"
        fi
    done
}

# nginx_main_conf PREFIX WORKERS MASTER : the top of a config (MASTER on|off; off
# runs the one worker in the foreground process itself, e.g. under valgrind).
nginx_main_conf() {
    cat <<EOF
daemon off;
master_process $3;
worker_processes $2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}

# write_nginx_upstream_conf PREFIX PORT : the benchmark upstream, one worker,
# access log off, `return 200` with a short fixed body on every path.
write_nginx_upstream_conf() {
    local prefix="$1" port="$2"
    mkdir -p "$prefix"
    {
        nginx_main_conf "$prefix" 1 on
        printf 'http {\n    access_log off;\n    keepalive_requests 1000000;\n'
        nginx_temp_paths "$prefix"
        cat <<EOF
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            default_type text/plain;
            return 200 "hello from the benchmark upstream\n";
        }
    }
}
EOF
    } >"$prefix/nginx.conf"
}

# write_nginx_proxy_conf PREFIX PORT UPSTREAM_PORT WORKERS MASTER [FORWARD_HEADERS] :
# nginx as a reverse proxy in front of the upstream, keeping upstream connections
# alive. FORWARD_HEADERS=1 (default 0) also sends what Sluice sends every upstream
# request by design: `X-Request-ID` (nginx's $request_id), `X-Forwarded-For`,
# `X-Forwarded-Proto` and `X-Forwarded-Host`, as an nginx in front of an API is
# usually configured; the default is issue 12's plain proxy_pass.
write_nginx_proxy_conf() {
    local prefix="$1" port="$2" upstream_port="$3" workers="$4" master="$5" forward="${6:-0}"
    local extra=""
    if [[ "$forward" == 1 ]]; then
        extra='
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;'
    fi
    mkdir -p "$prefix"
    {
        nginx_main_conf "$prefix" "$workers" "$master"
        printf 'http {\n    access_log off;\n    keepalive_requests 1000000;\n'
        nginx_temp_paths "$prefix"
        cat <<EOF
    upstream bench_upstream {
        server 127.0.0.1:$upstream_port;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";$extra
        }
    }
}
EOF
    } >"$prefix/nginx.conf"
}

# cpu_ticks PID : user+system clock ticks of PID and its children processes (all
# threads included), e.g. nginx's master and workers.
cpu_ticks() {
    local pid="$1" total=0 p t
    [[ -z "$pid" ]] && { echo 0; return; }
    for p in "$pid" $(pgrep -P "$pid" || true); do
        t="$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)"
        total=$((total + t))
    done
    echo "$total"
}

# bench_tmp PREFIX : makes the run's temp dir ($TMP) and an empty PIDS; at exit the
# processes in PIDS are stopped and $TMP removed (kept with KEEP_TMP=1, or when the
# script failed, for its logs).
bench_tmp() {
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    chmod 755 "$TMP"
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    local rc=$? p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ "${KEEP_TMP:-0}" == 1 || $rc -ne 0 ]]; then
        printf '==> temp dir kept: %s\n' "$TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}

# median [PRINTF_FORMAT (%.0f)] : the median of the numbers on stdin, one a line.
median() {
    sort -g | awk -v f="${1:-%.0f}\n" '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf f, a[(NR + 1) / 2]; else printf f, (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# install_missing COMMAND:PACKAGE... : installs (apt-get) the Debian package of each
# command not found, unless SKIP_INSTALL=1.
install_missing() {
    [[ "${SKIP_INSTALL:-0}" == 1 ]] && return 0
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || [[ -x "/usr/sbin/${pair%%:*}" ]] || missing+=("${pair#*:}")
    done
    ((${#missing[@]} > 0)) || return 0
    printf '==> installing %s (apt-get)\n' "${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# field LINE KEY : the value of KEY in LINE, a line of key=value pairs (openloop's).
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# record_round ROUND TARGET LINE : prints one round's LINE, warns if it counted
# errors, and keeps it in $TMP/results-TARGET.
record_round() {
    printf '  round %s  %-14s %s\n' "$1" "$2" "$3"
    [[ "$(field "$3" errors)" == 0 ]] || printf '    WARNING %s: errors in this run\n' "$2"
    echo "$3" >>"$TMP/results-$2"
}
