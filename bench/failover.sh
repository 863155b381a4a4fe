#!/usr/bin/env bash
# bench/failover.sh — VRRP failover after a crash: tandem vs keepalived (issue 4), in a
# network-namespace lab, with the same VRRP settings on both.
#
#   bench/failover.sh                               # TRIALS=10, both pairs, 1 s and 100 ms adverts (~5 min)
#   TRIALS=3 bench/failover.sh                      # a quick run
#   PAIRS=tandem INTERVALS=100 bench/failover.sh    # one pair, one interval
#
# The lab (every name ends with this script's PID):
#
#   netns fo-sw-PID:  bridge br0, ports p-lb1 p-lb2 p-client (veths; the other ends are eth0 in:)
#   netns fo-lb1-PID:    eth0 BASE+11/27   VRRP priority 150 + httpd answering "lb1" on 0.0.0.0:80
#   netns fo-lb2-PID:    eth0 BASE+12/27   VRRP priority 100 + httpd answering "lb2" on 0.0.0.0:80
#   netns fo-client-PID: eth0 BASE+13/27   the client (bench/failover/trial.py)
#   VIP BASE+20/27
#
# BASE: the first /27 of 198.51.100.0/24 or 203.0.113.0/24 that overlaps no address or route of
# this machine (never 192.0.2.0/24). The bridge lives in its own namespace, so the root namespace
# gets no link, address or route.
#
# For each pair (two tandem processes with only a [[vrrp]] table; two keepalived processes) and
# each advert interval, TRIALS times: wait until lb1 is master and the client gets answers from
# lb1 via the VIP; the client sends GET http://VIP/ every 5 ms; in trial n of TRIALS, (n − 0.5)/TRIALS
# of an advert interval after one of lb1's adverts (the same phases for both pairs), it SIGKILLs
# lb1's VRRP process (keepalived: its parent is SIGSTOPped first so it cannot respawn the VRRP
# child, nor make it exit cleanly with a priority-0 advert) and deletes the
# stale VIP from lb1 (neither daemon removes it when SIGKILLed); outage = first answer from lb2 −
# kill. A raw socket in the client namespace timestamps the first gratuitous ARP from lb2. Then lb1
# is restarted and preempts.
#
# Environment (defaults in brackets):
#   TRIALS [10]          trials per (pair, interval)
#   PAIRS ["tandem keepalived"]     INTERVALS ["1000 100"] (advert interval, ms; multiples of 10)
#   PERIOD_MS [5]        client request period;  TIMEOUT_MS [200] per-request timeout
#   TANDEM_BIN [${CARGO_TARGET_DIR:-target}/release/tandem]   SKIP_BUILD [0] (1 = no cargo build)
#   OUT_DIR [bench/out]  KEEP_TMP [unset] (set: keep the temp dir with configs and logs)
# Needs root (network namespaces); installs keepalived, python3, iproute2, procps, curl if missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
FDIR="$HERE/failover"
REPORT="$FDIR/report.py"

# the command as given, for the results (environment settings first)
ENVLINE=""
for v in TRIALS PAIRS INTERVALS PERIOD_MS TIMEOUT_MS TANDEM_BIN SKIP_BUILD; do
    if [[ -n "${!v+x}" ]]; then ENVLINE+="$v=$(printf '%q' "${!v}") "; fi
done
CMDLINE="bench/failover.sh"
if (($#)); then CMDLINE+="$(printf ' %q' "$@")"; fi

TRIALS="${TRIALS:-10}"
PAIRS="${PAIRS:-tandem keepalived}"
INTERVALS="${INTERVALS:-1000 100}"
PERIOD_MS="${PERIOD_MS:-5}"
TIMEOUT_MS="${TIMEOUT_MS:-200}"
TANDEM_BIN="${TANDEM_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tandem}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OUT_DIR="${OUT_DIR:-$HERE/out}"
VRID=51
PRIO_LB1=150
PRIO_LB2=100

for v in TRIALS PERIOD_MS TIMEOUT_MS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "error: $v must be a non-negative integer (got '${!v}')" >&2; exit 2; }
done
((TRIALS >= 1 && PERIOD_MS >= 1 && TIMEOUT_MS >= 1)) || { echo "error: TRIALS, PERIOD_MS, TIMEOUT_MS must be >= 1" >&2; exit 2; }
read -r -a PAIR_LIST <<<"$PAIRS"
read -r -a INTERVAL_LIST <<<"$INTERVALS"
for p in "${PAIR_LIST[@]}"; do
    case "$p" in tandem|keepalived) ;; *) echo "error: unknown pair '$p' (tandem keepalived)" >&2; exit 2;; esac
