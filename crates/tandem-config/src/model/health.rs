//! Health check settings: which probe runs against a backend and how its results turn into
//! up/down.
//!
//! The value types of the kind-specific keys ([`StatusSet`], [`BodyMatch`], [`Md5Digest`],
//! [`ExecCommand`]) validate themselves in their constructors, so a value that exists has been
//! checked, whoever built it: the parser, the demo, or a test.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `health = { kind = ..., interval, down_interval, timeout, rise, fall, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: HealthKind,
    /// `interval`: default 2s. Time between two probes (start to start) while the backend is
    /// up or not yet decided.
    pub interval: Duration,
    /// `down_interval`: default `interval`. Time between two probes while the backend is down:
    /// shorter notices a recovery sooner, longer spares a host that is struggling to come back.
    /// At least `timeout`, so probes of one backend never overlap.
    pub down_interval: Duration,
    /// `timeout`: default 1s, or the shorter of `interval` and `down_interval` when that is
    /// shorter. Must not exceed `interval`, so probes of one backend never overlap.
    pub timeout: Duration,
    /// `rise`: consecutive successes to mark a backend up. Default 2, at least 1.
    pub rise: u32,
    /// `fall`: consecutive failures to mark a backend down. Default 3, at least 1.
    pub fall: u32,
}

impl Default for HealthCheck {
    /// What an absent `health` key means: a TCP connect every 2s.
    fn default() -> Self {
        HealthCheck {
            kind: HealthKind::Tcp { port: None },
            interval: Duration::from_secs(2),
            down_interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// `health.kind` and the keys that only make sense for that kind.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthKind {
    /// `none`: no probes; the backend is trusted to be up.
    None,
    /// `tcp`: a TCP connect succeeds. `port` probes another port than traffic.
    Tcp { port: Option<u16> },
    /// `http`: a request answered with an expected status (and body, when asked).
    Http {
        /// `method`: default GET.
        method: String,
        /// `path`: default `/`.
        path: String,
        /// `host`: Host header; default the backend address.
        host: Option<String>,
        /// `expect_status`: default "200-399".
        expect_status: StatusSet,
        /// `port`: probe this port instead of the backend's traffic port.
        port: Option<u16>,
        /// `expect_body`: the body must contain this text, or match this `/regex/`.
        expect_body: Option<BodyMatch>,
        /// `digest`: the MD5 of the whole body must be this (keepalived's HTTP_GET `digest`).
        digest: Option<Md5Digest>,
    },
    /// `https`: the `http` check over TLS.
    Https {
        method: String,
        path: String,
        host: Option<String>,
        expect_status: StatusSet,
        port: Option<u16>,
        expect_body: Option<BodyMatch>,
        digest: Option<Md5Digest>,
        /// Server name sent in the TLS handshake and verified against the certificate. `sni`,
        /// or by default `host` (without a port) when that is a DNS name; `None`: no SNI is
        /// sent and the certificate is verified against the backend's IP address.
        sni: Option<String>,
        /// `tls_verify`: default true. `false` accepts any certificate (self-signed, expired,
        /// another name): the check then proves a TLS server answers, not which one.
        tls_verify: bool,
        /// `ca_file`: PEM file of the CAs to trust instead of the system's roots. Absolute;
        /// checked at load to exist and hold at least one certificate.
        ca_file: Option<PathBuf>,
    },
    /// `smtp`: banner `220`, then `EHLO` (or `HELO`) answered `250`, then `QUIT`.
    Smtp {
        /// `helo_name`: the name given in EHLO/HELO. Default `tandem-health`.
        helo_name: String,
        /// `port`: probe this port instead of the backend's traffic port.
        port: Option<u16>,
    },
    /// `icmp`: an echo request to the backend's IP is answered.
    Icmp,
    /// `exec`: an operator's command, run per backend, exits 0.
    Exec {
        /// `command`: the program and its arguments; no shell.
        command: ExecCommand,
        /// `dynamic_weight`: default false. When true, the command's output may set the
        /// backend's weight (see docs/health-checks.md).
        dynamic_weight: bool,
    },
}

impl HealthKind {
    /// `helo_name` of an `smtp` check when the key is absent: says who is knocking in the mail
    /// server's log.
    pub const DEFAULT_HELO_NAME: &'static str = "tandem-health";

    /// Every kind's name, in the order error messages and docs list them.
    pub const NAMES: [&'static str; 7] = ["none", "tcp", "http", "https", "smtp", "icmp", "exec"];

    /// The name used in the configuration file.
    pub fn name(&self) -> &'static str {
        match self {
            HealthKind::None => "none",
            HealthKind::Tcp { .. } => "tcp",
            HealthKind::Http { .. } => "http",
            HealthKind::Https { .. } => "https",
            HealthKind::Smtp { .. } => "smtp",
            HealthKind::Icmp => "icmp",
            HealthKind::Exec { .. } => "exec",
        }
    }
}

/// A set of HTTP status codes written as "200-299,301".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    /// Inclusive ranges.
    pub ranges: Vec<(u16, u16)>,
}

impl StatusSet {
    /// The valid range of a single code, inclusive.
    pub const CODES: (u16, u16) = (100, 599);

    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= status && status <= hi)
    }

    /// Parse `"200-299,301"`: comma-separated codes or inclusive `LO-HI` ranges, each code
    /// 100..=599, spaces around items allowed. The error text is meant for the user.
    pub fn parse(s: &str) -> Result<StatusSet, String> {
        const FORM: &str = "write status codes or ranges separated by commas, e.g. \"200-299,301\"";
        let code = |t: &str| -> Result<u16, String> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("\"{t}\" is not a status code; {FORM}"));
            }
            match t.parse::<u16>() {
                Ok(c) if (Self::CODES.0..=Self::CODES.1).contains(&c) => Ok(c),
                _ => Err(format!(
                    "status code {t} is out of range; codes are 100 to 599"
                )),
            }
        };
        if s.trim().is_empty() {
            return Err(format!("empty status list; {FORM}"));
        }
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (code(lo)?, code(hi)?),
                None => {
                    let c = code(item)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(format!("range {lo}-{hi} is backwards; write {hi}-{lo}"));
            }
            ranges.push((lo, hi));
        }
        Ok(StatusSet { ranges })
    }
}

