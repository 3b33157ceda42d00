//! `warren daemon`: opens the state dir, prepares storage and the runtime, re-adopts running
//! workloads, starts the reconcile loop and serves the API on the Unix socket.
//!
//! Stopping the daemon (SIGTERM, SIGINT or SIGKILL) never stops workloads: their shims keep
//! them running and the next daemon adopts them.
//!
//! Under systemd (`Type=notify`) the daemon says `READY=1` once the API socket listens and the
//! first reconcile pass has finished, and `STOPPING=1` when it is asked to stop. The socket is
//! `0600` (root only) unless a [`SocketGroup`] is given: then it is `0660` with that group, and
//! the state directory that holds it `0710` with that group, so members reach the socket
//! without being able to list the state directory.

pub mod api;
pub mod apply;
pub mod archive;
pub mod cgstats;
pub mod copy;
pub mod datasets;
pub mod engine;
pub mod error;
pub mod health;
pub mod hooks;
pub mod images;
pub mod info;
pub mod ingress;
pub mod logfile;
pub mod metrics;
pub mod netclaim;
pub mod netnames;
#[cfg(target_os = "linux")]
pub mod network;
#[cfg(target_os = "freebsd")]
pub mod network_freebsd;
pub mod oneoff;
pub mod openapi;
pub mod recipes;
pub mod remote;
pub mod repl;
pub mod runtimes;
pub mod sources;
pub mod specfile;
pub mod stream;
pub mod telemetry;
pub mod transfer;
pub mod vmcheck;
pub mod watch;
pub mod worlds;

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warren_exec::{Executor, HostExecutor};
use warren_model::event::EventKind;
use warren_model::plan::Backoff;
use warren_storage::pool::{Driver, PoolOptions};

/// Daemon settings (from flags and the environment).
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub driver: Driver,
    pub pool_size: u64,
    /// zpool for the ZFS driver.
    pub zfs_pool: String,
    /// Periodic reconcile interval.
    pub tick: Duration,
    /// Workloads operated on at once.
    pub parallel: usize,
    /// Grace period between TERM and KILL.
    pub stop_timeout: Duration,
    pub backoff: Backoff,
    /// Short id of this state dir, part of container ids and cgroup paths so that two daemons
    /// with different state dirs never collide.
    pub instance: String,
    /// runc's state directory (FreeBSD runs jails, not runc).
    #[cfg_attr(target_os = "freebsd", allow(dead_code))]
    pub runc_root: PathBuf,
    /// Bridge networking (Linux: bridge, veths, nft; FreeBSD: bridge, epairs, pf).
    pub net: NetSettings,
    /// The routing workload's published ports.
    pub ingress: ingress::IngressSettings,
    /// Where the remote API listens (`None`: not at all).
    pub listen: Option<std::net::SocketAddr>,
    /// Whether hooks may run commands on the host.
    pub allow_host_hooks: bool,
    /// A spec file to watch, apply on every save and write live changes back to.
    pub spec: Option<PathBuf>,
    /// How long one REPL evaluation or callback may run.
    pub repl_time_limit: Duration,
    /// Where plain-HTTP Prometheus metrics are served (`None`: only on the API).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

pub use netnames::NetSettings;

impl Config {
    pub fn instance_of(state_dir: &std::path::Path) -> String {
        // FNV-1a: stable across builds and platforms.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in state_dir.as_os_str().as_encoded_bytes() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        format!("{:06x}", h & 0xff_ffff)
    }
}

/// The container backend of this OS: runc under a shim on Linux (and elsewhere), jails on
/// FreeBSD.
#[cfg(not(target_os = "freebsd"))]
fn make_runtime(
    cfg: &Config,
    exec: &Arc<dyn Executor>,
) -> Result<Arc<dyn warren_runtime::Runtime>> {
    let runc = warren_runtime::runc::Runc::new(
        warren_exec::resolve("runc").context("runc is not installed (apt-get install runc)")?,
        cfg.runc_root.clone(),
    );
    let shim_exe = std::env::current_exe().context("locating the warren executable")?;
    let containers = Arc::new(warren_runtime::oci::OciRuntime::new(
        exec.clone(),
        runc,
        shim_exe.clone(),
    ));
    let agent = agent_path(&shim_exe);
    let vms = Arc::new(warren_vm::runtime::VmRuntime::new(
        exec.clone(),
        shim_exe,
        agent,
        cfg.state_dir.join("vm"),
    ));
    Ok(Arc::new(runtimes::Runtimes::new(containers, Some(vms))))
}

