#!/usr/bin/env bash
# bench/persistence.sh — session persistence and node-to-node replication, tandem vs HAProxy,
# on 127.0.0.1. Results: bench/persistence/RESULTS.md; how to read them: bench/README.md.
#
#   bench/persistence.sh                        # full run: ROUNDS=3 DURATION=10 (~10 min)
#   ROUNDS=1 DURATION=2 bench/persistence.sh    # smoke run (~2 min plus the builds)
#   PARTS=http bench/persistence.sh             # request path only (PARTS=repl: replication only)
#
# Part "http": the cost of persistence on the request path. One pool of two backends (one
# nginx, two ports), wrk keep-alive load; for tandem and HAProxy (one thread each, same core):
#   none           no persistence, round robin (the baseline)
#   cookie-return  cookie persistence, every request carries a valid cookie (taken with curl first)
#   cookie-new     cookie persistence, no cookie: every response sets one
#   source-ip      source_ip persistence / HAProxy stick-table on src; wrk comes from one
#                  address, so this is the cost of one table lookup per request
# Part "repl": replication throughput, lag and catch-up: crates/tandem-cluster/examples/
# replication.rs (two tandem cluster nodes) and bench/persistence/peers.py (two HAProxy
# processes with a peers section).
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [10]  WARMUP [1]   rounds, measured s per run, unmeasured s before it
#   PARTS ["http repl"]   TARGETS ["tandem haproxy"]
#   SCENARIOS ["none cookie-return cookie-new source-ip"]   CONNS [50]
#   REPL_SCENARIOS ["rate:10000 rate:100000 rate-ckpt:100000 snapshot:1000000 resume:1000000"]
#   REPL_TARGETS ["tandem haproxy"]  (HAProxy runs the rate:* and snapshot:* scenarios only)
#   REPL_ROUNDS [=ROUNDS]  REPL_DURATION [=DURATION]  REPL_WARMUP [1, 0 when REPL_DURATION < 2]
#   PROXY_CPU [0]  CLIENT_CPU [1]   NICE [-10 as root, else 0]
#   TANDEM_BIN, REPL_BIN [$CARGO_TARGET_DIR or target]/release/{tandem,examples/replication}
#   SKIP_BUILD [0]  OUT_DIR [bench/out]  KEEP_TMP [unset]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
REPORT="$HERE/report.py"                 # wrk parsing, /proc snapshots (shared with compare.sh)
PREPORT="$HERE/persistence/report.py"    # counters and this benchmark's report
PEERS="$HERE/persistence/peers.py"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-1}"
PARTS="${PARTS:-http repl}"
TARGETS="${TARGETS:-tandem haproxy}"
SCENARIOS="${SCENARIOS:-none cookie-return cookie-new source-ip}"
CONNS="${CONNS:-50}"
REPL_SCENARIOS="${REPL_SCENARIOS:-rate:10000 rate:100000 rate-ckpt:100000 snapshot:1000000 resume:1000000}"
REPL_TARGETS="${REPL_TARGETS:-tandem haproxy}"
REPL_ROUNDS="${REPL_ROUNDS:-$ROUNDS}"
REPL_DURATION="${REPL_DURATION:-$DURATION}"
if [[ -z "${REPL_WARMUP:-}" ]]; then
    if ((REPL_DURATION >= 2)); then REPL_WARMUP=1; else REPL_WARMUP=0; fi
fi
PROXY_CPU="${PROXY_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
TANDEM_BIN="${TANDEM_BIN:-$BIN_DIR/tandem}"
REPL_BIN="${REPL_BIN:-$BIN_DIR/examples/replication}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OUT_DIR="${OUT_DIR:-$HERE/out}"

# Ports (127.0.0.1 only, range 18300-18399 and 18920, apart from compare.sh's and failures.sh's).
BACKEND1=18301
BACKEND2=18302
declare -A PORT_HTTP=([haproxy]=18310 [tandem]=18330)
TANDEM_ADMIN=18920
REPL_TANDEM_A=18341
REPL_TANDEM_B=18342
REPL_HAPROXY_A=18351
REPL_HAPROXY_B=18352

