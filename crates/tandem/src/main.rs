//! `tandem`: one daemon for VIP failover, health checks and load balancing.
//!
//! This binary is thin on purpose: it parses the command line, sets up logging and hands over
//! to [`daemon`] (run), [`check`] or [`demo`]. The work lives in the library crates.

mod admin_client;
mod check;
mod cli;
mod cluster;
mod daemon;
mod demo;
mod logging;
mod reload;
mod sd_notify;
mod status;
mod upgrade;
mod vrrp;
mod vrrp_notify;
mod vrrp_plane;
mod vrrp_probes;
mod vrrp_track;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, cli.log_level.as_deref());
    let result = match cli.command {
        cli::Command::Run {
            config,
            upgrade,
            upgrade_socket,
        } => daemon::run_file(
            &config,
            daemon::Upgrade {
                socket: upgrade_socket,
                take_over: upgrade,
            },
        ),
        cli::Command::Check { config, strict } => return check::run(&config, strict),
        cli::Command::Status(opts) => status::run(opts),
        cli::Command::Reload(opts) => return admin_client::reload(&opts),
        cli::Command::Completions { shell } => {
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "tandem", &mut std::io::stdout());
            Ok(())
        }
        cli::Command::Man => clap_mangen::Man::new(<cli::Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map_err(Into::into),
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
