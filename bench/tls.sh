#!/usr/bin/env bash
# bench/tls.sh — TLS termination, HTTP/2 over TLS and routing cost: tandem vs HAProxy vs nginx,
# side by side in one run on 127.0.0.1. Results: bench/tls/RESULTS.md; how to read them:
# bench/README.md ("TLS, HTTP/2 and routing").
#
#   bench/tls.sh                               # full run: ROUNDS=3 DURATION=10 (~20 min)
#   ROUNDS=1 DURATION=2 bench/tls.sh           # smoke run (~4 min plus the build)
#   SCENARIOS=hs KEYS=rsa bench/tls.sh         # a subset
#
# Every proxy terminates TLS with the same certificate (generated with openssl for this run, one
# per key type: ECDSA P-256 and RSA 2048) in front of the same two plain-HTTP backends (one
# nginx, two ports). Scenarios (each run once per key type, except route):
#   hs      new TLS connection per request: wrk -H 'Connection: close' over https; the client
#           never offers a session (bench/tls/nosession.c), so every request is a full TLS 1.3
#           handshake whatever the server's resumption settings
#   resume  the same, but the client resumes (wrk's own behaviour): each proxy's default session
#           cache / tickets decide (not in the default list)
#   ka      HTTP/1.1 keep-alive over TLS: wrk -c$CONNS, many requests per connection
#   h2      HTTP/2 over TLS (ALPN h2): h2load -c$H2_CLIENTS -m$H2_STREAMS
#   route   cleartext HTTP keep-alive through a service with $ROUTES rules that all fail to
#           match (host, path_prefix, path_regex, header), vs 1 rule: tandem and HAProxy (ACL +
#           use_backend lines); the CPU per request is what the rules cost
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [10]  WARMUP [1]   rounds, measured s per run, unmeasured s before it
#   TARGETS ["tandem haproxy nginx"]  SCENARIOS ["hs ka h2 route"]  KEYS ["ecdsa rsa"]
#   ROUTES ["1 100"]   rule counts of the route scenario
#   CONNS [50]  HS_CONNS [50]   wrk connections (keep-alive, and new connection per request)
#   H2_CLIENTS [10]  H2_STREAMS [10]   h2load connections and concurrent streams per connection
#   PROXY_CPU [0]  CLIENT_CPU [1]   NICE [-10 as root, else 0]
#   TANDEM_BIN [$CARGO_TARGET_DIR or target]/release/tandem   SKIP_BUILD [0]
#   OUT_DIR [bench/out]  KEEP_TMP [unset]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
REPORT="$HERE/report.py"        # wrk/h2load parsing, /proc snapshots (shared with compare.sh)
TREPORT="$HERE/tls/report.py"   # this benchmark's tables
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-1}"
TARGETS="${TARGETS:-tandem haproxy nginx}"
SCENARIOS="${SCENARIOS:-hs ka h2 route}"
KEYS="${KEYS:-ecdsa rsa}"
ROUTES="${ROUTES:-1 100}"
CONNS="${CONNS:-50}"
HS_CONNS="${HS_CONNS:-50}"
H2_CLIENTS="${H2_CLIENTS:-10}"
H2_STREAMS="${H2_STREAMS:-10}"
PROXY_CPU="${PROXY_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
TANDEM_BIN="${TANDEM_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tandem}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OUT_DIR="${OUT_DIR:-$HERE/out}"

# Ports (127.0.0.1 only, 18201-18299: apart from compare.sh's 18001-18132, failures.sh's
# 18210-18230 and persistence.sh's 18301-18352).
BACKEND1=18201
BACKEND2=18202
DEAD_BACKEND=18203   # nothing listens: the pool the routing rules point at (a match would be a 502/503)
declare -A PORT_TLS=([haproxy]=18250 [nginx]=18260 [tandem]=18270)
declare -A PORT_ROUTE=([haproxy]=18251 [tandem]=18271)
TANDEM_ADMIN=18290

