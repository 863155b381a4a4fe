#!/usr/bin/env bash
# bench/failures.sh — what clients see when a backend dies: tandem vs HAProxy vs nginx, side by
# side on the same backends (issue 3: lose zero requests when a backend dies).
#
#   bench/failures.sh                          # ROUNDS=3: both scenarios, three proxies (~5 min)
#   ROUNDS=1 bench/failures.sh                 # one round (~2 min)
#   SCENARIOS=blackhole TARGETS="tandem haproxy" bench/failures.sh
#
# The backends run in network namespaces ("hosts") on a bridge, so a backend can be made to
# vanish the way a real host does. The proxy under test runs in the root namespace on 127.0.0.1;
# a steady-rate client (bench/failures/load.py) records every request; at EVENT_AT seconds the
# client itself injects the fault, on the same clock as the requests:
#   kill       the backend process of host 1 is SIGKILLed (its host stays up: connects are
#              refused at once, its open connections are closed by the kernel)
#   blackhole  host 1 is blackholed: it stays on the wire but nothing it sends leaves it (an
#              `ip rule ... blackhole` in its namespace): no SYN-ACK, no RST, no ICMP; connects
#              and requests to it hang (see "Failure scenarios" in bench/README.md)
#
# Environment (defaults in brackets):
#   ROUNDS [3]          rounds; each runs every scenario on every target once (order alternates)
#   TARGETS ["tandem haproxy nginx"]     SCENARIOS ["kill blackhole"]
#   RATE [200]          requests per second (open loop: sent on schedule, whatever the answers)
#   DURATION [12]       seconds of sending;  EVENT_AT [3] seconds in, the fault
#   WINDOW [5]          latency figures cover requests in flight at the fault or started within WINDOW s after
#   CLIENT_TIMEOUT [15] a request with no whole response after this many seconds has failed
#   DELAY_MS [20]       backend service time (so requests are really in flight when a backend dies)
#   TANDEM_BIN [target/release/tandem]   SKIP_BUILD [0] (1 = do not run cargo build)
#   OUT_DIR [bench/out]  KEEP_TMP [unset] (set: keep the temp dir with configs, logs, per-request files)
# Needs root (network namespaces). Traffic stays on 127.0.0.1 and on the lab's own /27 of the
# documentation ranges (198.51.100.0/24 or 203.0.113.0/24, whichever is free here; never 192.0.2.0/24).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
FDIR="$HERE/failures"
REPORT="$FDIR/report.py"

ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-tandem haproxy nginx}"
SCENARIOS="${SCENARIOS:-kill blackhole}"
RATE="${RATE:-200}"
DURATION="${DURATION:-12}"
EVENT_AT="${EVENT_AT:-3}"
WINDOW="${WINDOW:-5}"
CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-15}"
DELAY_MS="${DELAY_MS:-20}"
TANDEM_BIN="${TANDEM_BIN:-$ROOT/target/release/tandem}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OUT_DIR="${OUT_DIR:-$HERE/out}"

HOSTS=3
VICTIM=1
BACKEND_PORT=8000
# The same health check everywhere: every 300 ms, 200 ms timeout, down after 2 failures, up
# after 2 successes.
CHECK_INTERVAL_MS=300
CHECK_TIMEOUT_MS=200
FALL=2
RISE=2
declare -A PORT=([haproxy]=18210 [nginx]=18220 [tandem]=18230)
TANDEM_ADMIN=18910

for v in ROUNDS RATE DURATION EVENT_AT WINDOW CLIENT_TIMEOUT DELAY_MS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "error: $v must be a non-negative integer (got '${!v}')" >&2; exit 2; }
done
(( ROUNDS >= 1 && RATE >= 1 && EVENT_AT < DURATION )) \
    || { echo "error: need ROUNDS >= 1, RATE >= 1 and EVENT_AT < DURATION" >&2; exit 2; }

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root: the backends live in network namespaces"

# ------------------------------------------------------------------ process and lab bookkeeping
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tandem-failures.XXXXXX")"
chmod 755 "$TMP"   # nginx workers drop root privileges and must read their config dir
declare -a STARTED=()     # every PID we started (killed on exit)
# Everything the lab creates is named after this script's PID, so a parallel or stale run never
# collides with this one, and cleanup deletes exactly these names.
LAB="tf$$"
LAB_BRIDGE=""
declare -a LAB_VETHS=() LAB_NETNS=()

