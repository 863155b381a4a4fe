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
///
/// Runs twice per proxied request (request and response): a `Connection` header that names
/// only headers removed anyway (`keep-alive`, what backends send) is handled without
/// allocating; only other names are collected.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let mut named: Vec<HeaderName> = Vec::new();
        for token in headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
        {
            let removed_anyway = HOP_BY_HOP
                .iter()
                .any(|h| token.eq_ignore_ascii_case(h.as_str()));
            if !removed_anyway {
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
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
    let token = via_token(received);
    if !headers.contains_key(header::VIA) {
        // The common case (no proxy before us): a static value, no allocation.
        headers.insert(header::VIA, HeaderValue::from_static(token));
        return;
    }
    append_list(headers, header::VIA, token.as_bytes());
}

/// Append `value` to a comma-separated list header, folding existing lines into one so a
/// backend that reads only the first line still sees every hop. The new value is built in one
/// buffer of the right size and handed to the header without another copy (this runs for
/// several headers on every request).
fn append_list(headers: &mut HeaderMap, name: HeaderName, value: &[u8]) {
    let existing = || headers.get_all(&name).iter().filter(|v| v.to_str().is_ok());
    let len = existing().map(|v| v.len() + 2).sum::<usize>() + value.len();
    let mut joined = Vec::with_capacity(len);
    for v in existing() {
        joined.extend_from_slice(v.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value);
    if let Some(v) = header_value(joined) {
        headers.insert(name, v);
    }
}

/// A header value from bytes we assembled, without copying them again (`from_str` would copy
/// into a new buffer). The same check as `from_str`: `None` for bytes no header may carry.
fn header_value(bytes: Vec<u8>) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes)).ok()
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
    use std::io::Write as _;
    let ip = client.ip();
    // The address as text, on the stack (no allocation; 45 bytes is the longest IPv6 form).
    let mut ip_buf = [0u8; 64];
    let ip_len = {
        let mut w: &mut [u8] = &mut ip_buf[..];
        let _ = write!(w, "{ip}");
        64 - w.len()
    };
    let ip_text = &ip_buf[..ip_len];
    append_list(headers, HeaderName::from_static("x-forwarded-for"), ip_text);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    let host = host.map(HeaderValue::as_bytes).filter(|h| {
        h.iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    });
    let mut fwd = Vec::with_capacity(ip_len + proto.len() + host.map_or(0, |h| h.len()) + 24);
    match ip {
        IpAddr::V4(_) => {
            fwd.extend_from_slice(b"for=");
            fwd.extend_from_slice(ip_text);
        }
        IpAddr::V6(_) => {
            fwd.extend_from_slice(b"for=\"[");
            fwd.extend_from_slice(ip_text);
            fwd.extend_from_slice(b"]\"");
        }
    }
    fwd.extend_from_slice(b";proto=");
    fwd.extend_from_slice(proto.as_bytes());
    if let Some(h) = host {
        fwd.extend_from_slice(b";host=\"");
        fwd.extend_from_slice(h);
        fwd.push(b'"');
    }
    if headers.contains_key(header::FORWARDED) {
        append_list(headers, header::FORWARDED, &fwd);
    } else if let Some(v) = header_value(fwd) {
        headers.insert(header::FORWARDED, v);
    }
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
