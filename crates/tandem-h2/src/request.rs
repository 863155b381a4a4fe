//! From decoded header fields to a request head, with RFC 9113 §8's rules for what makes a
//! request malformed (a stream error: the stream is reset, the connection lives on).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::Method;

use crate::hpack::{Field, Name, Pseudo};

/// Why a request is malformed (RFC 9113 §8.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed request: {0}")]
pub struct Malformed(pub &'static str);

#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The declared `content-length`, which the DATA frames must add up to (§8.1.1).
    pub content_length: Option<u64>,
}

/// Collects a request's fields as the decoder hands them over; the first violation wins.
#[derive(Debug, Default)]
pub struct RequestBuilder {
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    headers: HeaderMap,
    /// `cookie` crumbs joined with "; " (§8.2.3): HTTP/1.1 backends expect one field.
    cookie: Option<BytesMut>,
    content_length: Option<u64>,
    regular_seen: bool,
    error: Option<Malformed>,
}

impl RequestBuilder {
    pub fn new() -> RequestBuilder {
        RequestBuilder::default()
    }

    pub fn field(&mut self, f: Field) {
        if self.error.is_none() {
            if let Err(e) = self.take(f) {
                self.error = Some(e);
            }
        }
    }

    fn take(&mut self, f: Field) -> Result<(), Malformed> {
        match f.name {
            Name::Pseudo(p) => {
                if self.regular_seen {
                    return Err(Malformed("pseudo-header after a regular field"));
                }
                let slot = match p {
                    Pseudo::Method => &mut self.method,
                    Pseudo::Scheme => &mut self.scheme,
                    Pseudo::Authority => &mut self.authority,
                    Pseudo::Path => &mut self.path,
                    Pseudo::Status => return Err(Malformed(":status in a request")),
                    // Extended CONNECT (RFC 8441) is not offered.
                    Pseudo::Protocol => {
                        return Err(Malformed(":protocol without extended CONNECT"))
                    }
                };
                if slot.replace(f.value).is_some() {
                    return Err(Malformed("pseudo-header repeated"));
                }
                Ok(())
            }
            Name::Invalid(_) => Err(Malformed("field name not valid in HTTP/2")),
            Name::Header(name) => {
                self.regular_seen = true;
                check_value(&f.value)?;
                match name {
                    // Connection-specific fields (§8.2.2).
                    header::CONNECTION | header::TRANSFER_ENCODING | header::UPGRADE => {
                        return Err(Malformed("connection-specific field"))
                    }
                    header::TE if &f.value[..] != b"trailers" => {
                        return Err(Malformed("te other than trailers"))
                    }
                    header::CONTENT_LENGTH => {
                        let n =
                            parse_length(&f.value).ok_or(Malformed("invalid content-length"))?;
                        if self.content_length.replace(n).is_some_and(|old| old != n) {
                            return Err(Malformed("conflicting content-length"));
                        }
                    }
                    header::COOKIE => {
                        match &mut self.cookie {
                            None => self.cookie = Some(BytesMut::from(&f.value[..])),
                            Some(c) => {
                                c.put_slice(b"; ");
                                c.put_slice(&f.value);
                            }
                        }
                        return Ok(());
                    }
                    _ => {}
                }
                if matches!(name.as_str(), "keep-alive" | "proxy-connection") {
                    return Err(Malformed("connection-specific field"));
                }
                let mut value = HeaderValue::from_maybe_shared(f.value)
                    .map_err(|_| Malformed("invalid field value"))?;
                value.set_sensitive(f.sensitive);
                self.headers.append(name, value);
                Ok(())
            }
        }
    }

    pub fn finish(mut self) -> Result<RequestHead, Malformed> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let method = self.method.ok_or(Malformed("no :method"))?;
        let method = Method::from_bytes(&method).map_err(|_| Malformed("invalid :method"))?;
        let authority = match self.authority {
            Some(a) => {
                Some(Authority::from_maybe_shared(a).map_err(|_| Malformed("invalid :authority"))?)
            }
            None => None,
        };
        let mut parts = http::uri::Parts::default();
        if method == Method::CONNECT {
            // Plain CONNECT: :authority only (§8.5).
            if self.scheme.is_some() || self.path.is_some() {
                return Err(Malformed("CONNECT with :scheme or :path"));
            }
            parts.authority = Some(authority.ok_or(Malformed("CONNECT without :authority"))?);
        } else {
            let scheme = self.scheme.ok_or(Malformed("no :scheme"))?;
            let path = self.path.ok_or(Malformed("no :path"))?;
            if path.is_empty() {
                return Err(Malformed("empty :path"));
            }
            if path[0] != b'/' && !(&path[..] == b"*" && method == Method::OPTIONS) {
                return Err(Malformed(":path neither absolute nor * for OPTIONS"));
            }
            parts.path_and_query = Some(
                PathAndQuery::from_maybe_shared(path).map_err(|_| Malformed("invalid :path"))?,
            );
            // Without :authority the target is origin-form; the Host field names the origin.
            if let Some(authority) = authority {
                parts.scheme = Some(match &scheme[..] {
                    b"https" => Scheme::HTTPS,
                    b"http" => Scheme::HTTP,
                    other => Scheme::try_from(other).map_err(|_| Malformed("invalid :scheme"))?,
                });
                parts.authority = Some(authority);
            }
        }
        let uri = Uri::from_parts(parts).map_err(|_| Malformed("invalid request target"))?;
        if let Some(c) = self.cookie {
            let value = HeaderValue::from_maybe_shared(c.freeze())
                .map_err(|_| Malformed("invalid cookie"))?;
            self.headers.append(header::COOKIE, value);
        }
        Ok(RequestHead {
            method,
            uri,
            headers: self.headers,
            content_length: self.content_length,
        })
    }
}

