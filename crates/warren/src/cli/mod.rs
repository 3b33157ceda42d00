//! Command-line interface: the clap top level (global flags, the command enum), the async
//! runtime, dispatch to one function per command, and how errors become exit statuses.
//!
//! Every command except `daemon` and `completions` talks to the daemon through
//! [`crate::client::Client`]; errors are printed once, as `error: ...`, and the process exits
//! with a status from [`Exit`] (1 for every failure; the table is in `warren --help`).
//!
//! The commands live by resource: [`workloads`] (apply, plan, list, get, start, stop, restart,
//! delete, logs, exec, run, spec), [`datasets`] (snapshots, rollback, clone, export, import,
//! volumes), [`images`] (images, worlds, recipe builds), [`remote`] (adopt, keys, contexts,
//! the CA, claim codes), [`discover`] (hosts heard on the LAN), [`events`], [`repl`], [`compose`] (compose files converted, also for
//! apply and plan), [`daemon`] (running the daemon), with
//! [`transfer`] holding the progress bars and upload bodies they share; [`fleet`] sends a
//! command to several contexts at once (`--context a,b`, `--all`).

mod compose;
mod copy;
mod daemon;
mod datasets;
mod discover;
mod events;
mod exit;
mod export;
mod fleet;
mod images;
mod info;
mod remote;
mod repl;
mod transfer;
mod workloads;

use crate::client::routes::{WORKLOAD_RESTART, WORKLOAD_START, WORKLOAD_STOP};
use crate::client::{ApiFailure, Client};
use crate::contexts;
use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use compose::ComposeCmd;
use daemon::DaemonCmd;
use datasets::{SnapshotCmd, VolumeCmd};
use images::{ImageCmd, RecipeCmd, WorldCmd};
use remote::{CaCmd, ContextCmd, KeyCmd};
use workloads::{RunCmd, SpecCmd};

pub use exit::Exit;

#[derive(Parser)]
#[command(
    name = "warren",
    version,
    about = "Declarative control plane for containers, jails and microVMs",
    after_help = Exit::help()
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
    /// Talk to the remote daemon of this context (see `warren adopt`); `a,b` sends the
    /// command to each of several contexts at once (list, get, events, apply, plan, info,
    /// snapshot, start, stop, restart, delete).
    #[arg(long, global = true, env = "WARREN_CONTEXT")]
    context: Option<String>,
    /// Send the command to every context in the contexts file at once (as `--context a,b`).
    #[arg(long, global = true)]
    all: bool,
    /// Talk to the remote daemon at HOST[:PORT] (a context made by `warren adopt`).
    #[arg(long = "host", global = true, env = "WARREN_HOST")]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(super) enum ListFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(super) enum GetFormat {
    Yaml,
    Json,
}