for v in ROUNDS DURATION WARMUP CONNS PROXY_CPU CLIENT_CPU REPL_ROUNDS REPL_DURATION REPL_WARMUP; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "error: $v must be a non-negative integer (got '${!v}')" >&2; exit 2; }
done
((ROUNDS >= 1 && DURATION >= 1 && REPL_ROUNDS >= 1 && REPL_DURATION >= 1)) \
    || { echo "error: ROUNDS, DURATION, REPL_ROUNDS and REPL_DURATION must be >= 1" >&2; exit 2; }
((REPL_WARMUP < REPL_DURATION)) || { echo "error: REPL_WARMUP must be < REPL_DURATION" >&2; exit 2; }

# Logging, the temp dir (TMP), the PIDs we start (STARTED, stopped by PID on exit), the build's
# PID, ports, waiting for a server: bench/lib.sh.
source "$HERE/lib.sh"

read -r -a PART_LIST <<<"$PARTS"
read -r -a TARGET_LIST <<<"$TARGETS"
read -r -a SCENARIO_LIST <<<"$SCENARIOS"
read -r -a REPL_LIST <<<"$REPL_SCENARIOS"
read -r -a REPL_TARGET_LIST <<<"$REPL_TARGETS"
has_part() { [[ " ${PART_LIST[*]} " == *" $1 "* ]]; }
for p in "${PART_LIST[@]}"; do
    case "$p" in http|repl) ;; *) die "unknown part '$p' (http repl)";; esac
done
for s in "${SCENARIO_LIST[@]}"; do
    case "$s" in none|cookie-return|cookie-new|source-ip) ;; *) die "unknown scenario '$s' (none cookie-return cookie-new source-ip)";; esac
done
for t in "${TARGET_LIST[@]}" "${REPL_TARGET_LIST[@]}"; do
    case "$t" in tandem|haproxy) ;; *) die "unknown target '$t' (tandem haproxy)";; esac
done
for s in "${REPL_LIST[@]}"; do
    [[ "$s" =~ ^(rate|rate-ckpt|snapshot|resume):[1-9][0-9]*$ ]] || die "bad replication scenario '$s' (rate:R rate-ckpt:R snapshot:N resume:N)"
done

# ------------------------------------------------------------------ process bookkeeping
bench_tmp tandem-persist
PEER_PIDS="$TMP/peers.pids"   # HAProxy processes started by peers.py (its own children)

kill_peer_haproxies() {   # safety net: HAProxy processes peers.py started and did not stop
    local pid
    [[ -f "$PEER_PIDS" ]] || return 0
    while read -r pid; do
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        # only if it is still that HAProxy (running a config from our temp dir)
        [[ -r "/proc/$pid/cmdline" ]] || continue
        if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "-f $TMP/"; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$PEER_PIDS"
    : >"$PEER_PIDS"
}
bench_hook_cleanup() { kill_peer_haproxies; }   # run by lib.sh's exit trap

# ------------------------------------------------------------------ prerequisites
bench_packages haproxy:haproxy nginx:nginx wrk:wrk curl:curl taskset:util-linux python3:python3 pgrep:procps
# One nice level for every benchmark process, each in its own autogroup; proxy and client
# pinned to their cores (bench/lib.sh; README "Noise").
bench_pinning

for p in "$BACKEND1" "$BACKEND2" "${PORT_HTTP[@]}" "$TANDEM_ADMIN" "$REPL_TANDEM_A" "$REPL_TANDEM_B" \
         "$REPL_HAPROXY_A" "$REPL_HAPROXY_B"; do
    port_free "$p" || die "127.0.0.1:$p is already in use (another benchmark running?)"
done

# ------------------------------------------------------------------ builds
TANDEM_OK=0
REPL_OK=0
want_tandem_http=0; has_part http && [[ " $TARGETS " == *" tandem "* ]] && want_tandem_http=1
want_tandem_repl=0; has_part repl && [[ " $REPL_TARGETS " == *" tandem "* ]] && want_tandem_repl=1
# One cargo invocation for both binaries: built separately, `-p tandem` and `-p tandem-cluster`
# resolve dependency features differently and rebuild each other's artifacts every time.
# OUT_DIR (ours, when given in the environment) is kept from cargo: ring's build script tracks
# a variable of that name, and a new value rebuilds half the workspace.
if ((want_tandem_http || want_tandem_repl)) && [[ "$SKIP_BUILD" != 1 ]]; then
    log "building (cargo build --release -p tandem -p tandem-cluster --bin tandem --example replication)"
    # in the background + wait, so that Ctrl-C/TERM stop the script at once, also mid-build
    (cd "$ROOT" && exec env -u OUT_DIR cargo build --release -p tandem -p tandem-cluster --bin tandem --example replication) \
        >"$TMP/cargo.log" 2>&1 &
    BUILD_PID=$!
    STARTED+=("$BUILD_PID")
    build_rc=0
    wait "$BUILD_PID" || build_rc=$?
    forget_pid "$BUILD_PID"
    BUILD_PID=""
    if ((build_rc == 0)); then
        TANDEM_OK=1
        REPL_OK=1
    else
        log "error: the build failed; skipping tandem. Last lines:"
        tail -n 15 "$TMP/cargo.log" >&2
    fi
