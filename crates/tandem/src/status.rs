//! `tandem status`: the running daemon's services, backends and traffic, read from its admin
//! API and shown as a table (or `--json`), once or every few seconds (`--watch`).
//!
//! Rates come from two readings of the counters a known time apart (see [`snapshot`]): the
//! first table takes one second; with `--watch` each refresh uses the previous one.

mod snapshot;
mod table;
mod units;

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::admin_client::Client;
use crate::cli::StatusOpts;
use snapshot::{Snapshot, Status};

/// The pause between the two readings of a one-shot `tandem status`.
const SAMPLE: Duration = Duration::from_secs(1);

pub fn run(opts: StatusOpts) -> Result<()> {
    let addr = admin_addr(&opts)?;
    let token = match &opts.token_file {
        Some(p) => Some(read_token(p)?),
        None => None,
    };
    let client = Client { addr, token };
    let out = Output {
        json: opts.json,
        colour: !opts.json
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none(),
        admin: addr.to_string(),
    };
    let Some(every) = opts.watch else {
        let first = Snapshot::fetch(&client)?;
        std::thread::sleep(SAMPLE);
        let second = Snapshot::fetch(&client)?;
        return out.show(Some(&first), &second, false);
    };
    if !(every.is_finite() && every >= 0.1) {
        bail!("--watch takes seconds, at least 0.1; got {every}");
    }
    let every = Duration::from_secs_f64(every);
    let clear = out.colour || (!opts.json && std::io::stdout().is_terminal());
    // Until Ctrl-C: each refresh shows the rates since the previous one. An unreachable API
    // (a restart) is shown and retried, not fatal.
    // The first reading only starts the rates, so the first table comes a second later.
    let mut prev: Option<Snapshot> = None;
    loop {
        let shown = match Snapshot::fetch(&client) {
            Ok(cur) => {
                let show = prev.is_some() || opts.json;
                if show {
                    out.show(prev.as_ref(), &cur, clear)?;
                }
                prev = Some(cur);
                show
            }
            Err(e) => {
                if clear {
                    print!("\x1b[H\x1b[2J");
                }
                println!("tandem status: {e:#} (retrying)");
                prev = None;
                true
            }
        };
        std::io::stdout().flush().ok();
        std::thread::sleep(if shown { every } else { SAMPLE.min(every) });
    }
}

/// How to print.
struct Output {
    json: bool,
    colour: bool,
    admin: String,
}

impl Output {
    fn show(&self, prev: Option<&Snapshot>, cur: &Snapshot, clear: bool) -> Result<()> {
        let status = Status::new(self.admin.clone(), prev, cur);
        let mut stdout = std::io::stdout().lock();
        if self.json {
            // One document per line, so `--watch --json` is a stream a script can read.
            serde_json::to_writer(&mut stdout, &status)?;
            writeln!(stdout)?;
        } else {
            if clear {
                write!(stdout, "\x1b[H\x1b[2J")?;
            }
            write!(stdout, "{}", table::render(&status, self.colour))?;
        }
        stdout.flush()?;
        Ok(())
    }
}

/// `--admin`, else `[admin] listen` of `--config`, else the default; an unspecified listen
/// address (`0.0.0.0`, `[::]`) is reached on loopback.
fn admin_addr(opts: &StatusOpts) -> Result<SocketAddr> {
    if let Some(a) = &opts.admin {
        return a
            .to_socket_addrs()
            .with_context(|| format!("--admin {a}: expected HOST:PORT, e.g. 127.0.0.1:9900"))?
            .next()
            .with_context(|| format!("--admin {a}: no address"));
    }
    let listen = match &opts.config {
        Some(path) => {
            tandem_config::load_file(path)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("reading [admin] listen from {}", path.display()))?
                .admin
                .listen
        }
        None => tandem_config::Admin::default().listen,
    };
    Ok(reachable(listen))
}

fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// The token, without the newline a file usually ends with.
pub(crate) fn read_token(path: &Path) -> Result<String> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("reading --token-file {}", path.display()))?;
    let token = raw.trim();
    if token.is_empty() {
        bail!("--token-file {} is empty", path.display());
    }
    if token.contains(['\r', '\n']) {
        bail!("--token-file {} holds more than one line", path.display());
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:9900".parse().unwrap();
        assert_eq!(reachable(a), "127.0.0.1:9900".parse().unwrap());
        let a: SocketAddr = "[::]:9900".parse().unwrap();
        assert_eq!(reachable(a), "[::1]:9900".parse().unwrap());
        let a: SocketAddr = "198.51.100.2:9900".parse().unwrap();
        assert_eq!(reachable(a), a);
    }
}
