//! The ingress data model: a [`Route`] sends requests for one domain and path prefix to a
//! [`Target`] (a workload's address, a static directory, or a 503 page for a stopped workload),
//! with per-route [`Tls`]; [`IngressOptions`] are the proxy-wide settings (ports, prefix
//! directory, logging, worker count).

use std::net::IpAddr;
use std::path::PathBuf;

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Proxied to a workload listening on `addr:port`.
    Upstream { addr: IpAddr, port: u16 },
    /// Files served from `root` (an absolute directory), with a directory listing if `autoindex`.
    Static { root: PathBuf, autoindex: bool },
    /// The workload is stopped: answered with a 503 page naming it.
    Unavailable { workload: String },
}

/// The TLS choice of a route. All routes of one domain must make the same choice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Tls {
    /// Plain HTTP only.
    #[default]
    None,
    /// A certificate issued by warren's local CA.
    Local { cert: PathBuf, key: PathBuf },
    /// A certificate and key supplied by the operator.
    Operator { cert: PathBuf, key: PathBuf },
}

impl Tls {
    /// The certificate and key files, if TLS is on.
    pub fn files(&self) -> Option<(&PathBuf, &PathBuf)> {
        match self {
            Tls::None => None,
            Tls::Local { cert, key } | Tls::Operator { cert, key } => Some((cert, key)),
        }
    }
}

/// One ingress route: requests for `domain` whose path starts with `path_prefix`.
///
/// Path prefixes use nginx prefix-location semantics: `/api` also matches `/api/v1` and `/apix`;
/// write `/api/` to match only below the directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// The workload the route belongs to (named in errors and in the 503 page).
    pub workload: String,
    /// A hostname such as `git.home.arpa`, or a wildcard such as `*.home.arpa`.
    pub domain: String,
    /// Starts with `/`; `/` by default.
    pub path_prefix: String,
    pub target: Target,
    /// Pass `Upgrade`/`Connection` through so websockets work.
    pub websocket: bool,
    /// `client_max_body_size` in bytes (`0` means unlimited); nginx's default (1 MiB) if unset.
    pub max_body: Option<u64>,
    pub tls: Tls,
}

impl Route {
    /// A plain-HTTP route for all paths of `domain`, without websocket or body-size settings.
    pub fn new(workload: impl Into<String>, domain: impl Into<String>, target: Target) -> Self {
        Route {
            workload: workload.into(),
            domain: domain.into(),
            path_prefix: "/".to_string(),
            target,
            websocket: false,
            max_body: None,
            tls: Tls::None,
        }
    }

    /// The same route for `path_prefix` instead of `/`.
    pub fn with_path(mut self, path_prefix: impl Into<String>) -> Self {
        self.path_prefix = path_prefix.into();
        self
    }

    /// The same route with websocket upgrades passed through.
    pub fn with_websocket(mut self) -> Self {
        self.websocket = true;
        self
    }

    /// The same route with a request body limit of `bytes`.
    pub fn with_max_body(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// The same route with the TLS choice `tls`.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }
}

/// Proxy-wide settings of the rendered configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressOptions {
    /// Port of the plain-HTTP listeners.
    pub http_port: u16,
    /// Port of the TLS listeners (only opened when some domain uses TLS).
    pub https_port: u16,
    /// Address to listen on; every address if `None`.
    pub listen: Option<IpAddr>,
    /// nginx's prefix directory (`nginx -p`): the pid file, logs and temp directories live
    /// below it, so nginx needs nothing outside it (see [`crate::prepare_prefix`]).
    pub prefix: PathBuf,
    /// Write an access log to `PREFIX/logs/access.log` (otherwise `access_log off`).
    pub access_log: bool,
    /// `worker_processes`; `auto` (one per CPU) if `None`.
    pub worker_processes: Option<u32>,
    /// Let nginx daemonize; `false` renders `daemon off;` for a supervised foreground nginx.
    pub daemon: bool,
}

impl Default for IngressOptions {
    fn default() -> Self {
        IngressOptions {
            http_port: 80,
            https_port: 443,
            listen: None,
            prefix: PathBuf::from("/var/lib/warren/ingress"),
            access_log: true,
            worker_processes: None,
            daemon: false,
        }
    }
}
