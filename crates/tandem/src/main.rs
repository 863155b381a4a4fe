//! `tandem`: one daemon for VIP failover, health checks and load balancing.
//!
//! This binary is thin on purpose: it parses the command line, sets up logging and hands over
//! to [`daemon`] (run), [`check`] or [`demo`]. The work lives in the library crates.

mod check;
mod cli;
mod cluster;
mod daemon;
mod demo;
mod logging;
mod status;
mod vrrp;
mod vrrp_notify;
mod vrrp_probes;
mod vrrp_track;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, cli.log_level.as_deref());
    let result = match cli.command {
        cli::Command::Run { config } => daemon::run_file(&config),
        cli::Command::Check { config, strict } => return check::run(&config, strict),
        cli::Command::Status(opts) => status::run(opts),
        cli::Command::Demo(opts) => demo::run(opts),
        cli::Command::VipCleanup { config } => vrrp::cleanup(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}
