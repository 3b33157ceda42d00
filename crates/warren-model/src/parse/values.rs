//! Checks and conversions for individual field values: byte sizes, durations, hostnames, users,
//! paths, volume mounts, ingress domains and route paths. Each returns the reason a value is refused, phrased to follow
//! `path: `.

use crate::names::check_dns_label;
use crate::spec::VolumeMount;

/// The smallest memory limit accepted: below this a container cannot even start its shell.
pub(crate) const MIN_MEMORY: u64 = 4 * 1024 * 1024;

/// The smallest disk quota or volume size accepted.
pub(crate) const MIN_DISK: u64 = 1024 * 1024;

/// The shortest automatic snapshot interval accepted, in seconds.
pub(crate) const MIN_SNAPSHOT_EVERY: u64 = 60;

/// The most automatic snapshots a policy may keep.
pub(crate) const MAX_SNAPSHOT_KEEP: u32 = 1000;

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

/// Duration units, largest first: the order they must appear in within one duration.
const DURATION_UNITS: &[(char, u64)] = &[
    ('w', 7 * 24 * 3600),
    ('d', 24 * 3600),
    ('h', 3600),
    ('m', 60),
    ('s', 1),
];

const DURATION_HELP: &str = "use s, m, h, d or w, e.g. \"90s\", \"6h\" or \"1h30m\"";

/// Parses a duration such as `"90s"`, `"30m"`, `"6h"`, `"1d"`, `"2w"` or `"1h30m"` into seconds:
/// one or more integer-and-unit pairs, units lowercase, largest first and each at most once.
/// Does not apply the minimum.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err(format!(
            "expected a duration such as \"90s\", \"6h\" or \"1h30m\", found {s:?}"
        ));
    }
    let too_large = || format!("{s:?} is too large");
    let mut total: u64 = 0;
    let mut rest = s;
    // Index into DURATION_UNITS of the smallest unit used so far.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "expected a duration such as \"90s\", \"6h\" or \"1h30m\", found {s:?}"
            ));
        }
        let (number, after) = rest.split_at(digits);
        let letters = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let unit = &after[..letters];
        if unit.is_empty() {
            return Err(if after.is_empty() {
                format!("missing unit after {number:?} in {s:?}; {DURATION_HELP}")
            } else {
                format!("expected a duration such as \"90s\", \"6h\" or \"1h30m\", found {s:?}")
            });
        }
        let Some(position) = DURATION_UNITS
            .iter()
            .position(|(u, _)| unit.len() == 1 && unit.starts_with(*u))
        else {
            return Err(format!("unknown unit {unit:?} in {s:?}; {DURATION_HELP}"));
        };
        if last_unit.is_some_and(|last| position <= last) {
            return Err(format!(
                "units in {s:?} must go from largest to smallest, each at most once"
            ));
        }
        last_unit = Some(position);
        let n: u64 = number.parse().map_err(|_| too_large())?;
        let seconds = n
            .checked_mul(DURATION_UNITS[position].1)
            .ok_or_else(too_large)?;
        total = total.checked_add(seconds).ok_or_else(too_large)?;
        rest = &after[letters..];
    }
    Ok(total)
}

/// Renders seconds in the combined form [`parse_duration`] reads (`"1h30m"`, `"0s"`).
pub(crate) fn human_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = secs;
    for &(unit, size) in DURATION_UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// The path's components, ignoring empty and `.` ones, so that `/srv/./media/` and
/// `/srv/media` compare equal.
pub(crate) fn path_components(p: &str) -> Vec<&str> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Whether `inner` is `outer` or lies below it (component-wise, so `/data2` is not inside
/// `/data`).
pub(crate) fn path_within(inner: &str, outer: &str) -> bool {
    path_components(inner).starts_with(&path_components(outer))
}

const MOUNT_FORMS: &str = "expected \"VOLUME:/PATH\", \"VOLUME:/PATH:ro\" or \"VOLUME:/PATH:rw\"";

/// Parses a volume mount `name:/abs/path[:ro|:rw]` (read-write unless `:ro`). The name must be a
/// DNS label and the path must pass [`check_data_path`]; paths cannot contain `:`.
pub(crate) fn parse_mount(s: &str) -> Result<VolumeMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (name, path, mode) = match parts.as_slice() {
        [name, path] => (*name, *path, None),
        [name, path, mode] => (*name, *path, Some(*mode)),
        [_] => return Err(format!("{MOUNT_FORMS}, found {s:?}")),
        _ => return Err(format!("{s:?} has too many ':'; {MOUNT_FORMS}")),
    };
    if name.is_empty() {
        return Err(format!("missing the volume name in {s:?}; {MOUNT_FORMS}"));
    }
    check_dns_label(name).map_err(|r| format!("invalid volume name: {r}"))?;
    check_data_path(path).map_err(|r| format!("mount path {r}"))?;
    let readonly = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => {
            return Err(format!(
                "unknown mount mode {other:?} in {s:?}; expected ro or rw"
            ))
        }
    };
    Ok(VolumeMount {
        volume: name.to_string(),
        path: path.to_string(),
        readonly,
    })
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

