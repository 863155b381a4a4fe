//! Numbers for people: counts with k/M/G, bytes with KiB/MiB/GiB, rates with a sensible
//! number of decimals. Short enough that a table of them stays narrow, and never more than
//! three significant digits after the first suffix so columns line up by eye.

/// `999`, `99999`, `123.5k`, `1.2M`, `3.4G`: exact below 100000, where a count still reads at
/// a glance.
pub fn count(n: u64) -> String {
    if n < 100_000 {
        return n.to_string();
    }
    scaled(n as f64, 1000.0, &["", "k", "M", "G", "T", "P"])
}

/// A rate per second: `0.50`, `12.5`, `1234`, `12.3k`.
pub fn rate(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "-".to_string();
    }
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else if v < 100_000.0 {
        format!("{v:.0}")
    } else {
        scaled(v, 1000.0, &["", "k", "M", "G", "T", "P"])
    }
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
    bytes_f(n as f64)
}

/// [`bytes`] for a rate (bytes per second), which is fractional.
pub fn bytes_f(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "-".to_string();
    }
    if v < 1024.0 {
        return format!("{v:.0} B");
    }
    scaled(v, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// `v` divided by `base` until below it, with one decimal and the unit of that step. Units
/// that are words (`KiB`) get a space before them, letters (`k`) none.
fn scaled(v: f64, base: f64, units: &[&str]) -> String {
    let mut v = v;
    let mut i = 0;
    // Round first, so 999_950 shows as 1.0M and not 1000.0k.
    while i + 1 < units.len() && (v * 10.0).round() / 10.0 >= base {
        v /= base;
        i += 1;
    }
    let unit = units.get(i).copied().unwrap_or("");
    if unit.len() > 1 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

/// `n` characters wide, text to the left.
pub fn left(s: &str, n: usize) -> String {
    format!("{s}{}", " ".repeat(n.saturating_sub(width(s))))
}

/// `n` characters wide, text to the right.
pub fn right(s: &str, n: usize) -> String {
    format!("{}{s}", " ".repeat(n.saturating_sub(width(s))))
}

/// Display width: characters, since everything shown is ASCII or single-width.
pub fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(0), "0");
        assert_eq!(count(99_999), "99999");
        assert_eq!(count(123_456), "123.5k");
        assert_eq!(count(999_960), "1.0M");
        assert_eq!(count(1_250_000), "1.2M");
        assert_eq!(count(7_300_000_000), "7.3G");
    }

    #[test]
    fn rates() {
        assert_eq!(rate(0.0), "0.00");
        assert_eq!(rate(0.5), "0.50");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(1234.4), "1234");
        assert_eq!(rate(123_456.0), "123.5k");
        assert_eq!(rate(f64::NAN), "-");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 * 1024 * 1024), "12.0 MiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes_f(512.4), "512 B");
    }

    #[test]
    fn padding() {
        assert_eq!(left("up", 5), "up   ");
        assert_eq!(right("12", 5), "   12");
        assert_eq!(right("123456", 3), "123456", "never truncated");
    }
}
