//! The dashboard: one HTML page, its stylesheet and its script, compiled into the binary.
//!
//! No external assets, ever (no CDN, no web font, no framework): the admin listener is often
//! on a management network without internet access, a dashboard that needs a third-party host
//! to render is down exactly when the operator needs it, and a strict Content-Security-Policy
//! (`default-src 'none'`, everything else `'self'`) then blocks whole classes of injection.
//! The page reads `/api/v1/overview` every second and `/api/v1/events/stream` (SSE) for
//! changes; see `src/dashboard/app.js`.

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("dashboard/index.html"),
};
const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("dashboard/style.css"),
};
const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("dashboard/app.js"),
};

/// The asset served at `path`, if any.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/dashboard.css" => Some(STYLE),
        "/dashboard.js" => Some(SCRIPT),
        _ => None,
    }
}

/// Sent with every asset. Scripts, styles, fetches and images from this origin only; no
/// inline script or style, no frames, no plugins, no form posts, no `<base>` tricks.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

#[cfg(test)]
mod tests {
    use super::*;

    /// The no-external-assets rule, checked: no absolute URL to another host in any asset
    /// (the SVG namespace is an identifier, not a fetch).
    #[test]
    fn assets_reference_nothing_outside() {
        for path in ["/", "/dashboard.css", "/dashboard.js"] {
            let a = asset(path).expect("asset");
            for (i, _) in a.body.match_indices("//") {
                let before = &a.body[..i];
                let is_url = before.ends_with("http:") || before.ends_with("https:");
                if is_url {
                    let rest = &a.body[i + 2..];
                    assert!(
                        rest.starts_with("www.w3.org/2000/svg"),
                        "{path} references an external URL: {}",
                        &a.body[i.saturating_sub(8)..(i + 40).min(a.body.len())]
                    );
                }
            }
            assert!(!a.body.contains("<script>"), "{path}: inline script");
            assert!(!a.body.contains(" style=\""), "{path}: inline style");
            assert!(!a.body.contains("onclick="), "{path}: inline handler");
        }
        assert!(asset("/nope").is_none());
    }
}
