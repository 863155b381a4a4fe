//! The `health` table: every kind, every kind-specific key, and the exact error line of every
//! way to get one wrong.
//!
//! Errors are checked as whole `file:line:col: key: message` lines. The health table is always
//! line 4, and columns are computed from the line itself (`col(line, "needle")`), so a case
//! states *what* it points at rather than a number to recount by hand.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_config::*;

const POOL: &str = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:8001\" }]\n";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The line `health = { <kv> }`.
fn line(kv: &str) -> String {
    format!("health = {{ {kv} }}")
}

/// The pool's health check parsed from `health = { <kv> }`.
#[track_caller]
fn check(kv: &str) -> HealthCheck {
    let src = format!("{POOL}{}\n", line(kv));
    match parse_str(&src, "t.toml") {
        Ok(c) => c.pools[0].health.clone(),
        Err(e) => panic!("expected a valid config, got:\n{e}\nsource:\n{src}"),
    }
}

/// 1-based column of the first `needle` in `line`.
#[track_caller]
fn col(line: &str, needle: &str) -> usize {
    line.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {line:?}"))
        + 1
}

/// Assert that `health = { <kv> }` yields exactly one error, on `key`, at the first `at` in the
/// line, with `message`.
#[track_caller]
fn one(kv: &str, key: &str, at: &str, message: &str) {
    let l = line(kv);
    let src = format!("{POOL}{l}\n");
    let got: Vec<String> = match parse_str(&src, "t.toml") {
        Ok(_) => panic!("expected an error, parsed fine:\n{src}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    };
    let want = format!(
        "t.toml:4:{}: pool[web].health.{key}: {message}",
        col(&l, at)
    );
    assert_eq!(got, [want], "\nsource:\n{src}");
}

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("tandem-config-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp dir")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The config crate checks PEM framing only (the TLS stack parses the certificate when the
/// checker starts), so any base64 body will do here.
const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";

// ---------------------------------------------------------------------------------------------
// Timings

#[test]
fn down_interval_defaults_to_interval() {
    let h = check("interval = \"5s\"");
    assert_eq!(
        (h.interval, h.down_interval, h.timeout),
        (ms(5000), ms(5000), ms(1000))
    );
    assert_eq!(
        HealthCheck::default().down_interval,
        HealthCheck::default().interval
    );
}

#[test]
fn down_interval_longer_or_shorter_than_interval() {
    let h = check("interval = \"1s\", down_interval = \"30s\"");
    assert_eq!(
        (h.interval, h.down_interval, h.timeout),
        (ms(1000), ms(30_000), ms(1000))
    );
    let h = check("interval = \"5s\", down_interval = \"2s\", timeout = \"2s\"");
    assert_eq!(
        (h.interval, h.down_interval, h.timeout),
        (ms(5000), ms(2000), ms(2000))
    );
    // An absent timeout fits into the shorter period.
    let h = check("down_interval = \"400ms\"");
    assert_eq!(
        (h.interval, h.down_interval, h.timeout),
        (ms(2000), ms(400), ms(400))
    );
}

#[test]
fn down_interval_errors() {
    one(
        "timeout = \"1s\", down_interval = \"500ms\"",
        "down_interval",
        "\"500ms\"",
        "down_interval (500ms) must not be shorter than timeout (1s), or probes of a down backend would overlap",
    );
    one(
        "down_interval = \"0s\"",
        "down_interval",
        "\"0s\"",
        "duration must be greater than zero; write a number and a unit (ms, s, m or h), e.g. \"500ms\", \"1.5s\", \"5m\" or \"1m30s\"",
    );
    one(
        "down_interval = 5",
        "down_interval",
        "5",
        "expected a duration string such as \"2s\" or \"500ms\", found an integer",
    );
}

// ---------------------------------------------------------------------------------------------
// Kinds

#[test]
fn unknown_kind_lists_every_kind_and_suggests() {
    one(
        "kind = \"htps\"",
        "kind",
        "\"htps\"",
        "unknown health check kind `htps`; did you mean `https`? valid kinds: none, tcp, http, https, smtp, icmp, exec",
    );
    one(
        "kind = \"ping\"",
        "kind",
        "\"ping\"",
        "unknown health check kind `ping`; valid kinds: none, tcp, http, https, smtp, icmp, exec",
    );
}

#[test]
fn every_kind_has_a_name() {
    for name in HealthKind::NAMES {
        let kv = match name {
            "exec" => "kind = \"exec\", command = [\"/bin/sh\"]".to_string(),
            _ => format!("kind = \"{name}\""),
        };
        assert_eq!(check(&kv).kind.name(), name);
    }
}

#[test]
fn none_trusts_and_accepts_the_common_keys() {
    let h = check("kind = \"none\", interval = \"1s\", down_interval = \"5s\", rise = 1, fall = 1");
    assert_eq!(h.kind, HealthKind::None);
}

// ---------------------------------------------------------------------------------------------
// http: expect_body and digest

fn http_parts(kind: &HealthKind) -> (&Option<BodyMatch>, &Option<Md5Digest>) {
    match kind {
        HealthKind::Http {
            expect_body,
            digest,
            ..
        }
        | HealthKind::Https {
            expect_body,
            digest,
            ..
        } => (expect_body, digest),
        other => panic!("not an http kind: {other:?}"),
    }
}

#[test]
fn http_body_checks_default_to_none() {
    let h = check("kind = \"http\"");
    assert_eq!(http_parts(&h.kind), (&None, &None));
}

#[test]
fn http_expect_body_substring_and_regex() {
    let h = check("kind = \"http\", expect_body = \"status: ok (1.2)\"");
    let body = http_parts(&h.kind).0.as_ref().expect("set");
    assert!(!body.is_regex());
    assert!(body.is_match(b"..status: ok (1.2).."));
    assert!(!body.is_match(b"status: ok (102)"));

    let h = check(r#"kind = "http", expect_body = '/"status":\s*"(ok|degraded)"/'"#);
    let body = http_parts(&h.kind).0.as_ref().expect("set");
    assert!(body.is_regex());
    assert!(body.is_match(br#"{"status": "degraded"}"#));
    assert!(!body.is_match(br#"{"status": "down"}"#));
    assert_eq!(body.as_written(), r#"/"status":\s*"(ok|degraded)"/"#);
}

#[test]
fn http_digest_any_case() {
    let h = check("kind = \"http\", digest = \"9E107D9D372BB6826BD81D3542A419D6\"");
    let digest = http_parts(&h.kind).1.expect("set");
    assert_eq!(digest.to_string(), "9e107d9d372bb6826bd81d3542a419d6");
}

#[test]
fn http_body_check_errors() {
    one(
        "kind = \"http\", expect_body = \"/(ok/\"",
        "expect_body",
        "\"/(ok/\"",
        "invalid regular expression /(ok/: unclosed group",
    );
    one(
        "kind = \"http\", expect_body = \"/a{2,1}/\"",
        "expect_body",
        "\"/a{2,1}/\"",
        "invalid regular expression /a{2,1}/: invalid repetition count range, the start must be <= the end",
    );
    one(
        "kind = \"http\", expect_body = \"//\"",
        "expect_body",
        "\"//\"",
        "\"//\" would match any body; write the text to look for, or a /regex/",
    );
    one(
        "kind = \"http\", expect_body = 200",
        "expect_body",
        "200",
        "expected a string, found an integer",
    );
    one(
        "kind = \"http\", digest = \"abc\"",
        "digest",
        "\"abc\"",
        "\"abc\" is not an MD5 digest; write 32 hex digits, e.g. \"9e107d9d372bb6826bd81d3542a419d6\" (from `curl -s URL | md5sum`)",
    );
    one(
        "kind = \"http\", method = \"HEAD\", expect_body = \"ok\"",
        "expect_body",
        "expect_body",
        "`expect_body` checks the response body, and the answer to a HEAD request has none; use method = \"GET\"",
    );
    one(
        "kind = \"https\", method = \"HEAD\", digest = \"9e107d9d372bb6826bd81d3542a419d6\"",
        "digest",
        "digest",
        "`digest` checks the response body, and the answer to a HEAD request has none; use method = \"GET\"",
    );
    one(
        "expect_body = \"ok\"",
        "expect_body",
        "expect_body",
        "`expect_body` applies only to http and https health checks; this check is kind = \"tcp\"",
    );
    one(
        "kind = \"smtp\", digest = \"9e107d9d372bb6826bd81d3542a419d6\"",
        "digest",
        "digest",
        "`digest` applies only to http and https health checks; this check is kind = \"smtp\"",
    );
}

// ---------------------------------------------------------------------------------------------
// https

fn tls_parts(kind: &HealthKind) -> (Option<&str>, bool, Option<&Path>) {
    match kind {
        HealthKind::Https {
            sni,
            tls_verify,
            ca_file,
            ..
        } => (sni.as_deref(), *tls_verify, ca_file.as_deref()),
        other => panic!("not https: {other:?}"),
    }
}

#[test]
fn https_defaults_and_http_keys() {
    let h = check("kind = \"https\"");
    assert_eq!(tls_parts(&h.kind), (None, true, None));
    let HealthKind::Https {
        method,
        path,
        host,
        expect_status,
        port,
        ..
    } = &h.kind
    else {
        panic!("https")
    };
    assert_eq!(
        (method.as_str(), path.as_str(), host, expect_status, port),
        ("GET", "/", &None, &StatusSet::default(), &None)
    );
    let h = check("kind = \"https\", port = 8443, path = \"/up\", expect_body = \"ok\"");
    assert!(matches!(
        &h.kind,
        HealthKind::Https { port: Some(8443), path, expect_body: Some(_), .. } if path == "/up"
    ));
}

#[test]
fn https_sni_follows_host_names_not_addresses() {
    let sni = |kv: &str| {
        tls_parts(&check(&format!("kind = \"https\", {kv}")).kind)
            .0
            .map(str::to_string)
    };
    assert_eq!(
        sni("host = \"www.example.com\""),
        Some("www.example.com".into())
    );
    assert_eq!(
        sni("host = \"www.example.com:8443\""),
        Some("www.example.com".into())
    );
    assert_eq!(sni("host = \"10.0.0.7\""), None);
    assert_eq!(sni("host = \"[2001:db8::7]:443\""), None);
    assert_eq!(
        sni("host = \"www.example.com\", sni = \"api.example.com\""),
        Some("api.example.com".into())
    );
    assert_eq!(
        sni("sni = \"api.example.com\""),
        Some("api.example.com".into())
    );
}

#[test]
fn https_verification_settings() {
    let h = check("kind = \"https\", tls_verify = false");
    assert_eq!(tls_parts(&h.kind), (None, false, None));
    let ca = TempFile::new("ca.pem", PEM);
    let h = check(&format!("kind = \"https\", ca_file = \"{}\"", ca.path()));
    assert_eq!(tls_parts(&h.kind), (None, true, Some(ca.0.as_path())));
}

#[test]
fn https_errors() {
    one(
        "kind = \"https\", sni = \"10.0.0.1\"",
        "sni",
        "\"10.0.0.1\"",
        "sni \"10.0.0.1\" is an IP address, which SNI cannot carry; leave sni out to verify the certificate against the backend's IP address",
    );
    one(
        "kind = \"https\", sni = \"bad name\"",
        "sni",
        "\"bad name\"",
        "invalid sni \"bad name\"; write a host name such as \"www.example.com\"",
    );
    one(
        "kind = \"https\", tls_verify = \"no\"",
        "tls_verify",
        "\"no\"",
        "expected a boolean (true or false), found a string",
    );
    one(
        "kind = \"https\", ca_file = \"certs/ca.pem\"",
        "ca_file",
        "\"certs/ca.pem\"",
        "ca_file \"certs/ca.pem\" is a relative path; write an absolute path",
    );
    one(
        "kind = \"https\", ca_file = \"/nonexistent/tandem/ca.pem\"",
        "ca_file",
        "\"/nonexistent",
        "cannot read ca_file \"/nonexistent/tandem/ca.pem\": No such file or directory (os error 2)",
    );
    let junk = TempFile::new("junk.pem", "not a certificate\n");
    one(
        &format!("kind = \"https\", ca_file = \"{}\"", junk.path()),
        "ca_file",
        "\"/",
        &format!("ca_file \"{}\" holds no certificate (expected PEM blocks starting with -----BEGIN CERTIFICATE-----)", junk.path()),
    );
    let ca = TempFile::new("ca2.pem", PEM);
    one(
        &format!("kind = \"https\", tls_verify = false, ca_file = \"{}\"", ca.path()),
        "ca_file",
        "ca_file",
        "`ca_file` has no effect with tls_verify = false (no certificate is verified); remove one of them",
    );
    one(
        "kind = \"http\", sni = \"www.example.com\"",
        "sni",
        "sni",
        "`sni` applies only to https health checks; this check is kind = \"http\"",
    );
    one(
        "kind = \"tcp\", tls_verify = false",
        "tls_verify",
        "tls_verify",
        "`tls_verify` applies only to https health checks; this check is kind = \"tcp\"",
    );
}

// ---------------------------------------------------------------------------------------------
// smtp

#[test]
fn smtp_defaults_and_keys() {
    assert_eq!(
        check("kind = \"smtp\"").kind,
        HealthKind::Smtp {
            helo_name: "tandem-health".into(),
            port: None
        }
    );
    assert_eq!(
        check("kind = \"smtp\", helo_name = \"lb1.example.com\", port = 2525").kind,
        HealthKind::Smtp {
            helo_name: "lb1.example.com".into(),
            port: Some(2525)
        }
    );
}

#[test]
fn smtp_errors() {
    one(
        "kind = \"smtp\", helo_name = \"lb 1\"",
        "helo_name",
        "\"lb 1\"",
        "invalid helo_name \"lb 1\"; write this machine's host name, e.g. \"lb1.example.com\"",
    );
    one(
        "kind = \"smtp\", helo_name = \"\"",
        "helo_name",
        "\"\"",
        "invalid helo_name \"\"; write this machine's host name, e.g. \"lb1.example.com\"",
    );
    one(
        "kind = \"smtp\", path = \"/\"",
        "path",
        "path",
        "`path` applies only to http and https health checks; this check is kind = \"smtp\"",
    );
    one(
        "kind = \"http\", helo_name = \"x\"",
        "helo_name",
        "helo_name",
        "`helo_name` applies only to smtp health checks; this check is kind = \"http\"",
    );
}

// ---------------------------------------------------------------------------------------------
// icmp

#[test]
fn icmp_takes_only_the_common_keys() {
    let h = check("kind = \"icmp\", interval = \"1s\", timeout = \"300ms\", rise = 1, fall = 2");
    assert_eq!((h.kind, h.timeout, h.fall), (HealthKind::Icmp, ms(300), 2));
    one(
        "kind = \"icmp\", port = 80",
        "port",
        "port",
        "`port` applies only to tcp, http, https and smtp health checks; this check is kind = \"icmp\"",
    );
}

// ---------------------------------------------------------------------------------------------
// exec

#[test]
fn exec_command_is_resolved_at_load() {
    let h = check("kind = \"exec\", command = [\"sh\", \"-c\", \"exit 0\"]");
    let HealthKind::Exec {
        command,
        dynamic_weight,
    } = &h.kind
    else {
        panic!("exec: {:?}", h.kind)
    };
    assert_eq!(command.program, "sh");
    assert!(
        command.path.is_absolute() && command.path.ends_with("sh"),
        "{:?}",
        command.path
    );
    assert_eq!(command.args, ["-c", "exit 0"]);
    assert!(!dynamic_weight);

    let h = check("kind = \"exec\", command = [\"/bin/sh\"], dynamic_weight = true");
    assert!(matches!(
        &h.kind,
        HealthKind::Exec { command, dynamic_weight: true } if command.path == Path::new("/bin/sh") && command.args.is_empty()
    ));
}

#[test]
fn exec_errors() {
    one(
        "kind = \"exec\", command = [\"tandem-no-such-program\"]",
        "command[0]",
        "\"tandem-no-such",
        &format!(
            "command `tandem-no-such-program` not found in PATH ({})",
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    one(
        "kind = \"exec\", command = [\"/nonexistent/check\", \"-v\"]",
        "command[0]",
        "\"/nonexistent",
        "command `/nonexistent/check` not found",
    );
    one(
        "kind = \"exec\", command = [\"./check.sh\"]",
        "command[0]",
        "\"./check",
        "command `./check.sh` is a relative path; write an absolute path, or a bare name to look up in PATH",
    );
    one(
        "kind = \"exec\", command = []",
        "command",
        "[]",
        "command is empty; write the program and its arguments, e.g. [\"/usr/local/bin/check-db\", \"--quiet\"]",
    );
    one(
        "kind = \"exec\", command = \"/bin/check --fast\"",
        "command",
        "\"/bin/check",
        "expected an array of strings such as [\"/usr/local/bin/check-db\", \"--port\", \"5432\"] (no shell runs it: one string per argument), found a string",
    );
    one(
        "kind = \"exec\", command = [\"/bin/sh\", 5]",
        "command[1]",
        "5",
        "expected a string, found an integer",
    );
    one(
        "kind = \"exec\", command = [\"/bin/sh\", \"a\\u0000b\"]",
        "command[1]",
        "\"a\\u",
        "contains a NUL byte, which cannot be passed to a program",
    );
    one(
        "kind = \"exec\"",
        "command",
        "{",
        "missing required key `command` in the health table",
    );
    one(
        "kind = \"exec\", command = [\"/bin/sh\"], dynamic_weight = 1",
        "dynamic_weight",
        "1",
        "expected a boolean (true or false), found an integer",
    );
    one(
        "dynamic_weight = true",
        "dynamic_weight",
        "dynamic_weight",
        "`dynamic_weight` applies only to exec health checks; this check is kind = \"tcp\"",
    );
    one(
        "kind = \"http\", command = [\"/bin/sh\"]",
        "command",
        "command",
        "`command` applies only to exec health checks; this check is kind = \"http\"",
    );
}

// ---------------------------------------------------------------------------------------------
// Per-backend overrides use the same table

#[test]
fn a_backend_overrides_with_any_kind() {
    let src = r#"
[[pool]]
name = "mail"
health = { kind = "smtp", down_interval = "10s" }
backends = [
  { address = "127.0.0.1:25" },
  { address = "127.0.0.1:2525", health = { kind = "exec", command = ["/bin/sh", "-c", "exit 0"], dynamic_weight = true } },
  { address = "127.0.0.1:465", health = { kind = "https", tls_verify = false, sni = "mail.example.com" } },
]
"#;
    let cfg = parse_str(src, "t.toml").expect("valid");
    let pool = &cfg.pools[0];
    assert_eq!(pool.health.down_interval, ms(10_000));
    assert!(pool.backends[0].health.is_none());
    let b1 = pool.backends[1].health.as_ref().expect("override");
    assert!(matches!(
        b1.kind,
        HealthKind::Exec {
            dynamic_weight: true,
            ..
        }
    ));
    let b2 = pool.backends[2].health.as_ref().expect("override");
    assert_eq!(tls_parts(&b2.kind), (Some("mail.example.com"), false, None));

    let bad = src.replace("/bin/sh", "/nonexistent/sh");
    let errs = parse_str(&bad, "t.toml")
        .expect_err("missing program")
        .to_string();
    assert_eq!(
        errs,
        "t.toml:7:70: pool[mail].backends[1].health.command[0]: command `/nonexistent/sh` not found"
    );
}
