//! Checks and conversions for individual field values: memory sizes, hostnames, users and
//! paths. Each returns the reason a value is refused, phrased to follow `path: `.

/// The smallest memory limit accepted: below this a container cannot even start its shell.
pub(crate) const MIN_MEMORY: u64 = 4 * 1024 * 1024;

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("m", 1 << 20),
    ("g", 1 << 30),
    ("t", 1 << 40),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
];

const UNIT_HELP: &str =
    "use K, M, G, T (×1024), KB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB, e.g. \"256M\"";

/// Parses a memory size such as `"256M"`, `"1.5GiB"`, `"500MB"` or `"4194304"` into bytes.
/// Units are case-insensitive; `K`/`M`/`G`/`T` are binary, like Docker's. Fractions are allowed
/// and rounded down to whole bytes. Does not apply the minimum.
pub(crate) fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let number_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(number_len);
    let unit_trimmed = unit.trim_start();
    let digits: String = number.chars().filter(|c| *c != '_').collect();
    let (whole, frac) = digits.split_once('.').unwrap_or((&digits, ""));
    if whole.is_empty() || frac.contains('.') || (digits.contains('.') && frac.is_empty()) {
        return Err(format!(
            "expected a size such as \"256M\" or \"1GiB\", found {s:?}"
        ));
    }
    let Some(&(_, multiplier)) = UNITS
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit_trimmed))
    else {
        return Err(format!(
            "unknown unit {unit_trimmed:?} in {s:?}; {UNIT_HELP}"
        ));
    };
    let too_large = || format!("{s:?} is too large");
    if frac.len() > 18 || whole.len() > 30 {
        return Err(too_large());
    }
    let mantissa: u128 = format!("{whole}{frac}").parse().map_err(|_| too_large())?;
    let scale = 10u128.pow(frac.len() as u32);
    let bytes = mantissa
        .checked_mul(u128::from(multiplier))
        .ok_or_else(too_large)?
        / scale;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Renders a byte count in the largest binary unit that divides it (for messages).
pub(crate) fn human_bytes(n: u64) -> String {
    for (unit, m) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= m && (n / m) * m == n {
            return format!("{} {unit}", n / m);
        }
    }
    format!("{n} bytes")
}

/// A hostname: at most 253 characters of dot-separated labels, each 1–63 characters of `a-z`,
/// `0-9` and `-`, not starting or ending with `-`.
pub(crate) fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("hostname is empty".into());
    }
    if h.len() > 253 {
        return Err(format!(
            "hostname is {} characters long; the limit is 253",
            h.len()
        ));
    }
    for label in h.split('.') {
        if label.is_empty() {
            return Err(format!("{h:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "{h:?} has {c:?}; only lowercase letters, digits, '-' and '.' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} must not start or end with '-'"));
        }
    }
    Ok(())
}

/// `user`, `uid`, `user:group` or `uid:gid`, without whitespace or control characters.
pub(crate) fn check_user(u: &str) -> Result<(), String> {
    const FORMS: &str = "expected \"name\", \"uid\", \"name:group\" or \"uid:gid\"";
    if u.is_empty() {
        return Err(format!("is empty; {FORMS}"));
    }
    if let Some(c) = u.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{u:?} contains {c:?}; {FORMS}"));
    }
    let parts: Vec<&str> = u.split(':').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("{u:?} is malformed; {FORMS}"));
    }
    Ok(())
}

/// An absolute path without NUL bytes.
pub(crate) fn check_absolute(p: &str) -> Result<(), String> {
    if p.contains('\0') {
        return Err("must not contain a NUL character".into());
    }
    if !p.starts_with('/') {
        return Err(format!("must be an absolute path, found {p:?}"));
    }
    Ok(())
}

/// The mount point of the data dataset: absolute, not `/`, no `..` components.
pub(crate) fn check_data_path(p: &str) -> Result<(), String> {
    check_absolute(p)?;
    if p.split('/').all(|c| c.is_empty() || c == ".") {
        return Err("must not be the root directory".into());
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("must not contain '..', found {p:?}"));
    }
    Ok(())
}

/// An OCI image reference, checked only for shape: non-empty, no whitespace or control
/// characters (the images subsystem resolves it).
pub(crate) fn check_image(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = r.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("image reference {r:?} contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        let cases: &[(&str, u64)] = &[
            ("4194304", 4194304),
            ("256M", 256 << 20),
            ("256m", 256 << 20),
            ("256MiB", 256 << 20),
            ("256mib", 256 << 20),
            ("500MB", 500_000_000),
            ("1G", 1 << 30),
            ("2GiB", 2 << 30),
            ("1GB", 1_000_000_000),
            ("1T", 1 << 40),
            ("1TB", 1_000_000_000_000),
            ("512K", 512 << 10),
            ("512KB", 512_000),
            ("512KiB", 512 << 10),
            ("1.5G", 3 << 29),
            ("0.5M", 1 << 19),
            ("1 G", 1 << 30),
            ("1_000B", 1000),
            ("1.0000001K", 1024),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_memory(text), Ok(*bytes), "{text}");
        }
    }

    #[test]
    fn memory_errors() {
        let err = parse_memory("256Mo").unwrap_err();
        assert!(err.starts_with("unknown unit \"Mo\" in \"256Mo\""), "{err}");
        assert!(parse_memory("M")
            .unwrap_err()
            .starts_with("expected a size"));
        assert!(parse_memory("").unwrap_err().starts_with("expected a size"));
        assert!(parse_memory("-1M")
            .unwrap_err()
            .starts_with("expected a size"));
        assert!(parse_memory("1.2.3M")
            .unwrap_err()
            .starts_with("expected a size"));
        assert!(parse_memory("1.M")
            .unwrap_err()
            .starts_with("expected a size"));
        assert!(parse_memory("99999999999T")
            .unwrap_err()
            .ends_with("too large"));
        assert!(parse_memory(&"9".repeat(40))
            .unwrap_err()
            .ends_with("too large"));
        assert!(parse_memory("18446744073709551616")
            .unwrap_err()
            .ends_with("too large"));
        assert_eq!(parse_memory("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(MIN_MEMORY), "4 MiB");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }

    #[test]
    fn hostnames() {
        for ok in ["web", "web-1", "a.b.c", "1web", &"a".repeat(63)] {
            assert_eq!(check_hostname(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Web",
            "web_1",
            "-web",
            "web-",
            "a..b",
            "a.",
            &"a".repeat(64),
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(long.len() > 253);
        assert!(check_hostname(&long).unwrap_err().contains("253"));
    }

    #[test]
    fn users() {
        for ok in ["www-data", "1000", "1000:1000", "name:group", "root:0"] {
            assert_eq!(check_user(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "a:", ":a", "a:b:c", "a\tb"] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(check_absolute("/srv").is_ok());
        assert!(check_absolute("srv").is_err());
        assert!(check_absolute("/a\0b").is_err());
        assert!(check_data_path("/data").is_ok());
        assert!(check_data_path("/var/lib/x/").is_ok());
        for bad in ["/", "//", "/./", "data", "/a/../b", ""] {
            assert!(check_data_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images() {
        assert!(check_image("docker.io/library/nginx:1.27").is_ok());
        assert!(check_image("").is_err());
        assert!(check_image("nginx latest").is_err());
    }
}
