//! Kernel parameters networking depends on, read before they are written.
//!
//! [`ensure`] reads a key with `sysctl -n` and writes it with `sysctl -w` only when it differs,
//! returning the previous value so a caller (a test, or an operator-facing report) can restore
//! or mention it. [`ensure_ip_forward`] is the one warren needs for bridge NAT and published
//! ports; [`route_localnet_key`] names the per-interface switch that lets a published
//! `127.0.0.1` port be DNATed into the bridge.

use warren_exec::Cmd;

/// IPv4 forwarding between interfaces.
pub const IP_FORWARD: &str = "net.ipv4.ip_forward";

/// Errors of reading or writing kernel parameters.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("invalid sysctl key {0:?}")]
    Key(String),
    #[error("invalid sysctl value {0:?}")]
    Value(String),
    #[error("sysctl {key}: {source}")]
    Exec {
        key: String,
        #[source]
        source: warren_exec::ExecError,
    },
}

/// `net.ipv4.conf.<ifname>.route_localnet`.
pub fn route_localnet_key(ifname: &str) -> String {
    format!("net.ipv4.conf.{ifname}.route_localnet")
}

/// Checks a key: letters, digits, `.`, `_`, `-`, not starting with `-` or `.`.
pub fn check_key(key: &str) -> Result<(), SysctlError> {
    let ok = !key.is_empty()
        && !key.starts_with(['-', '.'])
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SysctlError::Key(key.to_string()))
    }
}

/// Checks a value: printable ASCII without spaces or `=`.
pub fn check_value(value: &str) -> Result<(), SysctlError> {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic() && c != '=') {
        Ok(())
    } else {
        Err(SysctlError::Value(value.to_string()))
    }
}

/// `sysctl -n KEY`.
pub fn read_cmd(key: &str) -> Cmd {
    Cmd::new("sysctl").args(["-n", key])
}

/// `sysctl -w KEY=VALUE`.
pub fn write_cmd(key: &str, value: &str) -> Cmd {
    Cmd::new("sysctl").args(["-w", &format!("{key}={value}")])
}

#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use warren_exec::Executor;

    /// The current value of `key`, trimmed.
    pub fn read(exec: &dyn Executor, key: &str) -> Result<String, SysctlError> {
        check_key(key)?;
        exec.run(&read_cmd(key))
            .map(|o| o.stdout_str().trim().to_string())
            .map_err(|source| SysctlError::Exec {
                key: key.to_string(),
                source,
            })
    }

    /// Writes `value` unconditionally.
    pub fn write(exec: &dyn Executor, key: &str, value: &str) -> Result<(), SysctlError> {
        check_key(key)?;
        check_value(value)?;
        exec.run(&write_cmd(key, value))
            .map(|_| ())
            .map_err(|source| SysctlError::Exec {
                key: key.to_string(),
                source,
            })
    }

    /// Sets `key` to `value` if it is not already; returns the previous value when it changed.
    pub fn ensure(
        exec: &dyn Executor,
        key: &str,
        value: &str,
    ) -> Result<Option<String>, SysctlError> {
        check_value(value)?;
        let old = read(exec, key)?;
        if old == value {
            return Ok(None);
        }
        write(exec, key, value)?;
        Ok(Some(old))
    }

    /// Turns on IPv4 forwarding unless it is on; returns whether it changed anything.
    pub fn ensure_ip_forward(exec: &dyn Executor) -> Result<bool, SysctlError> {
        Ok(ensure(exec, IP_FORWARD, "1")?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            read_cmd(IP_FORWARD).argv_string(),
            "sysctl -n net.ipv4.ip_forward"
        );
        assert_eq!(
            write_cmd(&route_localnet_key("warren0"), "1").argv_string(),
            "sysctl -w net.ipv4.conf.warren0.route_localnet=1"
        );
        assert!(check_key("net.ipv4.ip_forward").is_ok());
        assert!(check_key("-a").is_err());
        assert!(check_key("net ipv4").is_err());
        assert!(check_value("1").is_ok());
        assert!(check_value("1=2").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn writes_only_when_needed() {
        let r = warren_exec::RecordingExecutor::new();
        r.expect_ok("sysctl -n net.ipv4.ip_forward", "1\n")
            .expect_ok("sysctl -n net.ipv4.ip_forward", "0\n")
            .expect_ok(
                "sysctl -w net.ipv4.ip_forward=1",
                "net.ipv4.ip_forward = 1\n",
            );
        assert!(!ensure_ip_forward(&r).unwrap());
        assert!(ensure_ip_forward(&r).unwrap());
        r.finish();
        assert!(matches!(
            ensure(&r, "net.ipv4.ip_forward", "1 2"),
            Err(SysctlError::Value(_))
        ));
    }
}