// One value per process, parsed once: the size of its largest variant (the daemon's flags)
// costs nothing worth an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Show what applying a file would change, then apply it. A `.yml`/`.yaml` file is read
    /// as a Docker Compose file and converted first (see `warren compose import`).
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
    /// The desired state as a warren.toml, Nomad job files or Kubernetes manifests.
    Spec {
        #[command(subcommand)]
        cmd: SpecCmd,
    },
    /// Docker Compose files: convert one to a warren.toml.
    Compose {
        #[command(subcommand)]
        cmd: ComposeCmd,
    },
    /// Show what applying a file would change.
    Plan {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[arg(long)]
        prune: bool,
    },
    /// What this host is and runs: OS, CPUs, memory, the storage pool's fill, runtimes,
    /// ingress, workload counts, the remote API.
    Info {
        #[arg(short, long, value_enum, default_value = "table")]
        output: info::InfoFormat,
    },
    /// The daemon's Prometheus metrics (the text a scraper reads at /v1/metrics).
    Metrics,
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
    /// Copy files and directories between a workload and this machine (`NAME:/PATH` on one
    /// side).
    ///
    /// As `docker cp`: a directory copied to an existing directory goes inside it, to a
    /// missing path it is created under that name; `SRC/.` copies a directory's contents.
    /// `-` as SRC reads a tar stream from stdin (DST must be an existing directory); `-` as
    /// DST writes one to stdout. Modes are always kept; owners with `-a` (mapped through
    /// the workload's user namespace under `userns`), otherwise files belong to the
    /// workload's root going in and to you coming out. Works on running and stopped
    /// workloads. Paths are resolved inside the workload: links and `..` cannot leave it,
    /// and archives holding `..`, absolute names, links leading outside or device nodes are
    /// refused with nothing written.
    #[command(
        after_help = "Examples:\n  warren cp web:/etc/nginx ./nginx\n  warren cp ./site/. web:/srv/www\n  tar -c conf | warren cp - web:/etc\n  warren cp web:/var/log - | tar -t"
    )]
    Cp {
        src: String,
        dst: String,
        /// Keep owners (uid/gid) from the source.
        #[arg(short, long)]
        archive: bool,
    },
    /// Attach the terminal to a running VM's serial console (a full VM's, or a microVM's with
    /// `console = true`); detach with Ctrl-] and the VM keeps running.
    ///
    /// The terminal is in raw mode while attached: keys go to the guest as typed. Ctrl-]
    /// (0x1d) anywhere in the input detaches. With stdin not a terminal (a pipe), what it
    /// gives is written to the console and output is shown until the VM ends or Ctrl-]
    /// arrives. Ends with status 0 on detach and when the VM powers off.
    #[command(after_help = "Detach key: Ctrl-] (the VM keeps running).")]
    Console { name: String },
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
        /// HOST or HOST:PORT (default port 7443), or the SHORT ID of a host `warren discover`
        /// hears (its advertised fingerprint is pinned and must match).
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
    /// The warren daemons announcing themselves on the LAN (mDNS): short id, addresses,
    /// port, version, certificate fingerprint and the context that pins it, if any.
    Discover {
        /// How long to listen (3s, 500ms, 1m).
        #[arg(long, default_value = "3s")]
        timeout: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: ListFormat,
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

/// Parses the command line, runs the command and returns the process exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout; usage errors to stderr.
            let _ = e.print();
            return parse_failure(&e).code();
        }
    };
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
            return Exit::Failure.code();
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(exit) => exit.code(),
        Err(e) => {
            if let Some(f) = e.downcast_ref::<ApiFailure>() {
                if !f.body.diagnostics.is_empty() {
                    for d in &f.body.diagnostics {
                        eprintln!("error: {d}");
                    }
                    return Exit::Failure.code();
                }
            }
            eprintln!("error: {e:#}");
            Exit::Failure.code()
        }
    }
}

/// The status of a command line the parser did not accept: `--help` and `--version` succeed,
/// anything else is a usage error.
fn parse_failure(e: &clap::Error) -> Exit {
    if e.use_stderr() {
        Exit::Usage
    } else {
        Exit::Success
    }
}

