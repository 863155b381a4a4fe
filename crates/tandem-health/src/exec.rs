//! `exec` checks: run the operator's command for one backend; its exit status is the verdict.
//!
//! # API
//!
//! - [`run`]`(command: &ExecCommand, target: SocketAddr, timeout: Duration, dynamic_weight:
//!   bool) -> ExecReport` runs the command once (the timeout is enforced here, by killing).
//! - [`ExecReport`] `{ target, outcome: ExecOutcome, output: Option<String> }`: its `Display` is
//!   the operator-facing reason (`exec exit 1 for 127.0.0.1:8001: connection refused`);
//!   [`ExecReport::is_up`], [`ExecReport::weight`] and [`ExecReport::to_probe_outcome`] are
//!   what the probe dispatch needs.
//! - [`ExecOutcome`]: `Up`, `Down { code }`, `Weight { weight }`, `TimedOut { after }`,
//!   `Killed { signal }`, `SpawnFailed { program, error }`.
//!
//! # What the command sees
//!
//! - `argv`: [`ExecCommand::path`] (resolved when the configuration was loaded) is executed,
//!   with `argv[0]` set to [`ExecCommand::program`] as written and then the arguments. No
//!   shell: nothing is split, globbed or interpolated.
//! - Environment: the daemon's own, plus
//!   - `TANDEM_BACKEND_ADDRESS`: the backend's IP address (`10.0.0.7`, `2001:db8::7`),
//!   - `TANDEM_BACKEND_PORT`: its port (`8001`),
//!   - `TANDEM_BACKEND`: both, as a URL authority (`10.0.0.7:8001`, `[2001:db8::7]:8001`).
//! - stdin is `/dev/null`. stdout and stderr are pipes that are read as the command runs: the
//!   first [`OUTPUT_CAP`] bytes of each are kept, the rest read and thrown away, so a chatty
//!   command never blocks on a full pipe. The first non-empty line (stderr preferred, then
//!   stdout) becomes part of the failure reason, cut to [`MAX_OUTPUT_LINE`] characters.
//!
//! # Exit status
//!
//! | status                   | `dynamic_weight = false` | `dynamic_weight = true`            |
//! |--------------------------|--------------------------|------------------------------------|
//! | exit 0                   | `Up`                     | `Up` (weight unchanged)            |
//! | exit 1                   | `Down { code: 1 }`       | `Down { code: 1 }`                 |
//! | exit 2..=255             | `Down { code }`          | `Weight { weight: code - 2 }` (up) |
//! | killed by a signal       | `Killed { signal }`      | `Killed { signal }`                |
//! | still running at timeout | `TimedOut { after }`     | `TimedOut { after }`               |
//!
//! The dynamic weights are keepalived's `misc_dynamic` semantics, so existing check scripts
//! work unchanged (exit 2 asks for weight 0: up, but no new traffic).
//!
//! # Process lifetime
//!
//! The command runs in its own process group, so everything it starts can be killed with it.
//! At the timeout the *whole group* gets `SIGKILL` (a `sh -c 'curl ... | grep'` leaves no
//! `curl` behind) and the command is reaped. When the command exits on its own, whatever it
//! left running in its group is killed too: a check runs every few seconds, and a leaked
//! background process per run would pile up. If the future is dropped mid-run (the checker is
//! stopped, a reload removes the backend), a guard kills the group and tokio reaps the child
//! (`kill_on_drop`), so cancellation leaves neither processes nor zombies.
//!
//! A process that escapes the group (`setsid`, a daemon) is out of reach by design; it only
//! costs the check a short wait ([`OUTPUT_GRACE`]) if it keeps the output pipes open.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

pub use tandem_config::ExecCommand;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::probe::ProbeOutcome;

/// Environment variable with the backend's IP address (no brackets, no port).
pub const ENV_ADDRESS: &str = "TANDEM_BACKEND_ADDRESS";
/// Environment variable with the backend's port.
pub const ENV_PORT: &str = "TANDEM_BACKEND_PORT";
/// Environment variable with `ip:port` (IPv6 in brackets).
pub const ENV_BACKEND: &str = "TANDEM_BACKEND";

