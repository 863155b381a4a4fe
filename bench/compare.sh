#!/usr/bin/env bash
# bench/compare.sh — tandem vs HAProxy vs nginx (and the backends served directly), on 127.0.0.1.
#
#   bench/compare.sh                         # full run: ROUNDS=5 DURATION=10
#   ROUNDS=1 DURATION=2 bench/compare.sh     # quick smoke run
#   TARGETS="direct haproxy nginx" bench/compare.sh   # without tandem
#
# Environment (defaults in brackets):
#   ROUNDS [5]        rounds; every round runs every scenario on every target once
#   DURATION [10]     seconds of measurement per run
#   WARMUP [1]        seconds of unmeasured load per run before measuring (0 = none)
#   TARGETS ["direct tandem haproxy nginx"]
#   SCENARIOS ["small big close h2c tcp"]
#   CONNS [50]        wrk connections (wrk runs with 1 thread)
#   H2_CLIENTS [10]   h2load connections;  H2_STREAMS [10] concurrent streams per connection
#   PROXY_CPU [0]     core for the proxy under test;  CLIENT_CPU [1] core for wrk/h2load + backends
#   NICE [-10 as root, else 0]  nice level of every benchmark process (same for all targets)
#   WAIT_QUIET [0]    before each run wait up to this many seconds for machine CPU < QUIET_PCT [10] %
#   TANDEM_BIN [target/release/tandem]   SKIP_BUILD [0] (1 = do not run cargo build)
#   OUT_DIR [bench/out]
# See bench/README.md for what every scenario measures and how to read the numbers.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
REPORT="$HERE/report.py"

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-1}"
TARGETS="${TARGETS:-direct tandem haproxy nginx}"
SCENARIOS="${SCENARIOS:-small big close h2c tcp}"
CONNS="${CONNS:-50}"
H2_CLIENTS="${H2_CLIENTS:-10}"
H2_STREAMS="${H2_STREAMS:-10}"
PROXY_CPU="${PROXY_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
TANDEM_BIN="${TANDEM_BIN:-$ROOT/target/release/tandem}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OUT_DIR="${OUT_DIR:-$HERE/out}"

# Ports (all on 127.0.0.1, range 18000-18999).
BACKEND1=18001
BACKEND2=18002
declare -A PORT_HTTP=([haproxy]=18110 [nginx]=18120 [tandem]=18130)
declare -A PORT_H2=([haproxy]=18111 [nginx]=18121 [tandem]=18131)
declare -A PORT_TCP=([haproxy]=18112 [nginx]=18122 [tandem]=18132)
TANDEM_ADMIN=18900

for v in ROUNDS DURATION WARMUP CONNS H2_CLIENTS H2_STREAMS PROXY_CPU CLIENT_CPU; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "error: $v must be a non-negative integer (got '${!v}')" >&2; exit 2; }
done
(( ROUNDS >= 1 && DURATION >= 1 )) || { echo "error: ROUNDS and DURATION must be >= 1" >&2; exit 2; }

# Logging, the temp dir (TMP), the PIDs we start (STARTED, stopped by PID on exit), ports,
# waiting for a server: bench/lib.sh.
source "$HERE/lib.sh"
bench_tmp tandem-bench

# ------------------------------------------------------------------ prerequisites
bench_packages haproxy:haproxy nginx:nginx wrk:wrk h2load:nghttp2-client curl:curl taskset:util-linux python3:python3 pgrep:procps
# One nice level for every benchmark process, each in its own autogroup; proxy and client
# pinned to their cores (bench/lib.sh; README "Noise").
bench_pinning

for p in "$BACKEND1" "$BACKEND2" "${PORT_HTTP[@]}" "${PORT_H2[@]}" "${PORT_TCP[@]}" "$TANDEM_ADMIN"; do
    port_free "$p" || die "127.0.0.1:$p is already in use (another benchmark running?)"
done

