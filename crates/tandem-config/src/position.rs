//! Byte offsets → 1-based `line:col`.
//!
//! The TOML parser reports byte spans; people and editors want line and column. Columns count
//! characters (not bytes) so a line with `é` or `→` before the error still points at the right
//! place in an editor.

/// Start offsets of every line, computed once per file so each lookup is a binary search.
pub(crate) struct LineIndex<'s> {
    src: &'s str,
    starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { src, starts }
    }

    /// 1-based `(line, col)` of a byte offset. Offsets past the end clamp to the end; an offset
    /// inside a multi-byte character counts as that character.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(line).copied().unwrap_or(0);
        let col = self
            .src
            .get(start..)
            .map(|rest| {
                rest.char_indices()
                    .take_while(|(i, _)| start + i < offset)
                    .count()
            })
            .unwrap_or(offset - start);
        (line + 1, col + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let idx = LineIndex::new("ab\ncdé\n\nx");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(1), (1, 2));
        assert_eq!(idx.position(2), (1, 3)); // the newline itself
        assert_eq!(idx.position(3), (2, 1));
        assert_eq!(idx.position(5), (2, 3)); // é
        assert_eq!(idx.position(7), (2, 4)); // newline after é (2 bytes)
        assert_eq!(idx.position(8), (3, 1));
        assert_eq!(idx.position(9), (4, 1));
        assert_eq!(idx.position(999), (4, 2));
    }

    #[test]
    fn empty_source() {
        assert_eq!(LineIndex::new("").position(0), (1, 1));
    }
}
