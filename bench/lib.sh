# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables set here are used by the scripts that source it
# bench/lib.sh — shell helpers shared by the benchmark scripts (sourced, not run).
#
# Bookkeeping every script needs: logging, a temp dir and the list of processes we started
# (stopped by PID on exit, also on Ctrl-C/TERM), packages, CPU pinning and nice levels, port
# checks, waiting for a server, bounded background commands, the tandem build, the backend
# nginx, the machine description. The caller sets `set -euo pipefail` and HERE/ROOT first.
#
#   source "$HERE/lib.sh"
#   bench_tmp tandem-tls          # TMP, STARTED, traps
#   bench_packages haproxy:haproxy nginx:nginx wrk:wrk h2load:nghttp2-client
#   bench_pinning                 # NCPU NICE PRIO PIN_PROXY PIN_CLIENT PIN_OK CLK_TCK
#   bench_ports_free 18201 18202  # or die
#   bench_tandem_build            # TANDEM_OK, TANDEM_BIN (a private copy)
#   bench_backends "$TMP" 18201 18202   # BACKEND_PID BACKEND_WORKERS
#   bench_versions                # HAPROXY_V NGINX_V WRK_V H2LOAD_V TANDEM_V MODEL MEM GITREV
# bench_hook_cleanup, when the caller defines it, runs first on exit.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------ processes we started
declare -a STARTED=()   # every PID we started (killed on exit, newest first)
BUILD_PID=""            # cargo while it builds