/// Characters that could end or escape a token in the generated nginx configuration.
const NGINX_SPECIAL: &[char] = &[';', '{', '}', '\'', '"', '\\'];

/// A domain the ingress routes: a lowercase DNS name of at least two labels (each 1–63
/// characters of `a-z`, `0-9` and `-`, not starting or ending with `-`; at most 253 characters
/// in all), optionally with one leading wildcard label (`*.apps.home.arpa`). A name with
/// uppercase letters is refused with its lowercase form suggested.
pub(crate) fn check_domain(d: &str) -> Result<(), String> {
    if d.is_empty() {
        return Err("domain is empty".into());
    }
    let lower = d.to_ascii_lowercase();
    if lower != d && check_domain(&lower).is_ok() {
        return Err(format!(
            "domain {d:?} has uppercase letters; write {lower:?}"
        ));
    }
    if d.len() > 253 {
        return Err(format!(
            "domain {d:?} is {} characters long; the limit is 253",
            d.len()
        ));
    }
    if d.ends_with('.') {
        return Err(format!(
            "domain {d:?} must not end with '.'; write {:?}",
            d.trim_end_matches('.')
        ));
    }
    let name = d.strip_prefix("*.").unwrap_or(d);
    if name.contains('*') {
        return Err(format!(
            "domain {d:?} has '*' outside a leading wildcard label; e.g. \"*.apps.home.arpa\""
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(format!("domain {d:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "domain {d:?}: label {label:?} is longer than 63 characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "domain {d:?} has {c:?}; only lowercase letters, digits, '-' and '.' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "domain {d:?}: label {label:?} must not start or end with '-'"
            ));
        }
    }
    if labels.len() < 2 {
        return Err(if d.starts_with("*.") {
            format!("wildcard domain {d:?} must cover a name of at least two labels, e.g. \"*.apps.home.arpa\"")
        } else {
            format!("domain {d:?} needs at least two labels, e.g. \"{d}.home.arpa\"")
        });
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "domain {d:?} looks like an IP address; domains are DNS names"
        ));
    }
    Ok(())
}

/// The URL path prefix of a route or site: starts with `/`, has no whitespace or control
/// characters, none of `;{}'"\`, and no `..` segment.
pub(crate) fn check_route_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("must start with '/', found {p:?}"));
    }
    if let Some(c) = p.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("path {p:?} must not contain {c:?}"));
    }
    if let Some(c) = p.chars().find(|c| NGINX_SPECIAL.contains(c)) {
        return Err(format!(
            "path {p:?} must not contain {c:?} (none of ; {{ }} ' \" \\)"
        ));
    }
    if p.split('/').any(|segment| segment == "..") {
        return Err(format!("path {p:?} must not contain a '..' segment"));
    }
    Ok(())
}