kill_pid() {   # kill_pid PID: TERM, wait up to 5 s, then KILL. Only PIDs we started.
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] \
        && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

forget_pid() {   # drop a PID we stopped ourselves from the cleanup list
    local i
    for i in "${!STARTED[@]}"; do [[ "${STARTED[$i]}" == "$1" ]] && unset 'STARTED[i]'; done
    STARTED=("${STARTED[@]+"${STARTED[@]}"}")
}

children_of() { pgrep -P "$1" 2>/dev/null || true; }   # nginx workers of a master we started

lab_down() {   # delete exactly what lab_up created: veths (pairs go at once), namespaces, bridge
    local x
    for x in "${LAB_VETHS[@]+"${LAB_VETHS[@]}"}"; do ip link del "$x" 2>/dev/null || true; done
    for x in "${LAB_NETNS[@]+"${LAB_NETNS[@]}"}"; do ip netns del "$x" 2>/dev/null || true; done
    [[ -n "$LAB_BRIDGE" ]] && { ip link del "$LAB_BRIDGE" 2>/dev/null || true; }
    LAB_VETHS=(); LAB_NETNS=(); LAB_BRIDGE=""
}

cleanup() {
    local rc=$? i pid
    set +e
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        pid="${STARTED[$i]}"
        [[ -n "$pid" ]] && kill_pid "$pid"
    done
    lab_down
    if ip -o link show 2>/dev/null | grep -q ": $LAB"; then log "warning: links named $LAB* remain"; fi
    if [[ -n "${KEEP_TMP:-}" ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ prerequisites
ensure_packages() {
    local -a missing=()
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v nginx   >/dev/null || missing+=(nginx)
    command -v curl    >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v ip      >/dev/null || missing+=(iproute2)
    command -v pgrep   >/dev/null || missing+=(procps)
    ((${#missing[@]} == 0)) && return 0
    log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local -a pkgs=()
    local p
    for p in "${missing[@]}"; do
        # Debian 11 ships a real nginx-light; in Debian 12 it is a transitional package for nginx.
        if [[ "$p" == nginx ]] && apt-cache show nginx-light >/dev/null 2>&1; then pkgs+=(nginx-light); else pkgs+=("$p"); fi
    done
    apt-get install -y -q "${pkgs[@]}" || { apt-get update -q && apt-get install -y -q "${pkgs[@]}"; } \
        || die "apt-get install ${pkgs[*]} failed"
}
ensure_packages
# The system python (a pyenv shim would add a shell start to every backend).
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${PORT[@]}" "$TANDEM_ADMIN"; do
    port_free "$p" || die "127.0.0.1:$p is already in use (another benchmark running?)"
done

read -r -a TARGET_LIST <<<"$TARGETS"
read -r -a SCENARIO_LIST <<<"$SCENARIOS"
for s in "${SCENARIO_LIST[@]}"; do
    case "$s" in kill|blackhole) ;; *) die "unknown scenario '$s' (kill blackhole)";; esac
done
for t in "${TARGET_LIST[@]}"; do
    case "$t" in tandem|haproxy|nginx) ;; *) die "unknown target '$t' (tandem haproxy nginx)";; esac
done

# ------------------------------------------------------------------ tandem build
if [[ " $TARGETS " == *" tandem "* ]]; then
    if [[ "$SKIP_BUILD" != 1 ]]; then
        log "building tandem (cargo build --release -p tandem)"
        (cd "$ROOT" && cargo build --release -p tandem) >"$TMP/cargo.log" 2>&1 \
            || { tail -n 15 "$TMP/cargo.log" >&2; die "cargo build --release -p tandem failed"; }
    fi
    [[ -x "$TANDEM_BIN" ]] || die "$TANDEM_BIN not found"
    # a private copy: a concurrent 'cargo build' must not swap the binary mid-benchmark
    cp "$TANDEM_BIN" "$TMP/tandem" && TANDEM_BIN="$TMP/tandem"
fi

# ------------------------------------------------------------------ the lab
# bridge $LAB"b" = BASE+1/27 in the root namespace; host i = netns $LAB"h"i with eth0 = BASE+11+i,
# linked to the bridge by the veth $LAB"v"i. BASE: the first /27 of the documentation ranges
# that overlaps no address or route here.
BASE="$("$PY" "$REPORT" free-subnet)" || die "no free /27 in the documentation ranges"
IFS=. read -r O1 O2 O3 O4 <<<"$BASE"
GATEWAY="$O1.$O2.$O3.$((O4 + 1))"
host_ip() { echo "$O1.$O2.$O3.$((O4 + 11 + $1))"; }

lab_up() {   # every step checked: a half-built lab is removed by cleanup (lab_down)
    local i ns veth
    LAB_BRIDGE="${LAB}b"
    ip link add "$LAB_BRIDGE" type bridge || return 1
    ip addr add "$GATEWAY/27" dev "$LAB_BRIDGE" || return 1
    ip link set "$LAB_BRIDGE" up || return 1
    for ((i = 0; i < HOSTS; i++)); do
        ns="${LAB}h$i"; veth="${LAB}v$i"
        ip netns add "$ns" || return 1
        LAB_NETNS+=("$ns")
        ip link add "$veth" type veth peer name eth0 netns "$ns" || return 1
        LAB_VETHS+=("$veth")
        ip link set "$veth" master "$LAB_BRIDGE" || return 1
        ip link set "$veth" up || return 1
        ip -n "$ns" link set lo up || return 1
        ip -n "$ns" addr add "$(host_ip "$i")/27" dev eth0 || return 1
        ip -n "$ns" link set eth0 up || return 1
    done
}
log "lab: bridge ${LAB}b $GATEWAY/27, hosts $(host_ip 0)..$(host_ip $((HOSTS - 1))) (netns ${LAB}h0..${LAB}h$((HOSTS - 1)))"
lab_up || die "cannot build the lab (network namespaces, veth, bridge)"

# blackhole / restore host i: drop everything the host sends, except to itself (ARP still works,
# so the root namespace never learns the host is unreachable and connects hang).
blackhole_cmd() { echo "sh -c 'ip -n ${LAB}h$1 rule add pref 100 blackhole && ip -n ${LAB}h$1 -6 rule add pref 100 blackhole'"; }
restore_host() {
    ip -n "${LAB}h$1" rule del pref 100 2>/dev/null || true
    ip -n "${LAB}h$1" -6 rule del pref 100 2>/dev/null || true
}

declare -a BACKEND_PIDS=()
start_backends() {   # one backend per host, fresh for every run
    local i j
    BACKEND_PIDS=()
    for ((i = 0; i < HOSTS; i++)); do
        # `ip netns exec` execs the program, so $! is the backend's own PID
        ip netns exec "${LAB}h$i" "$PY" "$FDIR/backend.py" "$(host_ip "$i")" "$BACKEND_PORT" "h$i" "$DELAY_MS" \
            >"$TMP/backend-h$i.log" 2>&1 &
        BACKEND_PIDS+=("$!")
        STARTED+=("$!")
        # out of bash's job table: no "Killed" line when the kill scenario SIGKILLs it (bash
        # still reaps it; kill_pid copes with a PID that is already gone)
        disown "$!"
    done
    for ((i = 0; i < HOSTS; i++)); do
        for ((j = 0; j < 100; j++)); do
            curl -sf -o /dev/null --max-time 1 "http://$(host_ip "$i"):$BACKEND_PORT/" && break
            kill -0 "${BACKEND_PIDS[$i]}" 2>/dev/null || { cat "$TMP/backend-h$i.log" >&2; die "backend h$i exited"; }
            sleep 0.1
        done
        ((j < 100)) || die "backend h$i does not answer on $(host_ip "$i"):$BACKEND_PORT"
    done
}
stop_backends() {
    local pid
    for pid in "${BACKEND_PIDS[@]+"${BACKEND_PIDS[@]}"}"; do kill_pid "$pid"; forget_pid "$pid"; done
    BACKEND_PIDS=()
}

# ------------------------------------------------------------------ proxy configs
# Each proxy: one worker/thread, round robin over the three backends, keep-alive both ways, the
# same active health check where it has one, a 3 s connect timeout and 60 s response timeout,
# and the retry settings the issue names as the state of the art for each.
write_haproxy_conf() {   # $1 file
    local i
    {
        cat <<EOF
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout check ${CHECK_TIMEOUT_MS}ms
    option http-keep-alive
    option forwardfor
    http-reuse always
    # retry a failed request up to twice, on another server, for every error that is safe to retry
    retries 2
    option redispatch
    retry-on all-retryable-errors
frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /
    # active check as the others; plus passive: 5 consecutive layer-4 errors on live traffic
    # mark a server down at once
    default-server check inter ${CHECK_INTERVAL_MS}ms fall $FALL rise $RISE observe layer4 error-limit 5 on-error mark-down
EOF
        for ((i = 0; i < HOSTS; i++)); do echo "    server h$i $(host_ip "$i"):$BACKEND_PORT"; done
    } >"$1"
}

write_nginx_conf() {   # $1 file, $2 dir
    local i d="$2"
    {
        cat <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    # nginx open source has no active health checks: a server is taken out for fail_timeout
    # after max_fails failed attempts on live traffic.
    upstream be {
EOF
        for ((i = 0; i < HOSTS; i++)); do echo "        server $(host_ip "$i"):$BACKEND_PORT max_fails=1 fail_timeout=10s;"; done
        cat <<EOF
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 3s;
            proxy_read_timeout 60s;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
    } >"$1"
}

# tandem's resilience keys (issue 3). A binary that does not know one yet rejects the config
# ("unknown key"); then the key is left out and the run says so (TANDEM_NOTE), so the same
# script measures tandem before and after the feature.
TANDEM_POOL_KEYS=('retries = 2')
TANDEM_SERVICE_KEYS=('connect_timeout_min = "100ms"')
TANDEM_NOTE=""
write_tandem_conf() {   # $1 file, then pool key lines..., "--", service key lines...
    local f="$1" i backends="" pool_keys="" service_keys="" sep=0
    shift
    for i in "$@"; do
        if [[ "$i" == -- ]]; then sep=1; continue; fi
        if ((sep)); then service_keys+="$i"$'\n'; else pool_keys+="$i"$'\n'; fi
    done
    for ((i = 0; i < HOSTS; i++)); do backends+="{ address = \"$(host_ip "$i"):$BACKEND_PORT\" }, "; done
    cat >"$f" <<EOF
[runtime]
workers = 1

[admin]
listen = "127.0.0.1:$TANDEM_ADMIN"

[[pool]]
name = "bench"
scheduler = "rr"
health = { kind = "http", path = "/", interval = "${CHECK_INTERVAL_MS}ms", timeout = "${CHECK_TIMEOUT_MS}ms", rise = $RISE, fall = $FALL }
${pool_keys}backends = [ ${backends%, } ]

[[service]]
name = "web"
listen = "127.0.0.1:${PORT[tandem]}"
mode = "http"
pool = "bench"
connect_timeout = "3s"
response_timeout = "60s"
${service_keys}
EOF
}
if [[ " $TARGETS " == *" tandem "* ]]; then
    write_tandem_conf "$TMP/tandem-check.toml" "${TANDEM_POOL_KEYS[@]}" -- "${TANDEM_SERVICE_KEYS[@]}"
    if ! "$TANDEM_BIN" check --config "$TMP/tandem-check.toml" >"$TMP/tandem-check.log" 2>&1; then
        declare -a keep_pool=() keep_service=() dropped=()
        for k in "${TANDEM_POOL_KEYS[@]}"; do
            if grep -q "unknown key \`${k%% *}\`" "$TMP/tandem-check.log"; then dropped+=("${k%% *}"); else keep_pool+=("$k"); fi
        done
        for k in "${TANDEM_SERVICE_KEYS[@]}"; do
            if grep -q "unknown key \`${k%% *}\`" "$TMP/tandem-check.log"; then dropped+=("${k%% *}"); else keep_service+=("$k"); fi
        done
        TANDEM_POOL_KEYS=("${keep_pool[@]+"${keep_pool[@]}"}")
        TANDEM_SERVICE_KEYS=("${keep_service[@]+"${keep_service[@]}"}")
        write_tandem_conf "$TMP/tandem-check.toml" "${TANDEM_POOL_KEYS[@]+"${TANDEM_POOL_KEYS[@]}"}" -- "${TANDEM_SERVICE_KEYS[@]+"${TANDEM_SERVICE_KEYS[@]}"}"
        "$TANDEM_BIN" check --config "$TMP/tandem-check.toml" >"$TMP/tandem-check.log" 2>&1 \
            || { cat "$TMP/tandem-check.log" >&2; die "tandem rejects the benchmark config"; }
        TANDEM_NOTE="this tandem does not know ${dropped[*]}: run without them (its defaults)"
        log "note: $TANDEM_NOTE"
    fi
fi

# ------------------------------------------------------------------ start / stop a proxy
wait_http() {   # wait_http URL PID: up to 5 s for a 200
    local url="$1" pid="$2" i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        curl -sf -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

tandem_all_up() {   # every backend of the pool "up" in the admin API (bounded: 5 s)
    local i n
    for ((i = 0; i < 50; i++)); do
        n="$(curl -s --max-time 1 "http://127.0.0.1:$TANDEM_ADMIN/api/v1/pools/bench" | grep -c '"state": *"up"' || true)"
        [[ "$n" == "$HOSTS" ]] && return 0
        sleep 0.1
    done
    return 1
}

PROXY_PID=""
start_target() {   # $1 target, $2 run dir
    local t="$1" d="$2"
    mkdir -p "$d"
    case "$t" in
        haproxy)
            write_haproxy_conf "$d/haproxy.cfg"
            haproxy -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 || { cat "$d/check.log" >&2; return 1; }
            haproxy -db -f "$d/haproxy.cfg" >"$d/stdout.log" 2>&1 &
            PROXY_PID=$! ;;
        nginx)
            write_nginx_conf "$d/nginx.conf" "$d"
            nginx -p "$d" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
            PROXY_PID=$! ;;
        tandem)
            write_tandem_conf "$d/tandem.toml" "${TANDEM_POOL_KEYS[@]+"${TANDEM_POOL_KEYS[@]}"}" -- "${TANDEM_SERVICE_KEYS[@]+"${TANDEM_SERVICE_KEYS[@]}"}"
            RUST_LOG="${TANDEM_RUST_LOG:-warn}" "$TANDEM_BIN" run --config "$d/tandem.toml" >"$d/stdout.log" 2>&1 &
            PROXY_PID=$! ;;
    esac
    STARTED+=("$PROXY_PID")
    if ! wait_http "http://127.0.0.1:${PORT[$t]}/" "$PROXY_PID"; then
        log "error: $t did not start serving on 127.0.0.1:${PORT[$t]}; log:"
        tail -n 20 "$d/stdout.log" "$d/error.log" >&2 2>/dev/null || true
        return 1
    fi
    if [[ "$t" == tandem ]]; then
        tandem_all_up || { log "error: tandem: not every backend up after 5 s"; return 1; }
    fi
    # let every proxy's checks settle (rise × interval), the same for all
    sleep 1
}

stop_target() {
    [[ -n "$PROXY_PID" ]] || return 0
    local kids w
    kids="$(children_of "$PROXY_PID" | tr '\n' ' ')"
    kill_pid "$PROXY_PID"
    forget_pid "$PROXY_PID"
    for w in $kids; do [[ -d "/proc/$w" ]] && kill -KILL "$w" 2>/dev/null || true; done
    PROXY_PID=""
}

# ------------------------------------------------------------------ one run
mkdir -p "$OUT_DIR"
STAMP_FILE="$(date -u +%Y%m%dT%H%M%SZ)"
RUNS="$OUT_DIR/failures-runs-$STAMP_FILE.tsv"
printf 'round\tscenario\ttarget\tstatus\tsent\trequests\tfailed\twindow_n\tp50_ms\tp99_ms\tmax_ms\tslow_1s\tevent_s\terrors\n' >"$RUNS"

run_one() {   # $1 round, $2 scenario, $3 target
    local r="$1" s="$2" t="$3" d="$TMP/r$1-$2-$3" event_cmd line rc=0 pid
    mkdir -p "$d"
    start_backends
    if ! start_target "$t" "$d"; then
        stop_target; stop_backends
        printf '%s\t%s\t%s\tfailed\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n' "$r" "$s" "$t" >>"$RUNS"
        return 0
    fi
    case "$s" in
        kill) event_cmd="kill -KILL ${BACKEND_PIDS[$VICTIM]}" ;;
        blackhole) event_cmd="$(blackhole_cmd "$VICTIM")" ;;
    esac
    log "round $r: $s / $t: $RATE req/s for ${DURATION}s, fault at ${EVENT_AT}s: $event_cmd"
    # bounded twice: load.py stops sending at DURATION and waits at most CLIENT_TIMEOUT more;
    # timeout(1) is the backstop. In the background + wait, so a signal to us is handled at once.
    timeout -k 5 $((DURATION + CLIENT_TIMEOUT + 30)) "$PY" "$FDIR/load.py" \
        --url "http://127.0.0.1:${PORT[$t]}/" --rate "$RATE" --duration "$DURATION" \
        --timeout "$CLIENT_TIMEOUT" --event-at "$EVENT_AT" --event-cmd "$event_cmd" \
        --out "$d/requests.tsv" 2>"$d/load.log" &
    pid=$!
    STARTED+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    stop_target
    stop_backends
    restore_host "$VICTIM"
    if ((rc != 0)) || [[ ! -s "$d/requests.tsv" ]]; then
        log "error: load client failed (exit $rc): $(tail -n 3 "$d/load.log" 2>/dev/null)"
        printf '%s\t%s\t%s\tfailed\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n' "$r" "$s" "$t" >>"$RUNS"
        return 0
    fi
    line="$("$PY" "$REPORT" analyze "$d/requests.tsv" "$WINDOW")"
    printf '%s\t%s\t%s\tok\t%s\n' "$r" "$s" "$t" "$line" >>"$RUNS"
    log "  -> $(awk -F'\t' '{printf "%s requests, %s failed; window: p50 %s ms, p99 %s ms, max %s ms, %s took >= 1 s; %s", $2, $3, $5, $6, $7, $8, $10}' <<<"$line")"
}

