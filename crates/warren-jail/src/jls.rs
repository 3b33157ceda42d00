//! Observed state of jails from `jls --libxo json -v -d`, and the builders of the commands that
//! run a program in a jail (`jexec`) and remove one (`jail -r`).
//!
//! `jls -v` prints, per jail, `jid`, `hostname`, `path`, `name`, `state` (`ACTIVE` or
//! `DYING`), `cpusetid` and the address lists `ipv4_addrs` / `ipv6_addrs`, inside
//! `{"__version": "2", "jail-information": {"jail": [...]}}`. The parser takes the forms that
//! FreeBSD 13 to 15 print (see `tests/golden/jls/README.md`): numbers with or without the
//! padding of their `%6d` format, address lists as arrays of strings or of `{"ipv4_addr": ..}`
//! objects, and the single `ipv4` string of the non-verbose listing.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;
use warren_exec::Cmd;

use crate::conf::validate_name;
use crate::JailError;

/// Whether a jail is alive or being torn down (its last references going away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailState {
    Active,
    Dying,
}

/// One jail as `jls -v` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailInfo {
    pub jid: u32,
    pub name: String,
    pub hostname: String,
    pub path: String,
    pub state: JailState,
    pub cpusetid: Option<u32>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

/// `jls --libxo json -v -d`: every jail, dying ones included.
pub fn list_cmd() -> Cmd {
    Cmd::new("jls").args(["--libxo", "json", "-v", "-d"])
}

/// `jexec -l [-U USER] NAME ARGV...`: runs `argv` in the jail with a clean login
/// environment, as `user` of the jail's own password database (root when None).
pub fn jexec_args(
    name: &str,
    user: Option<&str>,
    argv: &[String],
) -> Result<Vec<String>, JailError> {
    validate_name(name)?;
    if argv.is_empty() {
        return Err(crate::invalid("exec", "an empty command"));
    }
    let mut a = vec!["-l".to_string()];
    if let Some(u) = user {
        if u.is_empty()
            || u.starts_with('-')
            || u.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(crate::invalid("user", format!("{u:?} is not a user name")));
        }
        a.push("-U".into());
        a.push(u.to_string());
    }
    a.push(name.to_string());
    a.extend(argv.iter().cloned());
    Ok(a)
}

/// The `jexec` command as an executor [`Cmd`].
pub fn jexec_cmd(name: &str, user: Option<&str>, argv: &[String]) -> Result<Cmd, JailError> {
    Ok(Cmd::new("jexec").args(jexec_args(name, user, argv)?))
}

/// `jail -r NAME`: runs the jail's `exec.stop`, kills what is left and removes it.
pub fn remove_cmd(name: &str) -> Result<Cmd, JailError> {
    validate_name(name)?;
    Ok(Cmd::new("jail").args(["-r", name]))
}

/// Whether a failed `jail -r` / `jexec` said the jail does not exist
/// (`jail: "NAME" not found`, `jexec: jail "NAME" not found`).
pub fn is_not_found(stderr: &str) -> bool {
    stderr.contains("not found") || stderr.contains("No such process")
}

fn out_err(reason: impl Into<String>) -> JailError {
    JailError::Output {
        command: "jls --libxo json -v".into(),
        reason: reason.into(),
    }
}

fn num(v: &Value, field: &str, i: usize) -> Result<u32, JailError> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| out_err(format!("jail #{i}: {field} is not a number: {v}")))
}

fn string(j: &serde_json::Map<String, Value>, field: &str, i: usize) -> Result<String, JailError> {
    match j.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(out_err(format!("jail #{i}: {field} is not a string: {v}"))),
        None => Err(out_err(format!("jail #{i}: no {field}"))),
    }
}

