//! `persistence` on services and `[cluster]`: the model each form produces, and each error
//! with its position.

use std::time::Duration;

use tandem_config::*;

const POOL: &str = "[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n";

fn service(extra: &str) -> String {
    format!("{POOL}[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:8080\"\npool = \"p\"\n{extra}")
}

fn parse(src: &str) -> Config {
    match parse_str(src, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\nsource:\n{src}"),
    }
}

#[track_caller]
fn one(src: &str, want: &str) {
    match parse_str(src, "t.toml") {
        Ok(_) => panic!("expected an error, parsed fine:\n{src}"),
        Err(e) => {
            let got: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
            assert_eq!(got, [want], "\nsource:\n{src}");
        }
    }
}

fn persistence(src: &str) -> Persistence {
    parse(src).services[0]
        .persistence
        .clone()
        .expect("persistence")
}

#[test]
fn every_kind_with_defaults_and_all_keys() {
    assert_eq!(
        persistence(&service("persistence = { kind = \"source_ip\" }\n")),
        Persistence {
            kind: PersistenceKind::SourceIp {
                mask_v4: 32,
                mask_v6: 128,
                timeout: Duration::from_secs(360),
                max_entries: 100_000,
            },
            on_backend_down: OnBackendDown::Rebalance,
            key: None,
        }
    );
    assert_eq!(
        persistence(&service("persistence = { kind = \"source_ip\", mask = 24, mask6 = 48, timeout = \"30m\", max_entries = 5000, on_backend_down = \"fail\" }\n")).kind,
        PersistenceKind::SourceIp {
            mask_v4: 24,
            mask_v6: 48,
            timeout: Duration::from_secs(1800),
            max_entries: 5000,
        }
    );
    let p = persistence(&service("persistence = { kind = \"cookie\" }\n"));
    assert_eq!(
        p.kind,
        PersistenceKind::Cookie(CookieSettings {
            name: "TANDEMSRV".into(),
            mode: CookieMode::Insert,
            ttl: None,
            secure: false,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".into(),
            domain: None,
        })
    );
    let p = persistence(&service("persistence = { kind = \"cookie\", name = \"JSESSIONID\", mode = \"prefix\", ttl = \"1h\", secure = true, http_only = false, same_site = \"none\", path = \"/app\", domain = \"example.com\", key = \"0123456789abcdef-long-enough\" }\n"));
    assert_eq!(
        p.kind,
        PersistenceKind::Cookie(CookieSettings {
            name: "JSESSIONID".into(),
            mode: CookieMode::Prefix,
            ttl: Some(Duration::from_secs(3600)),
            secure: true,
            http_only: false,
            same_site: SameSite::None,
            path: "/app".into(),
            domain: Some("example.com".into()),
        })
    );
    assert_eq!(
        p.key,
        Some(Secret(b"0123456789abcdef-long-enough".to_vec()))
    );
    assert!(
        !format!("{p:?}").contains("0123456789abcdef"),
        "a key is never printed"
    );
    assert_eq!(
        persistence(&service(
            "persistence = { kind = \"url_param\", name = \"srv\" }\n"
        ))
        .kind,
        PersistenceKind::UrlParam { name: "srv".into() }
    );
    assert_eq!(
        persistence(
            &service("persistence = { kind = \"header\", name = \"X-Tenant\" }\n")
                .replace("name = \"p\"\n", "name = \"p\"\nscheduler = \"maglev\"\n")
        )
        .kind,
        PersistenceKind::Header {
            name: "x-tenant".into()
        }
    );
    assert_eq!(parse(&service("")).services[0].persistence, None);
}