/// Bytes kept from each of stdout and stderr. The reason shows one line; a few KiB is plenty
/// to find it, and bounds what a command can make the daemon hold.
pub const OUTPUT_CAP: usize = 4 * 1024;
/// Characters of output shown in a reason; longer lines end with `…`.
pub const MAX_OUTPUT_LINE: usize = 200;
/// After the command is gone, how long to wait for its pipes to reach end-of-file. Only a
/// process that escaped the group can hold them open longer; its output is then not awaited.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(100);
/// How long to wait for a `SIGKILL`ed command to be reaped before leaving it to tokio's
/// background reaping (only a process stuck in the kernel, e.g. on a dead NFS mount, takes
/// longer).
const REAP_GRACE: Duration = Duration::from_secs(2);

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Exit status 0.
    Up,
    /// A nonzero exit status (with dynamic weights: only 1).
    Down { code: i32 },
    /// With dynamic weights, exit status 2..=255: up, with weight `code - 2`.
    Weight { weight: u32 },
    /// Still running at the timeout; its process group was killed.
    TimedOut { after: Duration },
    /// Terminated by a signal that did not come from the timeout.
    Killed { signal: i32 },
    /// The command could not be run: it failed to start (missing, not executable, out of
    /// processes), or its exit status could not be collected.
    SpawnFailed { program: PathBuf, error: String },
}

impl ExecOutcome {
    /// Does the outcome count as a pass?
    pub fn is_up(&self) -> bool {
        matches!(self, ExecOutcome::Up | ExecOutcome::Weight { .. })
    }
}

impl fmt::Display for ExecOutcome {
    /// The outcome without the backend: `exit 1`, `exit 7 (weight 5)`, `killed by signal 9
    /// (SIGKILL)`, `timed out after 500ms (process group killed)`, `could not run ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecOutcome::Up => f.write_str("exit 0"),
            ExecOutcome::Down { code } => write!(f, "exit {code}"),
            ExecOutcome::Weight { weight } => {
                write!(f, "exit {} (weight {weight})", u64::from(*weight) + 2)
            }
            ExecOutcome::TimedOut { after } => {
                write!(f, "timed out after {after:?} (process group killed)")
            }
            ExecOutcome::Killed { signal } => match signal_name(*signal) {
                Some(name) => write!(f, "killed by signal {signal} ({name})"),
                None => write!(f, "killed by signal {signal}"),
            },
            ExecOutcome::SpawnFailed { program, error } => {
                write!(f, "could not run `{}`: {error}", program.display())
            }
        }
    }
}

/// What one run of a check command showed, for one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecReport {
    /// The backend the command was run for.
    pub target: SocketAddr,
    pub outcome: ExecOutcome,
    /// The first non-empty line of the command's stderr (else stdout), cleaned of control
    /// characters and cut to [`MAX_OUTPUT_LINE`] characters; `None` if it printed nothing.
    pub output: Option<String>,
}

impl ExecReport {
    /// Does the backend pass?
    pub fn is_up(&self) -> bool {
        self.outcome.is_up()
    }

    /// The weight the command asked for (dynamic weights only); `None`: keep the weight.
    pub fn weight(&self) -> Option<u32> {
        match self.outcome {
            ExecOutcome::Weight { weight } => Some(weight),
            _ => None,
        }
    }

    /// The report as a probe outcome: pass or fail, this report's text as the detail, and
    /// the requested weight if any.
    pub fn to_probe_outcome(&self) -> ProbeOutcome {
        let detail = self.to_string();
        match (self.is_up(), self.weight()) {
            (true, Some(weight)) => ProbeOutcome::ok(detail).with_weight(weight),
            (true, None) => ProbeOutcome::ok(detail),
            (false, _) => ProbeOutcome::fail(detail),
        }
    }
}

impl fmt::Display for ExecReport {
    /// The operator-facing reason: `exec exit 0 for 127.0.0.1:8001`, `exec exit 1 for
    /// 127.0.0.1:8001: connection refused`, `exec timed out after 500ms (process group
    /// killed) for [::1]:8002`, `exec could not run `/usr/local/bin/chk` for 127.0.0.1:8001:
    /// no such file or directory`. The command's output is shown for failures only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.target;
        match &self.outcome {
            ExecOutcome::SpawnFailed { program, error } => {
                return write!(
                    f,
                    "exec could not run `{}` for {target}: {error}",
                    program.display()
                );
            }
            outcome => write!(f, "exec {outcome} for {target}")?,
        }
        match &self.output {
            Some(line) if !self.is_up() => write!(f, ": {line}"),
            _ => Ok(()),
        }
    }
}

