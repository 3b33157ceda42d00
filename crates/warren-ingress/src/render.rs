//! The nginx.conf renderer: a pure function from routes and options to the complete file.
//!
//! [`render`] does no I/O and depends on nothing but its arguments: the same routes (in any
//! order) and options give a byte-identical file, which is what the snapshot files under
//! `tests/golden/` pin down. The file is self-contained for a prefix-style nginx
//! (`nginx -p PREFIX -c FILE`): the pid file, logs and every temp directory live under
//! [`IngressOptions::prefix`], and MIME types are inlined rather than included from `/etc`.
//!
//! Layout: a default server answering 404 to unknown hosts; then one `server` per domain in
//! domain order, holding one `location` per route, longest prefix first. A TLS domain gets a
//! plain-HTTP server that redirects to HTTPS plus the TLS server with the routes.
//!
//! The renderer does not quote or escape: it relies on [`crate::validate`] having accepted the
//! routes and options (see [`render_checked`]), whose character rules keep every value a single
//! nginx token.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use crate::route::{IngressOptions, Route, Target, Tls};
use crate::validate::{sorted, validate, validate_options, ValidationError};

/// MIME types served for static routes (the common subset of nginx's `mime.types`).
const MIME_TYPES: &[(&str, &str)] = &[
    ("text/html", "html htm"),
    ("text/css", "css"),
    ("text/plain", "txt log"),
    ("text/xml", "xml"),
    ("text/markdown", "md"),
    ("application/javascript", "js mjs"),
    ("application/json", "json"),
    ("application/wasm", "wasm"),
    ("application/pdf", "pdf"),
    ("application/gzip", "gz tgz"),
    ("application/x-xz", "xz"),
    ("application/zstd", "zst"),
    ("application/x-tar", "tar"),
    ("application/zip", "zip"),
    ("application/vnd.debian.binary-package", "deb"),
    ("image/png", "png"),
    ("image/jpeg", "jpg jpeg"),
    ("image/gif", "gif"),
    ("image/svg+xml", "svg svgz"),
    ("image/webp", "webp"),
    ("image/x-icon", "ico"),
    ("font/woff", "woff"),
    ("font/woff2", "woff2"),
];

/// Validates `routes` and `opts`, then renders them.
pub fn render_checked(routes: &[Route], opts: &IngressOptions) -> Result<String, ValidationError> {
    validate_options(opts)?;
    validate(routes)?;
    Ok(render(routes, opts))
}