/// Where the VMs' guest agent is: beside this executable (a build tree, a hand install), else
/// in `../libexec/warren/` from its directory (the Debian package's
/// `/usr/libexec/warren/warren-agent`, which is no command of its own).
#[cfg_attr(target_os = "freebsd", allow(dead_code))]
fn agent_path(exe: &std::path::Path) -> PathBuf {
    let beside = exe.with_file_name("warren-agent");
    if beside.exists() {
        return beside;
    }
    exe.parent()
        .and_then(std::path::Path::parent)
        .map(|prefix| prefix.join("libexec/warren/warren-agent"))
        .filter(|p| p.exists())
        .unwrap_or(beside)
}

/// The container backend of this OS: a jail per workload on FreeBSD, each supervised by a
/// shim (this executable) and its teardown recorded under `<state>/jails`, with warren's
/// devfs ruleset loaded first; and, where bhyve is installed, bhyve VMs under the same shim
/// (their run links under `<state>/vm`), with the `vmm` and `nmdm` modules loaded first.
#[cfg(target_os = "freebsd")]
fn make_runtime(
    cfg: &Config,
    exec: &Arc<dyn Executor>,
) -> Result<Arc<dyn warren_runtime::Runtime>> {
    use warren_jail::devfs::{Ruleset, DEFAULT_RULESET};
    let shim_exe = std::env::current_exe().context("locating the warren executable")?;
    let rt = warren_jail::runtime::JailRuntime::new(
        exec.clone(),
        &cfg.net.bridge,
        Ruleset::warren_default(DEFAULT_RULESET),
    )
    .context("configuring the jail runtime")?
    .with_shim(shim_exe.clone())
    .with_state_dir(cfg.state_dir.join("jails"));
    rt.prepare_host()
        .context("loading warren's devfs ruleset")?;
    let vms: Option<Arc<dyn warren_vm::VmBackend>> =
        if host_capabilities().runs(warren_model::Kind::Vm) {
            let bhyve = warren_vm::bhyve_runtime::BhyveRuntime::new(
                exec.clone(),
                &cfg.net.bridge,
                shim_exe,
                cfg.state_dir.join("vm"),
            )
            .context("configuring the bhyve runtime")?;
            bhyve
                .prepare_host()
                .context("loading the vmm and nmdm kernel modules")?;
            Some(Arc::new(bhyve))
        } else {
            None
        };
    Ok(Arc::new(runtimes::Runtimes::new(Arc::new(rt), vms)))
}

/// The bridge network of this OS, chosen once at start: namespaces, veths and nftables on
/// Linux.
#[cfg(target_os = "linux")]
fn make_network(cfg: &Config, exec: &Arc<dyn Executor>) -> Result<Arc<dyn engine::BridgeNetwork>> {
    Ok(Arc::new(network::LinuxBridge::new(
        cfg.net.clone(),
        exec.clone(),
        &cfg.instance,
        &cfg.state_dir,
    )?))
}

/// The bridge network of this OS, chosen once at start: the bridge, jails' epairs or aliases
/// and a pf anchor on FreeBSD.
#[cfg(target_os = "freebsd")]
fn make_network(cfg: &Config, exec: &Arc<dyn Executor>) -> Result<Arc<dyn engine::BridgeNetwork>> {
    Ok(Arc::new(network_freebsd::FreeBsdBridge::new(
        cfg.net.clone(),
        exec.clone(),
        &cfg.state_dir,
    )?))
}

/// Other systems have no bridge network implementation.
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn make_network(
    _cfg: &Config,
    _exec: &Arc<dyn Executor>,
) -> Result<Arc<dyn engine::BridgeNetwork>> {
    anyhow::bail!("warren's bridge network runs on Linux and FreeBSD only")
}