/// Run `command` once for the backend `target`, within `timeout`. Never fails: everything
/// that can go wrong is an [`ExecOutcome`]. See the [module docs](self) for what the command
/// sees and how its process is managed; in short, when this returns (or is dropped) the command
/// and everything it started in its process group have been killed or have exited.
pub async fn run(
    command: &ExecCommand,
    target: SocketAddr,
    timeout: Duration,
    dynamic_weight: bool,
) -> ExecReport {
    let env = [
        (ENV_ADDRESS, target.ip().to_string()),
        (ENV_PORT, target.port().to_string()),
        (ENV_BACKEND, authority(target)),
    ];
    let (outcome, output) = run_command(command, &[], &env, timeout, dynamic_weight).await;
    ExecReport {
        target,
        outcome,
        output,
    }
}

/// Run `command` once with `extra_args` after its own arguments and `env` added to the
/// daemon's environment, within `timeout`, with the same process management as [`run`] (own
/// process group, killed at the timeout or when dropped, always reaped). Returns how it ended
/// and the first line of its output. For commands that are not about one backend: VRRP track
/// scripts and notify commands.
pub async fn run_command(
    command: &ExecCommand,
    extra_args: &[String],
    env: &[(&str, String)],
    timeout: Duration,
    dynamic_weight: bool,
) -> (ExecOutcome, Option<String>) {
    let deadline = deadline(timeout);
    match spawn(command, extra_args, env) {
        Ok(child) => supervise(child, command, deadline, timeout, dynamic_weight).await,
        Err(e) => (spawn_failed(command, &e), None),
    }
}

/// When a run started now must be over. `checked_add` guards absurd timeouts.
fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

fn spawn(
    command: &ExecCommand,
    extra_args: &[String],
    env: &[(&str, String)],
) -> io::Result<Child> {
    Command::new(&command.path)
        .arg0(&command.program)
        .args(&command.args)
        .args(extra_args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, led by the child: the group id is the child's pid.
        .process_group(0)
        // Dropped before it was reaped (cancellation): SIGKILL, then reaped in the background.
        .kill_on_drop(true)
        .spawn()
}

fn spawn_failed(command: &ExecCommand, e: &io::Error) -> ExecOutcome {
    ExecOutcome::SpawnFailed {
        program: command.path.clone(),
        error: io_phrase(e),
    }
}

/// `ip:port` with IPv6 in brackets and without a zone id.
fn authority(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Watch the running command to its end: wait for it while draining its output, kill its
/// group when it is over (timeout or not), and reap it.
async fn supervise(
    mut child: Child,
    command: &ExecCommand,
    deadline: Instant,
    timeout: Duration,
    dynamic_weight: bool,
) -> (ExecOutcome, Option<String>) {
    // Declared after `child`, so on cancellation it is dropped first: the group is killed
    // while the child is still unreaped and its pid (the group id) cannot have been reused.
    let mut group = GroupKill::new(child.id());
    let mut stdout = Capture::new(child.stdout.take());
    let mut stderr = Capture::new(child.stderr.take());
    let exited = wait_capturing(&mut child, &mut stdout, &mut stderr, deadline).await;
    // Timed out: stop it all. Exited: stop whatever it left behind. (The exited child is
    // already reaped, but its pid stays reserved as long as any member of its group lives; if
    // none does, the kill finds nothing, unless a new process got that pid and made it its own
    // group id in these few microseconds, which takes a full wrap of the pid space.)
    group.kill();
    let outcome = match exited {
        Some(Ok(status)) => classify(status, dynamic_weight),
        Some(Err(e)) => spawn_failed(command, &e),
        None => {
            reap(&mut child).await;
            ExecOutcome::TimedOut { after: timeout }
        }
    };
    drain(&mut stdout, &mut stderr).await;
    let output = first_line(&stderr.kept).or_else(|| first_line(&stdout.kept));
    (outcome, output)
}

/// Wait for the command to exit while reading its output; `None` if the deadline came first.
async fn wait_capturing<O, E>(
    child: &mut Child,
    stdout: &mut Capture<O>,
    stderr: &mut Capture<E>,
    deadline: Instant,
) -> Option<io::Result<ExitStatus>>
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    loop {
        // Biased: the exit and the deadline are looked at before output on every turn, so a
        // command that writes without pause cannot delay its verdict.
        tokio::select! {
            biased;
            status = child.wait() => return Some(status),
            () = &mut sleep => return None,
            () = stdout.read_some(), if stdout.is_open() => {}
            () = stderr.read_some(), if stderr.is_open() => {}
        }
    }
}

/// Reap a command whose group was just `SIGKILL`ed. Bounded: if it does not die in time, it is
/// left to `kill_on_drop` and tokio's background reaping.
async fn reap(child: &mut Child) {
    match tokio::time::timeout(REAP_GRACE, child.wait()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("exec: could not reap a killed check command: {e}"),
        Err(_) => tracing::warn!(
            "exec: a killed check command (pid {:?}) did not exit within {REAP_GRACE:?}",
            child.id()
        ),
    }
}

/// Read what is left in the pipes, for at most [`OUTPUT_GRACE`].
async fn drain<O, E>(stdout: &mut Capture<O>, stderr: &mut Capture<E>)
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let drained = async {
        while stdout.is_open() || stderr.is_open() {
            tokio::select! {
                () = stdout.read_some(), if stdout.is_open() => {}
                () = stderr.read_some(), if stderr.is_open() => {}
                else => break,
            }
        }
    };
    let _ = tokio::time::timeout(OUTPUT_GRACE, drained).await;
}