for v in ROUNDS DURATION WARMUP CONNS HS_CONNS H2_CLIENTS H2_STREAMS PROXY_CPU CLIENT_CPU; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "error: $v must be a non-negative integer (got '${!v}')" >&2; exit 2; }
done
((ROUNDS >= 1 && DURATION >= 1 && CONNS >= 1 && HS_CONNS >= 1)) || { echo "error: ROUNDS, DURATION, CONNS, HS_CONNS must be >= 1" >&2; exit 2; }

read -r -a TARGET_LIST <<<"$TARGETS"
read -r -a SCENARIO_LIST <<<"$SCENARIOS"
read -r -a KEY_LIST <<<"$KEYS"
read -r -a ROUTE_LIST <<<"$ROUTES"
for t in "${TARGET_LIST[@]}"; do
    case "$t" in tandem|haproxy|nginx) ;; *) echo "error: unknown target '$t' (tandem haproxy nginx)" >&2; exit 2 ;; esac
done
for s in "${SCENARIO_LIST[@]}"; do
    case "$s" in hs|resume|ka|h2|route) ;; *) echo "error: unknown scenario '$s' (hs resume ka h2 route)" >&2; exit 2 ;; esac
done
for k in "${KEY_LIST[@]}"; do
    case "$k" in ecdsa|rsa) ;; *) echo "error: unknown key type '$k' (ecdsa rsa)" >&2; exit 2 ;; esac
done
for n in "${ROUTE_LIST[@]}"; do
    if [[ ! "$n" =~ ^[1-9][0-9]*$ ]] || ((n > 10000)); then echo "error: ROUTES: '$n' is not a rule count in 1-10000" >&2; exit 2; fi
done

bench_tmp tandem-tls
bench_packages haproxy:haproxy nginx:nginx wrk:wrk h2load:nghttp2-client curl:curl openssl:openssl \
    cc:gcc taskset:util-linux python3:python3 pgrep:procps
bench_pinning
bench_ports_free "$BACKEND1" "$BACKEND2" "$DEAD_BACKEND" "${PORT_TLS[@]}" "${PORT_ROUTE[@]}" "$TANDEM_ADMIN"

# ------------------------------------------------------------------ client shim, certificates
SHIM="$TMP/nosession.so"
cc -O2 -Wall -shared -fPIC -o "$SHIM" "$HERE/tls/nosession.c" -ldl 2>"$TMP/cc.log" \
    || { cat "$TMP/cc.log" >&2; die "cannot build bench/tls/nosession.c (needs gcc and libc headers)"; }

# One self-signed certificate per key type, for 127.0.0.1 (and localhost); the same files for
# every proxy. HAProxy wants certificate and key in one file.
for k in "${KEY_LIST[@]}"; do
    cd_="$TMP/certs/$k"
    mkdir -p "$cd_"
    case "$k" in
        ecdsa) kopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
        rsa) kopt=(-newkey rsa:2048) ;;
    esac
    openssl req -x509 "${kopt[@]}" -nodes -sha256 -days 7 -subj "/CN=tandem-bench" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$cd_/key.pem" -out "$cd_/cert.pem" >"$cd_/openssl.log" 2>&1 \
        || { cat "$cd_/openssl.log" >&2; die "openssl could not make the $k certificate"; }
    cat "$cd_/cert.pem" "$cd_/key.pem" >"$cd_/combined.pem"
    chmod 600 "$cd_/key.pem" "$cd_/combined.pem"   # throwaway keys, but no need to share them
done

# ------------------------------------------------------------------ tandem build
has_target() { [[ " ${TARGET_LIST[*]} " == *" $1 "* ]]; }
TANDEM_OK=0
if has_target tandem; then
    bench_tandem_build
    if ((!TANDEM_OK)); then
        TARGET_LIST=("${TARGET_LIST[@]/tandem/}")
    fi
fi

bench_backends "$TMP" "$BACKEND1" "$BACKEND2"

# ------------------------------------------------------------------ proxy configs
# kind: tls-ecdsa / tls-rsa (TLS listener with that certificate), route-N (cleartext, N rules)