/// The address strings of a list field in any of the shapes libxo gives it.
fn addr_strings(v: &Value, leaf: &str) -> Vec<String> {
    match v {
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(|x| addr_strings(x, leaf)).collect(),
        Value::Object(o) => o
            .get(leaf)
            .map(|x| addr_strings(x, leaf))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn addrs<T: std::str::FromStr>(
    j: &serde_json::Map<String, Value>,
    fields: &[&str],
    leaf: &str,
    i: usize,
) -> Result<Vec<T>, JailError> {
    let mut out = Vec::new();
    for f in fields {
        if let Some(v) = j.get(*f) {
            for s in addr_strings(v, leaf) {
                out.push(
                    s.parse()
                        .map_err(|_| out_err(format!("jail #{i}: {f}: {s:?} is not an address")))?,
                );
            }
        }
    }
    Ok(out)
}

/// Parses `jls --libxo json [-v] [-d]` output.
pub fn parse_jls(json: &str) -> Result<Vec<JailInfo>, JailError> {
    let v: Value = serde_json::from_str(json).map_err(|e| out_err(e.to_string()))?;
    let list = v
        .get("jail-information")
        .ok_or_else(|| out_err("no \"jail-information\" container"))?
        .get("jail");
    let items = match list {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(out_err(format!("\"jail\" is not a list: {other}"))),
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let j = item
            .as_object()
            .ok_or_else(|| out_err(format!("jail #{i} is not an object")))?;
        let jid = num(
            j.get("jid")
                .ok_or_else(|| out_err(format!("jail #{i}: no jid")))?,
            "jid",
            i,
        )?;
        let state = match j.get("state").and_then(Value::as_str) {
            None | Some("ACTIVE") => JailState::Active,
            Some("DYING") => JailState::Dying,
            Some(s) => return Err(out_err(format!("jail #{i}: unknown state {s:?}"))),
        };
        let name = match j.get("name") {
            Some(_) => string(j, "name", i)?,
            // A jail created without a name is named by its jid.
            None => jid.to_string(),
        };
        out.push(JailInfo {
            jid,
            name,
            hostname: string(j, "hostname", i)?,
            path: string(j, "path", i)?,
            state,
            cpusetid: j
                .get("cpusetid")
                .map(|c| num(c, "cpusetid", i))
                .transpose()?,
            ipv4: addrs(j, &["ipv4_addrs", "ipv4"], "ipv4_addr", i)?,
            ipv6: addrs(j, &["ipv6_addrs", "ipv6"], "ipv6_addr", i)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_builders() {
        assert_eq!(list_cmd().argv_string(), "jls --libxo json -v -d");
        assert_eq!(
            jexec_cmd(
                "warren-web",
                Some("www"),
                &["/bin/echo".into(), "a b".into()]
            )
            .unwrap()
            .args,
            ["-l", "-U", "www", "warren-web", "/bin/echo", "a b"]
                .map(std::ffi::OsString::from)
                .to_vec()
        );
        assert_eq!(
            remove_cmd("warren-web").unwrap().argv_string(),
            "jail -r warren-web"
        );
        assert!(remove_cmd("-f").is_err());
        assert!(jexec_cmd("web", Some("-u root"), &["x".into()]).is_err());
        assert!(jexec_cmd("web", None, &[]).is_err());
    }

    #[test]
    fn malformed_output_is_an_error_naming_the_field() {
        for (text, want) in [
            ("", "EOF"),
            ("{}", "jail-information"),
            (r#"{"jail-information": {"jail": 3}}"#, "not a list"),
            (
                r#"{"jail-information": {"jail": [{"hostname":"h","path":"/"}]}}"#,
                "no jid",
            ),
            (
                r#"{"jail-information": {"jail": [{"jid":"x","hostname":"h","path":"/"}]}}"#,
                "jid is not a number",
            ),
            (
                r#"{"jail-information": {"jail": [{"jid":1,"hostname":"h","path":"/","state":"GONE"}]}}"#,
                "unknown state",
            ),
            (
                r#"{"jail-information": {"jail": [{"jid":1,"hostname":"h","path":"/","ipv4_addrs":["10.0.0.300"]}]}}"#,
                "not an address",
            ),
            (
                r#"{"jail-information": {"jail": [{"jid":-1,"hostname":"h","path":"/"}]}}"#,
                "jid is not a number",
            ),
        ] {
            let e = parse_jls(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