/// Map an exit status to an outcome (see the table in the module docs).
fn classify(status: ExitStatus, dynamic_weight: bool) -> ExecOutcome {
    match (status.code(), status.signal()) {
        (Some(0), _) => ExecOutcome::Up,
        (Some(code), _) => match u32::try_from(code) {
            Ok(c @ 2..=255) if dynamic_weight => ExecOutcome::Weight { weight: c - 2 },
            _ => ExecOutcome::Down { code },
        },
        (None, Some(signal)) => ExecOutcome::Killed { signal },
        // Neither exited nor signalled (stopped/continued are not reported by `wait`).
        (None, None) => ExecOutcome::Down {
            code: status.into_raw(),
        },
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

/// `SIGKILL`s a process group once: explicitly, or when dropped (the run was cancelled).
struct GroupKill {
    pgid: Option<libc::pid_t>,
}

impl GroupKill {
    /// For the group led by the child `pid` (`process_group(0)` makes its pgid its pid).
    fn new(pid: Option<u32>) -> GroupKill {
        // `kill(-1, ...)` would signal every process we may signal, and `kill(0, ...)` our own
        // group: only a real child's pid (> 1) is ever negated.
        let pgid = pid
            .and_then(|p| libc::pid_t::try_from(p).ok())
            .filter(|&p| p > 1);
        GroupKill { pgid }
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: `kill` has no memory-safety preconditions. ESRCH (the group is already
            // empty) is the common, harmless failure.
            let _ = unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One output pipe of the command: keeps the first [`OUTPUT_CAP`] bytes, discards the rest.
struct Capture<R> {
    /// `None` once at end-of-file (or after a read error).
    pipe: Option<R>,
    kept: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Capture<R> {
    fn new(pipe: Option<R>) -> Capture<R> {
        Capture {
            pipe,
            kept: Vec::new(),
        }
    }

    fn is_open(&self) -> bool {
        self.pipe.is_some()
    }

    /// Read once. Cancel-safe: nothing is consumed unless the read completes, and no await
    /// follows it.
    async fn read_some(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => self.pipe = None,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The first non-empty line of `bytes` as one clean line of text for a reason: invalid UTF-8
/// replaced, control characters turned into spaces, cut to [`MAX_OUTPUT_LINE`] characters.
fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut chars = line.chars().map(|c| if c.is_control() { ' ' } else { c });
    let mut out: String = chars.by_ref().take(MAX_OUTPUT_LINE).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    Some(out)
}

/// An I/O error as a short lower-case phrase: "no such file or directory", not
/// "No such file or directory (os error 2)".
fn io_phrase(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error ").next().unwrap_or_default();
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::atomic::{AtomicU32, Ordering};

    const T: Duration = Duration::from_secs(10);

    fn target() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 8001))
    }

    /// `/bin/sh -c SCRIPT sh ARGS...` (so the script sees ARGS as `$1`...).
    fn sh(script: &str, args: &[&str]) -> ExecCommand {
        let mut all = vec!["-c".to_string(), script.to_string(), "sh".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        ExecCommand {
            program: "/bin/sh".into(),
            path: "/bin/sh".into(),
            args: all,
        }
    }

    /// A fresh path under the temp dir; removed when dropped.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(tag: &str) -> TempPath {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let name = format!("tandem-exec-{}-{tag}-{n}", std::process::id());
            TempPath(std::env::temp_dir().join(name))
        }

        fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Is `pid` a live process? Gone, or a zombie (killed, waiting for a parent that is not
    /// us to reap it), counts as dead.
    fn alive(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.trim().chars().next());
        !matches!(state, Some('Z' | 'X'))
    }

    /// Poll until none of `pids` is alive, for at most 3 s.
    async fn all_dead(pids: &[u32]) -> bool {
        for _ in 0..300 {
            if pids.iter().all(|&p| !alive(p)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// The pids a script wrote to `file` as `CHILD GRANDCHILD`, waiting up to 3 s for them.
    async fn pids_from(file: &TempPath) -> Vec<u32> {
        for _ in 0..300 {
            if let Ok(s) = std::fs::read_to_string(&file.0) {
                let pids: Vec<u32> = s
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if pids.len() == 2 {
                    return pids;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the script never wrote its pids to {}", file.0.display());
    }

    #[tokio::test]
    async fn exit_codes_without_dynamic_weights() {
        let r = run(&sh("exit 0", &[]), target(), T, false).await;
        assert_eq!(r.outcome, ExecOutcome::Up);
        assert_eq!(r.to_string(), "exec exit 0 for 127.0.0.1:8001");
        assert_eq!(
            r.to_probe_outcome(),
            ProbeOutcome::ok("exec exit 0 for 127.0.0.1:8001")
        );

        let r = run(&sh("exit 1", &[]), target(), T, false).await;
        assert_eq!(r.outcome, ExecOutcome::Down { code: 1 });
        assert_eq!(r.to_string(), "exec exit 1 for 127.0.0.1:8001");
        assert!(!r.to_probe_outcome().ok);

        let r = run(&sh("exit 7", &[]), target(), T, false).await;
        assert_eq!(r.outcome, ExecOutcome::Down { code: 7 });
        assert_eq!(r.weight(), None);
    }

    #[tokio::test]
    async fn exit_codes_with_dynamic_weights() {
        let r = run(&sh("exit 7", &[]), target(), T, true).await;
        assert_eq!(r.outcome, ExecOutcome::Weight { weight: 5 });
        assert_eq!(r.to_string(), "exec exit 7 (weight 5) for 127.0.0.1:8001");
        assert_eq!(
            r.to_probe_outcome(),
            ProbeOutcome::ok("exec exit 7 (weight 5) for 127.0.0.1:8001").with_weight(5)
        );
        for (script, want) in [
            ("exit 0", ExecOutcome::Up),
            ("exit 1", ExecOutcome::Down { code: 1 }),
            ("exit 2", ExecOutcome::Weight { weight: 0 }),
            ("exit 255", ExecOutcome::Weight { weight: 253 }),
        ] {
            let r = run(&sh(script, &[]), target(), T, true).await;
            assert_eq!(r.outcome, want, "{script}");
        }
    }

    #[test]
    fn classify_covers_every_status() {
        let exited = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(classify(exited(0), true), ExecOutcome::Up);
        assert_eq!(classify(exited(1), true), ExecOutcome::Down { code: 1 });
        assert_eq!(classify(exited(2), true), ExecOutcome::Weight { weight: 0 });
        assert_eq!(classify(exited(2), false), ExecOutcome::Down { code: 2 });
        assert_eq!(
            classify(ExitStatus::from_raw(libc::SIGSEGV), false),
            ExecOutcome::Killed {
                signal: libc::SIGSEGV
            }
        );
    }

    #[tokio::test]
    async fn failure_reason_carries_the_first_line_of_output() {
        let r = run(
            &sh(
                "echo; echo '  db: connection refused  ' >&2; echo more >&2; exit 3",
                &[],
            ),
            target(),
            T,
            false,
        )
        .await;
        assert_eq!(r.output.as_deref(), Some("db: connection refused"));
        assert_eq!(
            r.to_string(),
            "exec exit 3 for 127.0.0.1:8001: db: connection refused"
        );
        // stdout when stderr is silent; control characters cleaned; long lines cut.
        let long = "x".repeat(500);
        let r = run(
            &sh(&format!("printf 'a\\tb\\033[31m {long}\\n'; exit 1"), &[]),
            target(),
            T,
            false,
        )
        .await;
        let line = r.output.unwrap();
        assert!(line.starts_with("a b [31m xxx"), "{line}");
        assert_eq!(line.chars().count(), MAX_OUTPUT_LINE + 1);
        assert!(line.ends_with('…'));
        // Output is not shown for a pass.
        let r = run(&sh("echo fine; exit 0", &[]), target(), T, false).await;
        assert_eq!(r.to_string(), "exec exit 0 for 127.0.0.1:8001");
    }

    #[tokio::test]
    async fn a_chatty_command_never_blocks() {
        // Megabytes on both pipes, far beyond what a pipe buffers: it must still finish.
        let script = "yes out | head -c 3000000; yes err | head -c 3000000 >&2; exit 4";
        let started = std::time::Instant::now();
        let r = run(&sh(script, &[]), target(), T, false).await;
        assert_eq!(r.outcome, ExecOutcome::Down { code: 4 });
        assert_eq!(r.output.as_deref(), Some("err"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_backend_is_in_the_environment() {
        let script =
            "echo \"$TANDEM_BACKEND_ADDRESS|$TANDEM_BACKEND_PORT|$TANDEM_BACKEND\" >&2; exit 1";
        let r = run(&sh(script, &[]), target(), T, false).await;
        assert_eq!(r.output.as_deref(), Some("127.0.0.1|8001|127.0.0.1:8001"));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 8002));
        let r = run(&sh(script, &[]), v6, T, false).await;
        assert_eq!(r.output.as_deref(), Some("::1|8002|[::1]:8002"));
        assert_eq!(
            r.to_string(),
            "exec exit 1 for [::1]:8002: ::1|8002|[::1]:8002"
        );
    }

    #[tokio::test]
    async fn argv0_is_the_program_as_written() {
        // What `ps` shows: argv[0] as the operator wrote it, not the resolved path.
        let mut command = sh("tr '\\0' ' ' < /proc/$$/cmdline >&2; exit 1", &[]);
        command.program = "sh".into();
        let r = run(&command, target(), T, false).await;
        let line = r.output.unwrap();
        assert!(line.starts_with("sh -c "), "{line}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group_and_reaps() {
        let file = TempPath::new("timeout");
        let script = "sleep 30 & echo \"$$ $!\" > \"$1\"; wait";
        let timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let r = run(&sh(script, &[file.as_str()]), target(), timeout, false).await;
        let took = started.elapsed();
        assert_eq!(r.outcome, ExecOutcome::TimedOut { after: timeout });
        assert_eq!(
            r.to_string(),
            "exec timed out after 300ms (process group killed) for 127.0.0.1:8001"
        );
        assert!(
            took >= timeout && took < Duration::from_millis(1500),
            "{took:?}"
        );
        let pids = pids_from(&file).await;
        // The shell was reaped by us: not even a zombie is left.
        assert!(
            !std::path::Path::new(&format!("/proc/{}", pids[0])).exists(),
            "{pids:?}"
        );
        // The grandchild (the background sleep) was killed with the group.
        assert!(
            all_dead(&pids[1..]).await,
            "grandchild {} survived",
            pids[1]
        );
    }

    #[tokio::test]
    async fn a_dropped_run_kills_the_group() {
        let file = TempPath::new("dropped");
        let script = "sleep 30 & echo \"$$ $!\" > \"$1\"; wait";
        let command = sh(script, &[file.as_str()]);
        let running = run(&command, target(), Duration::from_secs(30), false);
        let cancelled = tokio::time::timeout(Duration::from_millis(500), running).await;
        assert!(cancelled.is_err(), "{cancelled:?}");
        let pids = pids_from(&file).await;
        assert!(
            all_dead(&pids).await,
            "{pids:?} survived the dropped future"
        );
    }

    #[tokio::test]
    async fn leftovers_are_killed_when_the_command_exits() {
        // The background sleep holds stdout open; the run must neither wait for it nor leave
        // it running.
        let file = TempPath::new("leftover");
        let script = "sleep 30 & echo \"$$ $!\" > \"$1\"; exit 0";
        let started = std::time::Instant::now();
        let r = run(&sh(script, &[file.as_str()]), target(), T, false).await;
        assert_eq!(r.outcome, ExecOutcome::Up);
        assert!(started.elapsed() < Duration::from_secs(2));
        let pids = pids_from(&file).await;
        assert!(all_dead(&pids[1..]).await, "leftover {} survived", pids[1]);
    }

    #[tokio::test]
    async fn an_escaped_process_holding_the_pipes_costs_only_the_grace() {
        // `setsid` leaves the group, so it is out of reach; it keeps stdout open, and the run
        // must not wait for it beyond OUTPUT_GRACE.
        let file = TempPath::new("escaped");
        let script = "setsid sleep 3 & echo \"$$ $!\" > \"$1\"; exit 0";
        let started = std::time::Instant::now();
        let r = run(&sh(script, &[file.as_str()]), target(), T, false).await;
        assert_eq!(r.outcome, ExecOutcome::Up);
        assert!(started.elapsed() < Duration::from_secs(2));
        let pids = pids_from(&file).await;
        // Clean up the escapee ourselves (test hygiene; it would exit on its own).
        if let Ok(pid) = libc::pid_t::try_from(pids[1]) {
            // SAFETY: plain syscall, no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    #[tokio::test]
    async fn killed_by_a_signal() {
        let r = run(&sh("kill -9 $$", &[]), target(), T, false).await;
        assert_eq!(r.outcome, ExecOutcome::Killed { signal: 9 });
        assert_eq!(
            r.to_string(),
            "exec killed by signal 9 (SIGKILL) for 127.0.0.1:8001"
        );
        let r = run(&sh("kill -USR1 $$", &[]), target(), T, true).await;
        assert_eq!(
            r.to_string(),
            "exec killed by signal 10 (SIGUSR1) for 127.0.0.1:8001"
        );
    }

    #[tokio::test]
    async fn a_missing_program_fails_to_spawn_clearly() {
        let command = ExecCommand {
            program: "/nonexistent/check-db".into(),
            path: "/nonexistent/check-db".into(),
            args: vec![],
        };
        let r = run(&command, target(), T, false).await;
        assert_eq!(
            r.outcome,
            ExecOutcome::SpawnFailed {
                program: "/nonexistent/check-db".into(),
                error: "no such file or directory".into()
            }
        );
        assert_eq!(
            r.to_string(),
            "exec could not run `/nonexistent/check-db` for 127.0.0.1:8001: no such file or directory"
        );
        assert!(!r.to_probe_outcome().ok);
    }

    #[tokio::test]
    async fn a_non_executable_program_fails_to_spawn_clearly() {
        let file = TempPath::new("noexec");
        std::fs::write(&file.0, "#!/bin/sh\nexit 0\n").unwrap();
        let command = ExecCommand {
            program: file.as_str().into(),
            path: file.0.clone(),
            args: vec![],
        };
        let r = run(&command, target(), T, false).await;
        match &r.outcome {
            ExecOutcome::SpawnFailed { error, .. } => assert_eq!(error, "permission denied"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_line_is_robust() {
        assert_eq!(first_line(b""), None);
        assert_eq!(first_line(b"\n \n\t\n"), None);
        assert_eq!(
            first_line(b"\xff\xfeok\n"),
            Some("\u{fffd}\u{fffd}ok".into())
        );
        assert_eq!(first_line(b"a\r\nb"), Some("a".into()));
    }
}
