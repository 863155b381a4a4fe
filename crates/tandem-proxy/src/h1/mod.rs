//! tandem's own HTTP/1.1 proxy engine.
//!
//! One task per client connection owns both sockets: it reads a request head, writes the
//! rewritten head to a pooled backend connection, relays the body, reads the response head and
//! relays the response — no header maps, no channels between tasks, and in the common case
//! exactly one read and one write per direction. HTTP/2 from clients is handed to hyper. Clients
//! come over TCP or, decrypted, over TLS (see [`io::Client`]); backends are plain TCP.
//! Why not hyper for HTTP/1 too: see the README's architecture section (it cost ~50% more CPU
//! per request than HAProxy on the benchmark).

pub(crate) mod chunked;
mod conn;
mod copy;
pub(crate) mod head;
mod io;
pub(crate) mod pool;

pub(crate) use conn::H1Service;

#[doc(hidden)]
pub mod fuzzing {
    //! Thin wrappers so `fuzz/` can drive the parsers without making them public API.

    /// Parse and rewrite a request head, then a response head for it; never panics.
    pub fn request_then_response(request: &[u8], response: &[u8]) {
        let peer = super::head::Peer::new(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
        let mut out = Vec::new();
        let mut local = || Some(std::net::SocketAddr::from(([198, 51, 100, 1], 80)));
        if let Ok(Some(info)) = super::head::rewrite_request(request, &peer, &mut local, &mut out) {
            assert!(info.head_len <= request.len());
            // What we send must itself be a complete, valid request head.
            let mut again = Vec::new();
            let reparsed = super::head::rewrite_request(&out, &peer, &mut local, &mut again);
            // Our own strict rules accept it (only the header count may exceed what we take from
            // a client, since we add lines) ...
            assert!(
                matches!(
                    reparsed,
                    Ok(Some(_)) | Err(super::head::HeadError::TooLarge)
                ),
                "rewritten head does not parse: {reparsed:?}"
            );
            // ... and any backend's parser, with the limit we apply to responses, does too.
            let mut headers = [httparse::EMPTY_HEADER; super::head::MAX_HEADERS];
            let parsed = httparse::Request::new(&mut headers).parse(&out);
            assert!(
                matches!(parsed, Ok(httparse::Status::Complete(n)) if n == out.len()),
                "rewritten head does not parse: {parsed:?}"
            );
            let mut resp = Vec::new();
            if let Ok(Some((r, _))) =
                super::head::rewrite_response(response, &info, info.keep_alive, &mut resp)
            {
                assert!(r.head_len <= response.len());
            }
        }
    }

    /// Scan a chunked body in pieces; the split must not change the outcome.
    pub fn chunked(data: &[u8], split: usize) {
        let whole = scan_all(data, data.len().max(1));
        let pieces = scan_all(data, split.max(1));
        assert_eq!(whole, pieces);
    }

    fn scan_all(
        data: &[u8],
        step: usize,
    ) -> Result<(usize, Vec<u8>, bool), super::chunked::ChunkError> {
        let mut c = super::chunked::Chunked::default();
        let mut out = Vec::new();
        let mut used = 0;
        for piece in data.chunks(step) {
            let n = c.scan(piece, |r| out.extend_from_slice(&piece[r]))?;
            used += n;
            if c.is_done() {
                break;
            }
        }
        Ok((used, out, c.is_done()))
    }
}
