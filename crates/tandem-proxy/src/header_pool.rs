//! Header maps recycled per worker thread, for responses from HTTP/1 backends to HTTP/2
//! clients.
//!
//! A typical backend response has 7–12 fields, so its map's table is about 1.2 KiB: above
//! glibc's per-thread cache limit (1,032 bytes), every new one took malloc's slow path, often
//! with a fast-bin consolidation (about 3 % of tandem's CPU in the HTTP/2 benchmark). A map
//! comes back once its fields are encoded, cleared, and the next response reuses its memory.

use std::cell::RefCell;

use http::HeaderMap;

/// Maps kept per thread.
const KEEP: usize = 32;
/// Maps grown past this many fields are not kept (a rare huge response must not pin memory).
const MAX_FIELDS: usize = 128;

thread_local! {
    static POOL: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// A map with room for `fields`, reused when one is at hand.
pub(crate) fn take(fields: usize) -> HeaderMap {
    match POOL.with(|p| p.borrow_mut().pop()) {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Hand a map back for reuse.
pub(crate) fn give(mut map: HeaderMap) {
    if map.capacity() > MAX_FIELDS {
        return;
    }
    map.clear();
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < KEEP {
            p.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_map_comes_back_empty_with_its_memory() {
        let mut m = take(10);
        m.insert("a", http::HeaderValue::from_static("1"));
        let cap = m.capacity();
        give(m);
        let again = take(1);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);
    }
}
