//! Socket addresses written as strings: `"127.0.0.1:8080"`, `"[::1]:8080"`.
//!
//! tandem never resolves host names: a load balancer whose backend set silently changes when
//! DNS does is hard to reason about, and a resolver failure at startup must not be able to
//! take the service down. So only literal IP addresses are accepted, and the error messages
//! say exactly what to write instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const FORMS: &str = "write ip:port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"";

/// Parse `ip:port` (IPv6 in brackets). Port 0 is accepted here; callers that need a real port
/// (backends) reject it themselves, while listeners may use 0 for "any free port" in tests.
///
/// The error text is a complete sentence meant for the user.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if s.trim().is_empty() {
        return Err(format!("empty address; {FORMS}"));
    }
    if s.trim() != s {
        return Err(format!(
            "address \"{s}\" has leading or trailing spaces; {FORMS}"
        ));
    }
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            return Err(format!(
                "address \"{s}\" has no port; write \"{ip}:PORT\", e.g. \"{ip}:8080\""
            ));
        }
        Ok(IpAddr::V6(ip)) => {
            return Err(format!(
                "address \"{s}\" has no port (IPv6 addresses need brackets); write \"[{ip}]:PORT\", e.g. \"[{ip}]:8080\""
            ));
        }
        Err(_) => {}
    }
    if let Some(inner) = s.strip_prefix('[') {
        let Some((host, rest)) = inner.split_once(']') else {
            return Err(format!(
                "address \"{s}\" is missing the closing `]`; {FORMS}"
            ));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            if host.parse::<Ipv4Addr>().is_ok() {
                return Err(format!(
                    "address \"{s}\": brackets are only for IPv6; write \"{host}{rest}\""
                ));
            }
            return Err(format!(
                "\"{host}\" in \"{s}\" is not a valid IPv6 address; {FORMS}"
            ));
        }
        return match rest.strip_prefix(':') {
            None | Some("") => Err(format!(
                "address \"{s}\" has no port; write \"[{host}]:PORT\", e.g. \"[{host}]:8080\""
            )),
            Some(port) => Err(port_problem(s, port)
                .unwrap_or_else(|| format!("invalid address \"{s}\"; {FORMS}"))),
        };
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(if looks_like_hostname(s) {
            hostname_error(s, s, "PORT")
        } else {
            format!("invalid address \"{s}\"; {FORMS}")
        });
    };
    if host.parse::<Ipv4Addr>().is_ok() {
        if let Some(why) = port_problem(s, port) {
            return Err(why);
        }
    }
    if looks_like_hostname(host) {
        let port_hint = if port.parse::<u16>().is_ok() {
            port
        } else {
            "PORT"
        };
        return Err(hostname_error(s, host, port_hint));
    }
    Err(format!("invalid address \"{s}\"; {FORMS}"))
}

fn port_problem(s: &str, port: &str) -> Option<String> {
    if port.is_empty() {
        return Some(format!("address \"{s}\" has no port after `:`; {FORMS}"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "invalid port \"{port}\" in \"{s}\"; the port must be a number from 1 to 65535"
        ));
    }
    match port.parse::<u32>() {
        Ok(p) if p <= 65535 => None,
        _ => Some(format!(
            "port {port} in \"{s}\" is out of range; the port must be from 1 to 65535"
        )),
    }
}

fn looks_like_hostname(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && host.bytes().any(|b| b.is_ascii_alphabetic())
}

fn hostname_error(s: &str, host: &str, port: &str) -> String {
    let hint = if host.eq_ignore_ascii_case("localhost") {
        format!("write \"127.0.0.1:{port}\" or \"[::1]:{port}\"")
    } else {
        "write its IP address instead".to_string()
    };
    format!("\"{s}\": host names are not supported (tandem does not resolve names); {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid() {
        let cases = [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:80", "0.0.0.0:80"),
            ("[::1]:8080", "[::1]:8080"),
            ("[::]:443", "[::]:443"),
            ("[2001:db8::10]:65535", "[2001:db8::10]:65535"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ];
        for (s, want) in cases {
            assert_eq!(
                parse_socket_addr(s).map(|a| a.to_string()).as_deref(),
                Ok(want),
                "{s}"
            );
        }
    }

    #[test]
    fn invalid() {
        let cases = [
            ("", "empty address"),
            (" 127.0.0.1:80", "leading or trailing spaces"),
            ("127.0.0.1", "address \"127.0.0.1\" has no port; write \"127.0.0.1:PORT\""),
            ("::1", "has no port (IPv6 addresses need brackets); write \"[::1]:PORT\""),
            ("::1:8080", "has no port (IPv6 addresses need brackets); write \"[::1:8080]:PORT\""),
            ("[::1]", "address \"[::1]\" has no port; write \"[::1]:PORT\""),
            ("[::1]:", "address \"[::1]:\" has no port"),
            ("[::1]:99999", "port 99999 in \"[::1]:99999\" is out of range"),
            ("[::1", "missing the closing `]`"),
            ("[1.2.3.4]:80", "brackets are only for IPv6; write \"1.2.3.4:80\""),
            ("[zz::1]:80", "\"zz::1\" in \"[zz::1]:80\" is not a valid IPv6 address"),
            ("127.0.0.1:70000", "port 70000 in \"127.0.0.1:70000\" is out of range"),
            ("127.0.0.1:http", "invalid port \"http\""),
            ("127.0.0.1:", "has no port after `:`"),
            ("localhost:8080", "host names are not supported (tandem does not resolve names); write \"127.0.0.1:8080\" or \"[::1]:8080\""),
            ("db.example.com:5432", "host names are not supported (tandem does not resolve names); write its IP address instead"),
            ("example.com", "host names are not supported"),
            ("1.2.3:80", "invalid address \"1.2.3:80\""),
            ("%%%", "invalid address \"%%%\""),
        ];
        for (s, want) in cases {
            let err = parse_socket_addr(s).expect_err(s);
            assert!(err.contains(want), "{s}: {err}");
        }
    }
}