# nginx stream module (TCP mode): built-in, or a dynamic module that is installed?
NGINX_STREAM=""
if nginx -V 2>&1 | grep -q -- '--with-stream\( \|$\)'; then
    NGINX_STREAM="builtin"
else
    for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so; do
        [[ -f "$m" ]] && { NGINX_STREAM="$m"; break; }
    done
fi

# ------------------------------------------------------------------ tandem build
TANDEM_OK=0
if [[ " $TARGETS " == *" tandem "* ]]; then
    if [[ "$SKIP_BUILD" != 1 ]]; then
        log "building tandem (cargo build --release -p tandem)"
        if (cd "$ROOT" && cargo build --release -p tandem) >"$TMP/cargo.log" 2>&1; then
            TANDEM_OK=1
        else
            log "error: cargo build --release -p tandem failed; skipping the tandem target. Last lines:"
            tail -n 15 "$TMP/cargo.log" >&2
        fi
    else
        TANDEM_OK=1
    fi
    if ((TANDEM_OK)) && [[ ! -x "$TANDEM_BIN" ]]; then
        log "error: $TANDEM_BIN not found; skipping the tandem target"
        TANDEM_OK=0
    fi
    if ((TANDEM_OK)); then
        # run a private copy: a concurrent 'cargo build' must not swap the binary mid-benchmark
        cp "$TANDEM_BIN" "$TMP/tandem" && TANDEM_BIN="$TMP/tandem"
    else
        TARGETS="$(sed 's/\btandem\b//' <<<"$TARGETS")"
    fi
fi

# ------------------------------------------------------------------ backends
mkdir -p "$TMP/www" "$TMP/backend" "$OUT_DIR"
printf 'Hello, world\n' >"$TMP/www/small"                       # 13 bytes
head -c 65536 /dev/zero | tr '\0' 'x' >"$TMP/www/64k"           # 64 KiB

nginx_common_paths() {   # $1 = dir
    cat <<EOF
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

cat >"$TMP/backend/nginx.conf" <<EOF
# backends: one nginx, one worker, two ports (the two pool members)
worker_processes 1;
daemon off;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
$(nginx_common_paths "$TMP/backend")
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$BACKEND1 backlog=4096; root $TMP/www; }
    server { listen 127.0.0.1:$BACKEND2 backlog=4096; root $TMP/www; }
}
EOF


log "starting backends on 127.0.0.1:$BACKEND1 and :$BACKEND2 (core $CLIENT_CPU)"
"${PIN_CLIENT[@]}" nginx -p "$TMP/backend" -c "$TMP/backend/nginx.conf" \
    >"$TMP/backend/stdout.log" 2>&1 &
BACKEND_PID=$!
STARTED+=("$BACKEND_PID")
wait_http "http://127.0.0.1:$BACKEND1/small" "$BACKEND_PID" || { cat "$TMP/backend/"*.log >&2; die "backend nginx did not start"; }
wait_http "http://127.0.0.1:$BACKEND2/small" "$BACKEND_PID" || die "backend nginx :$BACKEND2 not answering"
BACKEND_WORKERS="$(children_of "$BACKEND_PID" | tr '\n' ' ')"
[[ -n "$BACKEND_WORKERS" ]] || die "cannot find the backend nginx worker"

# ------------------------------------------------------------------ proxy configs
# kind: http (HTTP/1.1 listener), h2 (h2c prior-knowledge listener), tcp (L4)
write_haproxy_conf() {   # $1 kind, $2 file
    local kind="$1" f="$2" bind mode
    case "$kind" in
        http) bind="bind 127.0.0.1:${PORT_HTTP[haproxy]}"; mode=http ;;
        h2)   bind="bind 127.0.0.1:${PORT_H2[haproxy]} proto h2"; mode=http ;;
        tcp)  bind="bind 127.0.0.1:${PORT_TCP[haproxy]}"; mode=tcp ;;
    esac
    {
        cat <<EOF
global
    nbthread 1
    maxconn 4096
    # no 'log' line: logging off
defaults
    mode $mode
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
EOF
        [[ "$mode" == http ]] && cat <<EOF
    option http-keep-alive
    option forwardfor
    http-reuse always
EOF
        cat <<EOF
frontend fe
    $bind
    default_backend be
backend be
    balance roundrobin
    server s1 127.0.0.1:$BACKEND1
    server s2 127.0.0.1:$BACKEND2
EOF
    } >"$f"
}

