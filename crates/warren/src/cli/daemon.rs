//! `warren daemon`: the daemon's flags and their translation into [`crate::daemon::Config`].

use super::remote::DaemonAction;
use super::Exit;
use anyhow::Result;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum StorageDriver {
    Auto,
    Btrfs,
    Dir,
    Zfs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct DaemonCmd {
    #[command(subcommand)]
    pub(super) action: Option<DaemonAction>,
    /// Dataset driver (auto: btrfs on Linux, zfs on FreeBSD).
    #[arg(long, value_enum, default_value = "auto", env = "WARREN_STORAGE")]
    pub(super) storage: StorageDriver,
    /// zpool (or parent dataset) for `--storage zfs` and FreeBSD's default storage.
    #[arg(long, default_value = "zroot", env = "WARREN_ZFS_POOL")]
    pub(super) zfs_pool: String,
    /// Size of the embedded loop-backed btrfs pool, in GiB.
    #[arg(long, default_value = "20", env = "WARREN_POOL_GIB")]
    pub(super) pool_gib: u64,
    /// Seconds between periodic reconcile passes.
    #[arg(long, default_value = "10")]
    pub(super) tick: f64,
    /// Workloads operated on at once.
    #[arg(long, default_value = "8")]
    pub(super) parallel: usize,
    /// Seconds between TERM and KILL when stopping.
    #[arg(long, default_value = "10")]
    pub(super) stop_timeout: f64,
    /// First crash-loop backoff delay in milliseconds (doubles per failure).
    #[arg(long, default_value = "500")]
    pub(super) backoff_base_ms: u64,
    /// Longest crash-loop backoff delay in milliseconds.
    #[arg(long, default_value = "300000")]
    pub(super) backoff_cap_ms: u64,
    /// A run longer than this many milliseconds resets the backoff.
    #[arg(long, default_value = "30000")]
    pub(super) stable_ms: u64,
    /// runc state directory [default: /run/warren/INSTANCE].
    #[arg(long)]
    pub(super) runc_root: Option<PathBuf>,
    /// The bridge bridge-mode workloads are attached to.
    #[arg(long, default_value = "warren0", env = "WARREN_BRIDGE")]
    pub(super) bridge: String,
    /// The bridge's IPv4 subnet (the first address is the gateway).
    #[arg(long, default_value = "10.88.0.0/16", env = "WARREN_SUBNET")]
    pub(super) subnet: String,
    /// warren's own nftables table (family inet).
    #[arg(long, default_value = "warren", env = "WARREN_NFT_TABLE")]
    pub(super) nft_table: String,
    /// Host port the ingress serves plain HTTP on.
    #[arg(long, default_value = "80", env = "WARREN_HTTP_PORT")]
    pub(super) http_port: u16,
    /// Host port the ingress serves HTTPS on.
    #[arg(long, default_value = "443", env = "WARREN_HTTPS_PORT")]
    pub(super) https_port: u16,
    /// Host address the ingress ports are published on [default: every address].
    #[arg(long, env = "WARREN_INGRESS_LISTEN")]
    pub(super) ingress_listen: Option<std::net::Ipv4Addr>,
    /// Where the remote API (TLS, operator tokens) listens: ADDR:PORT, or `none`.
    #[arg(long, default_value = "0.0.0.0:7443", env = "WARREN_LISTEN")]
    pub(super) listen: String,
    /// Let workload hooks run commands on the host (`host = [...]`).
    #[arg(long, env = "WARREN_ALLOW_HOST_HOOKS")]
    pub(super) allow_host_hooks: bool,
    /// Watch this warren.toml: apply every saved change (as apply --prune), write live changes
    /// back to it.
    #[arg(long, env = "WARREN_SPEC")]
    pub(super) spec: Option<PathBuf>,
    /// Seconds one REPL evaluation or callback may run before it is interrupted.
    #[arg(long, default_value = "30")]
    pub(super) repl_time_limit: u64,
    /// Also serve Prometheus metrics in plain HTTP (no token) at http://ADDR:PORT/metrics:
    /// for a scraper on a trusted interface.
    #[arg(long, env = "WARREN_METRICS_LISTEN")]
    pub(super) metrics_listen: Option<String>,
    /// Members of this group may use the local API socket: it becomes mode 0660 with this
    /// group (and the state directory holding it 0710). Without it only root may.
    #[arg(long, env = "WARREN_SOCKET_GROUP")]
    pub(super) socket_group: Option<String>,
}

pub(super) async fn run_daemon(state_dir: PathBuf, socket: PathBuf, d: DaemonCmd) -> Result<Exit> {
    let state_dir = if state_dir.is_absolute() {
        state_dir
    } else {
        std::env::current_dir()?.join(state_dir)
    };
    crate::daemon::logfile::init(&state_dir)?;
    let socket_group = match d.socket_group.as_deref() {
        Some(name) => Some(
            crate::daemon::SocketGroup::lookup(name)
                .map_err(|e| anyhow::anyhow!("--socket-group: {e:#}"))?,
        ),
        None => None,
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
        metrics_listen: match d.metrics_listen.as_deref() {
            None => None,
            Some(a) => Some(a.parse().map_err(|e| {
                anyhow::anyhow!("--metrics-listen {a:?}: {e} (give ADDR:PORT, e.g. 127.0.0.1:9464)")
            })?),
        },
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
    crate::daemon::run(cfg, socket_group).await?;
    Ok(Exit::Success)
}