kill_pid() {   # kill_pid PID: TERM, wait up to 5 s, then KILL. Only PIDs we started.
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        # a zombie child of ours is reaped by wait below
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

forget_pid() {   # drop a PID we stopped ourselves from the cleanup list
    local i
    for i in "${!STARTED[@]}"; do [[ "${STARTED[$i]}" == "$1" ]] && unset 'STARTED[i]'; done
    STARTED=("${STARTED[@]+"${STARTED[@]}"}")
}

children_of() { pgrep -P "$1" 2>/dev/null || true; }   # direct children (nginx workers)

_bench_cleanup() {
    local rc=$? i pid
    set +e
    if declare -F bench_hook_cleanup >/dev/null; then bench_hook_cleanup; fi
    if [[ -n "$BUILD_PID" ]] && kill -0 "$BUILD_PID" 2>/dev/null; then
        for pid in $(pgrep -P "$BUILD_PID" 2>/dev/null); do   # rustc, build scripts
            for i in $(pgrep -P "$pid" 2>/dev/null); do kill -TERM "$i" 2>/dev/null; done   # their linker
            kill -TERM "$pid" 2>/dev/null
        done
    fi
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        pid="${STARTED[$i]}"
        [[ -n "$pid" ]] && kill_pid "$pid"
    done
    if [[ -n "${KEEP_TMP:-}" ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}

bench_tmp() {   # bench_tmp NAME: TMP (mktemp -d), traps
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    chmod 755 "$TMP"   # nginx workers drop root privileges and must read the docroot
    trap _bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

run_bg() {   # run_bg SECONDS-LIMIT OUT ERR CMD...: bounded, in the background + wait (signals are handled at once)
    local limit="$1" out="$2" err="$3" rc=0 pid
    shift 3
    timeout -k 5 "$limit" "$@" >"$out" 2>"$err" &
    pid=$!
    STARTED+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# ------------------------------------------------------------------ prerequisites
bench_packages() {   # bench_packages COMMAND:PACKAGE...: apt-get install what is missing (root only)
    local -a missing=() pkgs=()
    local cp
    for cp in "$@"; do command -v "${cp%%:*}" >/dev/null || missing+=("${cp#*:}"); done
    ((${#missing[@]} == 0)) && return 0
    log "installing missing packages: ${missing[*]}"
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    for cp in "${missing[@]}"; do
        # Debian 11 ships a real nginx-light; in Debian 12 it is a transitional package for nginx.
        if [[ "$cp" == nginx ]] && apt-cache show nginx-light >/dev/null 2>&1; then pkgs+=(nginx-light); else pkgs+=("$cp"); fi
    done
    apt-get install -y -q "${pkgs[@]}" || { apt-get update -q && apt-get install -y -q "${pkgs[@]}"; } \
        || die "apt-get install ${pkgs[*]} failed"
}

bench_pinning() {   # uses PROXY_CPU CLIENT_CPU NICE; sets NCPU NICE PRIO PIN_PROXY PIN_CLIENT PIN_OK CLK_TCK
    NCPU="$(nproc)"
    if [[ -z "${NICE:-}" ]]; then
        if [[ "$(id -u)" == 0 ]]; then NICE=-10; else NICE=0; fi
    fi
    [[ "$NICE" =~ ^-?[0-9]+$ ]] || die "NICE must be an integer (got '$NICE')"
    PRIO=()
    if [[ "$NICE" != 0 ]]; then
        # With sched_autogroup, nice only ranks processes within one session; so each benchmark
        # process gets its own session (setsid, which does not fork here: $! stays the PID of the
        # program) and that session's autogroup the same nice level (see bench/README.md, "Noise").
        # shellcheck disable=SC2016  # $0 and $@ belong to the inner bash
        PRIO=(setsid bash -c 'echo "$0" >/proc/self/autogroup 2>/dev/null || true; exec "$@"' "$NICE" nice -n "$NICE")
    fi
    PIN_PROXY=("${PRIO[@]+"${PRIO[@]}"}")
    PIN_CLIENT=("${PRIO[@]+"${PRIO[@]}"}")
    PIN_OK=1
    if ((NCPU < 2)) || ((PROXY_CPU >= NCPU || CLIENT_CPU >= NCPU)); then
        log "warning: $NCPU CPU(s); cannot pin to cores $PROXY_CPU and $CLIENT_CPU — running unpinned"
        PIN_OK=0
    else
        PIN_PROXY+=(taskset -c "$PROXY_CPU")
        PIN_CLIENT+=(taskset -c "$CLIENT_CPU")
    fi
    CLK_TCK="$(getconf CLK_TCK)"
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

bench_ports_free() {   # bench_ports_free PORT...: die when one is in use
    local p
    for p in "$@"; do
        port_free "$p" || die "127.0.0.1:$p is already in use (another benchmark running?)"
    done
}

wait_http() {   # wait_http URL PID [curl opts...]: up to 5 s for a 2xx while PID lives
    local url="$1" pid="$2" i
    shift 2
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if curl -sf -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------ tandem
# Builds tandem (unless SKIP_BUILD=1) and runs a private copy, so that a concurrent 'cargo build'
# cannot swap the binary mid-benchmark. OUT_DIR (ours, the results dir) is kept from cargo:
# ring's build script tracks a variable of that name, and a new value rebuilds half the workspace.
bench_tandem_build() {   # uses TANDEM_BIN SKIP_BUILD; sets TANDEM_OK (0/1), TANDEM_BIN
    TANDEM_OK=0
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        log "building tandem (cargo build --release -p tandem)"
        (cd "$ROOT" && exec env -u OUT_DIR cargo build --release -p tandem) >"$TMP/cargo.log" 2>&1 &
        BUILD_PID=$!
        STARTED+=("$BUILD_PID")
        local rc=0
        wait "$BUILD_PID" || rc=$?
        forget_pid "$BUILD_PID"
        BUILD_PID=""
        if ((rc != 0)); then
            log "error: cargo build --release -p tandem failed; skipping tandem. Last lines:"
            tail -n 15 "$TMP/cargo.log" >&2
            return 0
        fi
    fi
    if [[ ! -x "$TANDEM_BIN" ]]; then
        log "error: $TANDEM_BIN not found; skipping tandem"
        return 0
    fi
    cp "$TANDEM_BIN" "$TMP/tandem" && TANDEM_BIN="$TMP/tandem" && TANDEM_OK=1
}

# ------------------------------------------------------------------ backends
# One nginx, one worker, two ports (the two pool members), on the client core, serving
# /small (13 bytes, "Hello, world\n") and /64k (65536 bytes) from files under DIR/www.
bench_backends() {   # bench_backends DIR PORT1 PORT2: sets BACKEND_PID BACKEND_WORKERS
    local d="$1" p1="$2" p2="$3"
    mkdir -p "$d/www" "$d/backend"
    printf 'Hello, world\n' >"$d/www/small"
    head -c 65536 /dev/zero | tr '\0' 'x' >"$d/www/64k"
    cat >"$d/backend/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/backend/nginx.pid;
error_log $d/backend/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
$(nginx_temp_paths "$d/backend")
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$p1 backlog=4096; root $d/www; }
    server { listen 127.0.0.1:$p2 backlog=4096; root $d/www; }
}
EOF
    log "starting backends on 127.0.0.1:$p1 and :$p2 (core $CLIENT_CPU)"
    "${PIN_CLIENT[@]}" nginx -p "$d/backend" -c "$d/backend/nginx.conf" >"$d/backend/stdout.log" 2>&1 &
    BACKEND_PID=$!
    STARTED+=("$BACKEND_PID")
    wait_http "http://127.0.0.1:$p1/small" "$BACKEND_PID" || { cat "$d/backend/"*.log >&2; die "backend nginx did not start"; }
    wait_http "http://127.0.0.1:$p2/small" "$BACKEND_PID" || die "backend nginx :$p2 not answering"
    BACKEND_WORKERS="$(children_of "$BACKEND_PID" | tr '\n' ' ')"
    [[ -n "$BACKEND_WORKERS" ]] || die "cannot find the backend nginx worker"
}

nginx_temp_paths() {   # nginx_temp_paths DIR: temp paths inside DIR (nginx must not need /var/lib/nginx)
    cat <<EOF
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

# ------------------------------------------------------------------ machine description
bench_versions() {
    HAPROXY_V="$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}' || true)"
    NGINX_V="$(nginx -v 2>&1 | sed 's|.*nginx/||')"
    WRK_V="$(wrk -v 2>&1 | awk 'NR == 1 {print $2}' || true)"
    H2LOAD_V="$(h2load --version 2>/dev/null | awk 'NR == 1 {print $NF}' || true)"
    OPENSSL_V="$(openssl version 2>/dev/null | awk '{print $2}' || true)"
    TANDEM_V="n/a"
    if [[ "${TANDEM_OK:-0}" == 1 ]]; then TANDEM_V="$("$TANDEM_BIN" --version 2>/dev/null | awk 'NR == 1' || true)"; fi
    TANDEM_V="${TANDEM_V:-unknown}"
    MODEL="$(lscpu 2>/dev/null | awk -F': *' '/^Model name:/ && !m {m = $2} END {print m}' || true)"
    MEM="$(free -h | awk '/^Mem:/ {print $2}')"
    GITREV="${GITREV:-$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo 'no commit')}"
}
