//! Header rules of an HTTP intermediary (RFC 9110 §7.6): hop-by-hop headers stop here, and the
//! client's address and protocol are passed on in `X-Forwarded-*`, `Forwarded` and `Via`.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the
/// obsolete ones that old clients still send.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Remove hop-by-hop headers, including any header the `Connection` header names. (Used for
/// HTTP/2 clients, which cannot upgrade, so `Upgrade` always goes.)
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The token we add to `Via` for a message received with `version`.
fn via_token(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "1.0 tandem",
        Version::HTTP_2 => "2 tandem",
        Version::HTTP_3 => "3 tandem",
        _ => "1.1 tandem",
    }
}

/// Append our hop to `Via` (RFC 9110 §7.6.3).
pub fn append_via(headers: &mut HeaderMap, received: Version) {
    append_list(headers, header::VIA, via_token(received));
}

/// Append `value` to a comma-separated list header, folding existing lines into one so a
/// backend that reads only the first line still sees every hop.
fn append_list(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut joined = String::new();
    for v in headers.get_all(&name).iter() {
        if let Ok(s) = v.to_str() {
            joined.push_str(s);
            joined.push_str(", ");
        }
    }
    joined.push_str(value);
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// Tell the backend who the client is: `X-Forwarded-For` (appended), `X-Forwarded-Proto`
/// (set: the scheme the client used to reach *us* is ours to know, a client-sent value is not
/// trustworthy), `Forwarded` (appended, RFC 7239) and `Via`.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: SocketAddr,
    proto: &'static str,
    host: Option<&HeaderValue>,
    received: Version,
) {
    let ip = client.ip();
    let ip_text = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.to_string(),
    };
    append_list(
        headers,
        HeaderName::from_static("x-forwarded-for"),
        &ip_text,
    );
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    let mut fwd = match ip {
        IpAddr::V4(_) => format!("for={ip_text};proto={proto}"),
        IpAddr::V6(_) => format!("for=\"[{ip_text}]\";proto={proto}"),
    };
    if let Some(h) = host.and_then(|h| h.to_str().ok()) {
        if h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            fwd.push_str(";host=\"");
            fwd.push_str(h);
            fwd.push('"');
        }
    }
    append_list(headers, header::FORWARDED, &fwd);
    append_via(headers, received);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn forwarding_appends_to_existing_hops() {
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.7"),
            ("via", "1.1 edge"),
        ]);
        let host = HeaderValue::from_static("www.example.com");
        add_forwarding(
            &mut h,
            "192.0.2.1:5000".parse().expect("addr"),
            "http",
            Some(&host),
            Version::HTTP_11,
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.7, for=192.0.2.1;proto=http;host=\"www.example.com\""
        );
        assert_eq!(h["via"], "1.1 edge, 1.1 tandem");
    }

    #[test]
    fn forwarding_quotes_ipv6_and_marks_h2() {
        let mut h = HeaderMap::new();
        add_forwarding(
            &mut h,
            "[2001:db8::1]:443".parse().expect("addr"),
            "http",
            None,
            Version::HTTP_2,
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http");
        assert_eq!(h["via"], "2 tandem");
    }
}