elif [[ "$SKIP_BUILD" == 1 ]]; then
    TANDEM_OK=1
    REPL_OK=1
fi
if ((want_tandem_http)); then
    if ((TANDEM_OK)) && [[ ! -x "$TANDEM_BIN" ]]; then log "error: $TANDEM_BIN not found"; TANDEM_OK=0; fi
    # a private copy: a concurrent 'cargo build' must not swap the binary mid-benchmark
    if ((TANDEM_OK)); then cp "$TANDEM_BIN" "$TMP/tandem"; TANDEM_BIN="$TMP/tandem"; else log "skipping tandem in the http part"; fi
else
    TANDEM_OK=0
fi
if ((want_tandem_repl)); then
    if ((REPL_OK)) && [[ ! -x "$REPL_BIN" ]]; then log "error: $REPL_BIN not found"; REPL_OK=0; fi
    if ((REPL_OK)); then cp "$REPL_BIN" "$TMP/replication"; REPL_BIN="$TMP/replication"; else log "skipping tandem in the repl part"; fi
else
    REPL_OK=0
fi

# ------------------------------------------------------------------ machine description
HAPROXY_V="$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}' || true)"
NGINX_V="$(nginx -v 2>&1 | sed 's|.*nginx/||')"
WRK_V="$(wrk -v 2>&1 | awk 'NR == 1 {print $2}' || true)"
TANDEM_V="n/a"
if [[ -x "$TANDEM_BIN" ]]; then TANDEM_V="$("$TANDEM_BIN" --version 2>/dev/null | awk 'NR == 1' || true)"; fi
MODEL="$(lscpu 2>/dev/null | awk -F': *' '/^Model name:/ && !m {m = $2} END {print m}' || true)"
MEM="$(free -h | awk '/^Mem:/ {print $2}')"
STAMP="$(date -u +%Y-%m-%dT%H:%MZ)"
read -r LOAD1 _ <"/proc/loadavg"
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: load average is $LOAD1 before starting: other work on this machine will add noise"
fi
{
    echo "- date: $STAMP; tandem: ${TANDEM_V:-unknown}"
    echo "- machine: $NCPU CPUs ($MODEL), $MEM RAM, kernel $(uname -r); load average at start: $LOAD1"
    echo "- HAProxy $HAPROXY_V, nginx $NGINX_V (backends), wrk $WRK_V; everything at nice $NICE"
    if has_part http; then
        echo "- request path: $ROUNDS round(s) × ${DURATION}s per proxy and scenario (+${WARMUP}s warm-up), medians shown;"
        echo "  wrk -t1 -c$CONNS on core $CLIENT_CPU with the backend nginx (1 worker, two ports); the proxy (one"
        echo "  worker/thread) on core $PROXY_CPU, started fresh for every run"
    fi
    if has_part repl; then
        echo "- replication: $REPL_ROUNDS round(s); rate scenarios ${REPL_DURATION}s (first ${REPL_WARMUP}s not sampled);"
        echo "  node A + its driver on core $PROXY_CPU, node B on core $CLIENT_CPU; a fresh process (pair) per run"
    fi
} >"$TMP/meta.md"

mkdir -p "$OUT_DIR"
TS="$(date -u +%Y%m%dT%H%M%SZ)"
HTTP_RUNS="-"
REPL_RUNS="-"

