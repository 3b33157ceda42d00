//! `warren discover`: the warren daemons announcing themselves on the LAN (mDNS, see
//! [`crate::discovery`]), with their addresses, ports, certificate fingerprints and the
//! context that already pins each fingerprint; and the look-up `warren adopt SHORT_ID` makes.

use super::{Exit, ListFormat};
use crate::contexts::{self, CliConfig};
use crate::discovery::{self, Heard};
use anyhow::{bail, Result};
use std::time::Duration;

/// How long `warren adopt SHORT_ID` listens for the host.
const ADOPT_LISTEN: Duration = Duration::from_secs(3);

/// Listens for `timeout` (blocking work off the async runtime).
async fn hear(timeout: Duration) -> Result<Vec<Heard>> {
    tokio::task::spawn_blocking(move || discovery::browse(timeout)).await?
}

/// The contexts pinning `fingerprint`, comma-joined, or `-`.
fn pinned_by(cfg: &CliConfig, fingerprint: &str) -> String {
    let names: Vec<&str> = cfg
        .context
        .iter()
        .filter(|(_, c)| c.fingerprint == fingerprint)
        .map(|(n, _)| n.as_str())
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

/// The table `warren discover` prints.
pub(super) fn render(heard: &[Heard], cfg: &CliConfig) -> String {
    let rows: Vec<Vec<String>> = heard
        .iter()
        .map(|h| {
            vec![
                h.short_id.clone(),
                h.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                h.port.to_string(),
                h.version.clone(),
                h.fingerprint.clone(),
                pinned_by(cfg, &h.fingerprint),
            ]
        })
        .collect();
    crate::output::table(
        &[
            "SHORT ID",
            "ADDRESS",
            "PORT",
            "VERSION",
            "FINGERPRINT",
            "CONTEXT",
        ],
        &rows,
    )
}

pub(super) async fn discover(timeout: &str, format: ListFormat) -> Result<Exit> {
    let timeout = discovery::parse_timeout(timeout)?;
    let heard = hear(timeout).await?;
    let cfg = contexts::load()?;
    if format == ListFormat::Json {
        let v: Vec<serde_json::Value> = heard
            .iter()
            .map(|h| {
                let mut v = serde_json::to_value(h).expect("serializable");
                let ctx = pinned_by(&cfg, &h.fingerprint);
                v["context"] = if ctx == "-" {
                    serde_json::Value::Null
                } else {
                    ctx.into()
                };
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if heard.is_empty() {
        eprintln!("no warren host heard in {}s", timeout.as_secs_f64());
    } else {
        print!("{}", render(&heard, &cfg));
    }
    Ok(Exit::Success)
}

/// Whether `arg` has the shape of a short id (8 hex digits).
pub(super) fn is_short_id(arg: &str) -> bool {
    arg.len() == 8 && arg.chars().all(|c| c.is_ascii_hexdigit())
}

/// The host `warren adopt ARG` means when ARG is a short id: the one announcing it.
pub(super) async fn resolve_short_id(arg: &str) -> Result<Option<Heard>> {
    if !is_short_id(arg) {
        return Ok(None);
    }
    let heard = hear(ADOPT_LISTEN).await?;
    match heard
        .into_iter()
        .find(|h| h.short_id.eq_ignore_ascii_case(arg))
    {
        Some(h) if h.endpoint().is_some() => Ok(Some(h)),
        Some(_) => bail!("host {arg} was heard without an address"),
        None => bail!(
            "no warren host announced short id {arg} within {}s (`warren discover` lists the \
             hosts heard); to adopt a host named {arg}, give {arg}:7443",
            ADOPT_LISTEN.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_says_which_context_pins_each_host() {
        let mut cfg = CliConfig::default();
        cfg.context.insert(
            "lab".into(),
            contexts::Context {
                host: "10.0.0.2:7443".into(),
                host_id: "0123456789".into(),
                fingerprint: "sha256:aa".into(),
                key: "/k".into(),
            },
        );
        let h = |short: &str, fp: &str| Heard {
            host_id: format!("{short}00"),
            short_id: short.into(),
            version: "0.1.0".into(),
            addresses: vec!["10.0.0.2".parse().unwrap()],
            port: 7443,
            fingerprint: fp.into(),
        };
        let text = render(
            &[h("01234567", "sha256:aa"), h("89abcdef", "sha256:bb")],
            &cfg,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SHORT ID  ADDRESS"), "{text}");
        assert!(
            lines[1].starts_with("01234567") && lines[1].ends_with("lab"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("89abcdef") && lines[2].ends_with(" -"),
            "{text}"
        );
        assert!(is_short_id("89abcdef"));
        assert!(!is_short_id("lab.example"));
        assert!(!is_short_id("89abcdeg"));
    }
}