# ------------------------------------------------------------------ main
HAPROXY_V="$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}' || true)"
NGINX_V="$(nginx -v 2>&1 | sed 's|.*nginx/||')"
TANDEM_V="n/a"
[[ " $TARGETS " == *" tandem "* ]] && TANDEM_V="$("$TANDEM_BIN" --version 2>/dev/null | head -n 1 || true)"
GITREV="$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo 'no commit')"
read -r LOAD1 _ </proc/loadavg
cat >"$TMP/meta.md" <<EOF
## Failure scenarios: latest run

- date: $(date -u +%Y-%m-%dT%H:%MZ); tandem: $TANDEM_V (git $GITREV)${TANDEM_NOTE:+; $TANDEM_NOTE}
- machine: $(nproc) CPUs, kernel $(uname -r); HAProxy $HAPROXY_V, nginx $NGINX_V; load average at start: $LOAD1
- $ROUNDS round(s); per run: $RATE req/s open loop for ${DURATION}s, fault at ${EVENT_AT}s on backend 2 of 3
  (host $(host_ip "$VICTIM")), latency window ${WINDOW}s, client timeout ${CLIENT_TIMEOUT}s, backend service time ${DELAY_MS} ms
- checks every ${CHECK_INTERVAL_MS} ms, timeout ${CHECK_TIMEOUT_MS} ms, fall $FALL, rise $RISE (HAProxy, tandem; nginx has none)
EOF

total=$((ROUNDS * ${#SCENARIO_LIST[@]} * ${#TARGET_LIST[@]}))
log "targets: ${TARGET_LIST[*]} | scenarios: ${SCENARIO_LIST[*]} | $ROUNDS round(s): $total runs of ${DURATION}-$((DURATION + CLIENT_TIMEOUT)) s"
for ((round = 1; round <= ROUNDS; round++)); do
    order=("${TARGET_LIST[@]}")
    if ((round % 2 == 0)); then   # alternate the order of the targets between rounds
        order=()
        for ((i = ${#TARGET_LIST[@]} - 1; i >= 0; i--)); do order+=("${TARGET_LIST[$i]}"); done
    fi
    for s in "${SCENARIO_LIST[@]}"; do
        for t in "${order[@]}"; do
            run_one "$round" "$s" "$t"
        done
    done
done

cp "$RUNS" "$OUT_DIR/failures-latest-runs.tsv"
"$PY" "$REPORT" report "$RUNS" "$OUT_DIR/failures-latest.md" "$TMP/meta.md"
log "runs: $RUNS; markdown: $OUT_DIR/failures-latest.md"
