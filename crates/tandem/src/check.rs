//! `tandem check`: validate a configuration and print every problem.

use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> ExitCode {
    match tandem_config::load_file(path) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} pool(s), {} service(s), {} vrrp instance(s))",
                path.display(),
                cfg.pools.len(),
                cfg.services.len(),
                cfg.vrrp.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}