async fn dispatch(cli: Cli) -> Result<Exit> {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| cli.state_dir.join("warren.sock"));
    let remote = if matches!(
        cli.cmd,
        Cmd::Adopt { .. }
            | Cmd::Context { .. }
            | Cmd::Completions { .. }
            | Cmd::Compose { .. }
            | Cmd::Discover { .. }
    ) || matches!(
        cli.cmd,
        Cmd::Key {
            cmd: KeyCmd::Show { .. }
        }
    ) {
        None
    } else {
        let cfg = contexts::load()?;
        if let Some(names) = fleet::selection(&cfg, cli.context.as_deref(), cli.all)? {
            return fleet::run(fleet::targets(&cfg, &names)?, cli.cmd).await;
        }
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
        } => workloads::apply(&client, &file, dry_run, prune, true).await,
        Cmd::Apply {
            file, watch: true, ..
        } => workloads::apply_watch(&client, &file).await,
        Cmd::Repl => repl::repl(&client).await,
        Cmd::Compose { cmd } => compose::run(cmd),
        Cmd::Spec {
            cmd:
                SpecCmd::Export {
                    output,
                    format,
                    file,
                },
        } => export::spec_export(&client, format, file, output).await,
        Cmd::Plan { file, prune } => workloads::apply(&client, &file, true, prune, false).await,
        Cmd::Info { output } => info::info(&client, output).await,
        Cmd::Metrics => info::metrics(&client).await,
        Cmd::List { output } => workloads::list(&client, output).await,
        Cmd::Get { name, output } => workloads::get(&client, &name, output).await,
        Cmd::Start { names } => workloads::each(&client, names, "start", WORKLOAD_START).await,
        Cmd::Stop { names } => workloads::each(&client, names, "stop", WORKLOAD_STOP).await,
        Cmd::Restart { names } => {
            workloads::each(&client, names, "restart", WORKLOAD_RESTART).await
        }
        Cmd::Delete { names, purge } => workloads::delete(&client, names, purge).await,
        Cmd::Logs {
            name,
            follow,
            tail,
            timestamps,
        } => workloads::logs(&client, &name, follow, tail, timestamps).await,
        Cmd::Exec {
            name,
            tty,
            env,
            workdir,
            command,
        } => workloads::exec(&client, name, tty, env, workdir, command).await,
        Cmd::Console { name } => workloads::console(&client, &name).await,
        Cmd::Cp { src, dst, archive } => copy::cp(&client, &src, &dst, archive).await,
        Cmd::Run(r) => workloads::run(&client, r).await,
        Cmd::World { cmd } => images::world(&client, cmd).await,
        Cmd::Image { cmd } => images::image(&client, cmd).await,
        Cmd::Build { dir, version } => images::build(&client, &dir, version).await,
        Cmd::Recipe {
            cmd: RecipeCmd::List { output: format },
        } => images::recipes(&client, format).await,
        Cmd::Snapshot {
            cmd:
                Some(SnapshotCmd::Rm {
                    name,
                    label,
                    volume,
                }),
            ..
        } => datasets::snapshot_rm(&client, &name, &label, volume).await,
        Cmd::Snapshot {
            cmd: None,
            name,
            label,
            volume,
        } => datasets::snapshot(&client, name, label, volume).await,
        Cmd::Snapshots {
            name,
            volume,
            output,
        } => datasets::snapshots(&client, &name, volume, output).await,
        Cmd::Rollback {
            name,
            snapshot,
            force,
            volume,
        } => datasets::rollback(&client, &name, &snapshot, force, volume).await,
        Cmd::Clone { src, dst, snapshot } => datasets::clone(&client, &src, &dst, snapshot).await,
        Cmd::Volume { cmd } => datasets::volume(&client, cmd).await,
        Cmd::Export {
            name,
            output,
            since,
            volume,
        } => datasets::export(&client, &name, output, since, volume).await,
        Cmd::Import { file, name } => datasets::import(&client, &file, name).await,
        Cmd::Events {
            workload,
            limit,
            output,
            follow,
        } => events::events(&client, workload, limit, output, follow).await,
        Cmd::Ca {
            cmd: CaCmd::Export { output },
        } => remote::ca_export(&client, output).await,
        Cmd::Daemon(DaemonCmd {
            action:
                Some(remote::DaemonAction::Logs {
                    follow,
                    level,
                    json,
                }),
            ..
        }) => info::daemon_logs(&client, &cli.state_dir, follow, &level, json).await,
        Cmd::Daemon(DaemonCmd {
            action: Some(action),
            ..
        }) => remote::daemon_action(&client, action).await,
        Cmd::Daemon(d) => daemon::run_daemon(cli.state_dir, socket, d).await,
        Cmd::Adopt {
            host,
            claim_code,
            name,
            key,
            yes,
        } => remote::adopt(&host, claim_code, name, key, yes).await,
        Cmd::Discover { timeout, output } => discover::discover(&timeout, output).await,
        Cmd::Key { cmd } => remote::keys(&client, cmd).await,
        Cmd::Context { cmd } => remote::context_cmd(cmd),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "warren", &mut std::io::stdout());
            Ok(Exit::Success)
        }
    }
}