#[test]
fn persistence_errors() {
    one(
        &service("persistence = { kind = \"sticky\" }\n"),
        "t.toml:8:24: service[s].persistence.kind: unknown persistence kind `sticky`; valid kinds: source_ip, cookie, url_param, header",
    );
    one(
        &service("persistence = { kind = \"source_ip\", name = \"x\" }\n"),
        "t.toml:8:37: service[s].persistence.name: `name` applies only to cookie, url_param and header persistence; this one is kind = \"source_ip\"",
    );
    one(
        &service("mode = \"tcp\"\npersistence = { kind = \"cookie\" }\n"),
        "t.toml:9:24: service[s].persistence.kind: cookie persistence needs HTTP (mode = \"http\"); a tcp service can persist by source_ip only",
    );
    one(
        &service("persistence = { kind = \"cookie\", mode = \"prefix\" }\n"),
        "t.toml:8:15: service[s].persistence.name: mode = \"prefix\" needs `name`: the application's session cookie to prefix, e.g. name = \"JSESSIONID\"",
    );
    one(
        &service("persistence = { kind = \"cookie\", key = \"short\" }\n"),
        "t.toml:8:40: service[s].persistence.key: a secret of 5 bytes is too short; use at least 16 (e.g. `openssl rand -hex 32`)",
    );
    one(
        &service("persistence = { kind = \"cookie\", same_site = \"none\" }\n"),
        "t.toml:8:34: service[s].persistence.same_site: browsers drop a SameSite=None cookie without Secure; add secure = true",
    );
    one(
        &service("persistence = { kind = \"source_ip\", mask = 33 }\n"),
        "t.toml:8:44: service[s].persistence.mask: must be between 0 and 32, got 33",
    );
    one(
        &service("persistence = { kind = \"url_param\" }\n"),
        "t.toml:8:15: service[s].persistence.name: missing required key `name` in the persistence table",
    );
    one(
        &service("persistence = { kind = \"header\", name = \"X-Tenant\" }\n"),
        "t.toml:8:15: service[s].persistence: header persistence hashes the header onto the pool with its scheduler, and pool `p` uses `wrr`; set scheduler = \"maglev\" (or \"sh\") on it",
    );
    one(
        &service("persistence = { kind = \"source_ip\", on_backend_down = \"retry\" }\n"),
        "t.toml:8:55: service[s].persistence.on_backend_down: unknown on_backend_down `retry`; write \"rebalance\" (send the client to a healthy backend) or \"fail\" (answer 503)",
    );
}

#[test]
fn cluster() {
    let dir = std::env::temp_dir().join(format!("tandem-cfg-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("cluster.key");
    std::fs::write(&key, "an-excellent-shared-secret\n").unwrap();
    let c = parse(&format!(
        "[cluster]\nlisten = \"198.51.100.2:9901\"\npeers = [\"198.51.100.3:9901\", \"[2001:db8::3]:9901\"]\nsecret_file = \"{}\"\nstate_dir = \"/var/lib/tandem\"\n",
        key.display()
    ))
    .cluster
    .expect("cluster");
    assert_eq!(
        c,
        Cluster {
            listen: "198.51.100.2:9901".parse().unwrap(),
            peers: vec![
                "198.51.100.3:9901".parse().unwrap(),
                "[2001:db8::3]:9901".parse().unwrap()
            ],
            secret: Secret(b"an-excellent-shared-secret".to_vec()),
            state_dir: Some("/var/lib/tandem".into()),
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(parse("").cluster, None);
    one(
        "[cluster]\nlisten = \"198.51.100.2:9901\"\npeers = [\"198.51.100.3:9901\"]\n",
        "t.toml:1:1: cluster.secret: missing `secret` (or `secret_file`) in [cluster]: every frame between nodes is authenticated with it",
    );
    one(
        "[cluster]\nlisten = \"198.51.100.2:9901\"\npeers = [\"198.51.100.2:9901\"]\nsecret = \"0123456789abcdef\"\n",
        "t.toml:3:9: cluster.peers: 198.51.100.2:9901 is this node's own `listen`; list only the other nodes",
    );
    one(
        "[cluster]\nlisten = \"198.51.100.2:9901\"\npeers = []\nsecret = \"0123456789abcdef\"\n",
        "t.toml:3:9: cluster.peers: no peers: list the other nodes' cluster addresses, or remove [cluster]",
    );
    one(
        "[cluster]\nlisten = \"198.51.100.2:9901\"\npeers = [\"198.51.100.3:9901\"]\nsecret_file = \"/nonexistent/k\"\n",
        "t.toml:4:15: cluster.secret_file: cannot read /nonexistent/k: No such file or directory (os error 2)",
    );
}
