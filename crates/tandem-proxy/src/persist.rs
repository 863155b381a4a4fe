//! Finding and placing persistence tokens in HTTP heads (pure byte functions, shared by the
//! HTTP/1 head rewriter).
//!
//! - `Cookie: a=1; TANDEMSRV=<token>; b=2` (insert mode) or `Cookie: JSESSIONID=<token>~<app
//!   value>` (prefix mode: the prefix is stripped before the backend sees the cookie);
//! - `?<name>=<token>` in the request target (url_param);
//! - a header's value, hashed (header);
//! - on the way out, `Set-Cookie` lines: is the application setting the cookie itself
//!   (insert mode never overwrites it), and prefixing its session cookie (prefix mode).

use tandem_balance::token::TOKEN_LEN;

/// What to look for in a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spec<'a> {
    Cookie { name: &'a str, prefix: bool },
    UrlParam { name: &'a str },
    Header { name: &'a str },
}

/// A token as presented: exactly [`TOKEN_LEN`] bytes, or a marker that never verifies (so a
/// malformed one is still counted as invalid).
pub(crate) type Token = [u8; TOKEN_LEN];

pub(crate) fn token_of(value: &[u8]) -> Token {
    let mut t = [0u8; TOKEN_LEN];
    if value.len() == TOKEN_LEN {
        t.copy_from_slice(value);
    }
    t
}

/// The value of cookie `name` in one `Cookie` header value (`a=1; b=2`), if present.
pub(crate) fn cookie_value<'v>(header: &'v [u8], name: &str) -> Option<&'v [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name.as_bytes()).then(|| trim(&pair[eq + 1..]))
    })
}

/// Prefix mode: in `header` (a `Cookie` value), find cookie `name` whose value is
/// `<token>~<rest>`, write the header with the value replaced by `<rest>` into `out`, and
/// return the token part. `None` (and `out` untouched) when the cookie is absent or has no
/// prefix.
pub(crate) fn strip_cookie_prefix<'v>(
    header: &'v [u8],
    name: &str,
    out: &mut Vec<u8>,
) -> Option<&'v [u8]> {
    let value = cookie_value(header, name)?;
    let tilde = value.iter().position(|&b| b == b'~')?;
    let token = &value[..tilde];
    // Rebuild: everything before the value, the rest of the value, everything after.
    let start = value.as_ptr() as usize - header.as_ptr() as usize;
    out.extend_from_slice(&header[..start]);
    out.extend_from_slice(&value[tilde + 1..]);
    out.extend_from_slice(&header[start + value.len()..]);
    Some(token)
}

/// The value of query parameter `name` in a request target (`/p?a=1&name=v`), if present.
pub(crate) fn query_param<'t>(target: &'t [u8], name: &str) -> Option<&'t [u8]> {
    let q = target.iter().position(|&b| b == b'?')?;
    let query = &target[q + 1..];
    let query = match query.iter().position(|&b| b == b'#') {
        Some(h) => &query[..h],
        None => query,
    };
    query.split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
    })
}

/// Whether a `Set-Cookie` value sets cookie `name`.
pub(crate) fn sets_cookie(value: &[u8], name: &str) -> bool {
    let v = trim(value);
    v.len() > name.len() && v.starts_with(name.as_bytes()) && v[name.len()] == b'='
}

/// Prefix mode on the way out: `Set-Cookie: NAME=value; ...` becomes `NAME=<token>~value;
/// ...`. Returns the new value, or `None` if this line does not set `name` (or already
/// carries the prefix).
pub(crate) fn prefix_set_cookie(value: &[u8], name: &str, token: &str) -> Option<Vec<u8>> {
    let v = trim(value);
    if !sets_cookie(v, name) {
        return None;
    }
    let rest = &v[name.len() + 1..];
    if rest.starts_with(token.as_bytes()) && rest.get(token.len()) == Some(&b'~') {
        return None;
    }
    let mut out = Vec::with_capacity(v.len() + token.len() + 1);
    out.extend_from_slice(&v[..=name.len()]);
    out.extend_from_slice(token.as_bytes());
    out.push(b'~');
    out.extend_from_slice(rest);
    Some(out)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies() {
        assert_eq!(cookie_value(b"a=1; SRV=tok; b=2", "SRV"), Some(&b"tok"[..]));
        assert_eq!(cookie_value(b"SRV=tok", "SRV"), Some(&b"tok"[..]));
        assert_eq!(cookie_value(b"XSRV=tok; SRVX=1", "SRV"), None);
        assert_eq!(
            cookie_value(b"a=1;SRV = tok ;b", "SRV"),
            None,
            "no space before ="
        );
        assert_eq!(cookie_value(b"", "SRV"), None);
        let mut out = Vec::new();
        assert_eq!(
            strip_cookie_prefix(b"a=1; JSESSIONID=tok~abc; b=2", "JSESSIONID", &mut out),
            Some(&b"tok"[..])
        );
        assert_eq!(out, b"a=1; JSESSIONID=abc; b=2");
        let mut out = Vec::new();
        assert_eq!(
            strip_cookie_prefix(b"JSESSIONID=abc", "JSESSIONID", &mut out),
            None
        );
        assert!(out.is_empty());
    }

    #[test]
    fn query() {
        assert_eq!(query_param(b"/p?a=1&srv=tok&b=2", "srv"), Some(&b"tok"[..]));
        assert_eq!(query_param(b"/p?srv=tok#frag", "srv"), Some(&b"tok"[..]));
        assert_eq!(query_param(b"/p?xsrv=tok", "srv"), None);
        assert_eq!(query_param(b"/p", "srv"), None);
        assert_eq!(query_param(b"/p?srv", "srv"), None);
    }

    #[test]
    fn set_cookie_lines() {
        assert!(sets_cookie(b"SRV=x; Path=/", "SRV"));
        assert!(!sets_cookie(b"SRVX=x", "SRV"));
        assert!(!sets_cookie(b"SRV", "SRV"));
        assert_eq!(
            prefix_set_cookie(b"JSESSIONID=abc; Path=/; HttpOnly", "JSESSIONID", "tok").as_deref(),
            Some(&b"JSESSIONID=tok~abc; Path=/; HttpOnly"[..])
        );
        assert_eq!(
            prefix_set_cookie(b"JSESSIONID=tok~abc", "JSESSIONID", "tok"),
            None
        );
        assert_eq!(prefix_set_cookie(b"OTHER=abc", "JSESSIONID", "tok"), None);
    }
}
