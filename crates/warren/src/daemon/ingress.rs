//! The ingress: warren's own routing workload running nginx, configured from the desired state.
//!
//! The routing workload ([`ROUTER`]) is a host-world container on the bridge that publishes the
//! configured host ports to nginx's 80 and 443. It exists while any workload declares `domains`
//! or any volume declares a `site`; the engine adds its spec to the desired set it plans with,
//! so it is provisioned, started, restarted and adopted like any other workload.
//!
//! On every reconcile pass [`Ingress::routes`] turns the desired workloads into routes (a
//! running workload's address and `port`; a stopped one's 503 page; a volume site's directory),
//! the pure [`warren_ingress::render_checked`] renders nginx.conf, and [`Ingress::sync`] puts it
//! live only if it changed: the new file is checked with `nginx -t` *inside* the routing
//! workload, renamed over the live one, and nginx is told to reload gracefully. A rejected
//! file never replaces the live one; an event carries nginx's reason.
//!
//! What differs per OS is [`warren_ingress::Platform`]'s: on Linux the routing workload runs
//! the host world's nginx with the prefix bound at its own path and reloads on SIGHUP; on
//! FreeBSD it is a jail running nginx from pkg with the prefix mounted at
//! `/usr/local/etc/nginx` (so the file is `/usr/local/etc/nginx/nginx.conf` inside), host paths
//! in `nginx -t` are translated to the jail's, and a reload is `jexec JAIL service nginx
//! reload` after `/etc/rc.conf.d/nginx` is written into the jail (SIGHUP to the jail's main
//! process, nginx's master, when the world has no rc system). A jail's file can only be
//! checked by its own nginx: while the routing jail is not running, the validated rendering is
//! written unchecked and the jail's nginx refuses to start on a bad one.
//!
//! TLS: `tls = "local"` routes get a certificate from warren's local CA (created on first use
//! under `<state>/ca`, renewed before expiry); operator files (`tls = { cert, key }`) are copied
//! into the prefix so the routing workload sees them without seeing the rest of the host.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warren_exec::{Cmd, ExecError, Executor, Output, Process, Streams};
use warren_ingress::{IngressOptions, Platform, Reload, Route, Target, Tls, Validator};
use warren_model::{
    NetworkMode, PortMapping, Source, TlsChoice, VolumeMount, VolumeSpec, WorkloadSpec,
};
use warren_runtime::Runtime;

/// The name of the routing workload (reserved: no operator workload may use it).
pub use warren_model::names::ROUTING_WORKLOAD as ROUTER;

/// Where static-site volumes appear inside the routing workload.
const SITES: &str = "/srv/sites";

/// Ingress settings of one daemon.
#[derive(Debug, Clone)]
pub struct IngressSettings {
    /// Host port published to nginx's plain-HTTP listener.
    pub http_port: u16,
    /// Host port published to nginx's TLS listener.
    pub https_port: u16,
    /// Host address the ports are published on (every address if `None`).
    pub listen: Option<Ipv4Addr>,
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            http_port: 80,
            https_port: 443,
            listen: None,
        }
    }
}

/// What the daemon knows about one workload when routing to it.
pub struct RouteInput<'a> {
    pub spec: &'a WorkloadSpec,
    pub running: bool,
    pub address: Option<Ipv4Addr>,
}

pub struct Ingress {
    pub settings: IngressSettings,
    /// How this OS runs the ingress's nginx.
    pub platform: &'static Platform,
    /// nginx's prefix directory, bind-mounted at the same path into the routing workload.
    pub prefix: PathBuf,
    ca_dir: PathBuf,
    ca: Mutex<Option<warren_ingress::tls::LocalCa>>,
    /// The configuration text last put live (or found live at start).
    live: Mutex<Option<String>>,
    /// The routing workload's main PID that was last told to load the live file: a newly
    /// started nginx may have read an older file, so it gets one reload of its own.
    reloaded_pid: Mutex<Option<i32>>,
    /// A certificate or key file nginx reads was replaced (issued, renewed, or changed by the
    /// operator) since nginx last loaded its files: the next sync reloads even if the
    /// configuration text is the same.
    certs_changed: std::sync::atomic::AtomicBool,
    /// Runs nginx's configuration check on the host (when the prefix is not the workload's).
    exec: std::sync::Arc<dyn warren_exec::Executor>,
    /// How often nginx was told to reload, and how many renderings its check refused
    /// (reported as metrics).
    pub reloads: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
}

