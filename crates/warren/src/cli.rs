//! Command-line interface: argument parsing and one function per command.
//!
//! Every command except `daemon` and `completions` talks to the daemon through
//! [`crate::client::Client`]; errors are printed once, as `error: ...`, and the process exits 1
//! (or with the remote command's status for `exec` and `run`).

use crate::client::{ApiFailure, Client};
use crate::contexts;
use crate::output;
use crate::wire::*;
use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use hyper::Method;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(
    name = "warren",
    version,
    about = "Declarative control plane for containers, jails and microVMs"
)]
pub struct Cli {
    /// State directory of the daemon.
    #[arg(
        long,
        global = true,
        env = "WARREN_STATE_DIR",
        default_value = "/var/lib/warren"
    )]
    state_dir: PathBuf,
    /// The daemon's API socket [default: STATE_DIR/warren.sock].
    #[arg(long, global = true, env = "WARREN_SOCKET")]
    socket: Option<PathBuf>,
    /// Talk to the remote daemon of this context (see `warren adopt`).
    #[arg(long, global = true, env = "WARREN_CONTEXT")]
    context: Option<String>,
    /// Talk to the remote daemon at HOST[:PORT] (a context made by `warren adopt`).
    #[arg(long = "host", global = true, env = "WARREN_HOST")]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum GetFormat {
    Yaml,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum StorageDriver {
    Auto,
    Btrfs,
    Dir,
    Zfs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show what applying a file would change, then apply it.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Show the plan only.
        #[arg(long)]
        dry_run: bool,
        /// Delete workloads that are not in the file (their data is kept).
        #[arg(long)]
        prune: bool,
        /// Keep watching the file: apply every saved change (with --prune's meaning: the file
        /// is the whole desired state) until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// The live Scheme REPL of the daemon: interactive on a terminal; with piped input each
    /// form is evaluated and its value printed (an error makes the exit status 1).
    Repl,
    /// The live desired state as a warren.toml.
    Spec {
        #[command(subcommand)]
        cmd: SpecCmd,
    },
    /// Show what applying a file would change.
    Plan {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[arg(long)]
        prune: bool,
    },
    /// List workloads.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: ListFormat,
    },
    /// Show one workload: its spec and status.
    Get {
        name: String,
        #[arg(short, long, value_enum, default_value = "yaml")]
        output: GetFormat,
    },
    /// Start workloads (and keep them running).
    Start { names: Vec<String> },
    /// Stop workloads (and keep them stopped).
    Stop { names: Vec<String> },
    /// Restart workloads.
    Restart { names: Vec<String> },
    /// Delete workloads. Their data dataset is kept unless --purge.
    #[command(alias = "rm")]
    Delete {
        names: Vec<String>,
        /// Also delete the persistent data.
        #[arg(long)]
        purge: bool,
    },
    /// Print a workload's output.
    Logs {
        name: String,
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix lines with their timestamp.
        #[arg(long)]
        timestamps: bool,
    },
    /// Run a command inside a running workload.
    Exec {
        name: String,
        /// Allocate a terminal.
        #[arg(short, long)]
        tty: bool,
        /// Extra environment (KEY=VALUE).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Working directory inside the workload.
        #[arg(short, long)]
        workdir: Option<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run a one-off container from a world and remove it when it exits.
    Run(RunCmd),
    /// Base systems that workloads are created from.
    World {
        #[command(subcommand)]
        cmd: WorldCmd,
    },
    /// Build the Warrenfile recipe in DIR (its directory is sent to the daemon); prints the
    /// build's progress and the script's output.
    Build {
        dir: PathBuf,
        /// The version to record (default: the recipe's, else a random one).
        #[arg(long)]
        version: Option<String>,
    },
    /// Recipe builds.
    Recipe {
        #[command(subcommand)]
        cmd: RecipeCmd,
    },
    /// OCI images: import, list, remove, collect unused layers.
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Take a snapshot of a workload (all its datasets) or, with --volume, of a volume.
    #[command(args_conflicts_with_subcommands = true)]
    Snapshot {
        #[command(subcommand)]
        cmd: Option<SnapshotCmd>,
        name: Option<String>,
        /// Snapshot label [default: NAME-UNIXTIME].
        #[arg(short, long)]
        label: Option<String>,
        /// NAME is a volume.
        #[arg(short = 'V', long)]
        volume: bool,
    },
    /// List snapshots of a workload or (--volume) a volume.
    Snapshots {
        name: String,
        #[arg(short = 'V', long)]
        volume: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: ListFormat,
    },
    /// Roll a workload (stopped and restarted if running) or a volume back to a snapshot.
    Rollback {
        name: String,
        snapshot: String,
        /// Also destroy snapshots newer than SNAPSHOT.
        #[arg(long)]
        force: bool,
        #[arg(short = 'V', long)]
        volume: bool,
    },
    /// Create workload DST as a copy-on-write clone of SRC.
    Clone {
        src: String,
        dst: String,
        /// Clone this snapshot instead of the current state.
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// Write a workload (spec, metadata and data) to an archive; `-o -` or a pipe for stdout.
    Export {
        name: String,
        /// Output file (`-` for stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Only what changed since this snapshot (an earlier export's label).
        #[arg(long)]
        since: Option<String>,
        /// NAME is a volume.
        #[arg(short = 'V', long)]
        volume: bool,
    },
    /// Recreate a workload from an archive (`-` for stdin); the archive is verified first.
    Import {
        file: PathBuf,
        /// Import under another name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Named datasets shared by workloads.
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
    },
    /// Recent events.
    Events {
        #[arg(long)]
        workload: Option<String>,
        #[arg(short = 'n', long, default_value = "50")]
        limit: usize,
        #[arg(short, long, value_enum, default_value = "table")]
        output: ListFormat,
        /// Keep printing new events as they happen (with -o json: one JSON object per line).
        #[arg(short, long)]
        follow: bool,
    },
    /// The local certificate authority that signs `tls = "local"` routes.
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Run the daemon; `daemon claim-code` and `daemon reset-auth` manage remote enrolment.
    Daemon(DaemonCmd),
    /// Enroll this operator's key with a remote daemon and remember it as a context: shows the
    /// daemon's certificate fingerprint and pins it.
    Adopt {
        /// HOST or HOST:PORT (default port 7443).
        host: String,
        /// The claim code from the daemon's log or `warren daemon claim-code` on the host.
        #[arg(long, env = "WARREN_CLAIM_CODE")]
        claim_code: Option<String>,
        /// Context name [default: the host].
        #[arg(long)]
        name: Option<String>,
        /// The operator key [default: ~/.config/warren/operator.key, created if missing].
        #[arg(long)]
        key: Option<PathBuf>,
        /// Trust the certificate shown without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Operator keys the remote API accepts.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Remote contexts in ~/.config/warren/config.toml.
    Context {
        #[command(subcommand)]
        cmd: ContextCmd,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Args)]
struct RunCmd {
    /// Remove the container when it exits (the only mode: long-lived workloads belong in a
    /// spec file).
    #[arg(long)]
    rm: bool,
    #[arg(short, long)]
    tty: bool,
    #[arg(short, long = "env")]
    env: Vec<String>,
    world: String,
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Delete a snapshot.
    #[command(alias = "delete")]
    Rm {
        name: String,
        label: String,
        #[arg(short = 'V', long)]
        volume: bool,
    },
}

#[derive(Subcommand)]
enum CaCmd {
    /// Print the CA certificate (PEM) for clients to trust, or write it to a file.
    Export {
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// List volumes with their size, use and mounts.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: ListFormat,
    },
    /// Delete a volume and its data (refused while a workload mounts it).
    Rm { name: String },
}

#[derive(Subcommand)]
enum SpecCmd {
    /// Write the live desired state as a warren.toml that applies again as a no-op.
    Export {
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
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
enum ContextCmd {
    /// List contexts.
    #[command(alias = "ls")]
    List,
    /// Forget a context.
    Rm { name: String },
}

#[derive(Subcommand)]
enum DaemonAction {
    /// Print the claim code while the claim window is open (root on the host).
    ClaimCode,
    /// Open a new claim window with a new claim code (root on the host).
    ResetAuth,
}

#[derive(Subcommand)]
enum RecipeCmd {
    /// List every built version.
    #[command(alias = "ls")]
    List {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: ListFormat,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Import a docker-save or oci-archive tarball (gzip/zstd allowed), an OCI layout
    /// directory, or `-` for stdin; prints the references stored.
    Import {
        file: PathBuf,
        /// Store the archive's (only) image under this reference, e.g. `app:v1`.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Pull HOST[:PORT]/REPO[:TAG|@DIGEST] from a registry (OCI distribution protocol) and
    /// store it under that reference.
    Pull {
        reference: String,
        #[arg(long, env = "WARREN_REGISTRY_USER")]
        username: Option<String>,
        /// Read the password from stdin (or WARREN_REGISTRY_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
        /// Allow plain HTTP to a registry that is not on loopback.
        #[arg(long)]
        insecure: bool,
        /// OS/ARCH[/VARIANT] [default: this host's].
        #[arg(long)]
        platform: Option<String>,
    },
    /// List stored images.
    #[command(alias = "ls")]
    List {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: ListFormat,
    },
    /// Forget an image reference (refused while a workload names it); `gc` frees its layers.
    Rm { reference: String },
    /// Delete every layer no stored image uses.
    Gc,
}

#[derive(Subcommand)]
enum WorldCmd {
    /// Build a world: host, busybox, debian (the host's suite) or debian-SUITE.
    Create {
        name: String,
        /// Debian mirror URL (default: the one the host's apt uses).
        #[arg(long)]
        mirror: Option<String>,
    },
    /// Make a world from a root filesystem tarball (plain, gzip or zstd; `-` for stdin),
    /// such as one `world export` wrote.
    Import {
        name: String,
        file: PathBuf,
        /// Default command of the world's workloads (default: the archive's, else /bin/sh).
        #[arg(long, num_args = 1.., allow_hyphen_values = true)]
        command: Option<Vec<String>>,
    },
    /// Write a world as a zstd-compressed tarball (to stdout without -o).
    Export {
        name: String,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Delete a world (refused while a workload names it).
    Rm { name: String },
    /// List worlds.
    #[command(alias = "ls")]
    List,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct DaemonCmd {
    #[command(subcommand)]
    action: Option<DaemonAction>,
    /// Dataset driver (auto: btrfs on Linux, zfs on FreeBSD).
    #[arg(long, value_enum, default_value = "auto", env = "WARREN_STORAGE")]
    storage: StorageDriver,
    /// zpool (or parent dataset) for `--storage zfs` and FreeBSD's default storage.
    #[arg(long, default_value = "zroot", env = "WARREN_ZFS_POOL")]
    zfs_pool: String,
    /// Size of the embedded loop-backed btrfs pool, in GiB.
    #[arg(long, default_value = "20", env = "WARREN_POOL_GIB")]
    pool_gib: u64,
    /// Seconds between periodic reconcile passes.
    #[arg(long, default_value = "10")]
    tick: f64,
    /// Workloads operated on at once.
    #[arg(long, default_value = "8")]
    parallel: usize,
    /// Seconds between TERM and KILL when stopping.
    #[arg(long, default_value = "10")]
    stop_timeout: f64,
    /// First crash-loop backoff delay in milliseconds (doubles per failure).
    #[arg(long, default_value = "500")]
    backoff_base_ms: u64,
    /// Longest crash-loop backoff delay in milliseconds.
    #[arg(long, default_value = "300000")]
    backoff_cap_ms: u64,
    /// A run longer than this many milliseconds resets the backoff.
    #[arg(long, default_value = "30000")]
    stable_ms: u64,
    /// runc state directory [default: /run/warren/INSTANCE].
    #[arg(long)]
    runc_root: Option<PathBuf>,
    /// The bridge bridge-mode workloads are attached to.
    #[arg(long, default_value = "warren0", env = "WARREN_BRIDGE")]
    bridge: String,
    /// The bridge's IPv4 subnet (the first address is the gateway).
    #[arg(long, default_value = "10.88.0.0/16", env = "WARREN_SUBNET")]
    subnet: String,
    /// warren's own nftables table (family inet).
    #[arg(long, default_value = "warren", env = "WARREN_NFT_TABLE")]
    nft_table: String,
    /// Host port the ingress serves plain HTTP on.
    #[arg(long, default_value = "80", env = "WARREN_HTTP_PORT")]
    http_port: u16,
    /// Host port the ingress serves HTTPS on.
    #[arg(long, default_value = "443", env = "WARREN_HTTPS_PORT")]
    https_port: u16,
    /// Host address the ingress ports are published on [default: every address].
    #[arg(long, env = "WARREN_INGRESS_LISTEN")]
    ingress_listen: Option<std::net::Ipv4Addr>,
    /// Where the remote API (TLS, operator tokens) listens: ADDR:PORT, or `none`.
    #[arg(long, default_value = "0.0.0.0:7443", env = "WARREN_LISTEN")]
    listen: String,
    /// Let workload hooks run commands on the host (`host = [...]`).
    #[arg(long, env = "WARREN_ALLOW_HOST_HOOKS")]
    allow_host_hooks: bool,
    /// Watch this warren.toml: apply every saved change (as apply --prune), write live changes
    /// back to it.
    #[arg(long, env = "WARREN_SPEC")]
    spec: Option<PathBuf>,
    /// Seconds one REPL evaluation or callback may run before it is interrupted.
    #[arg(long, default_value = "30")]
    repl_time_limit: u64,
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    // The daemon gets worker threads; a CLI command is one short conversation.
    let builder = if matches!(cli.cmd, Cmd::Daemon(_)) {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match { builder }.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(f) = e.downcast_ref::<ApiFailure>() {
                if !f.body.diagnostics.is_empty() {
                    for d in &f.body.diagnostics {
                        eprintln!("error: {d}");
                    }
                    return 1;
                }
            }
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32> {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| cli.state_dir.join("warren.sock"));
    let remote = if matches!(
        cli.cmd,
        Cmd::Adopt { .. } | Cmd::Context { .. } | Cmd::Completions { .. }
    ) || matches!(
        cli.cmd,
        Cmd::Key {
            cmd: KeyCmd::Show { .. }
        }
    ) {
        None
    } else {
        let cfg = contexts::load()?;
        match contexts::select(&cfg, cli.context.as_deref(), cli.host.as_deref())? {
            Some(ctx) => {
                let (key, _) = warren_auth::token::OperatorKey::load_or_create(&ctx.key)?;
                Some(crate::client::Remote {
                    addr: ctx.host,
                    host_id: ctx.host_id,
                    fingerprint: ctx.fingerprint,
                    key: std::sync::Arc::new(key),
                })
            }
            None => None,
        }
    };
    let client = Client {
        socket: socket.clone(),
        remote,
    };
    match cli.cmd {
        Cmd::Apply {
            file,
            dry_run,
            prune,
            watch: false,
        } => apply(&client, &file, dry_run, prune, true).await,
        Cmd::Apply {
            file, watch: true, ..
        } => apply_watch(&client, &file).await,
        Cmd::Repl => repl(&client).await,
        Cmd::Spec {
            cmd: SpecCmd::Export { output },
        } => {
            use http_body_util::BodyExt;
            let body = client.get_stream("/v1/spec/export").await?;
            let text = body.collect().await?.to_bytes();
            match output {
                Some(p) if p.as_os_str() != "-" => {
                    std::fs::write(&p, &text)
                        .with_context(|| format!("writing {}", p.display()))?;
                    eprintln!("wrote {}", p.display());
                }
                _ => std::io::stdout().write_all(&text)?,
            }
            Ok(0)
        }
        Cmd::Plan { file, prune } => apply(&client, &file, true, prune, false).await,
        Cmd::List { output } => list(&client, output).await,
        Cmd::Get { name, output } => get(&client, &name, output).await,
        Cmd::Start { names } => each(&client, names, "start").await,
        Cmd::Stop { names } => each(&client, names, "stop").await,
        Cmd::Restart { names } => each(&client, names, "restart").await,
        Cmd::Delete { names, purge } => delete(&client, names, purge).await,
        Cmd::Logs {
            name,
            follow,
            tail,
            timestamps,
        } => logs(&client, &name, follow, tail, timestamps).await,
        Cmd::Exec {
            name,
            tty,
            env,
            workdir,
            command,
        } => {
            let (rows, cols) = term_size();
            let args = ExecArgs {
                argv: command,
                tty,
                env,
                workdir,
                rows,
                cols,
            };
            attach(&client, &format!("/v1/workloads/{name}/exec"), &args, tty).await
        }
        Cmd::Run(r) => {
            if !r.rm {
                bail!("`warren run` creates one-off containers and needs --rm; declare long-running workloads in a spec file");
            }
            let mut env = std::collections::BTreeMap::new();
            for kv in r.env {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--env {kv:?}: expected KEY=VALUE"))?;
                env.insert(k.to_string(), v.to_string());
            }
            let (rows, cols) = term_size();
            let args = RunArgs {
                world: r.world,
                argv: r.command,
                tty: r.tty,
                env,
                rows,
                cols,
            };
            attach(&client, "/v1/run", &args, r.tty).await
        }
        Cmd::World { cmd } => world(&client, cmd).await,
        Cmd::Image { cmd } => image(&client, cmd).await,
        Cmd::Build { dir, version } => build(&client, &dir, version).await,
        Cmd::Recipe {
            cmd: RecipeCmd::List { output: format },
        } => recipes(&client, format).await,
        Cmd::Snapshot {
            cmd:
                Some(SnapshotCmd::Rm {
                    name,
                    label,
                    volume,
                }),
            ..
        } => {
            let _: serde_json::Value = client
                .call(
                    Method::DELETE,
                    &format!("{}/snapshots/{label}", base(&name, volume)),
                    None::<&()>,
                )
                .await?;
            println!("snapshot {label} of {name} deleted");
            Ok(0)
        }
        Cmd::Snapshot {
            cmd: None,
            name,
            label,
            volume,
        } => {
            let Some(name) = name else {
                bail!("snapshot: name a workload (or a volume with --volume)");
            };
            let r: serde_json::Value = client
                .post(
                    &format!("{}/snapshots", base(&name, volume)),
                    &SnapshotRequest { label },
                )
                .await?;
            println!("{name}: snapshot {}", r["label"].as_str().unwrap_or("?"));
            Ok(0)
        }
        Cmd::Snapshots {
            name,
            volume,
            output,
        } => snapshots(&client, &name, volume, output).await,
        Cmd::Rollback {
            name,
            snapshot,
            force,
            volume,
        } => {
            let r: serde_json::Value = client
                .post(
                    &format!("{}/rollback", base(&name, volume)),
                    &RollbackRequest {
                        label: snapshot.clone(),
                        force,
                    },
                )
                .await?;
            let destroyed: Vec<String> =
                serde_json::from_value(r["destroyed"].clone()).unwrap_or_default();
            println!("{name}: rolled back to {snapshot}");
            if !destroyed.is_empty() {
                println!("destroyed newer snapshots: {}", destroyed.join(", "));
            }
            Ok(0)
        }
        Cmd::Clone { src, dst, snapshot } => {
            let _: serde_json::Value = client
                .post(
                    &format!("/v1/workloads/{src}/clone"),
                    &CloneRequest {
                        name: dst.clone(),
                        snapshot,
                    },
                )
                .await?;
            println!("{dst}: cloned from {src}");
            Ok(0)
        }
        Cmd::Volume { cmd } => volume(&client, cmd).await,
        Cmd::Export {
            name,
            output,
            since,
            volume,
        } => export(&client, &name, output, since, volume).await,
        Cmd::Import { file, name } => import(&client, &file, name).await,
        Cmd::Events {
            workload,
            limit,
            output,
            follow,
        } => events(&client, workload, limit, output, follow).await,
        Cmd::Ca {
            cmd: CaCmd::Export { output },
        } => ca_export(&client, output).await,
        Cmd::Daemon(DaemonCmd {
            action: Some(action),
            ..
        }) => daemon_action(&client, action).await,
        Cmd::Daemon(d) => run_daemon(cli.state_dir, socket, d).await,
        Cmd::Adopt {
            host,
            claim_code,
            name,
            key,
            yes,
        } => adopt(&host, claim_code, name, key, yes).await,
        Cmd::Key { cmd } => keys(&client, cmd).await,
        Cmd::Context { cmd } => context_cmd(cmd),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "warren", &mut std::io::stdout());
            Ok(0)
        }
    }
}

async fn run_daemon(state_dir: PathBuf, socket: PathBuf, d: DaemonCmd) -> Result<i32> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let state_dir = if state_dir.is_absolute() {
        state_dir
    } else {
        std::env::current_dir()?.join(state_dir)
    };
    let instance = crate::daemon::Config::instance_of(&state_dir);
    let cfg = crate::daemon::Config {
        socket,
        driver: match d.storage {
            StorageDriver::Auto => warren_storage::pool::Driver::Auto,
            StorageDriver::Btrfs => warren_storage::pool::Driver::Btrfs,
            StorageDriver::Dir => warren_storage::pool::Driver::Dir,
            StorageDriver::Zfs => warren_storage::pool::Driver::Zfs,
        },
        zfs_pool: d.zfs_pool,
        pool_size: d.pool_gib << 30,
        tick: Duration::from_secs_f64(d.tick.max(0.05)),
        parallel: d.parallel,
        stop_timeout: Duration::from_secs_f64(d.stop_timeout.max(0.0)),
        backoff: warren_model::plan::Backoff {
            base_ms: d.backoff_base_ms,
            cap_ms: d.backoff_cap_ms,
            stable_ms: d.stable_ms,
        },
        runc_root: d
            .runc_root
            .unwrap_or_else(|| PathBuf::from("/run/warren").join(&instance)),
        net: crate::daemon::NetSettings {
            subnet: warren_net::ipam::Subnet::parse(&d.subnet)
                .map_err(|e| anyhow::anyhow!("--subnet: {e}"))?,
            bridge: d.bridge,
            table: d.nft_table,
        },
        ingress: crate::daemon::ingress::IngressSettings {
            http_port: d.http_port,
            https_port: d.https_port,
            listen: d.ingress_listen,
        },
        allow_host_hooks: d.allow_host_hooks,
        repl_time_limit: Duration::from_secs(d.repl_time_limit.max(1)),
        spec: match d.spec {
            Some(p) if p.is_relative() => Some(std::env::current_dir()?.join(p)),
            other => other,
        },
        listen: match d.listen.as_str() {
            "none" | "off" => None,
            a => Some(a.parse().map_err(|e| {
                anyhow::anyhow!("--listen {a:?}: {e} (give ADDR:PORT, e.g. 0.0.0.0:7443, or none)")
            })?),
        },
        instance,
        state_dir,
    };
    crate::daemon::run(cfg).await?;
    Ok(0)
}

async fn ca_export(client: &Client, output: Option<PathBuf>) -> Result<i32> {
    use http_body_util::BodyExt;
    let body = client.get_stream("/v1/ca").await?;
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
    Ok(0)
}

async fn apply(
    client: &Client,
    file: &PathBuf,
    dry_run: bool,
    prune: bool,
    apply: bool,
) -> Result<i32> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let req = ApplyRequest {
        file: file.display().to_string(),
        text,
        prune,
        dry_run,
    };
    let path = if apply { "/v1/apply" } else { "/v1/plan" };
    let resp: ApplyResponse = client.post(path, &req).await?;
    let mut out = String::new();
    let mut orphans = Vec::new();
    for c in &resp.changes {
        if let Some(v) = c.workload.strip_prefix("volume/") {
            match c.change.as_str() {
                "create" => out.push_str(&format!("+ volume {v} (create)\n")),
                "update" => out.push_str(&format!("~ volume {v} (update)\n")),
                "remove" => out.push_str(&format!(
                    "- volume {v} (forget the declaration; data kept until `warren volume rm {v}`)\n"
                )),
                _ => {}
            }
            continue;
        }
        match c.change.as_str() {
            "create" => out.push_str(&format!("+ {} (create)\n", c.workload)),
            "update" => out.push_str(&format!(
                "~ {} (update: {})\n",
                c.workload,
                c.fields.join(", ")
            )),
            "remove" => out.push_str(&format!("- {} (delete; data kept)\n", c.workload)),
            "orphan" => orphans.push(c.workload.clone()),
            _ => {}
        }
    }
    if resp.steps.is_empty() && out.is_empty() {
        out.push_str("no changes\n");
    }
    for s in &resp.steps {
        out.push_str(&format!(
            "  {} {}: {}\n",
            s.action.verb(),
            s.workload,
            s.reason
        ));
    }
    if !orphans.is_empty() {
        out.push_str(&format!(
            "not in {}: {} (kept; use --prune to delete)\n",
            req.file,
            orphans.join(", ")
        ));
    }
    if resp.applied {
        out.push_str(&format!("applied (generation {})\n", resp.generation));
    } else if apply {
        out.push_str("dry run: nothing changed\n");
    }
    print!("{out}");
    Ok(0)
}

async fn list(client: &Client, format: ListFormat) -> Result<i32> {
    let items: Vec<Status> = client.get("/v1/workloads").await?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    let now = warren_store::now_ms();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.kind.clone(),
                match &s.health {
                    Some(h) => format!("{} ({h})", s.state),
                    None => s.state.clone(),
                },
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.restarts.to_string(),
                match (s.pid, s.started_ms) {
                    (Some(_), Some(t)) => output::age(t, now),
                    _ => "-".into(),
                },
                s.source.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["NAME", "KIND", "STATE", "PID", "RESTARTS", "UPTIME", "SOURCE"],
            &rows
        )
    );
    Ok(0)
}

async fn get(client: &Client, name: &str, format: GetFormat) -> Result<i32> {
    let v: serde_json::Value = client.get(&format!("/v1/workloads/{name}")).await?;
    match format {
        GetFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        GetFormat::Yaml => print!("{}", output::yaml(&v)),
    }
    Ok(0)
}

async fn each(client: &Client, names: Vec<String>, verb: &str) -> Result<i32> {
    if names.is_empty() {
        bail!("{verb}: name at least one workload");
    }
    for name in names {
        let s: Status = client
            .post(&format!("/v1/workloads/{name}/{verb}"), &())
            .await
            .with_context(|| format!("{verb} {name}"))?;
        println!(
            "{}: {}{}",
            s.name,
            s.state,
            s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        );
    }
    Ok(0)
}

async fn delete(client: &Client, names: Vec<String>, purge: bool) -> Result<i32> {
    if names.is_empty() {
        bail!("delete: name at least one workload");
    }
    for name in names {
        let r: DeleteResponse = client
            .call(
                Method::DELETE,
                &format!("/v1/workloads/{name}?purge={purge}"),
                None::<&()>,
            )
            .await
            .with_context(|| format!("delete {name}"))?;
        match r.data_kept {
            Some(p) => println!(
                "{name}: deleted (data kept at {p}; `warren delete --purge {name}` removes it)"
            ),
            None => println!("{name}: deleted"),
        }
    }
    Ok(0)
}

async fn logs(
    client: &Client,
    name: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> Result<i32> {
    let mut path = format!("/v1/workloads/{name}/logs?follow={follow}");
    if let Some(n) = tail {
        path.push_str(&format!("&tail={n}"));
    }
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    client
        .stream_lines(&path, |line| {
            let e: LogEntry = serde_json::from_slice(line)?;
            let nl = if e.partial { "" } else { "\n" };
            let text = if timestamps {
                format!("{} {}{nl}", e.ts, e.text)
            } else {
                format!("{}{nl}", e.text)
            };
            if e.stream == "stderr" {
                let mut h = stderr.lock();
                h.write_all(text.as_bytes())?;
                h.flush()?;
            } else {
                let mut h = stdout.lock();
                h.write_all(text.as_bytes())?;
                h.flush()?;
            }
            Ok(())
        })
        .await?;
    Ok(0)
}

fn term_size() -> (u16, u16) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize for a terminal fd; on failure ws stays zeroed.
    unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (ws.ws_row, ws.ws_col)
}

/// Restores the terminal mode on drop.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter(tty: bool) -> RawMode {
        use nix::sys::termios;
        if !tty || !nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            return RawMode(None);
        }
        let Ok(orig) = termios::tcgetattr(std::io::stdin()) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

/// Connects stdin/stdout/stderr to an exec or run stream; returns the remote exit code.
async fn attach(
    client: &Client,
    path: &str,
    args: &impl serde::Serialize,
    tty: bool,
) -> Result<i32> {
    let io = client.upgrade(path, args).await?;
    let (mut rd, mut wr) = tokio::io::split(io);
    let _raw = RawMode::enter(tty);
    // stdin → frames, from a thread: reading stdin is blocking.
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(16);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16384];
        let mut stdin = std::io::stdin().lock();
        loop {
            match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => {
                    let _ = in_tx.blocking_send(None);
                    break;
                }
                Ok(n) => {
                    if in_tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                data = in_rx.recv() => match data {
                    Some(Some(d)) => { if wr.write_all(&encode_frame(FrameKind::Stdin, &d)).await.is_err() { break; } }
                    _ => { let _ = wr.write_all(&encode_frame(FrameKind::StdinEof, &[])).await; break; }
                },
                _ = winch.recv() => {
                    let (r, c) = term_size();
                    let mut p = r.to_be_bytes().to_vec();
                    p.extend_from_slice(&c.to_be_bytes());
                    if wr.write_all(&encode_frame(FrameKind::Resize, &p)).await.is_err() { break; }
                }
            }
        }
        // Keep the write half open so the daemon does not take EOF as a hang-up.
        std::future::pending::<()>().await;
    });
    let mut code = 255;
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    loop {
        match read_frame(&mut rd).await? {
            None => break,
            Some((FrameKind::Stdout, d)) => {
                out.write_all(&d).await?;
                out.flush().await?;
            }
            Some((FrameKind::Stderr, d)) => {
                err.write_all(&d).await?;
                err.flush().await?;
            }
            Some((FrameKind::Exit, d)) if d.len() == 4 => {
                code = i32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                break;
            }
            Some((FrameKind::Error, d)) => {
                writer.abort();
                bail!("{}", String::from_utf8_lossy(&d));
            }
            Some(_) => {}
        }
    }
    writer.abort();
    let _ = rd.read(&mut [0u8; 0]).await;
    Ok(code)
}

