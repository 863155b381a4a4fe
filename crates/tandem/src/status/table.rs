//! The terminal table of `tandem status`, laid out like `ipvsadm -L -n --stats --rate`: one
//! row per service with its pool's totals, its backends indented under it, numbers right
//! aligned. Colour only marks the state word, and only when asked for (a terminal), so the
//! text is the same for a pipe, a log or a test.

use std::fmt::Write as _;

use super::snapshot::CapacityDoc;
use super::snapshot::{BackendStatus, PoolStatus, Status};
use super::units::{bytes, bytes_f, count, left, rate, right, width};

const HEADER: [&str; 11] = [
    "SERVICE / BACKEND",
    "STATE",
    "WEIGHT",
    "ACTIVE",
    "TOTAL",
    "FAIL",
    "RATE",
    "IN/s",
    "OUT/s",
    "IN",
    "OUT",
];

/// Columns after the first two are numbers, right aligned.
const TEXT_COLUMNS: usize = 2;

/// One table row: cells, and the colour of the state cell.
struct Row {
    cells: Vec<String>,
    colour: Option<&'static str>,
}

/// A line printed as is between rows (capacity, sorry server).
enum Line {
    Row(Row),
    Note(String),
}

/// The whole table as text, ending with a newline.
pub fn render(status: &Status, colour: bool) -> String {
    let mut lines = Vec::new();
    let mut shown: Vec<&str> = Vec::new();
    for svc in &status.services {
        let Some(pool) = status.pools.iter().find(|p| p.name == svc.pool) else {
            continue;
        };
        let head = format!("{} {} {}", svc.name, svc.listen, svc.mode);
        pool_lines(&mut lines, head, pool);
        shown.push(&pool.name);
    }
    // Pools no service names as its default (route targets, or unused).
    for pool in status
        .pools
        .iter()
        .filter(|p| !shown.contains(&p.name.as_str()))
    {
        let head = format!("pool {}", pool.name);
        pool_lines(&mut lines, head, pool);
    }

    let mut widths: Vec<usize> = HEADER.iter().map(|h| width(h)).collect();
    for line in &lines {
        if let Line::Row(r) = line {
            for (w, c) in widths.iter_mut().zip(&r.cells) {
                *w = (*w).max(width(c));
            }
        }
    }
    let mut out = String::new();
    let header = Row {
        cells: HEADER.iter().map(|s| s.to_string()).collect(),
        colour: None,
    };
    push_row(&mut out, &header, &widths, false);
    for line in &lines {
        match line {
            Line::Row(r) => push_row(&mut out, r, &widths, colour),
            Line::Note(n) => {
                let _ = writeln!(out, "{n}");
            }
        }
    }
    if status.pools.is_empty() {
        out.push_str("(no pools)\n");
    }
    match status.interval_s {
        Some(s) => {
            let _ = writeln!(out, "rates over {s:.1} s; admin API {}", status.admin);
        }
        None => {
            let _ = writeln!(out, "admin API {}", status.admin);
        }
    }
    out
}

fn push_row(out: &mut String, row: &Row, widths: &[usize], colour: bool) {
    let mut line = String::new();
    for (i, (cell, w)) in row.cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let last = i + 1 == row.cells.len();
        let padded = if i < TEXT_COLUMNS {
            if last {
                cell.clone()
            } else {
                left(cell, *w)
            }
        } else {
            right(cell, *w)
        };
        match (i, colour, row.colour) {
            (1, true, Some(code)) => {
                let _ = write!(line, "\x1b[{code}m{padded}\x1b[0m");
            }
            _ => line.push_str(&padded),
        }
    }
    let _ = writeln!(out, "{}", line.trim_end());
}

fn pool_lines(lines: &mut Vec<Line>, head: String, pool: &PoolStatus) {
    let t = pool.totals();
    lines.push(Line::Row(Row {
        cells: vec![
            head,
            format!("{}/{} ok", pool.backends_eligible, pool.backends.len()),
            pool.scheduler.clone(),
            count(t.active),
            count(t.total),
            count(t.failures),
            unit_rate(t.rate, pool.unit),
            dash(t.bytes_in_per_s, bytes_f),
            dash(t.bytes_out_per_s, bytes_f),
            bytes(t.bytes_in),
            bytes(t.bytes_out),
        ],
        colour: (pool.backends_eligible == 0).then_some("31"),
    }));
    for b in &pool.backends {
        lines.push(Line::Row(backend_row(b, pool.unit)));
    }
    if let Some(s) = &pool.sorry_server {
        lines.push(Line::Note(format!("  -> {s} (sorry server)")));
    }
    if let Some(c) = &pool.capacity {
        lines.push(Line::Note(format!(
            "  {}",
            survives_line(&pool.name, pool.survives_losing_one, c)
        )));
    }
}

