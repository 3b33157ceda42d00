//! Byte offsets to 1-based line:column positions.
//!
//! Lines are separated by `\n` (a `\r` before it belongs to the line it ends, so CRLF files get
//! the same positions as LF files). Columns count characters, not bytes, so a key after `é` or
//! an emoji is reported where an editor shows it. A byte-order mark at the start of the file is
//! not counted.

/// Precomputed line starts of one text, for repeated lookups.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset of the first character of each line; always starts with 0.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { text, starts }
    }

    /// The 1-based line and column of byte `offset`. Offsets past the end map to the end; an
    /// offset inside a multi-byte character maps to that character.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line whose start is at or before `offset`.
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let mut prefix = &self.text[start..offset];
        if line == 0 {
            prefix = prefix.strip_prefix('\u{feff}').unwrap_or(prefix);
        }
        (line + 1, prefix.chars().count() + 1)
    }
}

/// The 1-based line and column of byte `offset` in `text` (see the module docs for the rules).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).position(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_character_is_one_one() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("", 0), (1, 1));
    }

    #[test]
    fn columns_and_lines() {
        let t = "ab\ncd\n\nef";
        assert_eq!(line_column(t, 1), (1, 2));
        assert_eq!(line_column(t, 2), (1, 3)); // the newline itself
        assert_eq!(line_column(t, 3), (2, 1));
        assert_eq!(line_column(t, 4), (2, 2));
        assert_eq!(line_column(t, 6), (3, 1));
        assert_eq!(line_column(t, 7), (4, 1));
        assert_eq!(line_column(t, 8), (4, 2));
    }

    #[test]
    fn end_of_text_and_beyond() {
        assert_eq!(line_column("ab\n", 3), (2, 1));
        assert_eq!(line_column("ab", 2), (1, 3));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn multibyte_characters_count_once() {
        // "é" is 2 bytes, "😀" is 4 bytes.
        let t = "é = \"😀\" x";
        let x = t.find('x').unwrap();
        assert_eq!(x, 12);
        assert_eq!(line_column(t, x), (1, 9));
        let t = "a = 1\nnäme = \"😀😀\"\nkind = 1";
        assert_eq!(line_column(t, t.find("kind").unwrap()), (3, 1));
        let q = t.rfind('"').unwrap();
        assert_eq!(line_column(t, q), (2, 11));
    }

    #[test]
    fn offset_inside_a_character_maps_to_it() {
        let t = "a😀b";
        assert_eq!(line_column(t, 2), (1, 2));
        assert_eq!(line_column(t, 5), (1, 3));
    }

    #[test]
    fn crlf_matches_lf() {
        let lf = "[workload.web]\nkind = 1\n  world = 2\n";
        let crlf = lf.replace('\n', "\r\n");
        for word in ["kind", "1", "world", "2"] {
            assert_eq!(
                line_column(lf, lf.find(word).unwrap()),
                line_column(&crlf, crlf.find(word).unwrap()),
                "{word}"
            );
        }
        assert_eq!(line_column(&crlf, crlf.find("world").unwrap()), (3, 3));
    }

    #[test]
    fn byte_order_mark_is_not_a_column() {
        let t = "\u{feff}kind = 1\nx";
        assert_eq!(line_column(t, t.find("kind").unwrap()), (1, 1));
        assert_eq!(line_column(t, t.find('=').unwrap()), (1, 6));
        assert_eq!(line_column(t, t.find('x').unwrap()), (2, 1));
    }
}