write_nginx_conf() {   # $1 kind, $2 file, $3 dir
    local kind="$1" f="$2" d="$3"
    {
        [[ "$kind" == tcp && "$NGINX_STREAM" != builtin ]] && echo "load_module $NGINX_STREAM;"
        cat <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
EOF
        if [[ "$kind" == tcp ]]; then
            cat <<EOF
stream {
    upstream be { server 127.0.0.1:$BACKEND1; server 127.0.0.1:$BACKEND2; }
    server { listen 127.0.0.1:${PORT_TCP[nginx]}; proxy_pass be; }
}
EOF
        else
            local listen="listen 127.0.0.1:${PORT_HTTP[nginx]};"
            [[ "$kind" == h2 ]] && listen="listen 127.0.0.1:${PORT_H2[nginx]} http2;"
            cat <<EOF
http {
    access_log off;
$(nginx_common_paths "$d")
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    upstream be {
        server 127.0.0.1:$BACKEND1;
        server 127.0.0.1:$BACKEND2;
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 60s;
    }
    server {
        $listen
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
        fi
    } >"$f"
}

write_tandem_conf() {   # $1 kind, $2 file
    local kind="$1" f="$2" mode=http port
    case "$kind" in
        http) port="${PORT_HTTP[tandem]}" ;;
        h2)   port="${PORT_H2[tandem]}" ;;
        tcp)  port="${PORT_TCP[tandem]}"; mode=tcp ;;
    esac
    cat >"$f" <<EOF
[runtime]
workers = 1

[admin]
listen = "127.0.0.1:$TANDEM_ADMIN"

[[pool]]
name = "bench"
scheduler = "rr"
health = { kind = "none" }
backends = [ { address = "127.0.0.1:$BACKEND1" }, { address = "127.0.0.1:$BACKEND2" } ]

[[service]]
name = "web"
listen = "127.0.0.1:$port"
mode = "$mode"
pool = "bench"
EOF
}