fn backend_row(b: &BackendStatus, unit: &str) -> Row {
    let name = if b.backup {
        format!("  -> {} (backup)", b.address)
    } else {
        format!("  -> {}", b.address)
    };
    Row {
        cells: vec![
            name,
            b.state.clone(),
            b.weight.to_string(),
            count(b.active),
            count(b.total),
            count(b.failures),
            unit_rate(b.rate, unit),
            dash(b.bytes_in_per_s, bytes_f),
            dash(b.bytes_out_per_s, bytes_f),
            bytes(b.bytes_in),
            bytes(b.bytes_out),
        ],
        colour: Some(match b.state.as_str() {
            "up" => "32",
            "down" => "31",
            "ejected" => "35",
            "draining" | "disabled" => "33",
            _ => "2",
        }),
    }
}

/// A value, or `-` when there is none (no previous sample).
fn dash(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// `12.5 req/s`, or `12.5/s` for a pool no service names.
fn unit_rate(v: Option<f64>, unit: &str) -> String {
    match (v, unit.starts_with('/')) {
        (None, _) => "-".to_string(),
        (Some(v), true) => format!("{}{unit}", rate(v)),
        (Some(v), false) => format!("{} {unit}", rate(v)),
    }
}

/// `pool web survives losing 1 backend: yes (observed 15.2 req/s, 400 req/s left without
/// 10.0.0.1:80, 800 req/s in all)`.
pub fn survives_line(pool: &str, survives: Option<bool>, c: &CapacityDoc) -> String {
    let n = |v: f64| tandem_config::capacity::number((v * 10.0).round() / 10.0);
    let verdict = match survives {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "not known yet",
    };
    let mut facts = Vec::new();
    if let Some(o) = c.observed_load {
        facts.push(format!("observed {} {}", n(o), c.unit));
    }
    if let Some(e) = c.expected_load {
        facts.push(format!("expected {} {}", n(e), c.unit));
    }
    let without = match &c.largest {
        Some(l) => format!(" without {l}"),
        None => String::new(),
    };
    facts.push(format!(
        "{} {} left{without} of {} {}",
        n(c.capacity_without_largest),
        c.unit,
        n(c.capacity),
        c.unit
    ));
    format!(
        "pool {pool} survives losing 1 backend: {verdict} ({})",
        facts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::snapshot::ServiceDoc;

    fn backend(address: &str, state: &str, total: u64, rate: Option<f64>) -> BackendStatus {
        BackendStatus {
            address: address.into(),
            state: state.into(),
            health: state.into(),
            admin_state: "enabled".into(),
            ejected: false,
            backup: false,
            weight: 1,
            active: 0,
            total,
            failures: 0,
            bytes_in: total * 100,
            bytes_out: total * 2000,
            rate,
            bytes_in_per_s: rate.map(|r| r * 100.0),
            bytes_out_per_s: rate.map(|r| r * 2000.0),
        }
    }

    fn status() -> Status {
        Status {
            admin: "127.0.0.1:9900".into(),
            interval_s: Some(1.0),
            services: vec![ServiceDoc {
                name: "www".into(),
                listen: "127.0.0.1:8080".into(),
                mode: "http".into(),
                pool: "web".into(),
            }],
            pools: vec![PoolStatus {
                name: "web".into(),
                scheduler: "wrr".into(),
                unit: "req/s",
                sorry_server: None,
                backends_eligible: 1,
                survives_losing_one: Some(false),
                capacity: Some(CapacityDoc {
                    unit: "req/s".into(),
                    observed_load: Some(150.04),
                    expected_load: None,
                    capacity: 300.0,
                    capacity_without_largest: 100.0,
                    largest: Some("127.0.0.1:8001".into()),
                }),
                backends: vec![
                    backend("127.0.0.1:8001", "up", 123_456, Some(150.0)),
                    backend("127.0.0.1:8002", "down", 7, Some(0.0)),
                ],
            }],
        }
    }

    #[test]
    fn a_table_with_aligned_columns() {
        let text = render(&status(), false);
        let expected = "\
SERVICE / BACKEND        STATE   WEIGHT  ACTIVE   TOTAL  FAIL         RATE      IN/s      OUT/s        IN        OUT
www 127.0.0.1:8080 http  1/2 ok     wrr       0  123.5k     0  150.0 req/s  14.6 KiB  293.0 KiB  11.8 MiB  235.5 MiB
  -> 127.0.0.1:8001      up           1       0  123.5k     0  150.0 req/s  14.6 KiB  293.0 KiB  11.8 MiB  235.5 MiB
  -> 127.0.0.1:8002      down         1       0       7     0   0.00 req/s       0 B        0 B     700 B   13.7 KiB
  pool web survives losing 1 backend: NO (observed 150 req/s, 100 req/s left without 127.0.0.1:8001 of 300 req/s)
rates over 1.0 s; admin API 127.0.0.1:9900
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn colour_marks_the_state_only() {
        let text = render(&status(), true);
        assert!(text.contains("\x1b[32mup    \x1b[0m"), "{text:?}");
        assert!(text.contains("\x1b[31mdown  \x1b[0m"), "{text:?}");
        let plain = render(&status(), false);
        assert!(!plain.contains('\x1b'));
    }
}
