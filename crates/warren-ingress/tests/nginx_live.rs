//! Tier-1 tests against the real nginx (Debian's `nginx-light` at `/usr/sbin/nginx`; the path
//! is [`DEFAULT_NGINX`]). They fail, never skip, when nginx is missing.
//!
//! Each test starts its own backends (tiny HTTP servers on 127.0.0.1 answering with their name
//! and the request head they saw) and its own nginx in the foreground with a prefix in a temp
//! dir, listening on a free 127.0.0.1 port. A guard ends that nginx by its PID and removes the
//! temp dir, also when the test fails.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use warren_exec::{Cmd, Executor, HostExecutor};
use warren_ingress::{
    render, render_checked, IngressOptions, NginxError, Route, Target, Tls, Validator,
    DEFAULT_NGINX,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn nginx_bin() -> &'static str {
    assert!(
        Path::new(DEFAULT_NGINX).is_file(),
        "nginx not found at {DEFAULT_NGINX}: these tier-1 tests need a real nginx \
         (apt-get install nginx-light)"
    );
    DEFAULT_NGINX
}

/// A backend answering every request with `NAME\n` followed by the request head it received.
fn backend(name: &'static str) -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{name}\n{}", String::from_utf8_lossy(&head));
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn decode_chunked(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = s.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            return out;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
}

/// Sends `GET path` with `Host: host` over HTTP/1.1 to 127.0.0.1:`port`.
fn get(port: u16, host: &str, path: &str) -> std::io::Result<Response> {
    let addr = SocketAddr::new(LOCALHOST, port);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: warren-test\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {raw:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {raw:?}")))?;
    let mut r = Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    };
    if r.header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        r.body = decode_chunked(&r.body);
    }
    Ok(r)
}