# ------------------------------------------------------------------ start / stop a proxy
# Sets PROXY_PID (process we wait on), MEASURE_PIDS (processes whose CPU/RSS is measured),
# TARGET_PORT. Returns 1 with a message when the target cannot serve.
start_target() {   # $1 target, $2 kind, $3 run dir
    local t="$1" kind="$2" d="$3" port
    mkdir -p "$d"
    PROXY_PID=""
    MEASURE_PIDS=""
    if [[ "$t" == direct ]]; then
        TARGET_PORT="$BACKEND1"
        MEASURE_PIDS="$BACKEND_WORKERS"
        return 0
    fi
    case "$kind" in
        http) port="${PORT_HTTP[$t]}" ;;
        h2)   port="${PORT_H2[$t]}" ;;
        tcp)  port="${PORT_TCP[$t]}" ;;
    esac
    TARGET_PORT="$port"
    port_free "$port" || { log "error: $t: port $port busy"; return 1; }
    case "$t" in
        haproxy)
            write_haproxy_conf "$kind" "$d/haproxy.cfg"
            haproxy -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 || { log "error: haproxy config invalid:"; cat "$d/check.log" >&2; return 1; }
            "${PIN_PROXY[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/stdout.log" 2>&1 &
            PROXY_PID=$! ;;
        nginx)
            write_nginx_conf "$kind" "$d/nginx.conf" "$d"
            "${PIN_PROXY[@]}" nginx -p "$d" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
            PROXY_PID=$! ;;
        tandem)
            write_tandem_conf "$kind" "$d/tandem.toml"
            RUST_LOG="${TANDEM_RUST_LOG:-warn}" "${PIN_PROXY[@]}" "$TANDEM_BIN" run --config "$d/tandem.toml" \
                >"$d/stdout.log" 2>&1 &
            PROXY_PID=$! ;;
        *) log "error: unknown target $t"; return 1 ;;
    esac
    STARTED+=("$PROXY_PID")

    local -a copts=()
    [[ "$kind" == h2 ]] && copts=(--http2-prior-knowledge)
    if ! wait_http "http://127.0.0.1:$port/small" "$PROXY_PID" "${copts[@]}"; then
        log "error: $t ($kind) did not start serving on 127.0.0.1:$port within 5 s; log:"
        tail -n 20 "$d/stdout.log" "$d/error.log" >&2 2>/dev/null || true
        return 1
    fi
    # answers correctly? (13-byte body, 64 KiB body, status 200 through the proxy)
    local got
    got="$(curl -s --max-time 5 "${copts[@]}" -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/small" || true)"
    [[ "$got" == "200 13" ]] || { log "error: $t ($kind): GET /small gave '$got', want '200 13'"; return 1; }
    got="$(curl -s --max-time 5 "${copts[@]}" -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/64k" || true)"
    [[ "$got" == "200 65536" ]] || { log "error: $t ($kind): GET /64k gave '$got', want '200 65536'"; return 1; }

    if [[ "$t" == nginx ]]; then
        MEASURE_PIDS="$PROXY_PID $(children_of "$PROXY_PID" | tr '\n' ' ')"
    else
        MEASURE_PIDS="$PROXY_PID"
    fi
    return 0
}

stop_target() {
    [[ -n "${PROXY_PID:-}" ]] || return 0
    local w
    # nginx: stop the master (it stops its worker); then make sure no worker lingers
    local kids=""
    kids="$(children_of "$PROXY_PID" | tr '\n' ' ')"
    kill_pid "$PROXY_PID"
    forget_pid "$PROXY_PID"
    for w in $kids; do
        [[ -d "/proc/$w" ]] && kill -KILL "$w" 2>/dev/null || true
    done
    PROXY_PID=""
}

# RSS: measured on the worker that carries the load (nginx: the worker, not the idle master).
rss_pids() {   # $1 target
    if [[ "$1" == nginx ]]; then
        local w
        w="$(children_of "$PROXY_PID" | tr '\n' ' ')"
        echo "${w:-$PROXY_PID}"
    else
        echo "$MEASURE_PIDS"
    fi
}

# ------------------------------------------------------------------ load generators
run_client() {   # $1 scenario, $2 port, $3 seconds, $4 output prefix
    local s="$1" port="$2" secs="$3" out="$4"
    local limit=$((secs + 30)) rc=0 pid
    case "$s" in
        small|big|close|tcp)
            local path=/small
            [[ "$s" == big || "$s" == tcp ]] && path=/64k
            local -a hdr=()
            [[ "$s" == close ]] && hdr=(-H 'Connection: close')
            timeout -k 5 "$limit" "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s --latency \
                "${hdr[@]+"${hdr[@]}"}" "http://127.0.0.1:$port$path" >"$out.txt" 2>&1 &
            ;;
        h2c)
            rm -f "$out.log"
            timeout -k 5 "$limit" "${PIN_CLIENT[@]}" h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D"$secs" \
                --log-file="$out.log" "http://127.0.0.1:$port/small" >"$out.txt" 2>&1 &
            ;;
    esac
    # in the background + wait, so that a signal to this script is handled at once
    pid=$!
    STARTED+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