impl Default for StatusSet {
    /// `200-399`: success and redirects, which is what a healthy web server answers.
    fn default() -> Self {
        StatusSet {
            ranges: vec![(200, 399)],
        }
    }
}

impl fmt::Display for StatusSet {
    /// The same syntax [`StatusSet::parse`] accepts, so it round-trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// `expect_body`: text the response body must contain, or, written `/.../`, a regular
/// expression it must match.
///
/// Both forms are compiled into one byte regex at load (a plain text is escaped), so a bad
/// pattern is a config error rather than a probe that fails forever, and the probe matches
/// bodies that are not UTF-8 without a lossy conversion. The `regex` crate runs in time linear
/// in the body, so no pattern can make a probe hang.
#[derive(Debug, Clone)]
pub struct BodyMatch {
    written: String,
    is_regex: bool,
    regex: regex::bytes::Regex,
}

impl BodyMatch {
    /// `"text"` (substring) or `"/pattern/"` (regex). The error text is meant for the user.
    pub fn parse(s: &str) -> Result<BodyMatch, String> {
        let pattern = s.strip_prefix('/').and_then(|r| r.strip_suffix('/'));
        let (source, is_regex) = match pattern {
            Some(p) => (p.to_string(), true),
            None => (regex::escape(s), false),
        };
        if s.is_empty() || source.is_empty() {
            return Err(format!(
                "\"{s}\" would match any body; write the text to look for, or a /regex/"
            ));
        }
        let regex = regex::bytes::Regex::new(&source)
            .map_err(|e| format!("invalid regular expression {s}: {}", regex_error(&e)))?;
        Ok(BodyMatch {
            written: s.to_string(),
            is_regex,
            regex,
        })
    }

    /// Does `body` contain the text, or match the regex?
    pub fn is_match(&self, body: &[u8]) -> bool {
        self.regex.is_match(body)
    }

    /// Written as `/.../`?
    pub fn is_regex(&self) -> bool {
        self.is_regex
    }

