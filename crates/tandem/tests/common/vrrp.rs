//! Two (or more) real tandem nodes running `[[vrrp]]` in a [`Lab`]: a node's config, starting
//! it, reading its instance from the admin API, and what the lab sees of the VIP (who holds
//! it, which MAC answers ARP for it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use super::netns::{ip_output, Lab, Proc};
use super::{curl, tandem_bin, TempDir};

pub const ADVERT_MS: u64 = 100;

/// The VIP: an unused address of the lab's /27 (hosts are .11 and up, the bridge .1).
pub fn vip(lab: &Lab) -> Ipv4Addr {
    let IpAddr::V4(gw) = lab.gateway() else {
        panic!("IPv4 lab expected")
    };
    Ipv4Addr::from(u32::from(gw) + 19)
}

pub fn node_config(lab: &Lab, i: usize, priority: u8, preempt: bool) -> String {
    node_config_with(lab, i, priority, preempt, "", r#"{ kind = "none" }"#)
}

/// `node_config` with extra `[[vrrp]]` keys (`track_*`) and pool `p`'s health check.
pub fn node_config_with(
    lab: &Lab,
    i: usize,
    priority: u8,
    preempt: bool,
    vrrp_extra: &str,
    health: &str,
) -> String {
    format!(
        r#"
[admin]
listen = "{admin}"

[[vrrp]]
name = "web"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = "{ADVERT_MS}ms"
virtual_ips = ["{vip}/27"]
preempt = {preempt}
garp_master_delay = "0s"
{vrrp_extra}

# A service on the VIP: bound on both nodes from the start (the backup does not hold the
# address yet). Its pool's only backend is closed, so tandem itself answers 502.
[[pool]]
name = "p"
health = {health}
backends = [{{ address = "127.0.0.1:1" }}]

[[service]]
name = "www"
listen = "{vip}:8080"
pool = "p"
"#,
        admin = lab.host_addr(i, 9900),
        vip = vip(lab),
    )
}

pub fn has_vip(lab: &Lab, i: usize) -> bool {
    ip_output(&[
        "-n",
        lab.netns(i),
        "-o",
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ])
    .contains(&format!(" {}/27 ", vip(lab)))
}

pub async fn state(admin: SocketAddr) -> Option<String> {
    let out = curl(&["-s", "-m", "1", &format!("http://{admin}/api/v1/vrrp")]).await;
    if !out.ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["instances"][0]["state"].as_str().map(str::to_string)
}

/// The first instance of `GET /api/v1/vrrp`.
pub async fn instance(admin: SocketAddr) -> Option<serde_json::Value> {
    let out = curl(&["-s", "-m", "1", &format!("http://{admin}/api/v1/vrrp")]).await;
    if !out.ok {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["instances"][0].take())
}

pub struct Node {
    pub proc: Proc,
    pub config: std::path::PathBuf,
}

pub fn start(lab: &Lab, dir: &TempDir, i: usize, priority: u8, preempt: bool) -> Node {
    let config = dir.write(
        &format!("node{i}.toml"),
        &node_config(lab, i, priority, preempt),
    );
    let mut cmd = Command::new(tandem_bin());
    cmd.args(["run", "--config", config.to_str().expect("utf-8")]);
    Node {
        proc: lab.spawn_in(i, &cmd),
        config,
    }
}

pub fn start_with(lab: &Lab, dir: &TempDir, i: usize, config: &str) -> Node {
    let config = dir.write(&format!("node{i}.toml"), config);
    let mut cmd = Command::new(tandem_bin());
    cmd.args(["run", "--config", config.to_str().expect("utf-8")]);
    Node {
        proc: lab.spawn_in(i, &cmd),
        config,
    }
}

/// Wait until `f` holds, polling every 5 ms; returns how long it took.
pub async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    loop {
        if f() {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "timed out after {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The MAC the root namespace resolved `ip` to (it sits on the lab's bridge).
pub fn resolved_mac(lab: &Lab, ip: Ipv4Addr) -> Option<String> {
    let _ = ip_output(&["neigh", "flush", "to", &ip.to_string(), "dev", lab.bridge()]);
    // Any packet to the VIP makes the kernel resolve it; a refused connect is enough.
    let _ = std::net::TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(ip), 9),
        Duration::from_millis(500),
    );
    let out = ip_output(&["neigh", "show", "to", &ip.to_string(), "dev", lab.bridge()]);
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_string)
}

pub fn mac_of(lab: &Lab, i: usize) -> String {
    let out = ip_output(&["-n", lab.netns(i), "-o", "link", "show", "dev", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("eth0 MAC")
        .to_string()
}
