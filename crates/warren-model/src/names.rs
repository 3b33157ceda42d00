//! Name rules shared by every object warren names (workloads, worlds, volumes, snapshot
//! labels), and the
//! names every layer agrees on: the routing workload, the built-in worlds and the prefixes
//! of the worlds warren makes itself. They live here, in the lowest crate, so the engine and
//! the services above it never have to reach up or sideways for them.

/// The routing workload warren runs for the ingress; no operator workload may take the name.
pub const ROUTING_WORKLOAD: &str = "warren-ingress";

/// Worlds warren builds itself on first use (`warren world create` also makes the others).
pub const BUILTIN_WORLDS: &[&str] = &["host", "busybox"];

/// Names of the worlds that hold image layers start with this.
pub const LAYER_PREFIX: &str = "oci-";

/// Names of the worlds recipe builds produce start with this.
pub const RECIPE_PREFIX: &str = "rcp-";

/// Checks that `name` is a DNS label: 1–63 characters of `a-z`, `0-9` and `-`, starting with a
/// letter and not ending with `-`. Returns the reason it is not.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty".into());
    }
    if name.len() > 63 {
        return Err(format!("name {name:?} is longer than 63 characters"));
    }
    let first = name.as_bytes()[0];
    if !first.is_ascii_lowercase() {
        return Err(format!("name {name:?} must start with a lowercase letter"));
    }
    if name.ends_with('-') {
        return Err(format!("name {name:?} must not end with '-'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "name {name:?} has {c:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    Ok(())
}

/// The snapshot label rule in words, for messages.
pub const SNAPSHOT_LABEL_RULE: &str = "use 1-64 characters of A-Z a-z 0-9 . _ -, \
     not starting with '.' or '-' nor ending in '.json'";

/// Whether `label` is a snapshot label: 1–64 characters of `A-Z a-z 0-9 . _ -`, not starting
/// with `.` (hidden files, `.` and `..`) or `-` (read as an option by tools), and not ending in
/// `.json` (the directory driver keeps each snapshot's metadata in `LABEL.json` beside it). The
/// one rule for every label: the API, hooks and every storage driver check it.
pub fn is_snapshot_label(label: &str) -> bool {
    (1..=64).contains(&label.len())
        && !label.starts_with(['.', '-'])
        && !label.ends_with(".json")
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// [`is_snapshot_label`], with the message naming the label and the rule.
pub fn check_snapshot_label(label: &str) -> Result<(), String> {
    if is_snapshot_label(label) {
        Ok(())
    } else {
        Err(format!(
            "invalid snapshot label {label:?}: {SNAPSHOT_LABEL_RULE}"
        ))
    }
}

/// Checks the prefix of the labels a `snapshot` hook makes (`PREFIX-<unix time>`): every label
/// made from it must pass [`check_snapshot_label`].
pub fn check_snapshot_label_prefix(prefix: &str) -> Result<(), String> {
    // Unix time has ten digits until the year 2286.
    if is_snapshot_label(&format!("{prefix}-{}", 9_999_999_999u64)) && !prefix.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "invalid snapshot label prefix {prefix:?}: labels are PREFIX-<unix time>, so \
             use 1-53 characters of A-Z a-z 0-9 . _ -, not starting with '.' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_labels() {
        for ok in [
            "nightly",
            "before-upgrade.1_x",
            "2024-01-01T00.00",
            "a",
            "A_b-c.d",
            "x.jsonl",
            "json",
            &"x".repeat(64),
        ] {
            assert!(is_snapshot_label(ok), "{ok:?} refused");
            check_snapshot_label(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-rf",
            "x.json",
            "a/b",
            "a b",
            "a:b",
            "a,b",
            "a%b",
            "a\0b",
            "ü",
            &"x".repeat(65),
        ] {
            assert!(!is_snapshot_label(bad), "{bad:?} accepted");
            let err = check_snapshot_label(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains(SNAPSHOT_LABEL_RULE), "{err}");
        }
    }

    #[test]
    fn snapshot_label_prefixes_make_valid_labels() {
        for ok in ["nightly", "db.backup", "A_1", &"p".repeat(53)] {
            check_snapshot_label_prefix(ok).unwrap();
        }
        for bad in ["", "-x", ".x", "a/b", &"p".repeat(54)] {
            assert!(check_snapshot_label_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels() {
        assert!(check_dns_label("web").is_ok());
        assert!(check_dns_label("web-2").is_ok());
        assert!(check_dns_label("").is_err());
        assert!(check_dns_label("Web").is_err());
        assert!(check_dns_label("2web").is_err());
        assert!(check_dns_label("web-").is_err());
        assert!(check_dns_label("we_b").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_label(&"a".repeat(63)).is_ok());
    }
}