    /// The value as written in the file, slashes included.
    pub fn as_written(&self) -> &str {
        &self.written
    }
}

/// `regex`'s syntax errors are several lines (the pattern, a caret, the reason); a config error
/// is one line, so keep the reason.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl PartialEq for BodyMatch {
    /// Two matches are the same when written the same (compiled regexes cannot be compared).
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

impl fmt::Display for BodyMatch {
    /// As written: `ok` or `/^ok$/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// `digest`: an MD5 digest, written as 32 hex digits in either case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Md5Digest(pub [u8; 16]);

impl Md5Digest {
    /// 32 hex digits, upper or lower case. The error text is meant for the user.
    pub fn parse(s: &str) -> Result<Md5Digest, String> {
        let bad = || {
            format!(
                "\"{s}\" is not an MD5 digest; write 32 hex digits, e.g. \"9e107d9d372bb6826bd81d3542a419d6\" (from `curl -s URL | md5sum`)"
            )
        };
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(bad)?;
            let lo = hex_value(pair[1]).ok_or_else(bad)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Md5Digest(out))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Md5Digest {
    /// Lower-case hex, as `md5sum` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// `command = ["/path/prog", "arg", ...]` of an `exec` check: a program and its arguments, run
/// directly (no shell, so no quoting surprises and nothing interpolated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    /// The program as written: an absolute path or a bare name.
    pub program: String,
    /// Where the program was found when the configuration was loaded: `program` itself when it
    /// is a path, else the first match in `PATH`. Running this path means the daemon runs what
    /// `tandem check` checked, whatever `PATH` the daemon was started with.
    pub path: PathBuf,
    /// The arguments after the program.
    pub args: Vec<String>,
}

impl ExecCommand {
    /// Check that `argv[0]` names an existing executable file (a bare name is looked up in
    /// `search_path`, the value of `PATH`) and that no string holds a NUL byte (it could not be
    /// passed to the program). The error text is meant for the user.
    pub fn new(argv: Vec<String>, search_path: Option<&str>) -> Result<ExecCommand, String> {
        let mut argv = argv.into_iter();
        let Some(program) = argv.next() else {
            return Err(
                "command is empty; write the program and its arguments, e.g. [\"/usr/local/bin/check-db\", \"--quiet\"]"
                    .into(),
            );
        };
        let args: Vec<String> = argv.collect();
        if let Some(s) = std::iter::once(&program)
            .chain(&args)
            .find(|s| s.contains('\0'))
        {
            return Err(format!(
                "{s:?} contains a NUL byte, which cannot be passed to a program"
            ));
        }
        let path = find_program(&program, search_path)?;
        Ok(ExecCommand {
            program,
            path,
            args,
        })
    }
}

impl fmt::Display for ExecCommand {
    /// The command line as a log shows it: `check-db --quiet`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        self.args.iter().try_for_each(|a| write!(f, " {a}"))
    }
}

/// Resolve `program` as a shell would, but only the two unambiguous forms: an absolute path, or
/// a bare name searched in `PATH`. A relative path such as `./check.sh` would depend on the
/// daemon's working directory (`/` under systemd), so it is refused.
fn find_program(program: &str, search_path: Option<&str>) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the program name (the first string) is empty".into());
    }
    if program.contains('/') {
        let path = Path::new(program);
        if !path.is_absolute() {
            return Err(format!(
                "command `{program}` is a relative path; write an absolute path, or a bare name to look up in PATH"
            ));
        }
        return match executable(path) {
            Ok(()) => Ok(path.to_path_buf()),
            Err(Missing::NotFound) => Err(format!("command `{program}` not found")),
            Err(Missing::Other(why)) => Err(format!("command `{program}` {why}")),
        };
    }
    let dirs = search_path.unwrap_or("");
    let mut other = None;
    // Empty or relative PATH entries mean "the current directory": skipped, for the same reason
    // relative paths are refused.
    for dir in dirs.split(':').filter(|d| d.starts_with('/')) {
        let candidate = Path::new(dir).join(program);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Missing::NotFound) => {}
            Err(Missing::Other(why)) => {
                other.get_or_insert(format!("`{}` {why}", candidate.display()));
            }
        }
    }
    Err(match other {
        Some(found) => format!("command `{program}` not found in PATH as an executable ({found})"),
        None if dirs.is_empty() => {
            format!("command `{program}` not found (PATH is not set; write an absolute path)")
        }
        None => format!("command `{program}` not found in PATH ({dirs})"),
    })
}

enum Missing {
    NotFound,
    Other(String),
}

