//! The command line: `tandem run`, `tandem check`, `tandem demo`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "One daemon that keeps a web service up: health-checked L4/L7 load balancing \
             and VRRP virtual-IP failover.",
    long_about = "tandem balances HTTP and TCP traffic over health-checked backend pools, with \
the schedulers IPVS and HAProxy users know (rr, wrr, lc, wlc, sh, maglev, p2c, ewma).\n\n\
Start with `tandem demo` to see it work on 127.0.0.1, `tandem check --config FILE` to validate \
a configuration, and `tandem run --config FILE` to run it. The configuration reference is \
docs/configuration.md; examples are in examples/."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info`, `debug`, `tandem_proxy=debug` (overrides RUST_LOG).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon. SIGTERM or SIGINT stops accepting, lets open requests finish (up to
    /// `runtime.drain_timeout`) and exits 0.
    ///
    /// SIGHUP re-reads the configuration (see `tandem reload`). `--upgrade` starts a new
    /// binary in place of a running one: it takes the listening sockets over (no connection
    /// is refused), VRRP masters stay masters, and the old process drains and exits.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Take over from the tandem running with this configuration (binary upgrade).
        #[arg(long)]
        upgrade: bool,
        /// The Unix socket a successor uses to take over from this process.
        #[arg(long, default_value = crate::upgrade::DEFAULT_SOCKET)]
        upgrade_socket: PathBuf,
    },
    /// Validate a configuration: exit 0 when it is valid, else print every problem as
    /// `FILE:LINE:COL: key: what is wrong` and exit 1.
    Check {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Exit 2 when there are warnings (single points of failure, capacity), for CI.
        #[arg(long)]
        strict: bool,
    },
    /// Ask the running daemon to re-read its configuration (as SIGHUP does) through the admin
    /// API, and print what changed. Exit 0 when the new configuration is in force; 1 when it
    /// was refused (the old one keeps running) or the daemon could not be reached.
    Reload(AdminOpts),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout, e.g.
    /// `tandem completions bash > /usr/share/bash-completion/completions/tandem`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) to stdout, e.g. `tandem man > /usr/share/man/man1/tandem.1`.
    Man,
    /// Show the running daemon's services and backends with their state and traffic, like
    /// `ipvsadm -L -n --stats --rate`, read from its admin API. Rates are measured over one
    /// second (or between refreshes with --watch).
    Status(StatusOpts),
    /// A self-contained demo on 127.0.0.1: three demo backends, a health-checked pool, an HTTP
    /// service and the admin API. Ctrl-C stops all of it.
    Demo(DemoOpts),
    /// Remove the virtual IPs of every `[[vrrp]]` instance from their interfaces, whatever a
    /// previous tandem left behind. For systemd's `ExecStopPost=`, so a crashed master never
    /// keeps answering for a VIP the other node has taken over. Address owners (priority 255)
    /// are left alone.
    VipCleanup {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// How to reach a running daemon's admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminOpts {
    /// Read the admin address from this configuration file's `[admin] listen`.
    #[arg(long, short, conflicts_with = "admin")]
    pub config: Option<PathBuf>,
    /// The admin API's address (default 127.0.0.1:9900).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// A file holding the bearer token for `[admin] token_file`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoOpts {
    /// Where the demo HTTP service listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the admin API listens.
    #[arg(long, default_value = "127.0.0.1:9900")]
    pub admin: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct StatusOpts {
    /// The admin API, HOST:PORT. Default: `[admin] listen` of --config, else 127.0.0.1:9900.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin: Option<String>,
    /// Read the admin address from this configuration file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Refresh every SECS seconds (default 2) until Ctrl-C.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,
    /// Print JSON (one document per refresh) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Send the token in this file as `Authorization: Bearer`, for an admin API that has one.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}
