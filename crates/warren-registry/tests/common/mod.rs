//! Real components for the pull tests: Debian's `docker-registry` on a free loopback port with
//! a temporary storage directory (killed by PID when dropped), images built with `umoci` and
//! pushed with `skopeo`, and a small HTTP/1.1 server for token endpoints and misbehaving
//! registries. Every tool that is missing fails the test, naming the package to install.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Fails with the package to install when a tool is missing.
pub fn require(tool: &str, package: &str) {
    let found = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file());
    assert!(
        found,
        "`{tool}` is missing: install the Debian package `{package}` (scripts/install-deps does)"
    );
}

/// Fails unless the tools every pull test needs are here and the test runs as root (which
/// `umoci unpack` needs to keep file ownership).
pub fn require_tools() {
    require("docker-registry", "docker-registry");
    require("skopeo", "skopeo");
    require("umoci", "umoci");
    assert!(
        nix_is_root(),
        "umoci unpack needs root: run the test suite as root"
    );
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a shell script in `dir`, failing the test with its output if it fails.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-euc")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "script failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// Builds a two-layer image in the OCI layout `dir/L` under `tag` with umoci: layer one has
/// `/etc/app.conf` and `/bin/hello` (contents from `marker`), layer two `/srv/data`. With
/// `arch`, the config says that architecture.
pub fn build_image(dir: &Path, tag: &str, marker: &str, arch: Option<&str>) {
    let init = if dir.join("L").exists() {
        ""
    } else {
        "umoci init --layout L"
    };
    let arch_cmd = match arch {
        Some(a) => format!("umoci config --image L:{tag} --architecture {a} --os linux"),
        None => String::new(),
    };
    sh(
        dir,
        &format!(
            r#"
            {init}
            umoci new --image L:{tag}
            rm -rf B-{tag}
            umoci unpack --image L:{tag} B-{tag}
            r=B-{tag}/rootfs
            mkdir -p $r/etc $r/bin $r/srv
            printf 'marker={marker}\n' > $r/etc/app.conf
            printf '#!/bin/sh\necho {marker}\n' > $r/bin/hello
            chmod 755 $r/bin/hello
            umoci repack --image L:{tag} B-{tag}
            rm -rf B-{tag}
            umoci unpack --image L:{tag} B-{tag}
            head -c 300000 /dev/urandom > B-{tag}/rootfs/srv/data
            umoci repack --image L:{tag} B-{tag}
            umoci config --image L:{tag} --config.cmd /bin/hello
            {arch_cmd}
            rm -rf B-{tag}
            "#
        ),
    );
}

/// A running `docker-registry serve`, killed (by PID) with its storage removed on drop.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Registry {
    /// Starts an anonymous registry over plain HTTP.
    pub fn start() -> Registry {
        Registry::start_with("")
    }

    /// Starts a registry with extra top-level configuration (`auth:`), and `http:` extras
    /// through [`Registry::start_full`].
    pub fn start_with(extra: &str) -> Registry {
        Registry::start_full(extra, "")
    }

    /// Starts a registry with extra top-level YAML and extra lines under `http:` (indented
    /// by two spaces, e.g. `  tls:`).
    pub fn start_full(extra: &str, http_extra: &str) -> Registry {
        require("docker-registry", "docker-registry");
        let mut last_log = String::new();
        // The port is free when chosen; another process could take it before the registry
        // binds it, so try a few.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let store = dir.path().join("store");
            std::fs::create_dir_all(&store).unwrap();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: warren-test-secret\n{http_extra}{extra}",
                store.display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = dir.path().join("registry.log");
            let log_file = std::fs::File::create(&log).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .expect("start docker-registry");
            let mut reg = Registry {
                child: Some(child),
                port,
                dir,
                log,
            };
            if reg.wait_ready() {
                return reg;
            }
            last_log = std::fs::read_to_string(&reg.log).unwrap_or_default();
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("store/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes `oci:<layout>:<tag>` to `<this registry>/<dest>` with skopeo.
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        require("skopeo", "skopeo");
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.host()))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals exactly this PID.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A request as the test server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Values of a query parameter (percent-decoded).
    pub fn query(&self, name: &str) -> Vec<String> {
        let q = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect()
    }
}

/// What the test server answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent as Content-Length instead of the body's length (to lie about it).
    pub content_length: Option<u64>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            content_length: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

type Handler = dyn Fn(&SeenRequest) -> Reply + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server on a loopback port, run on a thread, stopped
/// and joined on drop. It records every request.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl TestServer {
    pub fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> TestServer {
        Self::start_with(false, handler)
    }

    /// A server answering every connection on a thread of its own, so that a handler may
    /// wait for other requests to arrive.
    pub fn start_concurrent(
        handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        Self::start_with(true, handler)
    }

    fn start_with(
        concurrent: bool,
        handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let stop = stop.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) if concurrent => {
                            let (handler, seen) = (handler.clone(), seen.clone());
                            std::thread::spawn(move || {
                                let _ = serve_one(stream, &*handler, &seen);
                            });
                        }
                        Ok((stream, _)) => {
                            let _ = serve_one(stream, &*handler, &seen);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        TestServer {
            addr,
            stop,
            thread: Some(thread),
            seen,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(
    stream: TcpStream,
    handler: &Handler,
    seen: &Mutex<Vec<SeenRequest>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // A TLS ClientHello (clients try HTTPS first): hang up, as a plain HTTP server that
    // cannot parse it would.
    let mut first = [0u8; 1];
    if stream.peek(&mut first)? == 0 || first[0] == 0x16 {
        return Ok(());
    }
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let req = SeenRequest {
        method,
        target,
        headers,
    };
    seen.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let mut out = Vec::new();
    write!(
        out,
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.content_length.unwrap_or(reply.body.len() as u64)
    )?;
    for (k, v) in &reply.headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&reply.body);
    let mut stream = stream;
    // The client may hang up early (a refused oversize answer): that is fine.
    let _ = stream.write_all(&out);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client finish reading before the socket closes.
    let mut sink = [0u8; 256];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = stream.read(&mut sink);
    Ok(())
}

/// A self-signed certificate (no CA constraint) for `localhost` and 127.0.0.1, as PEM
/// certificate and PKCS#8 key, and the key's PKCS#8 DER.
pub fn self_signed(cn: &str) -> (String, String, Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).unwrap();
    (
        cert.pem(),
        key.serialize_pem(),
        key.serialize_der(),
        cert.der().to_vec(),
    )
}
