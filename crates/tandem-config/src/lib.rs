//! tandem's configuration: the TOML file a user writes, parsed and validated into [`Config`].
//!
//! Errors carry the file, line, column and key so `tandem check` can print
//! `FILE:LINE:COL: key: what is wrong` for every problem at once, not just the first.
//! The user-facing reference for every key and default is `docs/configuration.md`.
//!
//! ```
//! let src = r#"
//! [[pool]]
//! name = "web"
//! backends = [{ address = "127.0.0.1:8001", weight = 2 }]
//!
//! [[service]]
//! name = "www"
//! listen = "127.0.0.1:8080"
//! pool = "web"
//! "#;
//! let config = tandem_config::parse_str(src, "tandem.toml").expect("valid");
//! assert_eq!(config.pools[0].backends[0].weight, 2);
//! assert_eq!(config.services[0].mode, tandem_config::Mode::Http); // the default
//!
//! let errors = tandem_config::parse_str("[runtime]\nworkers = 0\n", "tandem.toml").unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     "tandem.toml:2:11: runtime.workers: must be between 1 and 1024, got 0"
//! );
//! ```

mod address;
pub mod capacity;
mod duration;
pub mod model;
mod parse;
mod position;
mod suggest;

pub use address::parse_socket_addr;
pub use capacity::{LoadUnit, Rate};
pub use duration::parse_duration;
pub use model::*;

use std::fmt;
use std::path::Path;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem has no position (e.g. the file could not be read).
    pub line: usize,
    /// 1-based.
    pub col: usize,
    /// Dotted key path, e.g. `pool[web].backends[1].address` or `service[www].pool`. Tables
    /// with a valid `name` are shown by name, others by 0-based index (`pool[0]`); array
    /// indices are 0-based.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, self.key, self.message
        )
    }
}

/// Every problem found in a file; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Read and validate a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    check_file(path).map(|(config, _)| config)
}

/// [`load_file`] with the warnings: what is valid but fragile (a single point of failure),
/// for `tandem check`.
pub fn check_file(path: &Path) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => check_str(&src, &name),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: name,
            line: 0,
            col: 0,
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        }])),
    }
}

/// Parse and validate configuration text; `file` is used only in error messages.
///
/// On failure every problem found is returned, sorted by position. TOML syntax errors are
/// reported on their own (key `(syntax)`): the rest of the file is checked once it parses.
pub fn parse_str(src: &str, file: &str) -> Result<Config, ConfigErrors> {
    parse::parse(src, file).map(|(config, _)| config)
}

/// [`parse_str`] with the warnings, sorted by position (see [`check_file`]).
pub fn check_str(src: &str, file: &str) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
    parse::parse(src, file)
}