fn progress(what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}",
        )
        .expect("template is valid"),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

async fn export(
    client: &Client,
    name: &str,
    output: Option<PathBuf>,
    since: Option<String>,
    volume: bool,
) -> Result<i32> {
    use http_body_util::BodyExt;
    use std::io::IsTerminal;
    let to_stdout = match &output {
        Some(p) => p.as_os_str() == "-",
        None => {
            if std::io::stdout().is_terminal() {
                bail!("export: give -o FILE, or -o - (or a pipe) for stdout");
            }
            true
        }
    };
    let mut path = format!("{}/export", base(name, volume));
    if let Some(s) = &since {
        path.push_str(&format!("?since={s}"));
    }
    let mut body = client.get_stream(&path).await?;
    let tmp = output.as_ref().filter(|_| !to_stdout).map(|p| {
        let mut t = p.clone().into_os_string();
        t.push(".part");
        PathBuf::from(t)
    });
    let mut out: Box<dyn Write> = match &tmp {
        Some(t) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(t).with_context(|| format!("creating {}", t.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let pb = progress(&format!("exporting {name}"));
    let mut tail: Vec<u8> = Vec::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("receiving the archive")?;
        if let Some(data) = frame.data_ref() {
            out.write_all(data)?;
            total += data.len() as u64;
            pb.set_position(total);
            // The last bytes seen, for the end marker (only a frame's last 64 bytes are kept).
            tail.extend_from_slice(&data[data.len().saturating_sub(64)..]);
            if tail.len() > 64 {
                tail.drain(..tail.len() - 64);
            }
        }
    }
    out.flush()?;
    drop(out);
    pb.finish_and_clear();
    if !tail.ends_with(crate::daemon::archive::END) {
        if let Some(t) = &tmp {
            let _ = std::fs::remove_file(t);
        }
        bail!("export of {name} ended early (see `warren events --workload {name}`); nothing usable was written");
    }
    if let (Some(t), Some(p)) = (&tmp, &output) {
        std::fs::rename(t, p)?;
        eprintln!("exported {name} to {} ({total} bytes)", p.display());
    }
    Ok(0)
}

type UploadBody = http_body_util::StreamBody<
    std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = std::io::Result<hyper::body::Frame<bytes::Bytes>>>
                + Send,
        >,
    >,
>;

/// `file` (`-` for stdin) as a request body, with an upload progress bar.
async fn upload(file: &PathBuf) -> Result<(UploadBody, indicatif::ProgressBar)> {
    use tokio::io::AsyncRead;
    let reader: Box<dyn AsyncRead + Send + Unpin> = if file.as_os_str() == "-" {
        Box::new(tokio::io::stdin())
    } else if file.is_dir() {
        // A directory (an OCI layout) goes as a tar of its contents, written as it is read.
        let (r, w) = std::io::pipe().context("creating a pipe")?;
        let dir = file.clone();
        std::thread::spawn(move || {
            let mut b = tar::Builder::new(w);
            b.follow_symlinks(false);
            let _ = b.append_dir_all(".", &dir).and_then(|_| b.finish());
        });
        Box::new(tokio::fs::File::from_std(std::fs::File::from(
            std::os::fd::OwnedFd::from(r),
        )))
    } else {
        Box::new(
            tokio::fs::File::open(file)
                .await
                .with_context(|| format!("opening {}", file.display()))?,
        )
    };
    let pb = progress("uploading");
    let pb2 = pb.clone();
    let stream = futures_util::stream::unfold((reader, 0u64), move |(mut r, sent)| {
        let pb = pb2.clone();
        async move {
            let mut buf = vec![0u8; 1 << 20];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    pb.set_position(sent + n as u64);
                    Some((
                        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(buf))),
                        (r, sent + n as u64),
                    ))
                }
                Err(e) => Some((Err(e), (r, sent))),
            }
        }
    });
    Ok((http_body_util::StreamBody::new(Box::pin(stream)), pb))
}

