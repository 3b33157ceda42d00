//! warren's nftables table: a pure renderer and the three commands that apply, remove and probe it.
//!
//! warren owns exactly one table, `table inet warren` by default ([`DEFAULT_TABLE`]; tests use
//! their own names), and never reads or writes any other. [`render`] turns the neutral
//! [`Ruleset`] (bridge, subnet, published ports; shared with [`crate::pf`]) into the complete
//! text for `nft -f -`:
//!
//! - `published`: one DNAT rule per port mapping (host address, port and protocol → workload
//!   address and port), entered from `prerouting` (traffic from other machines and the bridge)
//!   and from `output` (traffic the host itself generates), both only for packets addressed to
//!   a local address (`fib daddr type local`);
//! - `postrouting`: masquerade for the bridge subnet leaving through any interface but the
//!   bridge, and for loopback-sourced connections DNATed into the bridge (so a published
//!   `127.0.0.1` port answers; that also needs `route_localnet` on the bridge);
//! - `forward`: accepts established/related traffic and traffic to or from the bridge.
//!
//! The text starts with `table inet T { }` and `delete table inet T` before the table itself,
//! so one atomic `nft -f -` transaction replaces whatever was there: applying twice is the same
//! as applying once, and a half-applied table never exists.

use std::fmt::Write as _;

pub use crate::ruleset::{
    valid_ifname, validate_table, Forward, Ruleset, RulesetError, DEFAULT_TABLE,
};

/// Errors of rendering, applying or inspecting the table.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(transparent)]
    Ruleset(#[from] RulesetError),
    #[error("nftables table inet {table}: {source}")]
    Exec {
        table: String,
        #[source]
        source: warren_exec::ExecError,
    },
    #[error("cannot parse `nft -j list tables` output: {0}")]
    Json(String),
}

/// The preamble that makes a following `table` definition replace the old table atomically:
/// create it if missing (a no-op otherwise), then delete it.
fn reset(table: &str) -> String {
    format!("table inet {table} {{ }}\ndelete table inet {table}\n")
}

/// The text that removes the table if it exists and does nothing otherwise.
pub fn render_removal(table: &str) -> Result<String, NftError> {
    validate_table(table)?;
    Ok(reset(table))
}

/// Renders the complete, idempotent `nft -f -` input for `ruleset`.
///
/// Refuses what [`Ruleset::validate`] refuses; nft needs no further limits.
pub fn render(ruleset: &Ruleset) -> Result<String, NftError> {
    ruleset.validate()?;
    let t = &ruleset.table;
    let forwards = ruleset.sorted_forwards();

    let br = &ruleset.bridge;
    let subnet = ruleset.subnet;
    let mut s = reset(t);
    // Writing to a String cannot fail.
    let _ = writeln!(s, "table inet {t} {{");
    s.push_str("\tchain published {\n");
    for f in forwards {
        let m = &f.mapping;
        let matcher = match m.specific_host_ip() {
            Some(ip) => format!("ip daddr {ip} "),
            None => "meta nfproto ipv4 ".to_string(),
        };
        let _ = writeln!(
            s,
            "\t\t{matcher}{proto} dport {hp} dnat ip to {addr}:{cp} comment \"{w}\"",
            proto = m.proto,
            hp = m.host_port,
            addr = f.address,
            cp = m.container_port,
            w = f.workload,
        );
    }
    s.push_str("\t}\n\n");
    s.push_str(
        "\tchain prerouting {\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tfib daddr type local jump published\n\
         \t}\n\n",
    );
    s.push_str(
        "\tchain output {\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tfib daddr type local jump published\n\
         \t}\n\n",
    );
    let _ = write!(
        s,
        "\tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{br}\" masquerade\n\
         \t\tip saddr 127.0.0.0/8 oifname \"{br}\" masquerade\n\
         \t}}\n\n"
    );
    let _ = write!(
        s,
        "\tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\tiifname \"{br}\" accept\n\
         \t\toifname \"{br}\" accept\n\
         \t}}\n\
         }}\n"
    );
    Ok(s)
}

/// The `nft -f -` command that loads `text`.
pub fn apply_cmd(text: &str) -> warren_exec::Cmd {
    warren_exec::Cmd::new("nft")
        .args(["-f", "-"])
        .stdin(text.as_bytes().to_vec())
}

/// The command that lists every table as JSON.
pub fn list_tables_cmd() -> warren_exec::Cmd {
    warren_exec::Cmd::new("nft").args(["-j", "list", "tables"])
}

/// The `(family, name)` of every table in `nft -j list tables` output.
pub fn parse_tables(json: &str) -> Result<Vec<(String, String)>, NftError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| NftError::Json(e.to_string()))?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or_else(|| NftError::Json("no top-level \"nftables\" array".into()))?;
    let mut out = Vec::new();
    for item in items {
        if let Some(t) = item.get("table") {
            let field = |k: &str| {
                t.get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| NftError::Json(format!("a table without a \"{k}\" string")))
            };
            out.push((field("family")?, field("name")?));
        }
    }
    Ok(out)
}