# ================================================================== part 1: request path
if has_part http; then
    if ((!TANDEM_OK)); then
        TARGET_LIST=("${TARGET_LIST[@]/tandem/}")
    fi
    mkdir -p "$TMP/www" "$TMP/backend"
    printf 'Hello, world\n' >"$TMP/www/small"   # 13 bytes
    cat >"$TMP/backend/nginx.conf" <<EOF
# backends: one nginx, one worker, two ports (the two pool members)
worker_processes 1;
daemon off;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/backend/client_body;
    proxy_temp_path $TMP/backend/proxy;
    fastcgi_temp_path $TMP/backend/fastcgi;
    uwsgi_temp_path $TMP/backend/uwsgi;
    scgi_temp_path $TMP/backend/scgi;
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
    "${PIN_CLIENT[@]}" nginx -p "$TMP/backend" -c "$TMP/backend/nginx.conf" >"$TMP/backend/stdout.log" 2>&1 &
    BACKEND_PID=$!
    STARTED+=("$BACKEND_PID")
    wait_http "http://127.0.0.1:$BACKEND1/small" "$BACKEND_PID" || { cat "$TMP/backend/"*.log >&2; die "backend nginx did not start"; }
    wait_http "http://127.0.0.1:$BACKEND2/small" "$BACKEND_PID" || die "backend nginx :$BACKEND2 not answering"
    BACKEND_WORKERS="$(children_of "$BACKEND_PID" | tr '\n' ' ')"
    [[ -n "$BACKEND_WORKERS" ]] || die "cannot find the backend nginx worker"

    write_haproxy_conf() {   # $1 scenario, $2 dir
        local s="$1" d="$2" c1="" c2=""
        {
            cat <<EOF
global
    nbthread 1
    maxconn 4096
    stats socket $d/admin.sock mode 600 level admin
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend fe
    bind 127.0.0.1:${PORT_HTTP[haproxy]}
    default_backend be
backend be
    balance roundrobin
EOF
            case "$s" in
                cookie-*) echo "    cookie SRV insert indirect nocache"; c1=" cookie s1"; c2=" cookie s2" ;;
                source-ip) printf '    stick-table type ip size 100k expire 6m\n    stick on src\n' ;;
            esac
            echo "    server s1 127.0.0.1:$BACKEND1$c1"
            echo "    server s2 127.0.0.1:$BACKEND2$c2"
        } >"$d/haproxy.cfg"
    }

    write_tandem_conf() {   # $1 scenario, $2 dir
        local s="$1" d="$2" persist=""
        case "$s" in
            cookie-*) persist='persistence = { kind = "cookie", name = "SRV" }' ;;
            source-ip) persist='persistence = { kind = "source_ip" }' ;;
        esac
        cat >"$d/tandem.toml" <<EOF
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
listen = "127.0.0.1:${PORT_HTTP[tandem]}"
mode = "http"
pool = "bench"
$persist
EOF
    }

    # Sets PROXY_PID, TARGET_PORT and COOKIE (the returning client's cookie, or empty).
    start_target() {   # $1 target, $2 scenario, $3 run dir
        local t="$1" s="$2" d="$3" port got sc
        mkdir -p "$d"
        PROXY_PID=""
        COOKIE=""
        port="${PORT_HTTP[$t]}"
        TARGET_PORT="$port"
        port_free "$port" || { log "error: $t: port $port busy"; return 1; }
        if [[ "$t" == haproxy ]]; then
            write_haproxy_conf "$s" "$d"
            haproxy -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 || { log "error: haproxy config invalid:"; cat "$d/check.log" >&2; return 1; }
            "${PIN_PROXY[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/stdout.log" 2>&1 &
        else
            write_tandem_conf "$s" "$d"
            RUST_LOG="${TANDEM_RUST_LOG:-warn}" "${PIN_PROXY[@]}" "$TANDEM_BIN" run --config "$d/tandem.toml" >"$d/stdout.log" 2>&1 &
        fi
        PROXY_PID=$!
        STARTED+=("$PROXY_PID")
        if ! wait_http "http://127.0.0.1:$port/small" "$PROXY_PID"; then
            log "error: $t ($s) did not start serving on 127.0.0.1:$port within 5 s; log:"
            tail -n 20 "$d/stdout.log" >&2 || true
            return 1
        fi
        got="$(curl -s --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/small" || true)"
        [[ "$got" == "200 13" ]] || { log "error: $t ($s): GET /small gave '$got', want '200 13'"; return 1; }
        # What persistence puts in the response to a client without a cookie.
        sc="$(curl -s --max-time 5 -D - -o /dev/null "http://127.0.0.1:$port/small" | tr -d '\r' | grep -i '^set-cookie: SRV=' || true)"
        case "$s" in
            cookie-*)
                [[ -n "$sc" ]] || { log "error: $t ($s): no Set-Cookie SRV=... in the response"; return 1; }
                COOKIE="$(sed -E 's/^[Ss]et-[Cc]ookie: (SRV=[^;]*).*/\1/' <<<"$sc")"
                # A returning client gets no new cookie.
                got="$(curl -s --max-time 5 -D - -o /dev/null -H "Cookie: $COOKIE" "http://127.0.0.1:$port/small" | tr -d '\r' | grep -ci '^set-cookie:' || true)"
                [[ "$got" == 0 ]] || { log "error: $t ($s): a request with '$COOKIE' still got a Set-Cookie"; return 1; }
                [[ "$s" == cookie-new ]] && COOKIE=""
                ;;
            *) [[ -z "$sc" ]] || { log "error: $t ($s): unexpected '$sc'"; return 1; } ;;
        esac
        return 0
    }

    stop_target() {
        [[ -n "${PROXY_PID:-}" ]] || return 0
        kill_pid "$PROXY_PID"
        forget_pid "$PROXY_PID"
        PROXY_PID=""
    }

    counters() {   # counters TARGET RUN-DIR: persistence counters of the running proxy
        if [[ "$1" == tandem ]]; then
            python3 "$PREPORT" counters tandem "127.0.0.1:$TANDEM_ADMIN"
        else
            python3 "$PREPORT" counters haproxy "$2/admin.sock"
        fi
    }

    run_wrk() {   # run_wrk PORT SECONDS OUT-PREFIX
        local -a hdr=()
        [[ -n "$COOKIE" ]] && hdr=(-H "Cookie: $COOKIE")
        run_bg $(($2 + 30)) "$3.txt" "$3.err" "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNS" -d"$2s" --timeout 5s --latency \
            "${hdr[@]+"${hdr[@]}"}" "http://127.0.0.1:$1/small"
    }

    HTTP_RUNS="$OUT_DIR/persistence-http-$TS.tsv"
    printf 'round\tscenario\ttarget\tstatus\trps\tp50_ms\tp99_ms\tcpu_us_per_req\tproxy_cpu_pct\trss_kib\trequests\terrors\tproxy_wait_pct\tcheck_a\tcheck_b\n' >"$HTTP_RUNS"
    record() { local IFS=$'\t'; echo "$*" >>"$HTTP_RUNS"; }
    ((${#TARGET_LIST[@]} > 0)) || die "no targets left for the http part"
    declare -A BROKEN=()
    log "request path: ${TARGET_LIST[*]} × ${SCENARIO_LIST[*]} × $ROUNDS round(s) × ${DURATION}s"
    for ((r = 1; r <= ROUNDS; r++)); do
        order=()
        for t in "${TARGET_LIST[@]}"; do [[ -n "$t" ]] && order+=("$t"); done
        if ((r % 2 == 0)); then   # alternate the order every round
            rev=()
            for ((i = ${#order[@]} - 1; i >= 0; i--)); do rev+=("${order[$i]}"); done
            order=("${rev[@]}")
        fi
        for s in "${SCENARIO_LIST[@]}"; do
            for t in "${order[@]}"; do
                d="$TMP/http-$r-$s-$t"
                if [[ -n "${BROKEN[$t/$s]:-}" ]] || ! start_target "$t" "$s" "$d"; then
                    [[ -z "${BROKEN[$t/$s]:-}" ]] && log "error: $t failed to start for $s; skipping it in later rounds"
                    BROKEN[$t/$s]=1
                    stop_target
                    record "$r" "$s" "$t" failed - - - - - - 0 0 - - -
                    continue
                fi
                status=ok
                ((WARMUP > 0)) && { run_wrk "$TARGET_PORT" "$WARMUP" "$d/warmup" || true; }
                read -r ca0 cb0 <<<"$(counters "$t" "$d")"
                # shellcheck disable=SC2086
                snap0="$(python3 "$REPORT" snap "$PROXY_PID" -- $BACKEND_WORKERS 2>/dev/null || echo x)"
                if ! run_wrk "$TARGET_PORT" "$DURATION" "$d/client"; then
                    log "error: $s/$t: wrk failed:"; tail -n 5 "$d/client.txt" "$d/client.err" >&2 || true
                    status=failed
                fi
                # shellcheck disable=SC2086
                snap1="$(python3 "$REPORT" snap "$PROXY_PID" -- $BACKEND_WORKERS 2>/dev/null || echo x)"
                read -r ca1 cb1 <<<"$(counters "$t" "$d")"
                rss="$(python3 "$REPORT" hwm-kib "$PROXY_PID" 2>/dev/null || echo -)"
                kill -0 "$PROXY_PID" 2>/dev/null || { log "error: $s/$t: the proxy died"; status=failed; }
                stop_target
                [[ "$snap0" == x || "$snap1" == x ]] && status=failed
                parsed=""
                if [[ "$status" == ok ]] && ! parsed="$(python3 "$REPORT" parse-wrk "$d/client.txt")"; then status=failed; fi
                if [[ "$status" != ok ]]; then
                    record "$r" "$s" "$t" failed - - - - - - 0 0 - - -
                    continue
                fi
                IFS=$'\t' read -r rps p50 p99 nreq nerr _ <<<"$parsed"
                read -r cpu_us proxy_pct pwait < <(awk -v s0="$snap0" -v s1="$snap1" -v hz="$CLK_TCK" -v n="$nreq" '
                    BEGIN {
                        split(s0, a, " "); split(s1, b, " ")
                        dt = b[1] - a[1]; proxy = (b[2] - a[2]) / hz; wa = (b[6] - a[6]) / 1e9
                        printf "%s %.1f %.2f\n", (n > 0 ? sprintf("%.3f", proxy * 1e6 / n) : "-"), 100 * proxy / dt, 100 * wa / dt
                    }')
                da="-"; db="-"
                [[ "$ca0" =~ ^[0-9]+$ && "$ca1" =~ ^[0-9]+$ ]] && da=$((ca1 - ca0))
                [[ "$cb0" =~ ^[0-9]+$ && "$cb1" =~ ^[0-9]+$ ]] && db=$((cb1 - cb0))
                if ((nreq == 0)) || awk -v e="$nerr" -v n="$nreq" 'BEGIN { exit !(e > 0.01 * (n + e)) }'; then
                    log "warning: $s/$t: $nerr errors for $nreq requests"
                fi
                record "$r" "$s" "$t" ok "$rps" "$p50" "$p99" "$cpu_us" "$proxy_pct" "$rss" "$nreq" "$nerr" "$pwait" "$da" "$db"
                if [[ "$t" == tandem ]]; then chk="pinned $da issued $db"; else chk="s1 $da s2 $db"; fi
                log "round $r/$ROUNDS $(printf '%-13s %-7s %8.0f req/s  p99 %7.3f ms  CPU %7s µs/req (core %5s%%)  RSS %6s KiB  err %s  runq wait %s%%  [%s]' \
                    "$s" "$t" "$rps" "${p99/NA/0}" "$cpu_us" "$proxy_pct" "$rss" "$nerr" "$pwait" "$chk")"
                sleep 0.3
            done
        done
    done
    stop_target
    kill_pid "$BACKEND_PID"
    forget_pid "$BACKEND_PID"
fi

# ================================================================== part 2: replication
if has_part repl; then
    REPL_RUNS="$OUT_DIR/persistence-repl-$TS.tsv"
    header_done=0
    repl_targets=()
    for t in "${REPL_TARGET_LIST[@]}"; do
        if [[ "$t" == tandem ]] && ((!REPL_OK)); then continue; fi
        repl_targets+=("$t")
    done
    ((${#repl_targets[@]} > 0)) || die "no targets left for the repl part"
    cpu_args=()
    ((PIN_OK)) && cpu_args=(--cpu-a "$PROXY_CPU" --cpu-b "$CLIENT_CPU")
    # peers.py itself (A's CLI driver, B's poller) is not pinned: on A's core, next to HAProxy's
    # CLI parsing, it cannot feed 100k keys/s. Where it runs it can only take time from B.
    log "replication: ${repl_targets[*]} × ${REPL_LIST[*]} × $REPL_ROUNDS round(s)"
    for ((r = 1; r <= REPL_ROUNDS; r++)); do
        order=("${repl_targets[@]}")
        if ((r % 2 == 0)); then
            rev=()
            for ((i = ${#order[@]} - 1; i >= 0; i--)); do rev+=("${order[$i]}"); done
            order=("${rev[@]}")
        fi
        for s in "${REPL_LIST[@]}"; do
            for t in "${order[@]}"; do
                out="$TMP/repl-$r-$s-$t"
                hdr=()
                ((header_done)) || hdr=(--header)
                limit=$((REPL_DURATION + 300))
                rc=0
                if [[ "$t" == tandem ]]; then
                    for p in "$REPL_TANDEM_A" "$REPL_TANDEM_B"; do port_free "$p" || die "127.0.0.1:$p busy"; done
                    run_bg "$limit" "$out.tsv" "$out.err" "${PRIO[@]+"${PRIO[@]}"}" "$REPL_BIN" "${hdr[@]+"${hdr[@]}"}" \
                        --scenario "$s" --round "$r" --duration "$REPL_DURATION" --warmup "$REPL_WARMUP" \
                        --port-a "$REPL_TANDEM_A" --port-b "$REPL_TANDEM_B" --tmp "$TMP" "${cpu_args[@]+"${cpu_args[@]}"}" || rc=$?
                else
                    case "$s" in
                        rate:*|snapshot:*) ;;
                        *) continue ;;   # rate-ckpt, resume: HAProxy keeps no state on disk (see RESULTS.md)
                    esac
                    for p in "$REPL_HAPROXY_A" "$REPL_HAPROXY_B"; do port_free "$p" || die "127.0.0.1:$p busy"; done
                    mkdir -p "$out.d"
                    run_bg "$limit" "$out.tsv" "$out.err" "${PRIO[@]+"${PRIO[@]}"}" python3 "$PEERS" "${hdr[@]+"${hdr[@]}"}" \
                        --scenario "$s" --round "$r" --duration "$REPL_DURATION" --warmup "$REPL_WARMUP" \
                        --port-a "$REPL_HAPROXY_A" --port-b "$REPL_HAPROXY_B" --dir "$out.d" --pidfile "$PEER_PIDS" \
                        "${cpu_args[@]+"${cpu_args[@]}"}" || rc=$?
                    kill_peer_haproxies
                fi
                if ((rc != 0)) || [[ ! -s "$out.tsv" ]]; then
                    log "error: replication $s/$t failed (exit $rc):"
                    tail -n 10 "$out.err" >&2 || true
                    continue
                fi
                # prefix the target; the first line of the first run is the header
                awk -v t="$t" -v first="$((1 - header_done))" 'NR == 1 && first == 1 { print "target\t" $0; next } { print t "\t" $0 }' \
                    "$out.tsv" >>"$REPL_RUNS"
                header_done=1
                line="$(tail -n 1 "$out.tsv")"
                IFS=$'\t' read -r -a f <<<"$line"
                # columns: 4 status, 7 applied/s, 9 lag p50, 11 lag p99, 18 catch-up ms, 20 cpu A, 21 cpu B
                log "round $r/$REPL_ROUNDS $(printf '%-18s %-7s %-8s applied/s %8s  lag p50 %6s p99 %7s ms  catch-up %7s ms  CPU A %7s B %7s ms' \
                    "$s" "$t" "${f[4]}" "${f[7]}" "${f[9]}" "${f[11]}" "${f[18]}" "${f[20]}" "${f[21]}")"
            done
        done
    done
fi

# ------------------------------------------------------------------ report
cp "$TMP/meta.md" "$OUT_DIR/persistence-$TS.meta.md"
[[ "$HTTP_RUNS" != - ]] && cp "$HTTP_RUNS" "$OUT_DIR/persistence-http-latest.tsv"
[[ "$REPL_RUNS" != - ]] && cp "$REPL_RUNS" "$OUT_DIR/persistence-repl-latest.tsv"
cp "$TMP/meta.md" "$OUT_DIR/persistence-latest.meta.md"
python3 "$PREPORT" report "$HTTP_RUNS" "$REPL_RUNS" "$OUT_DIR/persistence-latest.md" "$TMP/meta.md"
log "markdown tables: $OUT_DIR/persistence-latest.md"