/// Renders the complete nginx.conf for `routes` under `opts`.
///
/// Pure and deterministic: routes are sorted by domain, then path, before rendering, so their
/// input order does not matter. Call [`validate`] and [`validate_options`] first (or use
/// [`render_checked`]); values are written as they are.
pub fn render(routes: &[Route], opts: &IngressOptions) -> String {
    let routes = sorted(routes);
    let any_tls = routes.iter().any(|r| r.tls != Tls::None);
    let prefix = opts.prefix.display().to_string();
    let prefix = prefix.trim_end_matches('/');
    let mut w = Writer::default();

    w.line(
        0,
        "# nginx.conf rendered by warren from the workloads' routes.",
    );
    w.line(0, "# Replaced as a whole on every change: do not edit.");
    if !opts.daemon {
        w.line(0, "daemon off;");
    }
    match opts.worker_processes {
        Some(n) => w.line(0, &format!("worker_processes {n};")),
        None => w.line(0, "worker_processes auto;"),
    }
    w.line(0, &format!("pid {prefix}/nginx.pid;"));
    w.line(0, &format!("error_log {prefix}/logs/error.log warn;"));
    w.blank();
    w.line(0, "events {");
    w.line(1, "worker_connections 1024;");
    w.line(0, "}");
    w.blank();
    w.line(0, "http {");
    w.line(1, "types {");
    for (mime, exts) in MIME_TYPES {
        w.line(2, &format!("{mime} {exts};"));
    }
    w.line(1, "}");
    w.line(1, "default_type application/octet-stream;");
    w.line(1, "sendfile on;");
    w.line(1, "server_tokens off;");
    w.line(1, "absolute_redirect off;");
    if opts.access_log {
        w.line(1, &format!("access_log {prefix}/logs/access.log;"));
    } else {
        w.line(1, "access_log off;");
    }
    for (directive, dir) in [
        ("client_body_temp_path", "client_body"),
        ("proxy_temp_path", "proxy"),
        ("fastcgi_temp_path", "fastcgi"),
        ("uwsgi_temp_path", "uwsgi"),
        ("scgi_temp_path", "scgi"),
    ] {
        w.line(1, &format!("{directive} {prefix}/temp/{dir};"));
    }
    w.blank();
    w.line(1, "map $http_upgrade $connection_upgrade {");
    w.line(2, "default upgrade;");
    w.line(2, "'' close;");
    w.line(1, "}");
    w.blank();

    let http = listen(opts.listen, opts.http_port);
    let https = listen(opts.listen, opts.https_port);
    w.line(1, "# Unknown hosts.");
    w.line(1, "server {");
    w.line(2, &format!("listen {http} default_server;"));
    if any_tls {
        w.line(2, &format!("listen {https} ssl default_server;"));
        w.line(2, "ssl_reject_handshake on;");
    }
    w.line(2, "server_name _;");
    w.line(2, "return 404;");
    w.line(1, "}");

    for group in routes.chunk_by(|a, b| a.domain == b.domain) {
        let domain = &group[0].domain;
        let mut workloads: Vec<&str> = group.iter().map(|r| r.workload.as_str()).collect();
        workloads.sort_unstable();
        workloads.dedup();
        let tls = &group[0].tls;
        w.blank();
        w.line(1, &format!("# {domain} ({})", workloads.join(", ")));
        w.line(1, "server {");
        w.line(2, &format!("listen {http};"));
        w.line(2, &format!("server_name {domain};"));
        let Some((cert, key)) = tls.files() else {
            locations(&mut w, group);
            w.line(1, "}");
            continue;
        };
        let target = if opts.https_port == 443 {
            "https://$host$request_uri".to_string()
        } else {
            format!("https://$host:{}$request_uri", opts.https_port)
        };
        w.line(2, &format!("return 308 {target};"));
        w.line(1, "}");
        w.blank();
        w.line(1, "server {");
        w.line(2, &format!("listen {https} ssl;"));
        w.line(2, &format!("server_name {domain};"));
        let source = match tls {
            Tls::Local { .. } => "warren's local CA",
            _ => "the operator",
        };
        w.line(2, &format!("# Certificate from {source}."));
        w.line(2, &format!("ssl_certificate {};", cert.display()));
        w.line(2, &format!("ssl_certificate_key {};", key.display()));
        w.line(2, "ssl_protocols TLSv1.2 TLSv1.3;");
        locations(&mut w, group);
        w.line(1, "}");
    }
    w.line(0, "}");
    w.out
}

/// The `listen` argument for `port` on `addr` (every IPv4 address if `None`).
fn listen(addr: Option<IpAddr>, port: u16) -> String {
    match addr {
        None => port.to_string(),
        Some(IpAddr::V4(a)) => format!("{a}:{port}"),
        Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
    }
}

/// The path of the prefix `location` a route renders to. A static route's location always ends
/// in `/` (its directory is mapped with `alias`, and a location without the slash would also map
/// sibling names: `/files-old` onto `ROOT-old`).
pub(crate) fn location_path(r: &Route) -> String {
    match &r.target {
        Target::Static { .. } if !r.path_prefix.ends_with('/') => format!("{}/", r.path_prefix),
        _ => r.path_prefix.clone(),
    }
}

fn locations(w: &mut Writer, group: &[&Route]) {
    let mut routes: Vec<(String, &Route)> = group.iter().map(|r| (location_path(r), *r)).collect();
    // Longest prefix first; nginx picks the longest match anyway, this keeps the file readable.
    routes.sort_by(|(pa, ra), (pb, rb)| {
        pb.len()
            .cmp(&pa.len())
            .then_with(|| pa.cmp(pb))
            .then_with(|| ra.cmp(rb))
    });
    for (path, r) in routes {
        w.blank();
        w.line(2, &format!("# workload {}", r.workload));
        if let Target::Static { .. } = r.target {
            if path != r.path_prefix {
                w.line(2, &format!("location = {} {{", r.path_prefix));
                w.line(3, &format!("return 301 {path};"));
                w.line(2, "}");
            }
        }
        w.line(2, &format!("location {path} {{"));
        match &r.target {
            Target::Upstream { addr, port } => {
                let host = match addr {
                    IpAddr::V4(a) => a.to_string(),
                    IpAddr::V6(a) => format!("[{a}]"),
                };
                w.line(3, &format!("proxy_pass http://{host}:{port};"));
                w.line(3, "proxy_http_version 1.1;");
                w.line(3, "proxy_set_header Host $host;");
                w.line(3, "proxy_set_header X-Real-IP $remote_addr;");
                w.line(
                    3,
                    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                );
                w.line(3, "proxy_set_header X-Forwarded-Proto $scheme;");
                if r.websocket {
                    w.line(3, "proxy_set_header Upgrade $http_upgrade;");
                    w.line(3, "proxy_set_header Connection $connection_upgrade;");
                    w.line(3, "proxy_read_timeout 1h;");
                    w.line(3, "proxy_send_timeout 1h;");
                } else {
                    w.line(3, "proxy_set_header Connection \"\";");
                }
            }
            Target::Static { root, autoindex } => {
                w.line(3, &format!("alias {};", dir_with_slash(root)));
                if *autoindex {
                    w.line(3, "autoindex on;");
                }
            }
            Target::Unavailable { workload } => {
                w.line(3, "default_type text/html;");
                w.line(3, "add_header Retry-After 30 always;");
                w.line(3, "add_header Cache-Control no-store always;");
                w.line(
                    3,
                    &format!(
                        "return 503 \"<!DOCTYPE html>\\n<html><head><title>503 {workload} is \
                         stopped</title></head>\\n<body><h1>503 Service Unavailable</h1>\\n\
                         <p>Workload <b>{workload}</b> is stopped.</p></body></html>\\n\";"
                    ),
                );
            }
        }
        if let Some(n) = r.max_body {
            w.line(3, &format!("client_max_body_size {n};"));
        }
        w.line(2, "}");
    }
}