async fn import(client: &Client, file: &PathBuf, name: Option<String>) -> Result<i32> {
    let (body, pb) = upload(file).await?;
    let mut path = "/v1/import".to_string();
    if let Some(n) = &name {
        path.push_str(&format!("?name={n}"));
    }
    let r: serde_json::Value = client.post_stream(&path, body).await?;
    pb.finish_and_clear();
    println!(
        "imported {} (snapshot {}{})",
        r["name"].as_str().unwrap_or("?"),
        r["label"].as_str().unwrap_or("?"),
        if r["incremental"].as_bool().unwrap_or(false) {
            ", incremental"
        } else {
            ""
        }
    );
    Ok(0)
}

fn base(name: &str, volume: bool) -> String {
    if volume {
        format!("/v1/volumes/{name}")
    } else {
        format!("/v1/workloads/{name}")
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

async fn snapshots(client: &Client, name: &str, volume: bool, format: ListFormat) -> Result<i32> {
    let snaps: Vec<serde_json::Value> = client
        .get(&format!("{}/snapshots", base(name, volume)))
        .await?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&snaps)?);
        return Ok(0);
    }
    let now = warren_store::now_ms();
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s["label"].as_str().unwrap_or("").to_string(),
                output::age(s["created_at"].as_u64().unwrap_or(0) * 1000, now) + " ago",
                s["bytes"]
                    .as_u64()
                    .map(human_bytes)
                    .unwrap_or_else(|| "-".into()),
                if s["automatic"].as_bool().unwrap_or(false) {
                    "auto"
                } else {
                    "manual"
                }
                .into(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["LABEL", "TAKEN", "SIZE", "KIND"], &rows)
    );
    Ok(0)
}

