//! Claim codes and the claim window.
//!
//! An operator key can be enrolled only while the claim window is open (the first
//! [`CLAIM_WINDOW`] seconds after the daemon's state was initialised, or after root ran
//! `warren daemon reset-auth`) and only with the one-time claim code the daemon printed in its
//! log (root on the host can read it again with `warren daemon claim-code`). A successful
//! enrolment closes the window.

use ring::rand::SecureRandom;

/// How long a claim window stays open, in seconds.
pub const CLAIM_WINDOW: u64 = 30 * 60;

/// Letters of a claim code: Crockford's base32 (no I, L, O, U).
const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new claim code: 15 random base32 characters (75 bits) in three groups, `XXXXX-XXXXX-XXXXX`.
pub fn new_code() -> String {
    let mut raw = [0u8; 15];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .expect("the system random generator works");
    let chars: Vec<char> = raw
        .iter()
        .map(|b| ALPHABET[(*b & 31) as usize] as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A code as typed, made comparable: uppercase, without separators or spaces, and with the
/// letters Crockford's base32 reads as digits (`O` → 0, `I`/`L` → 1).
pub fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect()
}

/// Whether `given` is the claim code `expected` (constant time).
pub fn matches(expected: &str, given: &str) -> bool {
    crate::constant_time_eq(normalize(expected).as_bytes(), normalize(given).as_bytes())
}

/// Whether a window opened at `opened_at` (unix seconds) is open at `now`.
pub fn window_open(opened_at: Option<u64>, now: u64) -> bool {
    opened_at.is_some_and(|t| now >= t && now < t + CLAIM_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_random_grouped_and_forgiving_to_type() {
        let a = new_code();
        let b = new_code();
        assert_ne!(a, b);
        assert_eq!(a.len(), 17);
        assert_eq!(a.matches('-').count(), 2);
        assert!(matches(&a, &a.to_lowercase().replace('-', " ")));
        assert!(!matches(&a, &b));
        assert!(!matches(&a, ""));
        assert!(matches("0123-IL", "o123 il"));
    }

    #[test]
    fn the_window_is_thirty_minutes() {
        assert!(!window_open(None, 100));
        assert!(window_open(Some(100), 100));
        assert!(window_open(Some(100), 100 + CLAIM_WINDOW - 1));
        assert!(!window_open(Some(100), 100 + CLAIM_WINDOW));
        assert!(!window_open(Some(100), 99));
    }
}
