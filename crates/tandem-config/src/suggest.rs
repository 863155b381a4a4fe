//! "Did you mean ...?" for misspelt keys and names.
//!
//! A typo in a key is the most common configuration mistake and, without a hint, the most
//! confusing one ("unknown key" when the user *thinks* they wrote a known key).

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
///
/// "Close enough" is an edit distance of at most a third of the word's length (at least 1, at
/// most 3), so `schedular` → `scheduler` but `foo` suggests nothing. Case differences alone
/// always count as close.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of two adjacent
/// characters (optimal string alignment), because `wbe` for `web` is one slip of the fingers,
/// not two. Inputs are short keys and names, so O(n·m) is fine.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j] = distance between a[..i] and b[..j]
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("schedular", "scheduler"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("wbe", "web"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }

    #[test]
    fn suggestions() {
        let keys = ["name", "scheduler", "sorry_server", "health", "backends"];
        assert_eq!(closest("schedular", keys), Some("scheduler"));
        assert_eq!(closest("backend", keys), Some("backends"));
        assert_eq!(closest("Name", keys), Some("name"));
        assert_eq!(closest("foo", keys), None);
        assert_eq!(closest("weight", keys), None);
        assert_eq!(closest("wbe", ["web", "api"]), Some("web"));
    }
}