async fn volume(client: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::List { output } => {
            let vols: Vec<VolumeInfo> = client.get("/v1/volumes").await?;
            if output == ListFormat::Json {
                println!("{}", serde_json::to_string_pretty(&vols)?);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = vols
                .iter()
                .map(|v| {
                    vec![
                        v.name.clone(),
                        v.used.map(human_bytes).unwrap_or_else(|| "-".into()),
                        v.size.map(human_bytes).unwrap_or_else(|| "-".into()),
                        if v.mounts.is_empty() {
                            "-".into()
                        } else {
                            v.mounts.join(" ")
                        },
                        if v.declared { "" } else { "not declared" }.into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "USED", "SIZE", "MOUNTED BY", ""], &rows)
            );
        }
        VolumeCmd::Rm { name } => {
            let _: serde_json::Value = client
                .call(Method::DELETE, &format!("/v1/volumes/{name}"), None::<&()>)
                .await?;
            println!("volume {name} deleted");
        }
    }
    Ok(0)
}

async fn repl(client: &Client) -> Result<i32> {
    use std::io::{BufRead, IsTerminal};
    let eval = |expr: String| async move {
        let r: ReplResponse = client
            .post("/v1/repl", &serde_json::json!({ "expr": expr }))
            .await?;
        Ok::<_, anyhow::Error>(r)
    };
    let interactive = std::io::stdin().is_terminal();
    let mut failed = false;
    let mut pending = String::new();
    let stdin = std::io::stdin();
    // On a terminal: a line editor with history kept in ~/.config/warren/repl_history.
    let mut editor = if interactive {
        eprintln!("warren Scheme REPL: (workloads), (workload \"web\"), (start! \"web\"), (on \"web\" 'crash (lambda (w ev) ...)); Ctrl-D leaves");
        let mut ed = rustyline::DefaultEditor::new()?;
        let _ = ed.load_history(&crate::contexts::config_dir()?.join("repl_history"));
        Some(ed)
    } else {
        None
    };
    let mut lines = stdin.lock().lines();
    loop {
        let line = match editor.as_mut() {
            Some(ed) => {
                let prompt = if pending.is_empty() {
                    "warren> "
                } else {
                    "   ...> "
                };
                match ed.readline(prompt) {
                    Ok(l) => {
                        if !l.trim().is_empty() {
                            let _ = ed.add_history_entry(l.as_str());
                        }
                        l
                    }
                    Err(rustyline::error::ReadlineError::Interrupted) => {
                        pending.clear();
                        continue;
                    }
                    Err(_) => break,
                }
            }
            None => match lines.next() {
                Some(l) => l?,
                None => break,
            },
        };
        pending.push_str(&line);
        pending.push('\n');
        let (forms, rest) = crate::scheme::forms(&pending);
        pending = rest;
        for form in forms {
            let r = eval(form).await?;
            match (r.value, r.error) {
                (_, Some(e)) => {
                    failed = true;
                    eprintln!("error: {e}");
                }
                (Some(v), None) if !v.is_empty() => println!("{v}"),
                _ => {}
            }
        }
    }
    if let Some(ed) = editor.as_mut() {
        let path = crate::contexts::config_dir()?.join("repl_history");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = ed.save_history(&path);
    }
    if !pending.trim().is_empty() {
        eprintln!(
            "error: unfinished expression at the end of the input: {}",
            pending.trim()
        );
        failed = true;
    }
    Ok(if failed && !interactive { 1 } else { 0 })
}