/// Loads a rendered ruleset in one atomic transaction (`nft -f -`).
#[cfg(target_os = "linux")]
pub fn apply(
    exec: &dyn warren_exec::Executor,
    table: &str,
    ruleset_text: &str,
) -> Result<(), NftError> {
    exec.run(&apply_cmd(ruleset_text))
        .map(|_| ())
        .map_err(|source| NftError::Exec {
            table: table.to_string(),
            source,
        })
}

/// Removes the table; succeeds when it does not exist.
#[cfg(target_os = "linux")]
pub fn remove(exec: &dyn warren_exec::Executor, table: &str) -> Result<(), NftError> {
    let text = render_removal(table)?;
    apply(exec, table, &text)
}

/// Whether `table inet <table>` exists.
#[cfg(target_os = "linux")]
pub fn table_exists(exec: &dyn warren_exec::Executor, table: &str) -> Result<bool, NftError> {
    validate_table(table)?;
    let out = exec
        .run(&list_tables_cmd())
        .map_err(|source| NftError::Exec {
            table: table.to_string(),
            source,
        })?;
    Ok(parse_tables(&out.stdout_str())?
        .iter()
        .any(|(f, n)| f == "inet" && n == table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::Subnet;
    use crate::ports::PortMapping;

    fn ruleset() -> Ruleset {
        let mut r = Ruleset::new("warren0", Subnet::parse("10.88.0.0/16").unwrap());
        r.forwards.push(Forward {
            workload: "web".into(),
            mapping: PortMapping::parse("8080:80").unwrap(),
            address: "10.88.0.2".parse().unwrap(),
        });
        r
    }

    #[test]
    fn refuses_unsafe_or_impossible_input() {
        let mut r = ruleset();
        r.table = "warren; flush ruleset".into();
        assert!(matches!(
            render(&r),
            Err(NftError::Ruleset(RulesetError::TableName(_)))
        ));
        let mut r = ruleset();
        r.bridge = "br\"0".into();
        assert!(matches!(
            render(&r),
            Err(NftError::Ruleset(RulesetError::BridgeName(_)))
        ));
        let mut r = ruleset();
        r.forwards[0].workload = "a\"b".into();
        assert!(matches!(
            render(&r),
            Err(NftError::Ruleset(RulesetError::WorkloadName(_)))
        ));
        let mut r = ruleset();
        r.forwards[0].mapping = PortMapping::parse("[::1]:8080:80").unwrap();
        let e = render(&r).unwrap_err().to_string();
        assert!(e.contains("IPv6 host address"), "{e}");
        let mut r = ruleset();
        r.forwards[0].address = "10.88.0.1".parse().unwrap();
        assert!(matches!(
            render(&r),
            Err(NftError::Ruleset(RulesetError::AddressOutsideSubnet { .. }))
        ));
        let mut r = ruleset();
        r.forwards.push(Forward {
            workload: "api".into(),
            mapping: PortMapping::parse("127.0.0.1:8080:3000").unwrap(),
            address: "10.88.0.3".parse().unwrap(),
        });
        let e = render(&r).unwrap_err().to_string();
        assert!(e.contains("\"web\"") && e.contains("\"api\""), "{e}");
    }

    #[test]
    fn removal_text() {
        assert_eq!(
            render_removal("warren").unwrap(),
            "table inet warren { }\ndelete table inet warren\n"
        );
    }

    #[test]
    fn parses_list_tables_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "nat", "handle": 1}}, {"table": {"family": "inet", "name": "warren", "handle": 5}}]}"#;
        assert_eq!(
            parse_tables(json).unwrap(),
            vec![
                ("ip".to_string(), "nat".to_string()),
                ("inet".to_string(), "warren".to_string())
            ]
        );
        assert!(parse_tables("{}").is_err());
        assert!(parse_tables("not json").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn commands_through_the_executor() {
        let r = warren_exec::RecordingExecutor::new();
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "warren", "handle": 1}}]}"#;
        r.expect_ok("nft -f -", "")
            .expect_ok("nft -f -", "")
            .expect_ok("nft -j list tables", json)
            .expect_err("nft -f -", "Error: Could not process rule");
        let text = render(&ruleset()).unwrap();
        apply(&r, "warren", &text).unwrap();
        remove(&r, "warren").unwrap();
        // An `ip` family table of the same name is not ours.
        assert!(!table_exists(&r, "warren").unwrap());
        let e = apply(&r, "warren", &text).unwrap_err().to_string();
        assert!(e.contains("Could not process rule"), "{e}");
        r.finish();
        assert_eq!(apply_cmd(&text).stdin.as_deref(), Some(text.as_bytes()));
    }
}