/// What this host runs, probed once when the engine is built: kind `vm` where the
/// hypervisor ([`warren_model::vm_hypervisor`]) is installed, found by a lookup on the
/// executor's search path or of bhyve's fixed path (no process is started). The engine keeps
/// the result; planning and the apply checks both read it from there.
pub fn host_capabilities() -> warren_model::HostCapabilities {
    let os = std::env::consts::OS;
    let found = warren_model::vm_hypervisor(os).is_some_and(|p| warren_exec::resolve(p).is_some());
    warren_model::HostCapabilities::for_host(os, found)
}

/// Keeps large buffers (compression windows, stream chunks) out of the heap: a fixed mmap
/// threshold makes every big allocation its own mapping, returned to the system when freed,
/// instead of glibc raising the threshold and keeping the peak after one large transfer.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Empties the daemon's scratch directory: downloads, build contexts and unpacked uploads
/// left there by a daemon that was killed in the middle of a pull, build or import. Only the
/// daemon holding the state directory's lock writes there, so nothing in it is in use now.
fn sweep_scratch(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match removed {
            Ok(()) => tracing::info!("removed {} left by an earlier daemon", path.display()),
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
}

/// The group whose members may use the local API socket (`warren daemon --socket-group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGroup {
    pub name: String,
    pub gid: u32,
}

impl SocketGroup {
    /// Looks the group up by name in the host's group database.
    pub fn lookup(name: &str) -> Result<SocketGroup> {
        let group = nix::unistd::Group::from_name(name)
            .with_context(|| format!("looking up group {name:?}"))?
            .with_context(|| {
                format!("no group named {name:?} (create it with `addgroup --system {name}`)")
            })?;
        Ok(SocketGroup {
            name: name.to_string(),
            gid: group.gid.as_raw(),
        })
    }
}

/// The state directory's mode: `0700`, or `0710` when a socket group must pass through it to
/// the socket. (The search bit for others that user-namespaced workloads need is added later,
/// by the engine, and kept.)
fn state_dir_mode(group: Option<&SocketGroup>, socket_inside: bool) -> u32 {
    match group {
        Some(_) if socket_inside => 0o710,
        _ => 0o700,
    }
}

/// The socket's mode: `0600`, or `0660` for a socket group.
fn socket_mode(group: Option<&SocketGroup>) -> u32 {
    match group {
        Some(_) => 0o660,
        None => 0o600,
    }
}

/// Gives the state directory and the freshly bound socket their owners and modes.
fn set_socket_access(cfg: &Config, group: Option<&SocketGroup>) -> Result<()> {
    let inside = cfg.socket.parent() == Some(cfg.state_dir.as_path());
    if let Some(g) = group {
        std::os::unix::fs::chown(&cfg.socket, None, Some(g.gid))
            .with_context(|| format!("giving {} to group {}", cfg.socket.display(), g.name))?;
        if inside {
            std::os::unix::fs::chown(&cfg.state_dir, None, Some(g.gid)).with_context(|| {
                format!("giving {} to group {}", cfg.state_dir.display(), g.name)
            })?;
        }
    }
    let dir_mode = (std::fs::metadata(&cfg.state_dir)?.permissions().mode() & 0o001)
        | state_dir_mode(group, inside);
    std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(dir_mode))?;
    std::fs::set_permissions(
        &cfg.socket,
        std::fs::Permissions::from_mode(socket_mode(group)),
    )?;
    Ok(())
}