/// `apply -f FILE --watch`: applies the file now and on every saved change (the file is the
/// whole desired state), reporting each outcome; an invalid save changes nothing.
async fn apply_watch(client: &Client, file: &PathBuf) -> Result<i32> {
    use http_body_util::BodyExt;
    let name = file.display().to_string();
    let mut seen: Option<Vec<u8>> = None;
    let mut valid = false;
    loop {
        match std::fs::read(file) {
            Ok(bytes) if seen.as_ref() != Some(&bytes) => {
                seen = Some(bytes);
                match apply(client, file, false, true, true).await {
                    Ok(_) => {
                        valid = true;
                        eprintln!("watching {name} (Ctrl-C stops)");
                    }
                    Err(e) => {
                        valid = false;
                        if let Some(f) = e.downcast_ref::<ApiFailure>() {
                            for d in &f.body.diagnostics {
                                eprintln!("error: {d}");
                            }
                            if f.body.diagnostics.is_empty() {
                                eprintln!("error: {}", f.body.error);
                            }
                        } else {
                            eprintln!("error: {e:#}");
                        }
                        eprintln!("nothing changed; watching {name} for the next save");
                    }
                }
            }
            Ok(bytes) if valid => {
                // Live changes (CLI, API, REPL) are written back to the file, unless its last
                // save did not validate (an edit in progress is never overwritten).
                let text = String::from_utf8_lossy(&bytes).to_string();
                let export = client.get_stream("/v1/spec/export").await?;
                let live_text =
                    String::from_utf8_lossy(&export.collect().await?.to_bytes()).to_string();
                let from_file = warren_model::parse_spec(&text, &name).map(|p| p.spec);
                let live = warren_model::parse_spec(&live_text, "export").map(|p| p.spec);
                if let (Ok(f), Ok(l)) = (&from_file, &live) {
                    if f != l {
                        let tmp = file.with_extension("warren-tmp");
                        std::fs::write(&tmp, &live_text)
                            .and_then(|_| std::fs::rename(&tmp, file))
                            .with_context(|| format!("writing live changes back to {name}"))?;
                        seen = Some(live_text.into_bytes());
                        eprintln!("wrote live changes back to {name}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("error: reading {name}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn daemon_action(client: &Client, action: DaemonAction) -> Result<i32> {
    if client.remote.is_some() {
        bail!("claim codes are managed by root on the host, over the local socket");
    }
    let r: serde_json::Value = match action {
        DaemonAction::ClaimCode => client.get("/v1/auth/claim-code").await?,
        DaemonAction::ResetAuth => client.post("/v1/auth/reset", &()).await?,
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
    Ok(0)
}

/// A plain HTTP/1.1 JSON exchange on an established TLS stream (for `adopt`, before a context
/// exists).
async fn tls_json(
    addr: &str,
    verifier: std::sync::Arc<warren_auth::tls::PinVerifier>,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let tls = crate::client::tls_connect(addr, verifier).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
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

async fn adopt(
    host: &str,
    claim_code: Option<String>,
    name: Option<String>,
    key: Option<PathBuf>,
    yes: bool,
) -> Result<i32> {
    use std::io::IsTerminal;
    let addr = contexts::with_port(host);
    let mut cfg = contexts::load()?;
    // First contact: record whatever certificate the daemon presents.
    let capture = warren_auth::tls::PinVerifier::new(None);
    let info = tls_json(&addr, capture.clone(), Method::GET, "/v1/auth/info", None).await?;
    let fingerprint = capture
        .seen()
        .context("the daemon presented no certificate")?;
    let host_id = info["host_id"]
        .as_str()
        .context("the daemon did not tell its host id")?
        .to_string();
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
        Method::POST,
        "/v1/auth/enroll",
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
    Ok(0)
}

async fn keys(client: &Client, cmd: KeyCmd) -> Result<i32> {
    match cmd {
        KeyCmd::List { output: format } => {
            let keys: Vec<serde_json::Value> = client.get("/v1/auth/keys").await?;
            if format == ListFormat::Json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(0);
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
                    "/v1/auth/keys",
                    &serde_json::json!({ "public_key": public_key, "name": name }),
                )
                .await?;
            println!("added {}", r["fingerprint"].as_str().unwrap_or("?"));
        }
        KeyCmd::Revoke { fingerprint } => {
            let _: serde_json::Value = client
                .call(
                    Method::DELETE,
                    &format!("/v1/auth/keys/{}", percent_encode(&fingerprint)),
                    None::<&()>,
                )
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
    Ok(0)
}

fn context_cmd(cmd: ContextCmd) -> Result<i32> {
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
    Ok(0)
}

/// The client side of a streamed daemon job (world create, build, image pull): NDJSON lines
/// of `{"line": ...}` progress, printed as they come, then either `{"error": ...}` or the
/// result under the job's own key.
struct Progress {
    key: &'static str,
    failure: Option<String>,
    result: Option<serde_json::Value>,
}

impl Progress {
    fn new(key: &'static str) -> Self {
        Progress {
            key,
            failure: None,
            result: None,
        }
    }

    fn feed(&mut self, line: &[u8]) -> Result<()> {
        let v: serde_json::Value = serde_json::from_slice(line)
            .with_context(|| format!("the daemon sent a malformed progress line: {line:?}"))?;
        if let Some(l) = v["line"].as_str() {
            eprintln!("  {l}");
        } else if let Some(e) = v["error"].as_str() {
            self.failure = Some(e.to_string());
        } else if !v[self.key].is_null() {
            self.result = Some(v[self.key].clone());
        }
        Ok(())
    }

    /// The result, or the job's failure; `what` names the job when the stream ended without
    /// either.
    fn finish(self, what: &str) -> Result<serde_json::Value> {
        if let Some(e) = self.failure {
            bail!(e);
        }
        self.result
            .with_context(|| format!("the daemon ended the {what} without a result"))
    }
}

async fn build(client: &Client, dir: &PathBuf, version: Option<String>) -> Result<i32> {
    if !dir.join("Warrenfile").is_file() {
        bail!("{} has no Warrenfile", dir.display());
    }
    let (body, pb) = upload(dir).await?;
    pb.finish_and_clear();
    let mut path = "/v1/build".to_string();
    if let Some(v) = &version {
        path.push_str(&format!("?version={}", percent_encode(v)));
    }
    let mut job = Progress::new("built");
    client
        .post_stream_lines(&path, body, |line| job.feed(line))
        .await?;
    let b = job.finish("build")?;
    println!(
        "{} {} {} ({})",
        b["name"].as_str().unwrap_or("?"),
        b["version"].as_str().unwrap_or("?"),
        if b["cached"].as_bool() == Some(true) {
            "cached"
        } else {
            "built"
        },
        b["parent"].as_str().unwrap_or("?")
    );
    Ok(0)
}

async fn recipes(client: &Client, format: ListFormat) -> Result<i32> {
    let builds: Vec<serde_json::Value> = client.get("/v1/recipes").await?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&builds)?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = builds
        .iter()
        .map(|b| {
            ["name", "version", "parent"]
                .iter()
                .map(|k| b[*k].as_str().unwrap_or("").to_string())
                .chain([b["key"].as_str().unwrap_or("").chars().take(12).collect()])
                .collect()
        })
        .collect();
    print!(
        "{}",
        output::table(&["NAME", "VERSION", "PARENT", "KEY"], &rows)
    );
    Ok(0)
}

async fn image(client: &Client, cmd: ImageCmd) -> Result<i32> {
    match cmd {
        ImageCmd::Import { file, tag } => {
            let (body, pb) = upload(&file).await?;
            let mut path = "/v1/images/import".to_string();
            if let Some(t) = &tag {
                path.push_str(&format!("?tag={t}"));
            }
            let r = client
                .post_stream::<Vec<ImageImported>, _>(&path, body)
                .await;
            pb.finish_and_clear();
            for i in r? {
                println!(
                    "{} ({}, {} layers, {} new{})",
                    i.reference,
                    short_id(&i.id),
                    i.layers,
                    i.new_layers,
                    i.replaced
                        .map(|r| format!("; it named {} before", short_id(&r)))
                        .unwrap_or_default()
                );
            }
        }
        ImageCmd::Pull {
            reference,
            username,
            password_stdin,
            insecure,
            platform,
        } => {
            let password = if password_stdin {
                let mut p = String::new();
                std::io::stdin().read_line(&mut p)?;
                Some(p.trim_end_matches(['\n', '\r']).to_string())
            } else {
                std::env::var("WARREN_REGISTRY_PASSWORD").ok()
            };
            let body = serde_json::json!({
                "reference": reference,
                "username": username,
                "password": password.filter(|_| username.is_some()),
                "insecure": insecure,
                "platform": platform,
            });
            let mut job = Progress::new("pulled");
            let payload = serde_json::to_vec(&body)?;
            client
                .post_stream_lines(
                    "/v1/images/pull",
                    http_body_util::Full::new(bytes::Bytes::from(payload)),
                    |line| job.feed(line),
                )
                .await?;
            let pulled: Vec<ImageImported> = serde_json::from_value(job.finish("pull")?)?;
            for i in pulled {
                println!(
                    "{} ({}, {} layers, {} new)",
                    i.reference,
                    short_id(&i.id),
                    i.layers,
                    i.new_layers
                );
            }
        }
        ImageCmd::List { output: format } => {
            let images: Vec<ImageInfo> = client.get("/v1/images").await?;
            if format == ListFormat::Json {
                println!("{}", serde_json::to_string_pretty(&images)?);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|i| {
                    vec![
                        i.reference.clone(),
                        short_id(&i.id),
                        i.layers.to_string(),
                        human_bytes(i.size),
                        if i.used_by.is_empty() {
                            "-".into()
                        } else {
                            i.used_by.join(",")
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["REFERENCE", "ID", "LAYERS", "SIZE", "USED BY"], &rows)
            );
        }
        ImageCmd::Rm { reference } => {
            let r: serde_json::Value = client
                .call(
                    hyper::Method::DELETE,
                    &format!("/v1/images?reference={reference}"),
                    None::<&()>,
                )
                .await?;
            println!("removed {}", r["removed"].as_str().unwrap_or(&reference));
        }
        ImageCmd::Gc => {
            let r: ImageGcResponse = client.post("/v1/images/gc", &()).await?;
            println!("deleted {} unused layers", r.deleted.len());
            for k in &r.kept {
                eprintln!("kept {k}");
            }
        }
    }
    Ok(0)
}

/// The first 12 hex digits of a digest, as image ids are usually shown.
fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex[..hex.len().min(12)].to_string()
}

/// Writes a streamed body to `output` (via `OUTPUT.part`, renamed when complete) or, without
/// one, to stdout when it is not a terminal.
async fn save_stream(
    mut body: hyper::body::Incoming,
    output: Option<&std::path::Path>,
    what: &str,
) -> Result<()> {
    use http_body_util::BodyExt;
    use std::io::IsTerminal;
    let to_stdout = match output {
        Some(p) => p.as_os_str() == "-",
        None => {
            if std::io::stdout().is_terminal() {
                bail!("give -o FILE, or -o - (or a pipe) for stdout");
            }
            true
        }
    };
    let tmp = output.filter(|_| !to_stdout).map(|p| {
        let mut t = p.as_os_str().to_owned();
        t.push(".part");
        PathBuf::from(t)
    });
    let mut out: Box<dyn Write> = match &tmp {
        Some(t) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(t).with_context(|| format!("creating {}", t.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let pb = progress(&format!("exporting {what}"));
    let mut total = 0u64;
    let result: Result<()> = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.context("the daemon ended the export with an error (see `warren events`)")?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data)?;
                total += data.len() as u64;
                pb.set_position(total);
            }
        }
        out.flush()?;
        Ok(())
    }
    .await;
    drop(out);
    pb.finish_and_clear();
    if let Err(e) = result {
        if let Some(t) = &tmp {
            let _ = std::fs::remove_file(t);
        }
        return Err(e.context(format!(
            "export of {what} failed; nothing usable was written"
        )));
    }
    if let (Some(t), Some(p)) = (&tmp, output) {
        std::fs::rename(t, p)?;
        eprintln!("exported {what} to {} ({total} bytes)", p.display());
    }
    Ok(())
}

/// Percent-encodes everything but unreserved characters (for query values).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn world(client: &Client, cmd: WorldCmd) -> Result<i32> {
    match cmd {
        WorldCmd::Create { name, mirror } => {
            let mut path = format!("/v1/worlds/{name}");
            if let Some(m) = &mirror {
                path.push_str(&format!("?mirror={}", percent_encode(m)));
            }
            let mut job = Progress::new("created");
            client
                .stream_lines_with(hyper::Method::POST, &path, |line| job.feed(line))
                .await?;
            job.finish(&format!("creation of world {name}"))?;
            println!("world {name} created");
        }
        WorldCmd::Import {
            name,
            file,
            command,
        } => {
            let (body, pb) = upload(&file).await?;
            let mut path = format!("/v1/worlds/{name}/import");
            if let Some(c) = &command {
                let json = serde_json::to_string(c)?;
                path.push_str(&format!("?command={}", percent_encode(&json)));
            }
            let r = client
                .post_stream::<serde_json::Value, _>(&path, body)
                .await;
            pb.finish_and_clear();
            let r = r?;
            println!(
                "world {name} imported ({} entries)",
                r["entries"].as_u64().unwrap_or(0)
            );
        }
        WorldCmd::Export { name, output } => {
            let body = client
                .get_stream(&format!("/v1/worlds/{name}/export"))
                .await?;
            save_stream(body, output.as_deref(), &format!("world {name}")).await?;
        }
        WorldCmd::Rm { name } => {
            let _: serde_json::Value = client
                .call(
                    hyper::Method::DELETE,
                    &format!("/v1/worlds/{name}"),
                    None::<&()>,
                )
                .await?;
            println!("world {name} removed");
        }
        WorldCmd::List => {
            let worlds: Vec<WorldInfo> = client.get("/v1/worlds").await?;
            let rows: Vec<Vec<String>> = worlds
                .iter()
                .map(|w| {
                    vec![
                        w.name.clone(),
                        if w.used_by.is_empty() {
                            "-".into()
                        } else {
                            w.used_by.join(",")
                        },
                        if w.binds.is_empty() {
                            "-".into()
                        } else {
                            w.binds.join(" ")
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "USED BY", "HOST BINDS"], &rows)
            );
        }
    }
    Ok(0)
}

async fn events(
    client: &Client,
    workload: Option<String>,
    limit: usize,
    format: ListFormat,
    follow: bool,
) -> Result<i32> {
    let mut path = format!("/v1/events?limit={limit}");
    if let Some(w) = &workload {
        path.push_str(&format!("&workload={w}"));
    }
    let evs: Vec<crate::wire::Event> = client.get(&path).await?;
    let line = |e: &crate::wire::Event| {
        format!(
            "{} {} {} {}",
            warren_runtime::logs::format_timestamp(
                std::time::UNIX_EPOCH + Duration::from_millis(e.ts_ms)
            ),
            e.workload.as_deref().unwrap_or("-"),
            e.kind,
            e.message
        )
    };
    if !follow {
        if format == ListFormat::Json {
            println!("{}", serde_json::to_string_pretty(&evs)?);
        } else {
            for e in &evs {
                println!("{}", line(e));
            }
        }
        return Ok(0);
    }
    let print = |e: &crate::wire::Event| -> Result<()> {
        let mut out = std::io::stdout().lock();
        if format == ListFormat::Json {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        } else {
            writeln!(out, "{}", line(e))?;
        }
        out.flush()?;
        Ok(())
    };
    for e in &evs {
        print(e)?;
    }
    let mut path = format!(
        "/v1/events/stream?after={}",
        evs.last().map(|e| e.id).unwrap_or(0)
    );
    if let Some(w) = &workload {
        path.push_str(&format!("&workload={w}"));
    }
    client
        .stream_lines(&path, |l| {
            let e: crate::wire::Event = serde_json::from_slice(l)?;
            print(&e)
        })
        .await?;
    Ok(0)
}