write_haproxy_conf() {   # $1 kind, $2 file
    local kind="$1" f="$2" i
    {
        cat <<EOF
global
    nbthread 1
    maxconn 4096
    # no 'log' line: logging off; TLS session cache and tickets: HAProxy's defaults
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
EOF
        case "$kind" in
            tls-*)
                echo "    bind 127.0.0.1:${PORT_TLS[haproxy]} ssl crt $TMP/certs/${kind#tls-}/combined.pem alpn h2,http/1.1"
                echo "    http-request set-header X-Forwarded-Proto https"
                ;;
            route-*)
                echo "    bind 127.0.0.1:${PORT_ROUTE[haproxy]}"
                for ((i = 0; i < ${kind#route-}; i++)); do
                    case $((i % 4)) in
                        0) echo "    acl r$i hdr(host) -i h$i.example.com" ;;
                        1) echo "    acl r$i path_beg /p$i/" ;;
                        2) echo "    acl r$i path_reg ^/r$i/[a-z]+\$" ;;
                        3) echo "    acl r$i req.hdr(X-R$i) -m str v$i" ;;
                    esac
                    echo "    use_backend alt if r$i"
                done
                ;;
        esac
        cat <<EOF
    default_backend be
backend be
    balance roundrobin
    server s1 127.0.0.1:$BACKEND1
    server s2 127.0.0.1:$BACKEND2
backend alt
    server dead 127.0.0.1:$DEAD_BACKEND
EOF
    } >"$f"
}

write_nginx_conf() {   # $1 kind (tls-* only), $2 file, $3 dir
    local kind="$1" f="$2" d="$3" c="$TMP/certs/${1#tls-}"
    cat >"$f" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths "$d")
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
        listen 127.0.0.1:${PORT_TLS[nginx]} ssl http2;
        ssl_certificate $c/cert.pem;
        ssl_certificate_key $c/key.pem;
        # nginx 1.22 leaves TLS 1.3 out by default; session cache and tickets: nginx's defaults
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
}

write_tandem_conf() {   # $1 kind, $2 file
    local kind="$1" f="$2" i port extra=""
    case "$kind" in
        tls-*)
            port="${PORT_TLS[tandem]}"
            extra="tls = { certificates = [ { cert = \"$TMP/certs/${kind#tls-}/cert.pem\", key = \"$TMP/certs/${kind#tls-}/key.pem\" } ] }"
            ;;
        route-*)
            port="${PORT_ROUTE[tandem]}"
            extra="routes = ["$'\n'
            for ((i = 0; i < ${kind#route-}; i++)); do
                case $((i % 4)) in
                    0) extra+="  { match = { host = \"h$i.example.com\" }, pool = \"alt\" },"$'\n' ;;
                    1) extra+="  { match = { path_prefix = \"/p$i/\" }, pool = \"alt\" },"$'\n' ;;
                    2) extra+="  { match = { path_regex = \"^/r$i/[a-z]+\$\" }, pool = \"alt\" },"$'\n' ;;
                    3) extra+="  { match = { header = { name = \"X-R$i\", value = \"v$i\" } }, pool = \"alt\" },"$'\n' ;;
                esac
            done
            extra+="]"
            ;;
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

[[pool]]
name = "alt"
health = { kind = "none" }
backends = [ { address = "127.0.0.1:$DEAD_BACKEND" } ]

[[service]]
name = "web"
listen = "127.0.0.1:$port"
mode = "http"
pool = "bench"
$extra
EOF
}

# A request that matches the last of N rules (and so must not reach the backends).
route_probe() {   # route_probe N PORT: prints the HTTP status
    local n="$1" port="$2" i=$(($1 - 1))
    local -a opts=()
    local path=/small
    case $((i % 4)) in
        0) opts=(-H "Host: h$i.example.com") ;;
        1) path="/p$i/x" ;;
        2) path="/r$i/abc" ;;
        3) opts=(-H "X-R$i: v$i") ;;
    esac
    curl -s --max-time 5 -o /dev/null -w '%{http_code}' "${opts[@]+"${opts[@]}"}" "http://127.0.0.1:$port$path" || true
}

