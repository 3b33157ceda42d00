//! warren's pf rules on FreeBSD: the counterpart of [`crate::nft`], rendered purely from the
//! same neutral [`Ruleset`] (bridge, subnet, published ports) plus the host's external interface.
//!
//! Everything lives in warren's own anchor, `warren/<table>` ([`anchor`]), loaded with
//! `pfctl -a warren/<table> -f -` (which replaces the anchor's rules as one transaction) and
//! removed with `pfctl -a warren/<table> -F all`. The operator's ruleset is never touched; it
//! only has to evaluate the anchors once (`nat-anchor "warren/*"`, `rdr-anchor "warren/*"`,
//! `anchor "warren/*"` in `pf.conf`). The anchor holds:
//!
//! - `nat`: outbound NAT of the bridge subnet to the external interface's address;
//! - `rdr`: one per published port, on the external interface, to the workload's address
//!   (`to any` for a mapping on every address, `to ADDR` for a specific one);
//! - `pass`: one filter rule per published port letting the redirected traffic in, and one
//!   passing everything on the bridge, each labelled `warren:<workload>` / `warren:bridge`.
//!
//! [`parse_rules`] reads what `pfctl -a ANCHOR -s nat` and `-s rules` print back (service
//! names for ports, `port = N`, the `flags S/SA keep state` and `round-robin` pfctl adds), and
//! [`drift`] compares that with the rendered text, so a changed or flushed anchor is noticed.
//! Locally generated traffic is not redirected (pf's `rdr` applies to packets arriving on an
//! interface), unlike the nft table's `output` chain.

use std::fmt::Write as _;

use warren_exec::Cmd;

use crate::ruleset::{validate_table, Ruleset, RulesetError};

/// The anchor every warren anchor is nested in.
pub const ANCHOR_ROOT: &str = "warren";

/// Errors of rendering or reading pf rules.
#[derive(Debug, thiserror::Error)]
pub enum PfError {
    #[error(transparent)]
    Input(#[from] RulesetError),
    #[error("invalid external interface name {0:?}")]
    Interface(String),
    #[error("cannot parse pfctl output, line {line}: {reason}")]
    Parse { line: usize, reason: String },
}

/// `warren/<table>`.
pub fn anchor(table: &str) -> Result<String, PfError> {
    validate_table(table)?;
    Ok(format!("{ANCHOR_ROOT}/{table}"))
}

/// pf's own limits on top of [`Ruleset::validate`]: no pf punctuation in interface names,
/// and workload names that stay one word in a label.
fn check(ruleset: &Ruleset, ext_if: &str) -> Result<(), PfError> {
    ruleset.validate()?;
    const PF_PUNCT: [char; 7] = ['(', ')', '{', '}', ',', '#', '!'];
    if ruleset.bridge.contains(PF_PUNCT) {
        return Err(RulesetError::BridgeName(ruleset.bridge.clone()).into());
    }
    if !crate::ruleset::valid_ifname(ext_if) || ext_if.contains(PF_PUNCT) {
        return Err(PfError::Interface(ext_if.to_string()));
    }
    for f in &ruleset.forwards {
        if f.workload.len() > 50
            || !f
                .workload
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(RulesetError::WorkloadName(f.workload.clone()).into());
        }
    }
    Ok(())
}

/// Renders the anchor's complete `pfctl -f -` input. Deterministic: forwards are in
/// [`Ruleset::sorted_forwards`] order, as the nft renderer writes them.
pub fn render(ruleset: &Ruleset, ext_if: &str) -> Result<String, PfError> {
    check(ruleset, ext_if)?;
    let forwards = ruleset.sorted_forwards();
    let subnet = ruleset.subnet;
    let br = &ruleset.bridge;
    let mut s = format!(
        "# anchor {ANCHOR_ROOT}/{}: written by warren\n",
        ruleset.table
    );
    let _ = writeln!(
        s,
        "nat on {ext_if} inet from {subnet} to ! {subnet} -> ({ext_if})"
    );
    for f in &forwards {
        let m = &f.mapping;
        let to = match m.specific_host_ip() {
            Some(ip) => ip.to_string(),
            None => "any".into(),
        };
        let _ = writeln!(
            s,
            "rdr on {ext_if} inet proto {} from any to {to} port {} -> {} port {}",
            m.proto, m.host_port, f.address, m.container_port
        );
    }
    for f in &forwards {
        let m = &f.mapping;
        let _ = writeln!(
            s,
            "pass in quick on {ext_if} inet proto {} from any to {} port {} keep state label \"warren:{}\"",
            m.proto, f.address, m.container_port, f.workload
        );
    }
    let _ = writeln!(
        s,
        "pass quick on {br} all keep state label \"warren:bridge\""
    );
    Ok(s)
}