/// RFC 9113 §8.2.1: no NUL, CR or LF, and no whitespace at either end.
fn check_value(v: &[u8]) -> Result<(), Malformed> {
    if v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(Malformed("NUL, CR or LF in a field value"));
    }
    if matches!(v.first(), Some(b' ' | b'\t')) || matches!(v.last(), Some(b' ' | b'\t')) {
        return Err(Malformed("whitespace at the edge of a field value"));
    }
    Ok(())
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> Field {
        Field {
            name: Name::parse(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            sensitive: false,
        }
    }

    fn build(fields: &[(&str, &str)]) -> Result<RequestHead, Malformed> {
        let mut b = RequestBuilder::new();
        for (n, v) in fields {
            b.field(field(n, v));
        }
        b.finish()
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/a?b=1"),
    ];

    #[test]
    fn a_normal_request() {
        let mut f = GET.to_vec();
        f.extend([
            ("accept", "*/*"),
            ("cookie", "a=1"),
            ("x-y", "z"),
            ("cookie", "b=2"),
            ("content-length", "5"),
            ("te", "trailers"),
        ]);
        let r = build(&f).unwrap();
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.uri, "https://example.com/a?b=1");
        assert_eq!(r.headers["cookie"], "a=1; b=2");
        assert_eq!(r.headers.get_all("cookie").iter().count(), 1);
        assert_eq!(r.headers["x-y"], "z");
        assert_eq!(r.content_length, Some(5));
    }

    #[test]
    fn origin_form_without_authority_and_options_star() {
        let r = build(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/x"),
            ("host", "h"),
        ])
        .unwrap();
        assert_eq!(r.uri, "/x");
        let r = build(&[
            (":method", "OPTIONS"),
            (":scheme", "http"),
            (":authority", "h"),
            (":path", "*"),
        ])
        .unwrap();
        assert_eq!(r.uri.path(), "*");
        let r = build(&[(":method", "CONNECT"), (":authority", "h:443")]).unwrap();
        assert_eq!(r.uri.authority().map(|a| a.as_str()), Some("h:443"));
    }

    #[test]
    fn malformed_requests() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut f = GET.to_vec();
            f.extend_from_slice(extra);
            build(&f).err()
        };
        assert!(with(&[]).is_none());
        for (extra, why) in [
            (&[("connection", "close")][..], "connection-specific field"),
            (&[("keep-alive", "5")][..], "connection-specific field"),
            (
                &[("proxy-connection", "close")][..],
                "connection-specific field",
            ),
            (
                &[("transfer-encoding", "chunked")][..],
                "connection-specific field",
            ),
            (&[("upgrade", "h2c")][..], "connection-specific field"),
            (&[("te", "gzip")][..], "te other than trailers"),
            (&[("Accept", "x")][..], "field name not valid in HTTP/2"),
            (&[(":bogus", "x")][..], "field name not valid in HTTP/2"),
            (
                &[("a", "x"), (":method", "GET")][..],
                "pseudo-header after a regular field",
            ),
            (&[(":path", "/again")][..], "pseudo-header repeated"),
            (&[(":status", "200")][..], ":status in a request"),
            (&[("x", "a\r\nb")][..], "NUL, CR or LF in a field value"),
            (
                &[("x", " a")][..],
                "whitespace at the edge of a field value",
            ),
            (
                &[("x", "a\t")][..],
                "whitespace at the edge of a field value",
            ),
            (&[("x", "a\x01b")][..], "invalid field value"),
            (&[("content-length", "1x")][..], "invalid content-length"),
            (
                &[("content-length", "1"), ("content-length", "2")][..],
                "conflicting content-length",
            ),
        ] {
            assert_eq!(with(extra), Some(Malformed(why)), "{extra:?}");
        }
        assert_eq!(
            build(&[(":scheme", "http"), (":path", "/")]).err(),
            Some(Malformed("no :method"))
        );
        assert_eq!(
            build(&[(":method", "GET"), (":path", "/")]).err(),
            Some(Malformed("no :scheme"))
        );
        assert_eq!(
            build(&[(":method", "GET"), (":scheme", "http")]).err(),
            Some(Malformed("no :path"))
        );
        assert_eq!(
            build(&[(":method", "GET"), (":scheme", "http"), (":path", "")]).err(),
            Some(Malformed("empty :path"))
        );
        assert_eq!(
            build(&[(":method", "GET"), (":scheme", "http"), (":path", "x")]).err(),
            Some(Malformed(":path neither absolute nor * for OPTIONS"))
        );
        assert_eq!(
            build(&[
                (":method", "CONNECT"),
                (":authority", "h:1"),
                (":path", "/")
            ])
            .err(),
            Some(Malformed("CONNECT with :scheme or :path"))
        );
    }

    #[test]
    fn sensitive_fields_stay_sensitive() {
        let mut b = RequestBuilder::new();
        for (n, v) in GET {
            b.field(field(n, v));
        }
        let mut f = field("authorization", "secret");
        f.sensitive = true;
        b.field(f);
        assert!(b.finish().unwrap().headers["authorization"].is_sensitive());
    }
}