impl Ingress {
    pub fn new(
        settings: IngressSettings,
        state_dir: &Path,
        exec: std::sync::Arc<dyn warren_exec::Executor>,
    ) -> Ingress {
        let prefix = state_dir.join("ingress");
        let live = std::fs::read_to_string(prefix.join("nginx.conf")).ok();
        Ingress {
            settings,
            platform: Platform::current(),
            prefix,
            ca_dir: state_dir.join("ca"),
            ca: Mutex::new(None),
            live: Mutex::new(live),
            reloaded_pid: Mutex::new(None),
            certs_changed: std::sync::atomic::AtomicBool::new(false),
            exec,
            reloads: Default::default(),
            rejected: Default::default(),
        }
    }

    pub fn conf_path(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }

    /// The local CA, created on first use.
    pub fn with_ca<T>(
        &self,
        f: impl FnOnce(&warren_ingress::tls::LocalCa) -> Result<T>,
    ) -> Result<T> {
        let mut ca = self.ca.lock().unwrap();
        if ca.is_none() {
            *ca = Some(
                warren_ingress::tls::LocalCa::load_or_create(
                    &self.ca_dir,
                    std::time::SystemTime::now(),
                )
                .context("preparing the local certificate authority")?,
            );
        }
        f(ca.as_ref().expect("set above"))
    }

    /// The routing workload's spec, or `None` when nothing is routed.
    pub fn router_spec(
        &self,
        workloads: &[&WorkloadSpec],
        volumes: &BTreeMap<String, VolumeSpec>,
    ) -> Option<WorkloadSpec> {
        let sites: Vec<&VolumeSpec> = volumes.values().filter(|v| v.site.is_some()).collect();
        if sites.is_empty() && workloads.iter().all(|w| w.route.domains.is_empty()) {
            return None;
        }
        let mut spec = WorkloadSpec::new(ROUTER, Source::World("host".into()));
        spec.command = self.platform.serve_argv(&self.prefix);
        spec.network = NetworkMode::Bridge;
        let host_ip = self.settings.listen.map(IpAddr::V4);
        spec.ports = vec![
            PortMapping {
                host_ip,
                host_port: self.settings.http_port,
                container_port: 80,
                proto: warren_model::ports::Proto::Tcp,
            },
            PortMapping {
                host_ip,
                host_port: self.settings.https_port,
                container_port: 443,
                proto: warren_model::ports::Proto::Tcp,
            },
        ];
        spec.data_path = "/var/lib/warren-ingress".into();
        for v in sites {
            spec.volumes.push(VolumeMount {
                volume: v.name.clone(),
                path: format!("{SITES}/{}", v.name),
                readonly: true,
            });
        }
        Some(spec)
    }