/// A certificate or key file for the ingress: an absolute path without whitespace, control
/// characters or any of `;{}'"\` (it is written into the nginx configuration).
pub(crate) fn check_tls_file(p: &str) -> Result<(), String> {
    check_absolute(p)?;
    if let Some(c) = p
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || NGINX_SPECIAL.contains(c))
    {
        return Err(format!("path {p:?} must not contain {c:?}"));
    }
    if p.ends_with('/') {
        return Err(format!("must be a file, found the directory {p:?}"));
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
    fn durations() {
        let cases: &[(&str, u64)] = &[
            ("90s", 90),
            ("30m", 1800),
            ("6h", 6 * 3600),
            ("1d", 86400),
            ("2w", 14 * 86400),
            ("1h30m", 5400),
            ("1w2d3h4m5s", 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
            ("0s", 0),
            ("007m", 420),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_duration(text), Ok(*secs), "{text}");
            assert_eq!(parse_duration(&human_duration(*secs)), Ok(*secs), "{text}");
        }
        assert_eq!(human_duration(5400), "1h30m");
        assert_eq!(human_duration(60), "1m");
        assert_eq!(human_duration(0), "0s");
    }

    #[test]
    fn duration_errors() {
        for bad in ["", "h", "1.5h", "-1h", " 1h", "1h ", "h1"] {
            assert!(
                parse_duration(bad)
                    .unwrap_err()
                    .starts_with("expected a duration")
                    || parse_duration(bad).unwrap_err().starts_with("unknown unit"),
                "{bad}: {:?}",
                parse_duration(bad)
            );
        }
        assert_eq!(
            parse_duration("90"),
            Err("missing unit after \"90\" in \"90\"; use s, m, h, d or w, e.g. \"90s\", \"6h\" or \"1h30m\"".into())
        );
        assert_eq!(
            parse_duration("6H"),
            Err("unknown unit \"H\" in \"6H\"; use s, m, h, d or w, e.g. \"90s\", \"6h\" or \"1h30m\"".into())
        );
        assert_eq!(
            parse_duration("30m1h"),
            Err("units in \"30m1h\" must go from largest to smallest, each at most once".into())
        );
        assert!(parse_duration("1h1h").unwrap_err().contains("at most once"));
        assert!(parse_duration("6hours")
            .unwrap_err()
            .starts_with("unknown unit \"hours\" in \"6hours\""));
        assert!(parse_duration("6 hours")
            .unwrap_err()
            .starts_with("expected a duration"));
        assert!(parse_duration("1h 30m")
            .unwrap_err()
            .starts_with("expected a duration"));
        assert!(parse_duration("99999999999999999999s")
            .unwrap_err()
            .ends_with("too large"));
        assert!(parse_duration("99999999999999999w")
            .unwrap_err()
            .ends_with("too large"));
        assert!(parse_duration("18446744073709551615s1w").is_err());
        assert_eq!(parse_duration("18446744073709551615s"), Ok(u64::MAX));
    }

    #[test]
    fn mounts() {
        let m = parse_mount("media:/srv/media:ro").unwrap();
        assert_eq!(
            m,
            VolumeMount {
                volume: "media".into(),
                path: "/srv/media".into(),
                readonly: true
            }
        );
        assert!(!parse_mount("cache:/var/cache").unwrap().readonly);
        assert!(!parse_mount("cache:/var/cache:rw").unwrap().readonly);
        assert_eq!(
            parse_mount("media").unwrap_err(),
            "expected \"VOLUME:/PATH\", \"VOLUME:/PATH:ro\" or \"VOLUME:/PATH:rw\", found \"media\""
        );
        assert!(parse_mount("a:/b:ro:x")
            .unwrap_err()
            .contains("too many ':'"));
        assert!(parse_mount(":/srv")
            .unwrap_err()
            .starts_with("missing the volume name in \":/srv\""));
        assert_eq!(
            parse_mount("Media:/srv").unwrap_err(),
            "invalid volume name: name \"Media\" must start with a lowercase letter"
        );
        assert_eq!(
            parse_mount("media:srv").unwrap_err(),
            "mount path must be an absolute path, found \"srv\""
        );
        assert_eq!(
            parse_mount("media:/").unwrap_err(),
            "mount path must not be the root directory"
        );
        assert_eq!(
            parse_mount("media:/a/../b").unwrap_err(),
            "mount path must not contain '..', found \"/a/../b\""
        );
        assert_eq!(
            parse_mount("media:/srv:RO").unwrap_err(),
            "unknown mount mode \"RO\" in \"media:/srv:RO\"; expected ro or rw"
        );
        assert!(parse_mount("media:/srv:").is_err());
    }

    #[test]
    fn path_relations() {
        assert_eq!(path_components("/srv/./media/"), ["srv", "media"]);
        assert!(path_within("/data", "/data"));
        assert!(path_within("/data/x", "/data/"));
        assert!(path_within("//data/./x", "/data"));
        assert!(!path_within("/data2", "/data"));
        assert!(!path_within("/data", "/data/x"));
    }

    #[test]
    fn images() {
        assert!(check_image("docker.io/library/nginx:1.27").is_ok());
        assert!(check_image("").is_err());
        assert!(check_image("nginx latest").is_err());
    }

    #[test]
    fn domains() {
        for ok in [
            "git.home.arpa",
            "*.apps.home.arpa",
            "a.b",
            "x-1.example.com",
            "1password.example",
            &format!("{}.com", "a".repeat(63)),
        ] {
            assert_eq!(check_domain(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "domain is empty"),
            (
                "Git.Home.arpa",
                "domain \"Git.Home.arpa\" has uppercase letters; write \"git.home.arpa\"",
            ),
            (
                "*.Apps.home.arpa",
                "domain \"*.Apps.home.arpa\" has uppercase letters; write \"*.apps.home.arpa\"",
            ),
            (
                "Git_.home",
                "domain \"Git_.home\" has 'G'; only lowercase letters, digits, '-' and '.' are allowed",
            ),
            (
                "git",
                "domain \"git\" needs at least two labels, e.g. \"git.home.arpa\"",
            ),
            (
                "*.arpa",
                "wildcard domain \"*.arpa\" must cover a name of at least two labels, e.g. \"*.apps.home.arpa\"",
            ),
            (
                "git.home.arpa.",
                "domain \"git.home.arpa.\" must not end with '.'; write \"git.home.arpa\"",
            ),
            ("a..b", "domain \"a..b\" has an empty label"),
            ("*", "domain \"*\" has '*' outside a leading wildcard label; e.g. \"*.apps.home.arpa\""),
            (
                "a.*.b",
                "domain \"a.*.b\" has '*' outside a leading wildcard label; e.g. \"*.apps.home.arpa\"",
            ),
            (
                "-a.home",
                "domain \"-a.home\": label \"-a\" must not start or end with '-'",
            ),
            (
                "10.0.0.1",
                "domain \"10.0.0.1\" looks like an IP address; domains are DNS names",
            ),
            ("a b.c", "domain \"a b.c\" has ' '; only lowercase letters, digits, '-' and '.' are allowed"),
        ];
        for (bad, reason) in cases {
            assert_eq!(check_domain(bad).unwrap_err(), reason, "{bad}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(check_domain(&long).unwrap_err().contains("longer than 63"));
        let huge = vec!["abcdefghi"; 26].join(".");
        assert!(check_domain(&huge)
            .unwrap_err()
            .contains("the limit is 253"));
    }

    #[test]
    fn route_paths() {
        for ok in ["/", "/api", "/api/", "/a.b/c-d_e~f", "/..a/b..", "/%20"] {
            assert_eq!(check_route_path(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "must start with '/', found \"\""),
            ("api", "must start with '/', found \"api\""),
            ("/a b", "path \"/a b\" must not contain ' '"),
            ("/a\tb", "path \"/a\\tb\" must not contain '\\t'"),
            (
                "/a;b",
                "path \"/a;b\" must not contain ';' (none of ; { } ' \" \\)",
            ),
            (
                "/a{",
                "path \"/a{\" must not contain '{' (none of ; { } ' \" \\)",
            ),
            (
                "/a\\b",
                "path \"/a\\\\b\" must not contain '\\\\' (none of ; { } ' \" \\)",
            ),
            (
                "/a/../b",
                "path \"/a/../b\" must not contain a '..' segment",
            ),
            ("/..", "path \"/..\" must not contain a '..' segment"),
        ];
        for (bad, reason) in cases {
            assert_eq!(check_route_path(bad).unwrap_err(), reason, "{bad:?}");
        }
    }

    #[test]
    fn tls_files() {
        assert!(check_tls_file("/etc/warren/tls/git.pem").is_ok());
        assert_eq!(
            check_tls_file("cert.pem").unwrap_err(),
            "must be an absolute path, found \"cert.pem\""
        );
        assert_eq!(
            check_tls_file("/etc/my cert.pem").unwrap_err(),
            "path \"/etc/my cert.pem\" must not contain ' '"
        );
        assert_eq!(
            check_tls_file("/etc/a;b").unwrap_err(),
            "path \"/etc/a;b\" must not contain ';'"
        );
        assert_eq!(
            check_tls_file("/etc/ssl/").unwrap_err(),
            "must be a file, found the directory \"/etc/ssl/\""
        );
    }
}