parse_client() {   # $1 scenario, $2 output prefix
    if [[ "$1" == h2c ]]; then
        python3 "$REPORT" parse-h2load "$2.txt" "$2.log"
    else
        python3 "$REPORT" parse-wrk "$2.txt"
    fi
}

kind_of() {
    case "$1" in
        h2c) echo h2 ;;
        tcp) echo tcp ;;
        *) echo http ;;
    esac
}

# ------------------------------------------------------------------ machine description
HAPROXY_V="$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}' || true)"
NGINX_V="$(nginx -v 2>&1 | sed 's|.*nginx/||')"
WRK_V="$(wrk -v 2>&1 | awk 'NR == 1 {print $2}' || true)"
H2LOAD_V="$(h2load --version 2>/dev/null | awk 'NR == 1 {print $NF}' || true)"
TANDEM_V="n/a"
((TANDEM_OK)) && TANDEM_V="$("$TANDEM_BIN" --version 2>/dev/null | awk 'NR == 1' || true)"; TANDEM_V="${TANDEM_V:-unknown}"
MODEL="$(lscpu 2>/dev/null | awk -F': *' '/^Model name:/ && !m {m = $2} END {print m}' || true)"
MEM="$(free -h | awk '/^Mem:/ {print $2}')"
STAMP="$(date -u +%Y-%m-%dT%H:%MZ)"
GITREV="$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo 'no commit')"
cat >"$TMP/meta.md" <<EOF
- date: $STAMP; tandem: $TANDEM_V (git $GITREV)
- machine: $NCPU CPUs ($MODEL), $MEM RAM, kernel $(uname -r)
- HAProxy $HAPROXY_V, nginx $NGINX_V, wrk $WRK_V, h2load $H2LOAD_V
- rounds: $ROUNDS × ${DURATION}s per target and scenario (+${WARMUP}s warm-up), medians shown;
  wrk -t1 -c$CONNS; h2load -t1 -c$H2_CLIENTS -m$H2_STREAMS
- proxy pinned to core $PROXY_CPU (one worker/thread each), wrk/h2load + backend nginx (1 worker) on core $CLIENT_CPU;
  all of them at nice $NICE
- CPU/req = (utime+stime of the proxy during the run) ÷ requests completed; peak RSS = VmHWM of a proxy
  started fresh for every run
EOF

# ------------------------------------------------------------------ main loop
RUNS="$OUT_DIR/runs-$(date -u +%Y%m%dT%H%M%SZ).tsv"
COLS='round scenario target status rps p50_ms p99_ms cpu_us_per_req proxy_cpu_pct rss_kib requests errors proxy_wait_pct backend_wait_pct other_cpu_pct steal_pct latency_src'
tr ' ' '\t' <<<"$COLS" >"$RUNS"
record() {   # record FIELD... (in COLS order)
    local IFS=$'\t'
    echo "$*" >>"$RUNS"
}
record_fail() { record "$1" "$2" "$3" failed - - - - - - 0 0 - - - - -; }

read -r -a TARGET_LIST <<<"$TARGETS"
read -r -a SCENARIO_LIST <<<"$SCENARIOS"
for s in "${SCENARIO_LIST[@]}"; do
    case "$s" in small|big|close|h2c|tcp) ;; *) die "unknown scenario '$s' (small big close h2c tcp)";; esac
done
for t in "${TARGET_LIST[@]}"; do
    case "$t" in direct|tandem|haproxy|nginx) ;; *) die "unknown target '$t' (direct tandem haproxy nginx)";; esac