# ------------------------------------------------------------------ start / stop a proxy
# Sets PROXY_PID, MEASURE_PIDS (nginx: master + worker), TARGET_PORT. Returns 1 with a message
# when the target cannot serve or serves the wrong thing.
start_target() {   # $1 target, $2 kind, $3 run dir
    local t="$1" kind="$2" d="$3" port got url
    mkdir -p "$d"
    PROXY_PID=""
    MEASURE_PIDS=""
    case "$kind" in
        tls-*) port="${PORT_TLS[$t]}" ;;
        route-*) port="${PORT_ROUTE[$t]}" ;;
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
    esac
    STARTED+=("$PROXY_PID")

    local -a copts=()
    if [[ "$kind" == tls-* ]]; then
        # --cacert: the self-signed certificate is its own CA, so this also proves every proxy
        # serves the same certificate
        copts=(--cacert "$TMP/certs/${kind#tls-}/cert.pem")
        url="https://127.0.0.1:$port"
    else
        url="http://127.0.0.1:$port"
    fi
    if ! wait_http "$url/small" "$PROXY_PID" "${copts[@]+"${copts[@]}"}"; then
        log "error: $t ($kind) did not start serving $url within 5 s; log:"
        tail -n 20 "$d/stdout.log" "$d/error.log" >&2 2>/dev/null || true
        return 1
    fi
    got="$(curl -s --max-time 5 --http1.1 "${copts[@]+"${copts[@]}"}" -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "$url/small" || true)"
    [[ "$got" == "200 13 1.1" ]] || { log "error: $t ($kind): GET /small (HTTP/1.1) gave '$got', want '200 13 1.1'"; return 1; }
    if [[ "$kind" == tls-* ]]; then
        got="$(curl -s --max-time 5 --http2 "${copts[@]}" -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "$url/small" || true)"
        [[ "$got" == "200 13 2" ]] || { log "error: $t ($kind): GET /small over ALPN h2 gave '$got', want '200 13 2'"; return 1; }
    else
        got="$(route_probe "${kind#route-}" "$port")"
        [[ "$got" == 5* ]] || { log "error: $t ($kind): a request matching the last rule gave '$got', want 502/503 (the rule's dead pool)"; return 1; }
    fi
    if [[ "$t" == nginx ]]; then
        MEASURE_PIDS="$PROXY_PID $(children_of "$PROXY_PID" | tr '\n' ' ')"
    else
        MEASURE_PIDS="$PROXY_PID"
    fi
    return 0
}

stop_target() {
    [[ -n "${PROXY_PID:-}" ]] || return 0
    local w kids
    kids="$(children_of "$PROXY_PID" | tr '\n' ' ')"
    kill_pid "$PROXY_PID"
    forget_pid "$PROXY_PID"
    for w in $kids; do
        if [[ -d "/proc/$w" ]]; then kill -KILL "$w" 2>/dev/null || true; fi
    done
    PROXY_PID=""
}

rss_pids() {   # the process that carries the load (nginx: the worker)
    if [[ "$1" == nginx ]]; then
        local w
        w="$(children_of "$PROXY_PID" | tr '\n' ' ')"
        echo "${w:-$PROXY_PID}"
    else
        echo "$PROXY_PID"
    fi
}

# What the TLS session looks like with this proxy: version, cipher, group, tickets sent after
# a full handshake (each would let the client resume; our clients never use them in 'hs').
tls_probe() {   # tls_probe PORT: "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519 tickets=2"
    local out proto cipher group tickets
    out="$(printf 'GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' \
        | timeout 10 openssl s_client -connect "127.0.0.1:$1" -ign_eof 2>&1 || true)"
    proto="$(awk '/^ *Protocol *:/ {print $NF; exit}' <<<"$out")"
    cipher="$(awk '/^ *Cipher *:/ {print $NF; exit}' <<<"$out")"
    group="$(sed -n 's/^\(Server Temp Key\|Negotiated TLS1.3 group\): \([^ ,]*\).*/\2/p' <<<"$out" | head -n 1)"
    tickets="$(grep -c 'Post-Handshake New Session Ticket' <<<"$out" || true)"
    echo "${proto:-?} ${cipher:-?} ${group:-?} tickets=${tickets:-?}"
}

