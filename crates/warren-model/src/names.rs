//! Name rules shared by every object warren names (workloads, worlds, volumes), and the
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

#[cfg(test)]
mod tests {
    use super::*;

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