fn dir_with_slash(p: &Path) -> String {
    let s = p.display().to_string();
    if s.ends_with('/') {
        s
    } else {
        format!("{s}/")
    }
}

/// Accumulates indented lines.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.out.push_str("    ");
        }
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "{text}");
    }

    fn blank(&mut self) {
        self.out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::path::PathBuf;

    fn up(workload: &str, domain: &str, port: u16) -> Route {
        Route::new(
            workload,
            domain,
            Target::Upstream {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                port,
            },
        )
    }

    #[test]
    fn longest_prefix_first_within_a_domain() {
        let routes = vec![
            up("web", "a.test", 80),
            up("api", "a.test", 81).with_path("/api"),
            up("v2", "a.test", 82).with_path("/api/v2"),
        ];
        let conf = render(&routes, &IngressOptions::default());
        let v2 = conf.find("location /api/v2 {").unwrap();
        let api = conf.find("location /api {").unwrap();
        let root = conf.find("location / {").unwrap();
        assert!(v2 < api && api < root, "{conf}");
        assert_eq!(conf.matches("server_name a.test;").count(), 1);
    }

    #[test]
    fn ipv6_listen_and_upstream() {
        let r = Route::new(
            "web",
            "a.test",
            Target::Upstream {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                port: 8080,
            },
        );
        let opts = IngressOptions {
            listen: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ..IngressOptions::default()
        };
        let conf = render(&[r], &opts);
        assert!(conf.contains("proxy_pass http://[::1]:8080;"), "{conf}");
        assert!(conf.contains("listen [::1]:80 default_server;"), "{conf}");
    }

    #[test]
    fn redirect_names_a_non_default_https_port() {
        let r = up("web", "a.test", 80).with_tls(Tls::Local {
            cert: PathBuf::from("/c.pem"),
            key: PathBuf::from("/k.pem"),
        });
        let opts = IngressOptions {
            https_port: 8443,
            ..IngressOptions::default()
        };
        let conf = render(&[r], &opts);
        assert!(
            conf.contains("return 308 https://$host:8443$request_uri;"),
            "{conf}"
        );
        assert!(conf.contains("listen 8443 ssl default_server;"), "{conf}");
    }

    #[test]
    fn static_prefix_without_slash_redirects_to_the_directory() {
        let r = Route::new(
            "site",
            "a.test",
            Target::Static {
                root: PathBuf::from("/srv/site"),
                autoindex: false,
            },
        )
        .with_path("/files");
        let conf = render(&[r], &IngressOptions::default());
        assert!(conf.contains("location = /files {\n"), "{conf}");
        assert!(conf.contains("return 301 /files/;"), "{conf}");
        assert!(conf.contains("location /files/ {\n"), "{conf}");
        assert!(conf.contains("alias /srv/site/;"), "{conf}");
        assert!(!conf.contains("autoindex"), "{conf}");
    }

    #[test]
    fn checked_render_refuses_bad_input() {
        let bad = up("web", "a.test", 80).with_path("/x;return 200");
        assert!(render_checked(&[bad], &IngressOptions::default()).is_err());
        let ok = up("web", "a.test", 80);
        assert_eq!(
            render_checked(std::slice::from_ref(&ok), &IngressOptions::default()).unwrap(),
            render(&[ok], &IngressOptions::default())
        );
    }
}