done
((${#TARGET_LIST[@]} > 0)) || die "no targets left to run"

declare -A BROKEN=()   # "target/kind" that failed to start: skipped for the rest of the run
NOTED=""
note_once() { [[ " $NOTED " == *" $1 "* ]] && return 0; NOTED+=" $1"; log "note: $2"; }

# CPU time of our reaped children (wrk/h2load), from the 'times' builtin, in seconds.
# 'times' must run in this shell (not in $(...)), so it goes through a file.
children_cpu() {
    times >"$TMP/times.txt"
    local _ line
    { read -r _; read -r line; } <"$TMP/times.txt"
    CHILD_CPU="$line"   # "XmY.YYYs XmY.YYYs" (user sys), converted by awk later
}

read -r LOAD1 _ <"/proc/loadavg"
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: load average is $LOAD1 before starting: other work on this machine will add noise (see the 'runq wait' column)"
fi
echo "- load average at start: $LOAD1" >>"$TMP/meta.md"

total_runs=$((ROUNDS * ${#SCENARIO_LIST[@]} * ${#TARGET_LIST[@]}))
log "targets: ${TARGET_LIST[*]} | scenarios: ${SCENARIO_LIST[*]} | $ROUNDS round(s) × ${DURATION}s (~$(( total_runs * (DURATION + WARMUP + 3) / 60 + 1 )) min)"
log "per-run results: $RUNS"

for ((r = 1; r <= ROUNDS; r++)); do
    # alternate the order of the targets every round
    order=("${TARGET_LIST[@]}")
    if ((r % 2 == 0)); then
        order=()
        for ((i = ${#TARGET_LIST[@]} - 1; i >= 0; i--)); do order+=("${TARGET_LIST[$i]}"); done
    fi
    for s in "${SCENARIO_LIST[@]}"; do
        kind="$(kind_of "$s")"
        for t in "${order[@]}"; do
            if [[ "$s" == h2c && "$t" == direct ]]; then
                note_once h2c-direct "h2c: no 'direct' run (the backends speak HTTP/1.1 only; the scenario is h2c→proxy→HTTP/1.1)"
                continue
            fi
            if [[ "$s" == tcp && "$t" == nginx && -z "$NGINX_STREAM" ]]; then
                note_once nginx-stream "tcp: nginx skipped — the installed nginx has no stream module (Debian: apt-get install libnginx-mod-stream)"
                continue
            fi
            if [[ -n "${BROKEN[$t/$kind]:-}" ]]; then
                record_fail "$r" "$s" "$t"
                continue
            fi
            if [[ "${WAIT_QUIET:-0}" != 0 ]]; then
                q="$(python3 "$REPORT" wait-quiet "$WAIT_QUIET" "${QUIET_PCT:-10}")"
                [[ "$q" == *"gave up"* ]] && log "warning: machine still busy before $s/$t: $q% CPU"
            fi
            d="$TMP/run-$r-$s-$t"
            if ! start_target "$t" "$kind" "$d"; then
                log "error: $t failed to start for scenario $s; skipping $t for every '$kind' scenario"
                BROKEN[$t/$kind]=1
                stop_target
                record_fail "$r" "$s" "$t"
                continue
            fi
            status=ok
            if ((WARMUP > 0)); then
                run_client "$s" "$TARGET_PORT" "$WARMUP" "$d/warmup" || true
            fi
            # backend workers are measured separately (to tell the proxy's CPU from other load)
            other_pids="$BACKEND_WORKERS"
            [[ "$t" == direct ]] && other_pids=""
            children_cpu; ch0="$CHILD_CPU"
            # shellcheck disable=SC2086
            snap0="$(python3 "$REPORT" snap $MEASURE_PIDS -- $other_pids 2>/dev/null || echo x)"
            if ! run_client "$s" "$TARGET_PORT" "$DURATION" "$d/client"; then
                log "error: $s/$t: load generator failed:"; tail -n 5 "$d/client.txt" >&2 || true
                status=failed
            fi
            # shellcheck disable=SC2086
            snap1="$(python3 "$REPORT" snap $MEASURE_PIDS -- $other_pids 2>/dev/null || echo x)"
            children_cpu; ch1="$CHILD_CPU"
            rss="-"
            if [[ "$t" != direct ]]; then
                # shellcheck disable=SC2046
                rss="$(python3 "$REPORT" hwm-kib $(rss_pids "$t") 2>/dev/null || echo -)"
            fi
            alive=1
            [[ -z "$PROXY_PID" ]] || kill -0 "$PROXY_PID" 2>/dev/null || alive=0
            stop_target
            if ((!alive)); then
                log "error: $s/$t: the proxy died during the run; log:"
                tail -n 20 "$d/stdout.log" "$d/error.log" >&2 2>/dev/null || true
                status=failed
            fi
            if [[ "$snap0" == x || "$snap1" == x ]]; then status=failed; fi
            parsed=""
            if [[ "$status" == ok ]] && ! parsed="$(parse_client "$s" "$d/client")"; then status=failed; fi
            if [[ "$status" != ok ]]; then
                record_fail "$r" "$s" "$t"
                continue
            fi
            IFS=$'\t' read -r rps p50 p99 nreq nerr lsrc <<<"$parsed"
            # derived figures: CPU µs/request, proxy core %, other CPU %, steal %
            read -r cpu_us proxy_pct other_pct steal_pct pwait bwait < <(awk -v s0="$snap0" -v s1="$snap1" \
                -v c0="$ch0" -v c1="$ch1" -v hz="$CLK_TCK" -v n="$nreq" -v ncpu="$NCPU" -v direct="$([[ $t == direct ]] && echo 1 || echo 0)" '
                function secs(str,   a, i, t, p) {   # "1m2.5s 0m0.1s" -> seconds
                    t = 0; split(str, a, " ")
                    for (i in a) { split(a[i], p, /[ms]/); t += p[1] * 60 + p[2] }
                    return t
                }
                BEGIN {
                    split(s0, a, " "); split(s1, b, " ")
                    dt = b[1] - a[1]; proxy = (b[2] - a[2]) / hz; backend = (b[3] - a[3]) / hz
                    busy = (b[4] - a[4]) / hz; steal = (b[5] - a[5]) / hz
                    child = secs(c1) - secs(c0)
                    other = busy - proxy - backend - child; if (other < 0) other = 0
                    wa = (b[6] - a[6]) / 1e9; wb = (b[7] - a[7]) / 1e9
                    if (direct) wb = wa
                    printf "%s %.1f %.1f %.1f %.2f %.2f\n", (n > 0 ? sprintf("%.3f", proxy * 1e6 / n) : "-"),
                        100 * proxy / dt, 100 * other / (dt * ncpu), 100 * steal / (dt * ncpu),
                        100 * wa / dt, 100 * wb / dt
                }')
            if ((nreq == 0)) || awk -v e="$nerr" -v n="$nreq" 'BEGIN { exit !(e > 0.01 * (n + e)) }'; then
                log "warning: $s/$t: $nerr errors for $nreq requests"
            fi
            record "$r" "$s" "$t" "$status" "$rps" "$p50" "$p99" "$cpu_us" "$proxy_pct" "$rss" "$nreq" "$nerr" \
                "$pwait" "$bwait" "$other_pct" "$steal_pct" "$lsrc"
            log "round $r/$ROUNDS $(printf '%-6s %-8s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  CPU %7s µs/req (core %5s%%)  RSS %6s KiB  err %s  runq wait %s/%s%%' \
                "$s" "$t" "$rps" "${p50/NA/0}" "${p99/NA/0}" "$cpu_us" "$proxy_pct" "$rss" "$nerr" "$pwait" "$bwait")"
            sleep 0.3
        done
    done
done

cp "$TMP/meta.md" "${RUNS%.tsv}.meta.md"
cp "$RUNS" "$OUT_DIR/latest-runs.tsv"
cp "$TMP/meta.md" "$OUT_DIR/latest-runs.meta.md"
python3 "$REPORT" report "$RUNS" "$OUT_DIR/latest.md" "$TMP/meta.md"
log "markdown table: $OUT_DIR/latest.md"