    /// The routes for the desired workloads and volume sites. Certificates for `tls = "local"`
    /// are issued or renewed here; operator files are copied into the prefix.
    pub fn routes(
        &self,
        workloads: &[RouteInput<'_>],
        volumes: &BTreeMap<String, VolumeSpec>,
        gateway: Ipv4Addr,
    ) -> Result<Vec<Route>> {
        let mut routes = Vec::new();
        for w in workloads {
            let r = &w.spec.route;
            let (Some(port), false) = (r.port, r.domains.is_empty()) else {
                continue;
            };
            let addr = match w.spec.network {
                NetworkMode::Bridge => w.address,
                // A host-network workload is reached through the bridge's gateway address.
                NetworkMode::Host => Some(gateway),
                NetworkMode::None => None,
            };
            let target = match (w.running, addr) {
                (true, Some(a)) => Target::Upstream {
                    addr: IpAddr::V4(a),
                    port,
                },
                _ => Target::Unavailable {
                    workload: w.spec.name.clone(),
                },
            };
            for domain in &r.domains {
                let mut route = Route::new(&w.spec.name, domain, target.clone())
                    .with_path(r.path.clone())
                    .with_tls(self.tls_for(domain, &r.tls)?);
                if r.websocket {
                    route = route.with_websocket();
                }
                if let Some(b) = r.max_body {
                    route = route.with_max_body(b);
                }
                routes.push(route);
            }
        }
        for v in volumes.values() {
            let Some(site) = &v.site else { continue };
            for domain in &site.domains {
                routes.push(
                    Route::new(
                        v.name.clone(),
                        domain,
                        Target::Static {
                            root: PathBuf::from(format!("{SITES}/{}", v.name)),
                            autoindex: site.autoindex,
                        },
                    )
                    .with_path(site.path.clone())
                    .with_tls(self.tls_for(domain, &site.tls)?),
                );
            }
        }
        Ok(routes)
    }

    fn tls_for(&self, domain: &str, choice: &TlsChoice) -> Result<Tls> {
        let dir = self.prefix.join("certs");
        let file = warren_ingress::tls::cert_file_stem(domain)?;
        match choice {
            TlsChoice::None => Ok(Tls::None),
            TlsChoice::Local => {
                let (cert, key) = self.with_ca(|ca| {
                    let (cert, key, _) = ca.ensure_cert(domain, std::time::SystemTime::now())?;
                    Ok((cert, key))
                })?;
                let local = dir.join("local");
                let (c, k) = (
                    local.join(format!("{file}.crt")),
                    local.join(format!("{file}.key")),
                );
                self.copy_cert(&cert, &c)?;
                self.copy_cert(&key, &k)?;
                Ok(Tls::Local {
                    cert: self.in_workload(&c),
                    key: self.in_workload(&k),
                })
            }
            TlsChoice::Files { cert, key } => {
                let op = dir.join("operator");
                let (c, k) = (
                    op.join(format!("{file}.crt")),
                    op.join(format!("{file}.key")),
                );
                // A missing file is left for nginx -t to refuse, with its own message.
                let _ = self.copy_cert(Path::new(cert), &c);
                let _ = self.copy_cert(Path::new(key), &k);
                Ok(Tls::Operator {
                    cert: self.in_workload(&c),
                    key: self.in_workload(&k),
                })
            }
        }
    }

    /// A file below the prefix as the routing workload sees it.
    fn in_workload(&self, host: &Path) -> PathBuf {
        self.platform
            .to_workload(&self.prefix, host)
            .unwrap_or_else(|| host.to_path_buf())
    }

    fn copy_cert(&self, from: &Path, to: &Path) -> Result<()> {
        if copy_if_changed(from, to)? {
            self.certs_changed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// The proxy options: nginx listens on 80 and 443 inside the routing workload, with its
    /// prefix where the workload sees it.
    pub fn options(&self) -> IngressOptions {
        IngressOptions {
            http_port: 80,
            https_port: 443,
            listen: None,
            prefix: self.platform.workload_prefix(&self.prefix),
            access_log: false,
            worker_processes: Some(1),
            daemon: false,
        }
    }

    /// Puts `routes` live if they render to a different file. `router` is the running routing
    /// workload, if it runs: the file is then checked inside it and nginx reloaded; otherwise
    /// it is checked with the host's nginx (Linux: the routing workload runs the host's nginx)
    /// or, for a jail, written as rendered, and used when the workload starts. Returns
    /// `Some(summary)` when the live file changed.
    pub fn sync(&self, routes: &[Route], router: Option<&RouterRun>) -> Result<Option<String>> {
        let text = warren_ingress::render_checked(routes, &self.options())
            .context("rendering the ingress configuration")?;
        let mut live = self.live.lock().unwrap();
        let conf = self.conf_path();
        if live.as_deref() == Some(text.as_str()) && conf.exists() {
            if let Some(r) = router {
                let mut reloaded = self.reloaded_pid.lock().unwrap();
                let certs = self
                    .certs_changed
                    .swap(false, std::sync::atomic::Ordering::SeqCst);
                if *reloaded != Some(r.pid) || certs {
                    self.reload(r)?;
                    *reloaded = Some(r.pid);
                }
            }
            return Ok(None);
        }
        let validator = Validator::new(self.platform.nginx, &self.prefix);
        let installed = match router {
            Some(r) => validator.install(&text, &conf, &self.in_router(r)),
            None if self.platform.prefix_in_workload.is_some() => {
                validator.install_unchecked(&text, &conf)
            }
            None => validator.install(&text, &conf, self.exec.as_ref()),
        }
        .inspect_err(|e| {
            if matches!(e, warren_ingress::nginx::NginxError::Rejected { .. }) {
                self.rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })?;
        *live = Some(text);
        if let Some(r) = router {
            self.certs_changed
                .store(false, std::sync::atomic::Ordering::SeqCst);
            if installed.changed || *self.reloaded_pid.lock().unwrap() != Some(r.pid) {
                self.reload(r)?;
                *self.reloaded_pid.lock().unwrap() = Some(r.pid);
            }
        }
        let domains: BTreeSet<&str> = routes.iter().map(|r| r.domain.as_str()).collect();
        Ok(Some(format!(
            "configuration updated: {} routes for {} domains{}",
            routes.len(),
            domains.len(),
            if router.is_some() {
                ", nginx reloaded"
            } else {
                ""
            }
        )))
    }

    /// Runs commands inside the routing workload, host prefix paths translated.
    fn in_router(&self, r: &RouterRun) -> InWorkload {
        InWorkload {
            runtime: r.runtime.clone(),
            id: r.id.clone(),
            prefix: (
                self.prefix.clone(),
                self.platform.workload_prefix(&self.prefix),
            ),
        }
    }

    /// Tells the running nginx to load its files again, the platform's way.
    fn reload(&self, r: &RouterRun) -> Result<()> {
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.platform.reload {
            Reload::Signal(sig) => r
                .runtime
                .kill(&r.id, sig)
                .with_context(|| format!("asking nginx to reload (SIG{sig})")),
            Reload::Command(argv) => {
                if let Some((path, text)) = self.platform.rc_conf(&self.prefix) {
                    let rel = path.strip_prefix("/").unwrap_or(&path);
                    super::netnames::install_in_root(&r.rootfs, rel, text.as_bytes())
                        .context("writing the routing workload's rc configuration")?;
                }
                let cmd = Cmd::new(argv[0]).args(&argv[1..]);
                match self.in_router(r).run(&cmd) {
                    Ok(_) => Ok(()),
                    // A world without the rc system (no /etc/rc.subr): nginx's master is the
                    // workload's main process, so SIGHUP reloads it the same way.
                    Err(e) => match r.runtime.kill(&r.id, "HUP") {
                        Ok(()) => {
                            tracing::warn!(
                                "`{}` failed in the routing workload ({e}); reloaded nginx with SIGHUP",
                                argv.join(" ")
                            );
                            Ok(())
                        }
                        Err(sig) => Err(anyhow::anyhow!(
                            "asking nginx to reload: `{}`: {e}; SIGHUP: {sig}",
                            argv.join(" ")
                        )),
                    },
                }
            }
        }
    }

    /// Prepares the prefix directories nginx needs.
    pub fn prepare(&self) -> Result<()> {
        warren_ingress::prepare_prefix(&self.prefix)?;
        Ok(())
    }
}

/// Copies `from` to `to` (mode 0600, atomically) unless `to` already has the same bytes;
/// returns whether it wrote.
fn copy_if_changed(from: &Path, to: &Path) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let data = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() == Some(data.as_slice()) {
        return Ok(false);
    }
    let dir = to.parent().expect("certificate files have a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let tmp = to.with_extension("warren-new");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("{}", tmp.display()))?;
        f.write_all(&data)?;
    }
    std::fs::rename(&tmp, to).with_context(|| format!("{}", to.display()))?;
    Ok(true)
}

/// The running routing workload, as [`Ingress::sync`] needs it.
pub struct RouterRun {
    pub runtime: Arc<dyn Runtime>,
    /// Its container (jail) id.
    pub id: String,
    /// Its main process.
    pub pid: i32,
    /// Its root filesystem on the host.
    pub rootfs: PathBuf,
}

/// Runs commands inside a running workload (`runc exec`, `jexec`), so the routing workload's
/// own nginx checks its configuration; arguments naming a path below the host's prefix
/// (`prefix.0`) are translated to where the workload sees it (`prefix.1`).
struct InWorkload {
    runtime: Arc<dyn Runtime>,
    id: String,
    prefix: (PathBuf, PathBuf),
}

impl InWorkload {
    fn translate(&self, arg: String) -> String {
        let (host, inside) = &self.prefix;
        match Path::new(&arg).strip_prefix(host) {
            Ok(rel) => inside.join(rel).display().to_string(),
            Err(_) => arg,
        }
    }
}

impl InWorkload {
    /// The command that runs `cmd` in the workload, and its argv for errors.
    fn command(&self, cmd: &Cmd) -> Result<(std::process::Command, String), ExecError> {
        let mut argv = vec![cmd.program.clone()];
        argv.extend(
            cmd.args
                .iter()
                .map(|a| self.translate(a.to_string_lossy().into_owned())),
        );
        let argv_string = format!("(in {}) {}", self.id, argv.join(" "));
        let c = self
            .runtime
            .exec(&self.id, &warren_runtime::ExecRequest::new(argv))
            .map_err(|e| ExecError::Spawn {
                argv: argv_string.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok((c, argv_string))
    }
}

impl Executor for InWorkload {
    fn spawn(&self, cmd: &Cmd, streams: Streams) -> Result<Box<dyn Process>, ExecError> {
        let (c, argv_string) = self.command(cmd)?;
        warren_exec::spawn_command(argv_string, c, streams)
    }

    fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let (mut c, argv_string) = self.command(cmd)?;
        c.stdin(std::process::Stdio::null());
        let out = c.output().map_err(|source| ExecError::Spawn {
            argv: argv_string.clone(),
            source,
        })?;
        warren_exec::output_result(argv_string, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(name: &str) -> WorkloadSpec {
        let mut w = WorkloadSpec::new(name, Source::World("host".into()));
        w.route.domains = vec![format!("{name}.home.arpa")];
        w.route.port = Some(8080);
        w.route.tls = TlsChoice::Local;
        w
    }

    /// Both platforms' routing workload, options and certificate paths, from one state dir.
    #[test]
    fn per_os_router_spec_options_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        let web = routed("web");
        let prefix = dir.path().join("ingress");
        let p = prefix.display().to_string();

        let mut ing = Ingress::new(
            IngressSettings::default(),
            dir.path(),
            std::sync::Arc::new(warren_exec::HostExecutor),
        );
        ing.platform = &Platform::LINUX;
        let spec = ing.router_spec(&[&web], &BTreeMap::new()).unwrap();
        assert_eq!(
            spec.command,
            [
                "/usr/sbin/nginx".to_string(),
                "-p".into(),
                p.clone(),
                "-c".into(),
                format!("{p}/nginx.conf")
            ]
        );
        assert_eq!(ing.options().prefix, prefix);

        ing.platform = &Platform::FREEBSD;
        let spec = ing.router_spec(&[&web], &BTreeMap::new()).unwrap();
        assert_eq!(
            spec.command,
            [
                "/usr/local/sbin/nginx",
                "-p",
                "/usr/local/etc/nginx",
                "-c",
                "/usr/local/etc/nginx/nginx.conf"
            ]
        );
        assert_eq!(ing.options().prefix, Path::new("/usr/local/etc/nginx"));
        let input = RouteInput {
            spec: &web,
            running: true,
            address: Some(Ipv4Addr::new(10, 88, 0, 2)),
        };
        let routes = ing
            .routes(&[input], &BTreeMap::new(), Ipv4Addr::new(10, 88, 0, 1))
            .unwrap();
        // The certificate is copied under the host's prefix and named as the jail sees it.
        match &routes[0].tls {
            Tls::Local { cert, key } => {
                assert!(
                    cert.starts_with("/usr/local/etc/nginx/certs/local"),
                    "{cert:?}"
                );
                assert!(
                    key.starts_with("/usr/local/etc/nginx/certs/local"),
                    "{key:?}"
                );
                let host_cert = prefix.join(cert.strip_prefix("/usr/local/etc/nginx").unwrap());
                assert!(host_cert.is_file(), "{host_cert:?}");
            }
            other => panic!("{other:?}"),
        }
        let text = warren_ingress::render_checked(&routes, &ing.options()).unwrap();
        assert!(
            text.contains("pid /usr/local/etc/nginx/nginx.pid;"),
            "{text}"
        );
        assert!(
            !text.contains(&p),
            "no host path reaches the jail's file:\n{text}"
        );
    }
}