/// `pfctl -a ANCHOR -f -` with `text` on stdin.
pub fn load_cmd(anchor: &str, text: &str) -> Cmd {
    Cmd::new("pfctl")
        .args(["-a", anchor, "-f", "-"])
        .stdin(text.as_bytes().to_vec())
}

/// `pfctl -a ANCHOR -F all`: empties the anchor (rules, nat, tables, states of its rules).
pub fn flush_cmd(anchor: &str) -> Cmd {
    Cmd::new("pfctl").args(["-a", anchor, "-F", "all"])
}

/// `pfctl -a ANCHOR -s nat`: the anchor's nat and rdr rules.
pub fn show_nat_cmd(anchor: &str) -> Cmd {
    Cmd::new("pfctl").args(["-a", anchor, "-s", "nat"])
}

/// `pfctl -a ANCHOR -s rules` (`-sr`): the anchor's filter rules.
pub fn show_rules_cmd(anchor: &str) -> Cmd {
    Cmd::new("pfctl").args(["-a", anchor, "-s", "rules"])
}

/// One rule as far as warren compares them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PfRule {
    /// `nat`, `rdr`, `pass` or `block`.
    pub action: String,
    /// `in` / `out`, when given.
    pub direction: Option<String>,
    pub quick: bool,
    pub interface: Option<String>,
    pub proto: Option<String>,
    /// `any`, an address or network, `(if)`; `!` first when negated. `all` is from/to any.
    pub from: String,
    pub to: String,
    pub to_port: Option<u16>,
    /// The translation target after `->`.
    pub target: Option<String>,
    pub target_port: Option<u16>,
    pub label: Option<String>,
}

