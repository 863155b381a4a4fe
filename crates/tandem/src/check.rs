//! `tandem check`: validate a configuration and print every problem, then every warning
//! (valid but fragile: a single point of failure). Warnings do not change the exit status:
//! a deliberate single-node setup must still pass in CI, unless `--strict` asks for exit 2.

use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path, strict: bool) -> ExitCode {
    match tandem_config::check_file(path) {
        Ok((cfg, warnings)) => {
            for w in &warnings {
                println!("warning: {w}");
            }
            println!(
                "{}: ok ({} pool(s), {} service(s), {} vrrp instance(s), {} warning(s))",
                path.display(),
                cfg.pools.len(),
                cfg.services.len(),
                cfg.vrrp.len(),
                warnings.len()
            );
            if strict && !warnings.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
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
