//! `tandem check` on examples/spof/: each file prints exactly the warnings listed here, in
//! this order, and nothing else but its summary line; clean.toml prints none. `--strict`
//! turns warnings into exit status 2.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::tandem_bin;

fn spof_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/spof")
}

/// Every example with its warnings; `{f}` stands for the file's path as given to `check`.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "capacity.toml",
        &[
            "warning: {f}:11:17: pool[shop].expected_load: capacity: pool `shop` does not survive losing its largest backend (198.51.100.21:80, 500 req/s): 800 req/s expected, 500 req/s left of 1000 req/s; N+1 needs 300 req/s more",
            "warning: {f}:21:17: pool[search].expected_load: capacity: pool `search` cannot carry its expected load even with every backend up: 1500 req/s expected, 1200 req/s in all",
            "warning: {f}:36:3: pool[db].backends[2]: capacity: backend 198.51.100.43:5432 has no `capacity`, so the N+1 check of pool `db` counts it as 0 conn/s",
        ],
    ),
    (
        "clean.toml",
        &[
        ],
    ),
    (
        "cluster.toml",
        &[
            "warning: {f}:27:1: cluster: single point of failure: 2 nodes and no quorum witness: when the link between them fails, every node becomes master of the virtual IPs (split brain); give the [[vrrp]] instances a `quorum` of witnesses (e.g. the default gateway)",
        ],
    ),
    (
        "one-host.toml",
        &[
            "warning: {f}:9:12: pool[api].backends: single point of failure: all 3 backends of pool `api` are on one host, 198.51.100.30, so that host going down takes the whole pool with it; spread them over hosts",
            "warning: {f}:12:55: pool[api].backends[2].health: single point of failure: backend 198.51.100.30:8003 has no health check (kind = \"none\"), so if it dies it keeps getting traffic until 3 connect failures in a row eject it; use kind = \"tcp\" or \"http\"",
            "warning: {f}:22:10: service[api-direct].listen: single point of failure: 198.51.100.2 is not a virtual IP of any [[vrrp]] instance, so clients using it lose this service when this node fails; listen on a virtual IP (or on every address)",
            "warning: {f}:26:1: vrrp[api]: no peer is configured (multicast finds peers at run time, which `tandem check` cannot see): if no other node runs vrid 52 on its `eth0`, 198.51.100.10/24 cannot fail over; list the other nodes in `unicast_peers` to make this checkable, and check `tandem status` on both nodes",
        ],
    ),
    (
        "single-node.toml",
        &[
            "warning: {f}:6:1: pool[app]: single point of failure: pool `app` has no backup backend and no sorry_server, so when every backend is down clients get errors (HTTP 503, or refused connections); add `backup = true` to a spare backend or set `sorry_server`",
            "warning: {f}:8:19: pool[app].health: single point of failure: pool `app` has no health check (kind = \"none\"), so a backend that dies keeps getting traffic until 3 connect failures in a row eject it; use kind = \"tcp\" or \"http\"",
            "warning: {f}:9:12: pool[app].backends: single point of failure: pool `app` has one backend (198.51.100.21:8080); when it fails, the pool has nothing to send traffic to; add a second backend",
            "warning: {f}:13:10: service[app].listen: single point of failure: no [[vrrp]] instance, so 198.51.100.2:80 and every other listen address live on this node only and are gone when it fails; share a virtual IP with a second node in [[vrrp]] and listen on it",
        ],
    ),
];

fn check(file: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let path = spof_dir().join(file);
    let out = Command::new(tandem_bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .args(extra)
        .output()
        .expect("run tandem check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).replace(path.to_str().expect("utf-8"), "{f}"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_spof_example_prints_exactly_its_warnings() {
    let mut on_disk: Vec<String> = std::fs::read_dir(spof_dir())
        .expect("examples/spof/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        on_disk, listed,
        "every example needs its expected warnings here"
    );

    for (file, warnings) in EXPECTED {
        let (code, stdout, stderr) = check(file, &[]);
        assert_eq!(
            code,
            Some(0),
            "{file}: warnings never fail a check\n{stdout}{stderr}"
        );
        assert_eq!(stderr, "", "{file}");
        let mut lines: Vec<&str> = stdout.lines().collect();
        let summary = lines.pop().unwrap_or_default();
        assert_eq!(lines, *warnings, "{file}:\n{stdout}");
        assert!(
            summary.starts_with("{f}: ok (")
                && summary.ends_with(&format!(", {} warning(s))", warnings.len())),
            "{file}: {summary}"
        );
    }
}

#[test]
fn strict_makes_warnings_fail_with_status_2() {
    let (code, stdout, _) = check("single-node.toml", &["--strict"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .count(),
        4
    );
    let (code, stdout, _) = check("clean.toml", &["--strict"]);
    assert_eq!(code, Some(0), "{stdout}");
}