done
for iv in "${INTERVAL_LIST[@]}"; do
    [[ "$iv" =~ ^[0-9]+$ ]] && ((iv >= 10 && iv % 10 == 0 && iv <= 40950)) \
        || { echo "error: INTERVALS: '$iv' is not a multiple of 10 ms in 10..40950" >&2; exit 2; }
done

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root: the lab is made of network namespaces"

# ------------------------------------------------------------------ process and lab bookkeeping
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tandem-failover.XXXXXX")"
declare -a STARTED=()     # every PID we started, plus keepalived's children (killed on exit)
NS_SW="fo-sw-$$"
NS_LB1="fo-lb1-$$"
NS_LB2="fo-lb2-$$"
NS_CL="fo-client-$$"
BRIDGE=br0                      # inside $NS_SW
declare -a LAB_NETNS=()         # namespaces created, deleted by exact name
declare -a LAB_PORTS=()         # veth ends in $NS_SW, deleted by exact name

pid_alive() {   # alive and not a zombie
    kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

kill_pid() {   # kill_pid PID [COMM]: TERM, wait up to 5 s, then KILL. Only PIDs we started
    # (or a keepalived child we recorded: then COMM must still match, against PID reuse).
    local pid="$1" comm="${2:-}" i
    if [[ -n "$comm" ]] && ! grep -q "$comm" "/proc/$pid/comm" 2>/dev/null; then return 0; fi
    pid_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -CONT "$pid" 2>/dev/null || true   # a keepalived parent may be stopped
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

forget_pid() {   # drop a PID (entry "PID" or "PID:COMM") from the cleanup list
    local i
    for i in "${!STARTED[@]}"; do [[ "${STARTED[$i]%%:*}" == "$1" ]] && unset 'STARTED[i]'; done
    STARTED=("${STARTED[@]+"${STARTED[@]}"}")
}

lab_down() {   # delete exactly what lab_up created: ports (the pairs go at once), namespaces
    local x
    for x in "${LAB_PORTS[@]+"${LAB_PORTS[@]}"}"; do ip -n "$NS_SW" link del "$x" 2>/dev/null || true; done
    for x in "${LAB_NETNS[@]+"${LAB_NETNS[@]}"}"; do ip netns del "$x" 2>/dev/null || true; done
    LAB_PORTS=(); LAB_NETNS=()
}

cleanup() {
    local rc=$? i e
    set +e
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        e="${STARTED[$i]}"
        [[ -n "$e" ]] || continue
        if [[ "$e" == *:* ]]; then kill_pid "${e%%:*}" "${e#*:}"; else kill_pid "$e"; fi
    done
    lab_down
    for e in "$NS_SW" "$NS_LB1" "$NS_LB2" "$NS_CL"; do
        ip netns list 2>/dev/null | grep -qw "^$e" && log "warning: netns $e remains"
    done
    if [[ -n "${KEEP_TMP:-}" ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ prerequisites
ensure_packages() {
    local -a missing=()
    command -v python3 >/dev/null || missing+=(python3)
    command -v ip      >/dev/null || missing+=(iproute2)
    command -v pgrep   >/dev/null || missing+=(procps)
    command -v curl    >/dev/null || missing+=(curl)
    if [[ " $PAIRS " == *" keepalived "* ]]; then
        command -v keepalived >/dev/null || [[ -x /usr/sbin/keepalived ]] || missing+=(keepalived)
    fi
    ((${#missing[@]} == 0)) && return 0
    log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; } \
        || die "apt-get install ${missing[*]} failed"
}
ensure_packages
PATH="$PATH:/usr/sbin:/sbin"
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3   # a pyenv shim would add a shell start

if [[ " $PAIRS " == *" tandem "* ]]; then
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
BASE="$("$PY" "$REPORT" free-subnet)" || die "no free /27 in 198.51.100.0/24 or 203.0.113.0/24"
IFS=. read -r O1 O2 O3 O4 <<<"$BASE"
IP_LB1="$O1.$O2.$O3.$((O4 + 11))"
IP_LB2="$O1.$O2.$O3.$((O4 + 12))"
IP_CL="$O1.$O2.$O3.$((O4 + 13))"
VIP="$O1.$O2.$O3.$((O4 + 20))"
PREFIX=27
declare -A NS=([lb1]="$NS_LB1" [lb2]="$NS_LB2" [client]="$NS_CL")
declare -A HOST_IP=([lb1]="$IP_LB1" [lb2]="$IP_LB2" [client]="$IP_CL")

lab_up() {   # every step checked: a half-built lab is removed by cleanup (lab_down)
    local h
    ip netns add "$NS_SW" || return 1
    LAB_NETNS+=("$NS_SW")
    ip -n "$NS_SW" link set lo up || return 1
    ip -n "$NS_SW" link add "$BRIDGE" type bridge || return 1
    ip -n "$NS_SW" link set "$BRIDGE" up || return 1
    for h in lb1 lb2 client; do
        ip netns add "${NS[$h]}" || return 1
        LAB_NETNS+=("${NS[$h]}")
        ip link add "p-$h" netns "$NS_SW" type veth peer name eth0 netns "${NS[$h]}" || return 1
        LAB_PORTS+=("p-$h")
        ip -n "$NS_SW" link set "p-$h" master "$BRIDGE" || return 1
        ip -n "$NS_SW" link set "p-$h" up || return 1
        ip -n "${NS[$h]}" link set lo up || return 1
        ip -n "${NS[$h]}" addr add "${HOST_IP[$h]}/$PREFIX" dev eth0 || return 1
        ip -n "${NS[$h]}" link set eth0 up || return 1
    done
}
log "lab: netns $NS_SW (bridge $BRIDGE), $NS_LB1 $IP_LB1, $NS_LB2 $IP_LB2, $NS_CL $IP_CL; VIP $VIP/$PREFIX"
lab_up || die "cannot build the lab (network namespaces, veth, bridge)"
MAC_LB2="$(ip -n "$NS_LB2" -o link show dev eth0 | sed -n 's|.*link/ether \([0-9a-f:]*\).*|\1|p')"
[[ -n "$MAC_LB2" ]] || die "cannot read lb2's MAC address"

has_vip() { ip -n "${NS[$1]}" -o -4 addr show dev eth0 | grep -q " $VIP/$PREFIX "; }
del_vip() { ip -n "${NS[$1]}" addr del "$VIP/$PREFIX" dev eth0 2>/dev/null || true; }

# the web servers: one per load balancer namespace, for the whole run
for h in lb1 lb2; do
    # `ip netns exec` execs the program, so $! is the server's own PID
    ip netns exec "${NS[$h]}" "$PY" "$FDIR/httpd.py" "$h" 0.0.0.0 80 >"$TMP/httpd-$h.log" 2>&1 &
    STARTED+=("$!")
    pid_httpd=$!
    for ((j = 0; j < 100; j++)); do
        [[ "$(ip netns exec "$NS_CL" curl -s --max-time 1 "http://${HOST_IP[$h]}/" 2>/dev/null)" == "$h" ]] && break
        pid_alive "$pid_httpd" || { cat "$TMP/httpd-$h.log" >&2; die "httpd on $h exited"; }
        sleep 0.1
    done
    ((j < 100)) || die "httpd on $h does not answer on ${HOST_IP[$h]}:80"
done
log "web servers up on $IP_LB1:80 (lb1) and $IP_LB2:80 (lb2)"

# ------------------------------------------------------------------ the VRRP nodes
# The same settings for both daemons: VRRP version 3, vrid 51, priorities 150 (lb1) / 100 (lb2),
# preempt on, the VIP as /27 on eth0, no second GARP burst (garp_master_delay 0: a burst 5 s after
# a takeover would otherwise land in the next trial).
write_conf() {   # write_conf PAIR HOST INTERVAL_MS FILE
    local pair="$1" h="$2" iv="$3" f="$4" prio
    [[ "$h" == lb1 ]] && prio=$PRIO_LB1 || prio=$PRIO_LB2
    case "$pair" in
        tandem) cat >"$f" <<EOF
[[vrrp]]
name = "web"
interface = "eth0"
vrid = $VRID
version = 3
priority = $prio
advert_interval = "${iv}ms"
virtual_ips = ["$VIP/$PREFIX"]
preempt = true
garp_master_delay = "0s"
EOF
        ;;
        keepalived)
            local adv
            adv="$(awk -v m="$iv" 'BEGIN { printf "%g", m / 1000 }')"
            cat >"$f" <<EOF
global_defs {
    router_id $h
    vrrp_version 3
}
vrrp_instance web {
    state BACKUP
    interface eth0
    virtual_router_id $VRID
    priority $prio
    advert_int $adv
    garp_master_delay 0
    virtual_ipaddress {
        $VIP/$PREFIX dev eth0
    }
}
EOF
        ;;
    esac
}

declare -A NODE_PID=() NODE_KIDS=()
start_node() {   # start_node PAIR HOST INTERVAL_MS: sets NODE_PID[HOST] (and NODE_KIDS[HOST])
    local pair="$1" h="$2" iv="$3" d="$TMP/$1-$3" pid i kids=""
    mkdir -p "$d"
    case "$pair" in
        tandem)
            write_conf tandem "$h" "$iv" "$d/$h.toml"
            RUST_LOG="${TANDEM_RUST_LOG:-info}" ip netns exec "${NS[$h]}" "$TANDEM_BIN" run --config "$d/$h.toml" \
                >>"$d/$h.log" 2>&1 &
            pid=$! ;;
        keepalived)
            write_conf keepalived "$h" "$iv" "$d/$h.conf"
            rm -f "$d/$h.pid" "$d/$h-vrrp.pid"
            ip netns exec "${NS[$h]}" keepalived -n -l -D -f "$d/$h.conf" -p "$d/$h.pid" -r "$d/$h-vrrp.pid" \
                >>"$d/$h.log" 2>&1 &
            pid=$! ;;
    esac
    disown "$pid"   # no "Killed" line from bash when a trial SIGKILLs it (bash still reaps it)
    STARTED+=("$pid")
    NODE_PID[$h]=$pid
    NODE_KIDS[$h]=""
    if [[ "$pair" == keepalived ]]; then
        # its VRRP child: bounded wait until it exists
        for ((i = 0; i < 100; i++)); do
            kids="$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)"
            [[ -n "$kids" && -s "$d/$h-vrrp.pid" ]] && break
            pid_alive "$pid" || break
            sleep 0.05
        done
        [[ -n "$kids" ]] || { tail -n 20 "$d/$h.log" >&2; die "keepalived on $h started no VRRP child"; }
        for i in $kids; do STARTED+=("$i:keepalived"); done
        NODE_KIDS[$h]="$kids"
    fi
    pid_alive "$pid" || { tail -n 20 "$d/$h.log" >&2; die "$pair on $h exited at start"; }
}

stop_node() {   # stop_node HOST: SIGTERM (both daemons release the VIP), then drop any stale VIP
    local h="$1" k
    [[ -n "${NODE_PID[$h]:-}" ]] || return 0
    kill_pid "${NODE_PID[$h]}"
    forget_pid "${NODE_PID[$h]}"
    for k in ${NODE_KIDS[$h]:-}; do kill_pid "$k" keepalived; forget_pid "$k"; done
    NODE_PID[$h]=""; NODE_KIDS[$h]=""
    del_vip "$h"
}

reap_killed() {   # after a trial killed lb1's processes: forget them (bounded wait until gone)
    local p i
    for p in "${NODE_PID[lb1]}" ${NODE_KIDS[lb1]:-}; do
        for ((i = 0; i < 100; i++)); do pid_alive "$p" || break; sleep 0.02; done
        wait "$p" 2>/dev/null || true
        forget_pid "$p"
    done
    NODE_PID[lb1]=""; NODE_KIDS[lb1]=""
}

wait_lb1_master() {   # bounded: lb1 holds the VIP, lb2 does not
    local iv="$1" deadline=$((SECONDS + 4 * iv / 1000 + 10))
    while ((SECONDS < deadline)); do
        if has_vip lb1 && ! has_vip lb2; then return 0; fi
        pid_alive "${NODE_PID[lb1]}" || return 1
        sleep 0.05
    done
    return 1
}

# ------------------------------------------------------------------ the trials
mkdir -p "$OUT_DIR"
STAMP_FILE="$(date -u +%Y%m%dT%H%M%SZ)"
RUNS="$OUT_DIR/failover-runs-$STAMP_FILE.tsv"
printf 'pair\tinterval_ms\ttrial\tstatus\toutage_ms\tlast_lb1_ms\tfirst_lb2_sent_ms\tgarp_ms\tlast_advert_ms\ttakeover_ms\tlb1_adverts_after\tvip_del_ms\tpost_failed\tpre_failed\tdetail\n' >"$RUNS"

jget() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("-" if v is None else v)' "$1" "$2"; }

run_trial() {   # run_trial PAIR INTERVAL_MS N
    local pair="$1" iv="$2" n="$3" out rc=0 pid phase maxwait
    local -a killargs=()
    if ! wait_lb1_master "$iv"; then
        log "  trial $n: lb1 did not become master (lb1 VIP: $(has_vip lb1 && echo yes || echo no), lb2 VIP: $(has_vip lb2 && echo yes || echo no))"
        printf '%s\t%s\t%s\tnot_master\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n' "$pair" "$iv" "$n" >>"$RUNS"
        return 1
    fi
    if [[ "$pair" == keepalived ]]; then
        killargs=(--stop-pid "${NODE_PID[lb1]}")
        for pid in ${NODE_KIDS[lb1]}; do killargs+=(--kill-pid "$pid"); done
    else
        killargs=(--kill-pid "${NODE_PID[lb1]}")
    fi
    # the kill falls at phase (n − 0.5)/TRIALS of the advert interval after an advert from lb1:
    # the same phases for both pairs (paired samples), spread evenly over the interval
    phase="$(awk -v n="$n" -v t="$TRIALS" 'BEGIN { printf "%.4f", (n - 0.5) / t }')"
    maxwait="$(awk -v m="$iv" 'BEGIN { printf "%g", 6 * m / 1000 + 2 }')"
    # bounded twice: trial.py gives up warm-up after 15 s and waits at most MAXWAIT after the kill;
    # timeout(1) is the backstop. In the background + wait, so a signal to us is handled at once.
    timeout -k 5 $((15 + 2 + 4 * iv / 1000 + ${maxwait%.*} + 10)) ip netns exec "$NS_CL" "$PY" "$FDIR/trial.py" \
        --vip "$VIP" --prefix "$PREFIX" --lb1-ns "$NS_LB1" --lb2-mac "$MAC_LB2" --lb1-ip "$IP_LB1" "${killargs[@]}" \
        --period-ms "$PERIOD_MS" --timeout-ms "$TIMEOUT_MS" --steady 0.3 --interval "$(awk -v m="$iv" 'BEGIN { printf "%g", m / 1000 }')" --phase "$phase" \
        --max-wait "$maxwait" >"$TMP/trial.json" 2>"$TMP/trial.err" &
    pid=$!
    STARTED+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    out="$(tail -n 1 "$TMP/trial.json" 2>/dev/null || true)"
    if [[ -z "$out" ]] || ! "$PY" -c 'import json,sys; json.loads(sys.argv[1])' "$out" 2>/dev/null; then
        log "  trial $n: client failed (exit $rc): $(tail -n 3 "$TMP/trial.err" 2>/dev/null)"
        printf '%s\t%s\t%s\tclient_failed\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n' "$pair" "$iv" "$n" >>"$RUNS"
        return 1
    fi
    local status outage lb1 sent garp vdel pf pre adv tko after
    status="$(jget "$out" status)"; outage="$(jget "$out" first_lb2_ms)"; lb1="$(jget "$out" last_lb1_ms)"
    sent="$(jget "$out" first_lb2_sent_ms)"; garp="$(jget "$out" garp_ms)"; vdel="$(jget "$out" vip_del_ms)"
    pf="$(jget "$out" post_failed)"; pre="$(jget "$out" pre_failed)"
    adv="$(jget "$out" last_advert_ms)"; tko="$(jget "$out" takeover_after_advert_ms)"
    after="$("$PY" -c 'import json,sys; print(len(json.loads(sys.argv[1]).get("lb1_adverts_after_kill") or []))' "$out")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pair" "$iv" "$n" "$status" "$outage" "$lb1" \
        "$sent" "$garp" "$adv" "$tko" "$after" "$vdel" "$pf" "$pre" "$out" >>"$RUNS"
    log "  trial $n (kill at phase $phase): $status: outage $outage ms (first GARP from lb2 $garp ms = $tko ms after lb1's last advert at $adv ms; last lb1 answer $lb1 ms, stale VIP deleted at $vdel ms; $pf requests failed; $after adverts from lb1 after the kill)"
    [[ "$status" == ok ]]
}

run_pair() {   # run_pair PAIR INTERVAL_MS
    local pair="$1" iv="$2" n
    log "== $pair vs $pair, advert interval $iv ms, $TRIALS trials"
    del_vip lb1; del_vip lb2
    start_node "$pair" lb2 "$iv"
    start_node "$pair" lb1 "$iv"
    for ((n = 1; n <= TRIALS; n++)); do
        if run_trial "$pair" "$iv" "$n"; then :; else
            # a failed trial: start over from a clean state (both nodes, no VIP anywhere)
            stop_node lb1
            stop_node lb2
            del_vip lb1; del_vip lb2
            start_node "$pair" lb2 "$iv"
            start_node "$pair" lb1 "$iv"
            continue
        fi
        reap_killed
        has_vip lb1 && { log "  warning: the stale VIP is still on lb1"; del_vip lb1; }
        has_vip lb2 || log "  warning: lb2 answered but does not hold the VIP"
        start_node "$pair" lb1 "$iv"   # it preempts: the next trial waits for that
    done
    stop_node lb1
    stop_node lb2
}

# ------------------------------------------------------------------ main
TANDEM_V="n/a"; KEEPALIVED_V="n/a"
[[ " $PAIRS " == *" tandem "* ]] && TANDEM_V="$("$TANDEM_BIN" --version 2>/dev/null | head -n 1 || true)"
[[ " $PAIRS " == *" keepalived "* ]] && KEEPALIVED_V="$(keepalived --version 2>&1 | head -n 1 || true)"
GITREV="$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo 'no commit')"
CPU="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
read -r LOAD1 _ </proc/loadavg
cat >"$TMP/meta.md" <<EOF
## VRRP failover: latest run

- date: $(date -u +%Y-%m-%dT%H:%MZ); command: \`${ENVLINE}${CMDLINE}\`
- tandem: $TANDEM_V (git $GITREV); keepalived: $KEEPALIVED_V
- machine: $(nproc) CPUs ${CPU:+($CPU)}, kernel $(uname -r), $("$PY" --version 2>&1); load average at start: $LOAD1
- lab: 4 network namespaces (a bridge in its own namespace; lb1 $IP_LB1, lb2 $IP_LB2, client $IP_CL), VIP $VIP/$PREFIX
- VRRP: version 3, vrid $VRID, priorities $PRIO_LB1 (lb1) / $PRIO_LB2 (lb2), preempt, no second GARP burst; $TRIALS trial(s) per row
- client: GET http://$VIP/ every $PERIOD_MS ms (new connection each), $TIMEOUT_MS ms timeout; kill = SIGKILL of lb1's VRRP process (keepalived: parent SIGSTOPped, VRRP child and parent SIGKILLed), then \`ip addr del\` of the stale VIP on lb1 for both daemons
EOF

log "pairs: ${PAIR_LIST[*]} | advert intervals: ${INTERVAL_LIST[*]} ms | $TRIALS trials each"
for iv in "${INTERVAL_LIST[@]}"; do
    for p in "${PAIR_LIST[@]}"; do
        run_pair "$p" "$iv"
    done
done

cp "$RUNS" "$OUT_DIR/failover-latest-runs.tsv"
"$PY" "$REPORT" report "$RUNS" "$OUT_DIR/failover-latest.md" "$TMP/meta.md"
log "trials: $RUNS; markdown: $OUT_DIR/failover-latest.md"
