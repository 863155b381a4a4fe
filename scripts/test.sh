#!/usr/bin/env bash
# Run tandem's whole test suite: unit tests, integration tests against real peers (curl, a
# real SMTP server, backend processes, network-namespace labs) and doc tests. Installs what the
# tests need when it is missing and we are root (a fresh Debian machine with Rust); otherwise
# says what to install. The netns and ICMP tests need root: they fail (never skip) without it.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
# The SMTP health-check tests run Debian's aiosmtpd as a real SMTP server.
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need_apt+=(python3-aiosmtpd)
# Network-namespace labs (blackholed and unreachable backend hosts).
command -v ip >/dev/null || need_apt+=(iproute2)
# The VRRP shell is tested against a real keepalived peer (Debian's package).
command -v keepalived >/dev/null || need_apt+=(keepalived)
# PROXY protocol interop: a real HAProxy in front of and behind tandem (Debian's package).
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
# The packaged systemd unit is checked with systemd-analyze verify.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# The dashboard is tested in a real headless browser (crates/tandem/tests/dashboard.rs).
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]} (sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# Doc tests first: nextest's summary line must be the last thing printed, so whoever reads the
# end of the log sees the whole suite's count.
cargo test --workspace --doc --quiet
cargo nextest run --workspace --no-fail-fast
