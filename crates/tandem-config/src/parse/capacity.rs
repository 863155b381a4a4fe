//! `capacity` on a backend and `expected_load` on a pool: the values, the rule that one pool
//! speaks one unit, and the N+1 warning of `tandem check`.

use super::*;
use crate::capacity::{n_plus_one, number, LoadUnit, Member, Rate, RATE_FORM};

/// A rate string such as `"500 req/s"`.
pub(super) fn rate(cx: &mut Cx, path: &str, v: &Value) -> R<Rate> {
    let DeValue::String(s) = v.get_ref() else {
        return Err(cx.error(
            v.span().start,
            path,
            format!(
                "expected a rate string, found {}; {RATE_FORM}",
                kind_of(v.get_ref())
            ),
        ));
    };
    Rate::parse(s).map_err(|m| cx.error(v.span().start, path, m))
}

/// Where each backend's table and its `capacity` value are written, by index.
fn backend_spans(t: &Table) -> Vec<(usize, Option<usize>)> {
    match t.get("backends").map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items
            .iter()
            .map(|item| {
                let cap = match item.get_ref() {
                    DeValue::Table(bt) => bt.get("capacity").map(|c| c.span().start),
                    _ => None,
                };
                (item.span().start, cap)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One pool measures one thing: every `capacity` and the `expected_load` share a unit, or the
/// sums would add requests to connections. The first value written sets the unit.
pub(super) fn check_units(cx: &mut Cx, t: &Table, backends: &[Backend], expected: Option<Rate>) {
    let spans = backend_spans(t);
    let mut first: Option<(LoadUnit, String)> = None;
    let expected_at = t.get("expected_load").map(|v| v.span().start);
    let values = backends
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let at = spans.get(i).and_then(|(_, c)| *c)?;
            Some((
                b.capacity?,
                at,
                format!("{}.backends[{i}].capacity", t.path),
            ))
        })
        .chain(
            expected
                .zip(expected_at)
                .map(|(r, at)| (r, at, t.key_path("expected_load"))),
        );
    // File order, so "the first" is the one a reader sees first.
    let mut values: Vec<_> = values.collect();
    values.sort_by_key(|(_, at, _)| *at);
    for (r, at, path) in values {
        match &first {
            None => first = Some((r.unit, path)),
            Some((unit, by)) if *unit != r.unit => {
                cx.error(
                    at,
                    &path,
                    format!(
                        "{} here, but {by} is in {}; a pool's capacities and expected load use one unit",
                        r.unit.name(),
                        unit.name()
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

/// Warn when the pool's `expected_load` does not fit: not even with every backend up, or not
/// once its largest backend is gone (N+1), or when it cannot be checked because backends lack
/// a `capacity`. Backends with weight 0 receive nothing and count for nothing.
pub(super) fn n_plus_one_warnings(cx: &mut Cx, t: &Table, pool: &Pool) {
    let (Some(load), Some(load_v)) = (pool.expected_load, t.get("expected_load")) else {
        return;
    };
    let at = load_v.span().start;
    let path = t.key_path("expected_load");
    let serving: Vec<(usize, &Backend)> = pool
        .backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .collect();
    if serving.iter().all(|(_, b)| b.capacity.is_none()) {
        cx.warn(
            at,
            &path,
            format!("capacity: no backend of pool `{}` has a `capacity`, so its expected load cannot be checked; give each backend one, e.g. capacity = \"500 {}\"", pool.name, load.unit.name()),
        );
        return;
    }
    let spans = backend_spans(t);
    for (i, b) in &serving {
        if b.capacity.is_none() {
            let bat = spans.get(*i).map_or(t.at, |(s, _)| *s);
            cx.warn(
                bat,
                &format!("{}.backends[{i}]", t.path),
                format!(
                    "capacity: backend {} has no `capacity`, so the N+1 check of pool `{}` counts it as 0 {}",
                    b.address,
                    pool.name,
                    load.unit.name()
                ),
            );
        }
    }
    let members: Vec<Member> = serving
        .iter()
        .map(|(_, b)| Member {
            capacity: b.capacity.map_or(0.0, |c| c.per_second),
            backup: b.backup,
        })
        .collect();
    let unit = load.unit.name();
    let r = n_plus_one(&members, load.per_second);
    if r.capacity < load.per_second {
        cx.warn(
            at,
            &path,
            format!(
                "capacity: pool `{}` cannot carry its expected load even with every backend up: {load} expected, {} {unit} in all",
                pool.name,
                number(r.capacity)
            ),
        );
    } else if !r.survives {
        let lost = r
            .largest
            .and_then(|i| serving.get(i))
            .map(|(_, b)| {
                let cap = b.capacity.map_or(0.0, |c| c.per_second);
                format!(" ({}, {} {unit})", b.address, number(cap))
            })
            .unwrap_or_default();
        cx.warn(
            at,
            &path,
            format!(
                "capacity: pool `{}` does not survive losing its largest backend{lost}: {load} expected, {} {unit} left of {} {unit}; N+1 needs {} {unit} more",
                pool.name,
                number(r.without_largest),
                number(r.capacity),
                number(load.per_second - r.without_largest)
            ),
        );
    }
}

/// A service counts requests (http) or connections (tcp, udp) on its pool's backends; a pool
/// whose capacities are in the other unit would be compared with the wrong counter.
pub(super) fn service_unit_warning(cx: &mut Cx, t: &Table, mode: Mode, pool: &Pool) {
    let Some(unit) = pool
        .backends
        .iter()
        .find_map(|b| b.capacity)
        .or(pool.expected_load)
        .map(|r| r.unit)
    else {
        return;
    };
    let (counted, what) = match mode {
        Mode::Http => (LoadUnit::RequestsPerSecond, "requests"),
        Mode::Tcp => (LoadUnit::ConnectionsPerSecond, "connections"),
        Mode::Udp => (LoadUnit::ConnectionsPerSecond, "flows"),
    };
    if unit != counted {
        let at = t.get("pool").map_or(t.at, |v| v.span().start);
        cx.warn(
            at,
            &t.key_path("pool"),
            format!(
                "capacity: pool `{}` states its capacity in {}, but this {} service sends it {what}, counted in {}; write the pool's rates in {}",
                pool.name,
                unit.name(),
                mode.name(),
                counted.name(),
                counted.name()
            ),
        );
    }
}