# ------------------------------------------------------------------ load generators
run_client() {   # $1 scenario, $2 port, $3 seconds, $4 output prefix
    local s="$1" port="$2" secs="$3" out="$4" limit=$(($3 + 30))
    case "$s" in
        hs)
            run_bg "$limit" "$out.txt" "$out.err" "${PIN_CLIENT[@]}" env LD_PRELOAD="$SHIM" \
                wrk -t1 -c"$HS_CONNS" -d"${secs}s" --timeout 5s --latency -H 'Connection: close' "https://127.0.0.1:$port/small" ;;
        resume)
            run_bg "$limit" "$out.txt" "$out.err" "${PIN_CLIENT[@]}" \
                wrk -t1 -c"$HS_CONNS" -d"${secs}s" --timeout 5s --latency -H 'Connection: close' "https://127.0.0.1:$port/small" ;;
        ka)
            run_bg "$limit" "$out.txt" "$out.err" "${PIN_CLIENT[@]}" env LD_PRELOAD="$SHIM" \
                wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s --latency "https://127.0.0.1:$port/small" ;;
        route)
            run_bg "$limit" "$out.txt" "$out.err" "${PIN_CLIENT[@]}" \
                wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s --latency "http://127.0.0.1:$port/small" ;;
        h2)
            rm -f "$out.log"
            run_bg "$limit" "$out.txt" "$out.err" "${PIN_CLIENT[@]}" env LD_PRELOAD="$SHIM" \
                h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D"$secs" --log-file="$out.log" \
                --tls13-ciphers=TLS_AES_256_GCM_SHA384 "https://127.0.0.1:$port/small" ;;
    esac
}

parse_client() {   # $1 scenario, $2 output prefix
    if [[ "$1" == h2 ]]; then
        grep -q '^Application protocol: h2$' "$2.txt" || { log "error: h2load did not negotiate h2"; return 1; }
        python3 "$REPORT" parse-h2load "$2.txt" "$2.log"
    else
        python3 "$REPORT" parse-wrk "$2.txt"
    fi
}

# CPU time of our reaped children (the load generators), from the 'times' builtin.
children_cpu() {
    times >"$TMP/times.txt"
    local _ line
    { read -r _; read -r line; } <"$TMP/times.txt"
    CHILD_CPU="$line"
}

# ------------------------------------------------------------------ machine description
bench_versions
STAMP="$(date -u +%Y-%m-%dT%H:%MZ)"
read -r LOAD1 _ <"/proc/loadavg"
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: load average is $LOAD1 before starting: other work on this machine will add noise (see the runq wait and PSI columns)"
fi
cat >"$TMP/meta.md" <<EOF
- date: $STAMP; tandem: $TANDEM_V (git $GITREV)
- machine: $NCPU CPUs ($MODEL), $MEM RAM, kernel $(uname -r); load average at start: $LOAD1
- HAProxy $HAPROXY_V, nginx $NGINX_V, wrk $WRK_V, h2load $H2LOAD_V, OpenSSL $OPENSSL_V (clients, HAProxy, nginx); tandem: rustls + aws-lc-rs
- rounds: $ROUNDS × ${DURATION}s per target and scenario (+${WARMUP}s warm-up), medians shown; a fresh proxy per run
- wrk -t1 -c$CONNS (keep-alive, route), wrk -t1 -c$HS_CONNS -H 'Connection: close' (hs), h2load -t1 -c$H2_CLIENTS -m$H2_STREAMS (h2,
  offering only TLS_AES_256_GCM_SHA384, which wrk gets from every proxy: h2load's own first choice is AES-128, which
  rustls and nginx follow and HAProxy overrides)
- proxy pinned to core $PROXY_CPU (one worker/thread each), wrk/h2load + backend nginx (1 worker, 2 ports) on core $CLIENT_CPU; all at nice $NICE
- certificates: self-signed, ECDSA P-256 (prime256v1) and RSA 2048, SHA-256, the same files for every proxy
EOF