/// Is `path` a regular file someone may execute?
fn executable(path: &Path) -> Result<(), Missing> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Missing::NotFound),
        Err(e) => return Err(Missing::Other(format!("cannot be inspected: {e}"))),
    };
    if meta.is_dir() {
        return Err(Missing::Other("is a directory".into()));
    }
    if !meta.is_file() {
        return Err(Missing::Other("is not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o111 == 0 {
            return Err(Missing::Other(format!(
                "is not executable (mode {:o}; chmod +x it)",
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// Check that `path` (an https check's `ca_file`) is absolute, readable and holds at least one
/// PEM certificate. Cheap (one small file, no X.509 parsing); whether the certificates are
/// usable trust anchors is checked when the checker starts. The error text is meant for the user.
pub fn check_ca_file(path: &Path) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let shown = path.display();
    if !path.is_absolute() {
        return Err(format!(
            "ca_file \"{shown}\" is a relative path; write an absolute path"
        ));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read ca_file \"{shown}\": {e}"))?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        match cert {
            Ok(_) => count += 1,
            Err(e) => return Err(format!("ca_file \"{shown}\" is not valid PEM: {e}")),
        }
    }
    if count == 0 {
        return Err(format!(
            "ca_file \"{shown}\" holds no certificate (expected PEM blocks starting with -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_match_substring_is_literal() {
        let m = BodyMatch::parse("a.b (ok)").expect("valid");
        assert!(!m.is_regex());
        assert!(m.is_match(b"xx a.b (ok) yy"));
        assert!(!m.is_match(b"axb (ok)"));
        assert_eq!(m.to_string(), "a.b (ok)");
        // A lone slash, or one at one end only, is text.
        assert!(BodyMatch::parse("/").expect("valid").is_match(b"a/b"));
        assert!(!BodyMatch::parse("/api").expect("valid").is_regex());
    }

    #[test]
    fn body_match_regex_between_slashes() {
        let m = BodyMatch::parse(r"/^status: (ok|degraded)$/").expect("valid");
        assert!(m.is_regex());
        assert!(m.is_match(b"status: ok"));
        assert!(!m.is_match(b"status: down"));
        // Bodies need not be UTF-8.
        assert!(BodyMatch::parse("/ok/")
            .expect("valid")
            .is_match(b"\xff\xfeok"));
        assert_eq!(
            BodyMatch::parse("/(ok/").expect_err("bad"),
            "invalid regular expression /(ok/: unclosed group"
        );
        // Case-insensitive matching, as operators write it.
        assert!(BodyMatch::parse("/(?i)ok/")
            .expect("valid")
            .is_match(b"status: OK"));
        assert!(BodyMatch::parse("").is_err());
        assert!(BodyMatch::parse("//").is_err());
    }

    #[test]
    fn md5_digest_parses_either_case_and_prints_lower() {
        let d = Md5Digest::parse("9E107D9D372BB6826BD81D3542A419D6").expect("valid");
        assert_eq!(d.to_string(), "9e107d9d372bb6826bd81d3542a419d6");
        assert_eq!(d, Md5Digest::parse(&d.to_string()).expect("round trip"));
        for bad in [
            "",
            "9e107d9d",
            "9e107d9d372bb6826bd81d3542a419dx",
            "é".repeat(16).as_str(),
        ] {
            assert!(Md5Digest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exec_command_resolution() {
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = ExecCommand::new(argv(&["sh", "-c", "exit 0"]), Some("/nonexistent:/bin"))
            .expect("found");
        assert_eq!(c.path, Path::new("/bin/sh"));
        assert_eq!(c.to_string(), "sh -c exit 0");
        let c = ExecCommand::new(argv(&["/bin/sh"]), None).expect("absolute");
        assert_eq!(c.path, Path::new("/bin/sh"));

        let err =
            |v: &[&str], path: Option<&str>| ExecCommand::new(argv(v), path).expect_err("refused");
        assert_eq!(err(&[], None).split(';').next(), Some("command is empty"));
        assert_eq!(
            err(&["no-such-prog-x"], Some("/bin")),
            "command `no-such-prog-x` not found in PATH (/bin)"
        );
        assert_eq!(
            err(&["/no/such/prog"], None),
            "command `/no/such/prog` not found"
        );
        assert!(err(&["./check.sh"], None).contains("relative path"));
        assert_eq!(err(&["/"], None), "command `/` is a directory");
        let plain = std::env::temp_dir().join(format!("tandem-not-exec-{}", std::process::id()));
        std::fs::write(&plain, "data").expect("temp file");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        let refused = err(&[plain.to_str().expect("utf-8 temp dir")], None);
        let _ = std::fs::remove_file(&plain);
        assert!(
            refused.ends_with("is not executable (mode 644; chmod +x it)"),
            "{refused}"
        );
        assert!(err(&["sh", "a\0b"], Some("/bin")).contains("NUL"));
        // Relative PATH entries are never searched.
        assert!(err(&["sh"], Some("bin:.")).starts_with("command `sh` not found"));
    }
}