/// Retries `get` until the response's body starts with `want` (after a reload, old workers
/// may answer for a moment).
fn wait_for_body(port: u16, host: &str, path: &str, want: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(port, host, path);
        match r {
            Ok(r) if r.body.starts_with(want) => return r,
            other if Instant::now() > deadline => {
                panic!("{host}{path} did not answer {want:?} within 10 s; last: {other:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A temp dir with nginx's prefix and configuration, and the nginx running on it.
struct Env {
    root: tempfile::TempDir,
    validator: Validator,
    conf: PathBuf,
    opts: IngressOptions,
    nginx: Option<Child>,
}

impl Env {
    fn new() -> Self {
        let nginx = nginx_bin();
        let root = tempfile::tempdir().unwrap();
        // nginx's workers drop to an unprivileged user when started by root: let them in.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let prefix = root.path().join("prefix");
        let conf = root.path().join("nginx.conf");
        let http_port = free_port();
        let mut https_port = free_port();
        while https_port == http_port {
            https_port = free_port();
        }
        let opts = IngressOptions {
            http_port,
            https_port,
            listen: Some(LOCALHOST),
            prefix: prefix.clone(),
            access_log: true,
            worker_processes: Some(1),
            daemon: false,
        };
        Env {
            validator: Validator::new(nginx, prefix),
            root,
            conf,
            opts,
            nginx: None,
        }
    }

    fn install(&self, routes: &[Route]) {
        let text = render_checked(routes, &self.opts).unwrap();
        let installed = self
            .validator
            .install(&text, &self.conf, &HostExecutor)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(installed.changed);
    }

    fn error_log(&self) -> String {
        let log = fs::read_to_string(self.validator.prefix().join("logs/error.log"));
        let out = fs::read_to_string(self.root.path().join("nginx.stderr"));
        format!(
            "error.log: {}\nstderr: {}",
            log.unwrap_or_default(),
            out.unwrap_or_default()
        )
    }

    /// Starts nginx in the foreground and waits until it accepts connections.
    fn start(&mut self) {
        let stderr = fs::File::create(self.root.path().join("nginx.stderr")).unwrap();
        let child = self
            .validator
            .serve_command(&self.conf)
            .unwrap()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.nginx = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::new(LOCALHOST, self.opts.http_port);
        loop {
            if let Some(status) = self.nginx.as_mut().unwrap().try_wait().unwrap() {
                panic!("nginx exited ({status}) at start\n{}", self.error_log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {addr} within 10 s\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let Some(mut child) = self.nginx.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn upstream(port: u16) -> Target {
    Target::Upstream {
        addr: LOCALHOST,
        port,
    }
}

#[test]
fn routes_by_host_and_keeps_serving_through_a_rejected_config() {
    let a = backend("A");
    let b = backend("B");
    let mut env = Env::new();
    let routes = vec![
        Route::new("alpha", "a.test", upstream(a)),
        Route::new("beta", "b.test", upstream(b)),
        Route::new(
            "gitea",
            "gone.test",
            Target::Unavailable {
                workload: "gitea".into(),
            },
        ),
    ];
    env.install(&routes);
    env.start();
    let port = env.opts.http_port;

    let r = get(port, "a.test", "/some/path?q=1").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.starts_with("A\nGET /some/path?q=1 HTTP/1.1\r\n"),
        "{r:?}"
    );
    assert!(r.body.contains("Host: a.test\r\n"), "{r:?}");
    assert!(r.body.contains("X-Real-IP: 127.0.0.1\r\n"), "{r:?}");
    assert!(r.body.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{r:?}");
    assert!(r.body.contains("X-Forwarded-Proto: http\r\n"), "{r:?}");

    let r = get(port, "b.test", "/").unwrap();
    assert_eq!((r.status, r.body.lines().next()), (200, Some("B")), "{r:?}");

    let r = get(port, "unknown.test", "/").unwrap();
    assert_eq!(r.status, 404, "{r:?}");

    let r = get(port, "gone.test", "/anything").unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("Workload <b>gitea</b> is stopped"), "{r:?}");
    assert_eq!(r.header("retry-after"), Some("30"), "{r:?}");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));

    // Garbage is rejected with nginx's own words; the live file and the running proxy stay.
    let live_before = fs::read_to_string(&env.conf).unwrap();
    let err = env
        .validator
        .install("this is not { nginx", &env.conf, &HostExecutor)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, NginxError::Rejected { .. }), "{msg}");
    assert!(msg.contains("[emerg]"), "{msg}");

    // So is a rendered configuration with an upstream port 0 (which `validate` would refuse).
    let mut broken = routes.clone();
    broken.push(Route::new("zero", "zero.test", upstream(0)));
    let err = env
        .validator
        .install(&render(&broken, &env.opts), &env.conf, &HostExecutor)
        .unwrap_err();
    assert!(err.to_string().contains("[emerg]"), "{err}");
    assert_eq!(fs::read_to_string(&env.conf).unwrap(), live_before);
    let leftovers: Vec<_> = fs::read_dir(env.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("warren-new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        get(port, "a.test", "/").unwrap().body.lines().next(),
        Some("A")
    );

    // A valid change goes live after a graceful reload: a new domain, and a.test moves to B.
    let mut changed = routes.clone();
    changed[0].target = upstream(b);
    changed.push(Route::new("alpha", "c.test", upstream(a)));
    env.install(&changed);
    env.validator.reload(&env.conf, &HostExecutor).unwrap();
    wait_for_body(port, "c.test", "/", "A\n");
    wait_for_body(port, "a.test", "/", "B\n");
    assert_eq!(
        get(port, "b.test", "/").unwrap().body.lines().next(),
        Some("B")
    );
    assert_eq!(get(port, "nope.test", "/").unwrap().status, 404);
}

#[test]
fn static_route_serves_files_and_lists_directories() {
    let mut env = Env::new();
    let site = env.root.path().join("site");
    fs::create_dir_all(site.join("pkgs")).unwrap();
    fs::write(site.join("hello.txt"), "hello from a volume\n").unwrap();
    fs::write(site.join("pkgs/tool_1.0_amd64.deb"), "!<arch>\n").unwrap();
    let routes = vec![
        Route::new(
            "repo",
            "files.test",
            Target::Static {
                root: site.clone(),
                autoindex: true,
            },
        ),
        Route::new(
            "pkgs",
            "files.test",
            Target::Static {
                root: site.join("pkgs"),
                autoindex: false,
            },
        )
        .with_path("/debs"),
    ];
    env.install(&routes);
    env.start();
    let port = env.opts.http_port;

    let r = get(port, "files.test", "/hello.txt").unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "hello from a volume\n"),
        "{r:?}"
    );
    assert_eq!(r.header("content-type"), Some("text/plain"), "{r:?}");

    let r = get(port, "files.test", "/").unwrap();
    assert_eq!(r.status, 200, "{r:?}\n{}", env.error_log());
    assert!(r.body.contains("Index of /"), "{r:?}");
    assert!(r.body.contains("href=\"hello.txt\""), "{r:?}");
    assert!(r.body.contains("href=\"pkgs/\""), "{r:?}");

    let r = get(port, "files.test", "/debs").unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/debs/")),
        "{r:?}"
    );
    let r = get(port, "files.test", "/debs/tool_1.0_amd64.deb").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.debian.binary-package")
    );
    // No autoindex on this route: the directory itself is not listed.
    assert_eq!(get(port, "files.test", "/debs/").unwrap().status, 403);
    // A sibling of the prefix does not reach a sibling of the directory.
    assert_eq!(get(port, "files.test", "/debs-x/a").unwrap().status, 404);
}

#[test]
fn tls_domain_redirects_and_serves_https() {
    let a = backend("A");
    let mut env = Env::new();
    let certs = env.root.path().join("certs");
    fs::create_dir(&certs).unwrap();
    let cert = certs.join("tls.test.crt");
    let key = certs.join("tls.test.key");
    let mut openssl = Cmd::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=tls.test",
        "-addext",
        "subjectAltName=DNS:tls.test",
    ]);
    openssl = openssl.arg("-keyout").arg(&key).arg("-out").arg(&cert);
    HostExecutor
        .run(&openssl)
        .expect("openssl is needed to make a test certificate");
    let routes = vec![
        Route::new("web", "tls.test", upstream(a))
            .with_tls(Tls::Operator {
                cert: cert.clone(),
                key,
            })
            .with_websocket()
            .with_max_body(1 << 20),
        Route::new("plain", "plain.test", upstream(a)),
    ];
    env.install(&routes);
    env.start();
    let (http, https) = (env.opts.http_port, env.opts.https_port);

    let r = get(http, "tls.test", "/x?y=1").unwrap();
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("https://tls.test:{https}/x?y=1").as_str())
    );
    assert_eq!(get(http, "plain.test", "/").unwrap().status, 200);

    let out = HostExecutor
        .run(&Cmd::new("curl").args([
            "-sS".to_string(),
            "--cacert".to_string(),
            cert.display().to_string(),
            "--resolve".to_string(),
            format!("tls.test:{https}:127.0.0.1"),
            format!("https://tls.test:{https}/secure"),
        ]))
        .unwrap_or_else(|e| panic!("{e}\n{}", env.error_log()))
        .stdout_str();
    assert!(out.starts_with("A\nGET /secure HTTP/1.1\r\n"), "{out}");
    assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
}

#[test]
fn varied_route_set_passes_nginx_t() {
    let env = Env::new();
    let v6 = Target::Upstream {
        addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        port: 8080,
    };
    let routes = vec![
        Route::new("catchall", "*.apps.test", upstream(9000)),
        Route::new("one", "one.apps.test", v6.clone()),
        Route::new("api", "one.apps.test", v6)
            .with_path("/api/")
            .with_websocket()
            .with_max_body(0),
        Route::new(
            "docs",
            "one.apps.test",
            Target::Static {
                root: env.root.path().join("missing-dir-is-fine-for-t"),
                autoindex: true,
            },
        )
        .with_path("/docs"),
        Route::new(
            "old",
            "one.apps.test",
            Target::Unavailable {
                workload: "old".into(),
            },
        )
        .with_path("/old"),
    ];
    env.install(&routes);
    env.validator.check(&env.conf, &HostExecutor).unwrap();
}