# ------------------------------------------------------------------ main loop
mkdir -p "$OUT_DIR"
TS="$(date -u +%Y%m%dT%H%M%SZ)"
RUNS="$OUT_DIR/tls-runs-$TS.tsv"
printf 'round\tscenario\tvariant\ttarget\tstatus\trps\tp50_ms\tp99_ms\tcpu_us_per_req\tproxy_cpu_pct\trss_kib\trequests\terrors\tproxy_wait_pct\tpsi_pct\tother_cpu_pct\tlatency_src\n' >"$RUNS"
record() { local IFS=$'\t'; echo "$*" >>"$RUNS"; }
record_fail() { record "$1" "$2" "$3" "$4" failed - - - - - - 0 0 - - - -; }

# the runs of one round: "scenario variant kind"
UNITS=()
for s in "${SCENARIO_LIST[@]}"; do
    if [[ "$s" == route ]]; then
        for n in "${ROUTE_LIST[@]}"; do UNITS+=("route $n route-$n"); done
    else
        for k in "${KEY_LIST[@]}"; do UNITS+=("$s $k tls-$k"); done
    fi
done

declare -A BROKEN=()   # "target/kind" that failed to start: skipped from then on
declare -A PROBED=()
NOTED=""
note_once() { [[ " $NOTED " == *" $1 "* ]] && return 0; NOTED+=" $1"; log "note: $2"; }

