//! "Did you mean …?" suggestions for misspelled keys and values.
//!
//! Uses the optimal-string-alignment variant of the Damerau–Levenshtein distance (insertions,
//! deletions, substitutions and transpositions of adjacent characters), compared
//! case-insensitively.

/// The edit distance between `a` and `b` (adjacent transpositions count as one edit).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    // d[i][j] = distance between a[..i] and b[..j]
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=m).collect();
    for i in 1..=n {
        for j in 1..=m {
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
    d[n][m]
}

/// The candidate closest to `input`, if it is close enough to be a plausible typo: at most one
/// edit for inputs of up to 3 characters, two up to 7, three beyond. Ties go to the earlier
/// candidate.
pub(crate) fn did_you_mean<'c>(input: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let len = input.chars().count();
    if len > 64 {
        return None;
    }
    let limit = match len {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    let lower = input.to_lowercase();
    let mut best: Option<(usize, &'c str)> = None;
    for &c in candidates {
        let d = edit_distance(&lower, &c.to_lowercase());
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("comand", "command"), 1);
        assert_eq!(edit_distance("memroy", "memory"), 1); // transposition
        assert_eq!(edit_distance("ca", "abc"), 3); // OSA, not full Damerau
        assert_eq!(edit_distance("wörld", "world"), 1);
    }

    #[test]
    fn suggestions() {
        let keys = ["kind", "world", "image", "command", "restart", "resources"];
        assert_eq!(did_you_mean("comand", &keys), Some("command"));
        assert_eq!(did_you_mean("wrold", &keys), Some("world"));
        assert_eq!(did_you_mean("Kind", &keys), Some("kind"));
        assert_eq!(did_you_mean("resource", &keys), Some("resources"));
        assert_eq!(did_you_mean("restrat", &keys), Some("restart"));
        assert_eq!(did_you_mean("ports", &keys), None);
        assert_eq!(did_you_mean("x", &keys), None);
        assert_eq!(did_you_mean("workloads", &["workload"]), Some("workload"));
        assert_eq!(
            did_you_mean("alway", &["always", "on-failure", "never"]),
            Some("always")
        );
        assert_eq!(
            did_you_mean("onfailure", &["always", "on-failure", "never"]),
            Some("on-failure")
        );
        assert_eq!(
            did_you_mean("sometimes", &["always", "on-failure", "never"]),
            None
        );
    }
}