/// Service names pfctl prints for ports it finds in `/etc/services`.
const SERVICES: &[(&str, u16)] = &[
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("tftp", 69),
    ("http", 80),
    ("kerberos-sec", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("ldap", 389),
    ("https", 443),
    ("submissions", 465),
    ("submission", 587),
    ("ldaps", 636),
    ("imaps", 993),
    ("pop3s", 995),
    ("socks", 1080),
    ("openvpn", 1194),
    ("mysql", 3306),
    ("postgresql", 5432),
    ("http-alt", 8080),
];

fn port_value(s: &str) -> Option<u16> {
    s.parse::<u16>()
        .ok()
        .or_else(|| SERVICES.iter().find(|(n, _)| *n == s).map(|(_, p)| *p))
}

fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Parses one rule line as `pfctl -s nat` / `-s rules` prints it (or as [`render`] writes it).
pub fn parse_rule(line: &str) -> Result<PfRule, String> {
    let w = words(line)?;
    let mut i = 0;
    let next = |i: &mut usize, what: &str| -> Result<String, String> {
        let v = w
            .get(*i)
            .cloned()
            .ok_or_else(|| format!("missing {what}"))?;
        *i += 1;
        Ok(v)
    };
    let action = next(&mut i, "action")?;
    if !matches!(action.as_str(), "nat" | "rdr" | "pass" | "block") {
        return Err(format!("unsupported rule {action:?}"));
    }
    let mut r = PfRule {
        action,
        direction: None,
        quick: false,
        interface: None,
        proto: None,
        from: "any".into(),
        to: "any".into(),
        to_port: None,
        target: None,
        target_port: None,
        label: None,
    };
    let host = |i: &mut usize| -> Result<String, String> {
        let mut h = next(i, "address")?;
        if h == "!" {
            h = format!("!{}", next(i, "address")?);
        }
        Ok(h)
    };
    let port = |i: &mut usize| -> Result<u16, String> {
        let mut p = next(i, "port")?;
        if p == "=" {
            p = next(i, "port")?;
        }
        port_value(&p).ok_or_else(|| format!("{p:?} is not a port number or known service name"))
    };
    while i < w.len() {
        let t = next(&mut i, "word")?;
        match t.as_str() {
            "in" | "out" => r.direction = Some(t),
            "quick" => r.quick = true,
            "log" | "inet" | "round-robin" | "static-port" => {}
            "on" => r.interface = Some(next(&mut i, "interface")?),
            "proto" => r.proto = Some(next(&mut i, "protocol")?),
            "all" => {}
            "from" => {
                r.from = host(&mut i)?;
                if w.get(i).map(String::as_str) == Some("port") {
                    return Err("source ports are not used by warren".into());
                }
            }
            "to" => {
                r.to = host(&mut i)?;
                if w.get(i).map(String::as_str) == Some("port") {
                    i += 1;
                    r.to_port = Some(port(&mut i)?);
                }
            }
            "flags" => {
                next(&mut i, "flags")?;
            }
            "keep" | "modulate" | "synproxy" => {
                let s = next(&mut i, "state")?;
                if s != "state" {
                    return Err(format!("{t} {s}: expected state"));
                }
            }
            "->" => {
                r.target = Some(next(&mut i, "target")?);
                if w.get(i).map(String::as_str) == Some("port") {
                    i += 1;
                    r.target_port = Some(port(&mut i)?);
                }
            }
            "label" => r.label = Some(next(&mut i, "label")?),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(r)
}

/// Parses `pfctl -s nat` / `-s rules` output (or rendered text: comments and blank lines are
/// skipped).
pub fn parse_rules(text: &str) -> Result<Vec<PfRule>, PfError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| {
            parse_rule(l).map_err(|reason| PfError::Parse {
                line: n + 1,
                reason: format!("{reason} in {:?}", l.trim()),
            })
        })
        .collect()
}

/// What differs between the rendered anchor and what pfctl shows: rules missing from the
/// kernel, then rules the kernel has that were not rendered. Empty when in sync.
pub fn drift(rendered: &str, shown_nat: &str, shown_rules: &str) -> Result<Vec<String>, PfError> {
    let mut want = parse_rules(rendered)?;
    let mut have = parse_rules(shown_nat)?;
    have.extend(parse_rules(shown_rules)?);
    want.sort();
    have.sort();
    let mut out = Vec::new();
    for r in &want {
        if !have.contains(r) {
            out.push(format!("missing: {r:?}"));
        }
    }
    for r in &have {
        if !want.contains(r) {
            out.push(format!("unexpected: {r:?}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::Subnet;
    use crate::ports::PortMapping;
    use crate::ruleset::Forward;

    fn ruleset() -> Ruleset {
        let mut r = Ruleset::new("bridge0", Subnet::parse("10.88.0.0/16").unwrap());
        r.forwards.push(Forward {
            workload: "web".into(),
            mapping: PortMapping::parse("8080:80").unwrap(),
            address: "10.88.0.2".parse().unwrap(),
        });
        r.forwards.push(Forward {
            workload: "dns".into(),
            mapping: PortMapping::parse("192.0.2.10:53:53/udp").unwrap(),
            address: "10.88.0.3".parse().unwrap(),
        });
        r
    }

    #[test]
    fn renders_anchor() {
        assert_eq!(
            render(&ruleset(), "em0").unwrap(),
            "# anchor warren/warren: written by warren\n\
             nat on em0 inet from 10.88.0.0/16 to ! 10.88.0.0/16 -> (em0)\n\
             rdr on em0 inet proto tcp from any to any port 8080 -> 10.88.0.2 port 80\n\
             rdr on em0 inet proto udp from any to 192.0.2.10 port 53 -> 10.88.0.3 port 53\n\
             pass in quick on em0 inet proto tcp from any to 10.88.0.2 port 80 keep state label \"warren:web\"\n\
             pass in quick on em0 inet proto udp from any to 10.88.0.3 port 53 keep state label \"warren:dns\"\n\
             pass quick on bridge0 all keep state label \"warren:bridge\"\n"
        );
        assert_eq!(anchor("warren").unwrap(), "warren/warren");
        assert_eq!(
            load_cmd("warren/warren", "x").argv_string(),
            "pfctl -a warren/warren -f -"
        );
        assert_eq!(
            flush_cmd("warren/warren").argv_string(),
            "pfctl -a warren/warren -F all"
        );
        assert_eq!(
            show_rules_cmd("warren/w").argv_string(),
            "pfctl -a warren/w -s rules"
        );
        assert_eq!(
            show_nat_cmd("warren/w").argv_string(),
            "pfctl -a warren/w -s nat"
        );
    }

    #[test]
    fn hostile_input_is_refused() {
        let mut r = ruleset();
        r.forwards[0].workload = "web\" label \"x".into();
        assert!(render(&r, "em0").is_err());
        assert!(matches!(
            render(&ruleset(), "em0 all pass"),
            Err(PfError::Interface(_))
        ));
        assert!(render(&ruleset(), "(em0)").is_err());
        let mut r = ruleset();
        r.bridge = "br{0}".into();
        assert!(render(&r, "em0").is_err());
        let mut r = ruleset();
        r.forwards[1].mapping = PortMapping::parse("[::1]:53:53/udp").unwrap();
        assert!(render(&r, "em0").is_err());
        let mut r = ruleset();
        r.forwards[1].address = "10.99.0.3".parse().unwrap();
        assert!(render(&r, "em0").is_err());
        let mut r = ruleset();
        r.forwards[1].mapping = PortMapping::parse("8080:81").unwrap();
        assert!(render(&r, "em0").is_err());
        for bad in [
            "rdr on em0 inet proto tcp from any to any port = gopherish -> 10.0.0.1 port 80",
            "scrub in all",
            "pass in on em0 label \"open",
            "pass in quick on em0 from any port 5 to any",
            "pass keep going",
        ] {
            assert!(
                parse_rules(bad).unwrap_err().to_string().contains("line 1"),
                "{bad}"
            );
        }
    }
}
