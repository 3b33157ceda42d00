//! Remote administration: `adopt` (enrolment with a daemon over pinned TLS, before a context
//! exists), operator keys, contexts, the local CA's certificate, and the claim code commands
//! run by root on the host.

use super::Exit;
use super::ListFormat;
use crate::client::routes::{self, Call};
use crate::client::Client;
use crate::contexts;
use crate::output;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum CaCmd {
    /// Print the CA certificate (PEM) for clients to trust, or write it to a file.
    Export {
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(super) enum KeyCmd {
    /// List enrolled keys.
    #[command(alias = "ls")]
    List {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: ListFormat,
    },
    /// Enroll another operator's public key (as `warren key show` prints it).
    Add {
        public_key: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke a key by its fingerprint.
    Revoke { fingerprint: String },
    /// Print this operator's public key and fingerprint.
    Show {
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(super) enum ContextCmd {
    /// List contexts.
    #[command(alias = "ls")]
    List,
    /// Forget a context.
    Rm { name: String },
}

#[derive(Subcommand)]
pub(super) enum DaemonAction {
    /// Print the claim code while the claim window is open (root on the host).
    ClaimCode,
    /// Open a new claim window with a new claim code (root on the host).
    ResetAuth,
    /// The daemon's own log (STATE_DIR/logs/daemon.log and its rotated files), read on the host.
    Logs {
        /// Keep printing new lines as the daemon writes them.
        #[arg(short, long)]
        follow: bool,
        /// Only lines at this level or more severe: error, warn, info, debug, trace.
        #[arg(long, default_value = "info")]
        level: String,
        /// Print the stored JSON records instead of readable lines.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn ca_export(client: &Client, output: Option<PathBuf>) -> Result<Exit> {
    use http_body_util::BodyExt;
    let body = client.get_stream(&routes::CA.call()).await?;
    let pem = body.collect().await?.to_bytes();
    match output {
        Some(path) => {
            std::fs::write(&path, &pem).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote the CA certificate to {}", path.display());
        }
        None => {
            std::io::stdout().write_all(&pem)?;
        }
    }
    Ok(Exit::Success)
}

pub(super) async fn daemon_action(client: &Client, action: DaemonAction) -> Result<Exit> {
    if client.remote.is_some() {
        bail!("claim codes are managed by root on the host, over the local socket");
    }
    let r: serde_json::Value = match action {
        DaemonAction::ClaimCode => client.get(&routes::CLAIM_CODE.call()).await?,
        DaemonAction::ResetAuth => client.post(&routes::AUTH_RESET.call(), &()).await?,
        DaemonAction::Logs { .. } => unreachable!("dispatched to info::daemon_logs"),
    };
    let until = r["until"].as_u64().unwrap_or(0);
    let left = until.saturating_sub(warren_store::now_ms() / 1000);
    println!("{}", r["code"].as_str().unwrap_or("?"));
    if let Some(fp) = r["fingerprint"].as_str() {
        eprintln!("certificate fingerprint {fp} (`warren adopt` shows it: compare)");
    }
    eprintln!(
        "valid for {} more minutes: `warren adopt HOST --claim-code CODE` on the operator's machine",
        left / 60
    );
    Ok(Exit::Success)
}

/// A plain HTTP/1.1 JSON exchange on an established TLS stream (for `adopt`, before a context
/// exists).
async fn tls_json(
    addr: &str,
    verifier: std::sync::Arc<warren_auth::tls::PinVerifier>,
    call: &Call,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let tls = crate::client::tls_connect(addr, verifier).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(call.method())
        .uri(call.path())
        .header("host", "warren")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(
        |_| serde_json::json!({ "error": String::from_utf8_lossy(&bytes).to_string() }),
    );
    if !status.is_success() {
        bail!(
            "{addr} answered {status}: {}",
            v["error"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

fn ask(question: &str) -> Result<String> {
    use std::io::BufRead;
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

pub(super) async fn adopt(
    host: &str,
    claim_code: Option<String>,
    name: Option<String>,
    key: Option<PathBuf>,
    yes: bool,
) -> Result<Exit> {
    use std::io::IsTerminal;
    // A short id is a host heard on the LAN: its advertised fingerprint is pinned from the
    // first contact.
    let heard = super::discover::resolve_short_id(host).await?;
    let addr = match &heard {
        Some(h) => h.endpoint().expect("resolved with an address"),
        None => contexts::with_port(host),
    };
    let mut cfg = contexts::load()?;
    // First contact: record whatever certificate the daemon presents (or the advertised one).
    let capture = warren_auth::tls::PinVerifier::new(heard.as_ref().map(|h| h.fingerprint.clone()));
    let info = tls_json(&addr, capture.clone(), &routes::AUTH_INFO.call(), None).await?;
    let fingerprint = capture
        .seen()
        .context("the daemon presented no certificate")?;
    let host_id = info["host_id"]
        .as_str()
        .context("the daemon did not tell its host id")?
        .to_string();
    if let Some(h) = heard.as_ref().filter(|h| h.host_id != host_id) {
        bail!(
            "{addr} announced host id {} but answers as {host_id}; not adopted",
            h.host_id
        );
    }
    eprintln!("{addr}: host id {host_id}");
    eprintln!("certificate fingerprint {fingerprint}");
    if let Some(old) = cfg.context.values().find(|c| c.host == addr) {
        if old.fingerprint != fingerprint {
            eprintln!(
                "warning: {}",
                warren_auth::tls::mismatch_message(&old.fingerprint, &fingerprint)
            );
        }
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("compare the fingerprint above with what `warren daemon claim-code` prints on the host, then run again with --yes");
        }
        let answer = ask("Trust this certificate? [y/N] ")?;
        if !matches!(answer.as_str(), "y" | "Y" | "yes") {
            bail!("not adopted");
        }
    }
    let code = match claim_code {
        Some(c) => c,
        None if std::io::stdin().is_terminal() => {
            ask("Claim code (from the daemon's log or `warren daemon claim-code`): ")?
        }
        None => bail!("give the claim code with --claim-code"),
    };
    let key_path = match key {
        Some(k) => k,
        None => contexts::default_key_path()?,
    };
    let (operator, created) = warren_auth::token::OperatorKey::load_or_create(&key_path)?;
    if created {
        eprintln!("created operator key {}", key_path.display());
    }
    let who = format!(
        "{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "operator".into()),
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    );
    // From here on the certificate is pinned.
    let pinned = warren_auth::tls::PinVerifier::new(Some(fingerprint.clone()));
    tls_json(
        &addr,
        pinned,
        &routes::AUTH_ENROLL.call(),
        Some(serde_json::json!({
            "public_key": operator.public().encode(),
            "claim_code": code,
            "name": who,
        })),
    )
    .await?;
    let ctx_name = name.unwrap_or_else(|| {
        host.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    });
    cfg.context.insert(
        ctx_name.clone(),
        contexts::Context {
            host: addr.clone(),
            host_id,
            fingerprint,
            key: key_path,
        },
    );
    contexts::save(&cfg)?;
    println!("adopted {addr} as context {ctx_name}: warren --context {ctx_name} list");
    Ok(Exit::Success)
}

pub(super) async fn keys(client: &Client, cmd: KeyCmd) -> Result<Exit> {
    match cmd {
        KeyCmd::List { output: format } => {
            let keys: Vec<serde_json::Value> = client.get(&routes::KEYS.call()).await?;
            if format == ListFormat::Json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(Exit::Success);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k["fingerprint"].as_str().unwrap_or("").to_string(),
                        k["name"].as_str().unwrap_or("").to_string(),
                    ]
                })
                .collect();
            print!("{}", output::table(&["FINGERPRINT", "NAME"], &rows));
        }
        KeyCmd::Add { public_key, name } => {
            let r: serde_json::Value = client
                .post(
                    &routes::KEY_ADD.call(),
                    &serde_json::json!({ "public_key": public_key, "name": name }),
                )
                .await?;
            println!("added {}", r["fingerprint"].as_str().unwrap_or("?"));
        }
        KeyCmd::Revoke { fingerprint } => {
            let _: serde_json::Value = client
                .call(&routes::KEY_REVOKE.at(&[&fingerprint]), None::<&()>)
                .await?;
            println!("revoked {fingerprint}");
        }
        KeyCmd::Show { key } => {
            let path = match key {
                Some(k) => k,
                None => contexts::default_key_path()?,
            };
            let (k, created) = warren_auth::token::OperatorKey::load_or_create(&path)?;
            if created {
                eprintln!("created operator key {}", path.display());
            }
            println!("{}", k.public().encode());
            eprintln!("fingerprint {}", k.public().fingerprint());
        }
    }
    Ok(Exit::Success)
}

pub(super) fn context_cmd(cmd: ContextCmd) -> Result<Exit> {
    let mut cfg = contexts::load()?;
    match cmd {
        ContextCmd::List => {
            let rows: Vec<Vec<String>> = cfg
                .context
                .iter()
                .map(|(n, c)| vec![n.clone(), c.host.clone(), c.fingerprint.clone()])
                .collect();
            print!("{}", output::table(&["NAME", "HOST", "CERTIFICATE"], &rows));
        }
        ContextCmd::Rm { name } => {
            if cfg.context.remove(&name).is_none() {
                bail!("no context {name:?}");
            }
            contexts::save(&cfg)?;
            println!("removed context {name}");
        }
    }
    Ok(Exit::Success)
}
