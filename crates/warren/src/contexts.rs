//! The CLI's remote contexts, in `$XDG_CONFIG_HOME/warren/config.toml` (default
//! `~/.config/warren/config.toml`):
//!
//! ```toml
//! [context.lab]
//! host = "192.0.2.10:7443"
//! host_id = "5f0c..."                 # the audience of the tokens
//! fingerprint = "sha256:9a1e..."      # the pinned certificate
//! key = "/home/alice/.config/warren/operator.key"
//! ```
//!
//! `warren adopt` writes a context; `--context NAME` (or `WARREN_CONTEXT`) uses one, and
//! `WARREN_HOST=HOST:PORT` uses the context whose host is that. Without either the CLI talks to
//! the local socket.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// One remote daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Context {
    pub host: String,
    pub host_id: String,
    pub fingerprint: String,
    pub key: PathBuf,
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct CliConfig {
    #[serde(default)]
    pub context: BTreeMap<String, Context>,
}

/// `$XDG_CONFIG_HOME/warren`, else `$HOME/.config/warren`.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("warren"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".config/warren"))
}

pub fn config_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("config.toml"))
}

/// The default operator key file.
pub fn default_key_path() -> Result<PathBuf> {
    Ok(config_dir()?.join("operator.key"))
}

pub fn load() -> Result<CliConfig> {
    let path = config_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn save(cfg: &CliConfig) -> Result<()> {
    let path = config_path()?;
    let dir = path.parent().expect("config has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = toml::to_string(cfg).context("encoding the CLI configuration")?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// `HOST` or `HOST:PORT` with the remote API's default port.
pub fn with_port(host: &str) -> String {
    let has_port = match host.rsplit_once(':') {
        Some((h, p)) => p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')),
        None => false,
    };
    if has_port {
        host.to_string()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:7443")
    } else {
        format!("{host}:7443")
    }
}

/// The context `--context` or `WARREN_HOST` selects, if any.
pub fn select(cfg: &CliConfig, name: Option<&str>, host: Option<&str>) -> Result<Option<Context>> {
    if let Some(n) = name {
        return match cfg.context.get(n) {
            Some(c) => Ok(Some(c.clone())),
            None => bail!(
                "no context {n:?} in {} (known: {}); `warren adopt HOST` makes one",
                config_path()?.display(),
                if cfg.context.is_empty() {
                    "none".to_string()
                } else {
                    cfg.context.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        };
    }
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        let want = with_port(h);
        return match cfg.context.values().find(|c| c.host == want) {
            Some(c) => Ok(Some(c.clone())),
            None => bail!("WARREN_HOST={h}: no context for {want}; `warren adopt {h}` makes one"),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_selection() {
        assert_eq!(with_port("lab"), "lab:7443");
        assert_eq!(with_port("lab:9000"), "lab:9000");
        assert_eq!(with_port("::1"), "[::1]:7443");
        assert_eq!(with_port("[::1]:9"), "[::1]:9");
        let mut cfg = CliConfig::default();
        let ctx = Context {
            host: "lab:7443".into(),
            host_id: "id".into(),
            fingerprint: "sha256:aa".into(),
            key: "/k".into(),
        };
        cfg.context.insert("lab".into(), ctx.clone());
        assert_eq!(select(&cfg, Some("lab"), None).unwrap(), Some(ctx.clone()));
        assert_eq!(select(&cfg, None, Some("lab")).unwrap(), Some(ctx.clone()));
        assert_eq!(select(&cfg, None, None).unwrap(), None);
        assert!(select(&cfg, Some("nope"), None).is_err());
        assert!(select(&cfg, None, Some("other")).is_err());
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<CliConfig>(&text).unwrap(), cfg);
    }
}