live_targets=()
for t in "${TARGET_LIST[@]}"; do [[ -n "$t" ]] && live_targets+=("$t"); done
((${#live_targets[@]} > 0)) || die "no targets left to run"
total=$((ROUNDS * ${#UNITS[@]} * ${#live_targets[@]}))
log "targets: ${live_targets[*]} | runs: ${UNITS[*]// tls-*/} | $ROUNDS round(s) × ${DURATION}s (~$((total * (DURATION + WARMUP + 3) / 60 + 1)) min)"
log "per-run results: $RUNS"

for ((r = 1; r <= ROUNDS; r++)); do
    order=("${live_targets[@]}")
    if ((r % 2 == 0)); then   # alternate the order of the targets every round
        order=()
        for ((i = ${#live_targets[@]} - 1; i >= 0; i--)); do order+=("${live_targets[$i]}"); done
    fi
    for u in "${UNITS[@]}"; do
        read -r s v kind <<<"$u"
        for t in "${order[@]}"; do
            if [[ "$s" == route && "$t" == nginx ]]; then
                note_once nginx-route "route: nginx skipped (no equivalent of an ordered list of host/path/regex/header rules short of a map/if chain; HAProxy ACLs are the anchor)"
                continue
            fi
            if [[ -n "${BROKEN[$t/$kind]:-}" ]]; then
                record_fail "$r" "$s" "$v" "$t"
                continue
            fi
            d="$TMP/run-$r-$s-$v-$t"
            if ! start_target "$t" "$kind" "$d"; then
                log "error: $t failed to start ($kind); skipping it for '$kind' from now on"
                BROKEN[$t/$kind]=1
                stop_target
                record_fail "$r" "$s" "$v" "$t"
                continue
            fi
            if [[ "$kind" == tls-* && -z "${PROBED[$t/$kind]:-}" ]]; then
                PROBED[$t/$kind]=1
                p="$(tls_probe "$TARGET_PORT")"
                echo "- $t, $v certificate: $p" >>"$TMP/probe.md"
                log "$t $v: $p"
            fi
            status=ok
            if ((WARMUP > 0)); then run_client "$s" "$TARGET_PORT" "$WARMUP" "$d/warmup" || true; fi
            children_cpu; ch0="$CHILD_CPU"
            # shellcheck disable=SC2086
            snap0="$(python3 "$REPORT" snap $MEASURE_PIDS -- $BACKEND_WORKERS 2>/dev/null || echo x)"
            if ! run_client "$s" "$TARGET_PORT" "$DURATION" "$d/client"; then
                log "error: $s/$v/$t: the load generator failed:"; tail -n 5 "$d/client.txt" "$d/client.err" >&2 || true
                status=failed
            fi
            # shellcheck disable=SC2086
            snap1="$(python3 "$REPORT" snap $MEASURE_PIDS -- $BACKEND_WORKERS 2>/dev/null || echo x)"
            children_cpu; ch1="$CHILD_CPU"
            # shellcheck disable=SC2046
            rss="$(python3 "$REPORT" hwm-kib $(rss_pids "$t") 2>/dev/null || echo -)"
            alive=1
            kill -0 "$PROXY_PID" 2>/dev/null || alive=0
            stop_target
            if ((!alive)); then
                log "error: $s/$v/$t: the proxy died during the run; log:"
                tail -n 20 "$d/stdout.log" "$d/error.log" >&2 2>/dev/null || true
                status=failed
            fi
            [[ "$snap0" == x || "$snap1" == x ]] && status=failed
            parsed=""
            if [[ "$status" == ok ]] && ! parsed="$(parse_client "$s" "$d/client")"; then status=failed; fi
            if [[ "$status" != ok ]]; then
                record_fail "$r" "$s" "$v" "$t"
                continue
            fi
            IFS=$'\t' read -r rps p50 p99 nreq nerr lsrc <<<"$parsed"
            read -r cpu_us proxy_pct other_pct pwait psi_pct < <(awk -v s0="$snap0" -v s1="$snap1" \
                -v c0="$ch0" -v c1="$ch1" -v hz="$CLK_TCK" -v n="$nreq" -v ncpu="$NCPU" '
                function secs(str,   a, i, t, p) {   # "1m2.5s 0m0.1s" -> seconds
                    t = 0; split(str, a, " ")
                    for (i in a) { split(a[i], p, /[ms]/); t += p[1] * 60 + p[2] }
                    return t
                }
                BEGIN {
                    split(s0, a, " "); split(s1, b, " ")
                    dt = b[1] - a[1]; proxy = (b[2] - a[2]) / hz; backend = (b[3] - a[3]) / hz
                    busy = (b[4] - a[4]) / hz
                    other = busy - proxy - backend - (secs(c1) - secs(c0)); if (other < 0) other = 0
                    wa = (b[6] - a[6]) / 1e9
                    psi = (a[8] == "" || a[8] < 0 || b[8] < 0) ? "-" : sprintf("%.1f", 100 * (b[8] - a[8]) / 1e6 / dt)
                    printf "%s %.1f %.1f %.2f %s\n", (n > 0 ? sprintf("%.3f", proxy * 1e6 / n) : "-"),
                        100 * proxy / dt, 100 * other / (dt * ncpu), 100 * wa / dt, psi
                }')
            if ((nreq == 0)) || awk -v e="$nerr" -v n="$nreq" 'BEGIN { exit !(e > 0.01 * (n + e)) }'; then
                log "warning: $s/$v/$t: $nerr errors for $nreq requests"
            fi
            record "$r" "$s" "$v" "$t" ok "$rps" "$p50" "$p99" "$cpu_us" "$proxy_pct" "$rss" "$nreq" "$nerr" \
                "$pwait" "$psi_pct" "$other_pct" "$lsrc"
            log "round $r/$ROUNDS $(printf '%-6s %-5s %-7s %9.0f req/s  p99 %7.3f ms  CPU %8s µs/req (core %5s%%)  RSS %6s KiB  err %s  runq wait %s%%  PSI %s%%' \
                "$s" "$v" "$t" "$rps" "${p99/NA/0}" "$cpu_us" "$proxy_pct" "$rss" "$nerr" "$pwait" "$psi_pct")"
            sleep 0.3
        done
    done
done

if [[ -f "$TMP/probe.md" ]]; then
    echo "- TLS as negotiated by \`openssl s_client\` (version, cipher, key exchange group, session tickets sent after a full handshake):" >>"$TMP/meta.md"
    sed 's/^- /  - /' "$TMP/probe.md" >>"$TMP/meta.md"
fi
cp "$TMP/meta.md" "${RUNS%.tsv}.meta.md"
cp "$RUNS" "$OUT_DIR/tls-latest-runs.tsv"
cp "$TMP/meta.md" "$OUT_DIR/tls-latest-runs.meta.md"
python3 "$TREPORT" report "$RUNS" "$OUT_DIR/tls-latest.md" "$TMP/meta.md"
log "markdown tables: $OUT_DIR/tls-latest.md"