/// Tells the service manager (systemd, `Type=notify`) about the daemon's state; nothing
/// happens when the daemon was not started by one (no `NOTIFY_SOCKET`).
fn notify_service_manager(state: sd_notify::NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(cfg: Config, socket_group: Option<SocketGroup>) -> Result<()> {
    tune_allocator();
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state dir {}", cfg.state_dir.display()))?;
    std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700))?;
    let lock = lock_state_dir(&cfg.state_dir)?;
    // The remote API's port first: a port another process holds ends the start here.
    let remote_listener = match cfg.listen {
        Some(addr) => Some(remote::bind(addr).await?),
        None => None,
    };
    sweep_scratch(&cfg.state_dir.join("tmp"));

    // The daemon's one executor: storage, the runtime, the network, the ingress and the
    // services reach it through the engine (`engine.exec`), so a test can record it all.
    let exec: Arc<dyn Executor> = Arc::new(HostExecutor);
    // The bridge and subnet are this instance's alone, or the start ends here.
    let net_claim = claim_network(&cfg, exec.as_ref())?;
    let storage = warren_storage::pool::open_storage(
        &cfg.state_dir,
        &PoolOptions {
            driver: cfg.driver,
            image_size: cfg.pool_size,
            zfs_pool: cfg.zfs_pool.clone(),
        },
        exec.clone(),
    )
    .context("preparing storage")?;
    let store = warren_store::Store::open(&cfg.state_dir.join("warren.db"))?;
    let runtime = make_runtime(&cfg, &exec)?;
    let net = make_network(&cfg, &exec)?;
    let engine = engine::Engine::new(
        cfg.clone(),
        store,
        storage.clone(),
        runtime,
        exec.clone(),
        net,
    )?;
    engine.event(
        None,
        EventKind::DaemonStarted {
            pid: std::process::id(),
            storage: storage.driver().to_string(),
            root: storage.root().display().to_string(),
        },
    );
    // The local CA exists from the first start, so operators can trust it before any route
    // asks for TLS.
    if let Err(e) = engine.ingress.with_ca(|_| Ok(())) {
        engine.event(None, EventKind::error(format!("{e:#}")));
    }
    engine.adopt().await;
    hooks::start(engine.clone());
    // The Scheme engine keeps its own files under STEEL_HOME: inside the state dir.
    if std::env::var_os("STEEL_HOME").is_none() {
        let home = cfg.state_dir.join("scheme");
        let _ = std::fs::create_dir_all(&home);
        std::env::set_var("STEEL_HOME", &home);
    }
    engine.set_evaluator(repl::start(engine.clone()));
    if let Some(path) = &cfg.spec {
        specfile::start(engine.clone(), path.clone());
    }
    let keeper = engine.clone();
    tokio::spawn(async move {
        loop {
            keeper.housekeeping().await;
            tokio::time::sleep(keeper.cfg.tick).await;
        }
    });
    tokio::spawn(engine.clone().run());

    let _ = std::fs::remove_file(&cfg.socket);
    if let Some(parent) = cfg.socket.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let listener = tokio::net::UnixListener::bind(&cfg.socket)
        .with_context(|| format!("listening on {}", cfg.socket.display()))?;
    set_socket_access(&cfg, socket_group.as_ref())?;
    tracing::info!("listening on {}", cfg.socket.display());
    let ready = engine.clone();
    tokio::spawn(async move {
        ready.telemetry.first_pass.wait().await;
        notify_service_manager(sd_notify::NotifyState::Ready);
    });

    let app = api::router(engine.clone()).merge(remote::local_router(engine.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics_task = cfg.metrics_listen.map(|addr| {
        tokio::spawn(metrics_listener(
            engine.clone(),
            addr,
            stopped(stop_rx.clone()),
        ))
    });
    let remote_task = match remote_listener {
        Some(listener) => {
            let remote = remote::init(&cfg.state_dir, &engine.store)?;
            Some(tokio::spawn(remote::serve(
                engine.clone(),
                remote,
                listener,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        notify_service_manager(sd_notify::NotifyState::Stopping);
        let _ = stop_tx.send(true);
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop_rx))
        .await
        .context("serving the API");
    if let Some(t) = remote_task {
        t.abort();
        if let Ok(Err(e)) = t.await {
            engine.event(None, EventKind::error(format!("remote API: {e:#}")));
        }
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    served?;
    engine.event(None, EventKind::DaemonStopping);
    let _ = std::fs::remove_file(&cfg.socket);
    drop(net_claim);
    drop(lock);
    Ok(())
}

/// Claims this daemon's bridge and subnet ([`netclaim`]): refused when another instance owns
/// them, or (Linux) when another interface of the host holds an address in the subnet.
fn claim_network(cfg: &Config, exec: &dyn Executor) -> Result<netclaim::Held> {
    let net = &cfg.net;
    let ours = netclaim::Claim {
        state_dir: cfg.state_dir.display().to_string(),
        pid: std::process::id(),
        bridge: net.bridge.clone(),
        subnet: net.subnet.to_string(),
    };
    let host_addresses = || -> Result<()> {
        #[cfg(target_os = "linux")]
        {
            let cmd = warren_exec::Cmd::new("ip").args(["-j", "-4", "addr", "show"]);
            let addrs = exec
                .run(&cmd)
                .map_err(anyhow::Error::from)
                .and_then(|out| netclaim::parse_addrs(&out.stdout_str()));
            match addrs {
                Ok(addrs) => {
                    if let Some(why) = netclaim::address_conflict(&net.bridge, &net.subnet, &addrs)
                    {
                        anyhow::bail!("{why}");
                    }
                }
                Err(e) => tracing::warn!("cannot list the host's addresses: {e:#}"),
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = exec;
        Ok(())
    };
    netclaim::claim(
        std::path::Path::new(netclaim::CLAIMS_DIR),
        &cfg.instance,
        &ours,
        host_addresses,
    )
}

/// Serves `GET /metrics` (and `/v1/metrics`) in plain HTTP on `addr`, for a scraper on a
/// trusted interface; nothing else is served there.
async fn metrics_listener(
    engine: Arc<engine::Engine>,
    addr: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            engine.event(
                None,
                EventKind::error(format!("metrics listener on {addr}: {e}")),
            );
            return;
        }
    };
    let bound = listener.local_addr().map(|a| a.to_string());
    let _ = engine
        .telemetry
        .metrics_listen
        .set(bound.unwrap_or_else(|_| addr.to_string()));
    tracing::info!("serving metrics on http://{addr}/metrics");
    let app = api::metrics_router(engine);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!("metrics listener: {e}");
    }
}

/// Returns freed heap memory to the system after a large transfer (export, import), so an
/// idle daemon stays small; the allocator would otherwise keep its peak.
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Takes an exclusive lock on the state dir so two daemons never share it.
fn lock_state_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("daemon.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    // SAFETY: flock on a valid fd.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        anyhow::bail!(
            "another warren daemon is already using {} (lock {})",
            dir.display(),
            path.display()
        );
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_is_found_beside_the_executable_then_in_libexec() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("usr/bin");
        let libexec = d.path().join("usr/libexec/warren");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&libexec).unwrap();
        let exe = bin.join("warren");
        // Neither exists: the place beside the executable is named (in the error later).
        assert_eq!(agent_path(&exe), bin.join("warren-agent"));
        std::fs::write(libexec.join("warren-agent"), "").unwrap();
        assert_eq!(agent_path(&exe), libexec.join("warren-agent"));
        std::fs::write(bin.join("warren-agent"), "").unwrap();
        assert_eq!(agent_path(&exe), bin.join("warren-agent"));
    }

    #[test]
    fn a_socket_group_opens_the_socket_and_the_state_dir_to_the_group_only() {
        let g = SocketGroup {
            name: "warren".into(),
            gid: 999,
        };
        assert_eq!(socket_mode(None), 0o600);
        assert_eq!(socket_mode(Some(&g)), 0o660);
        assert_eq!(state_dir_mode(None, true), 0o700);
        assert_eq!(state_dir_mode(Some(&g), true), 0o710);
        // A socket elsewhere needs nothing of the state directory.
        assert_eq!(state_dir_mode(Some(&g), false), 0o700);
    }

    #[test]
    fn an_unknown_socket_group_is_refused_with_the_remedy() {
        let e = SocketGroup::lookup("warren-no-such-group").unwrap_err();
        assert!(format!("{e:#}").contains("addgroup --system"), "{e:#}");
        assert_eq!(SocketGroup::lookup("root").unwrap().gid, 0);
    }
}
