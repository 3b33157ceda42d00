//! `cargo bench -p warren --bench remote` (as root): the cost of the remote API against the
//! local socket, side by side in one run. A daemon is started on a scratch state dir with the
//! remote API on a loopback port, an operator key is enrolled with the claim code, then the
//! same request (`GET /v1/health`) is made sequentially, each on a new connection as the CLI
//! does: over the Unix socket, and over TLS 1.3 with a freshly signed token. Prints median and
//! 95th percentile latency, sequential throughput and the overhead ratio.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

const WARMUP: usize = 50;
const REQUESTS: usize = 500;

struct Daemon {
    dir: PathBuf,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling the daemon this bench started, by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = Command::new("umount").arg(self.dir.join("pool")).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn warren(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warren"));
    c.env("WARREN_STATE_DIR", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"));
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stats(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let med = v[v.len() / 2];
    let p95 = v[v.len() * 95 / 100];
    let total: Duration = v.iter().sum();
    println!(
        "{name:<22} median {:>7.3} ms   p95 {:>7.3} ms   {:>7.0} req/s sequential",
        med.as_secs_f64() * 1000.0,
        p95.as_secs_f64() * 1000.0,
        v.len() as f64 / total.as_secs_f64()
    );
    med
}

async fn local(socket: &Path) -> Duration {
    let t = Instant::now();
    let s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/v1/health")
        .header("host", "warren")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert!(resp.status().is_success());
    resp.into_body().collect().await.unwrap();
    t.elapsed()
}

async fn remote(
    addr: &str,
    cfg: Arc<rustls::ClientConfig>,
    key: &warren_auth::token::OperatorKey,
    host_id: &str,
) -> Duration {
    let t = Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = key.sign_token(host_id, now, 60);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls::pki_types::ServerName::try_from("warren").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/v1/health")
        .header("host", "warren")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.into_body().collect().await.unwrap();
    t.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means "not me".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && a != "remote")
    {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the remote bench needs root (it starts a daemon)"
    );
    let dir = PathBuf::from(format!("/tmp/warren-bench-remote-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let child = warren(&dir)
        .args(["daemon", "--pool-gib", "1", "--listen", &addr])
        .args([
            "--bridge",
            "wbenchr0",
            "--nft-table",
            "warren_benchr",
            "--subnet",
            "10.232.0.0/24",
        ])
        .args([
            "--http-port",
            &free_port().to_string(),
            "--https-port",
            &free_port().to_string(),
        ])
        .arg("--runc-root")
        .arg(dir.join("runc"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let d = Daemon {
        dir: dir.clone(),
        child,
    };
    let t = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not start; see {}/daemon.log",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let code = ok(warren(&dir).args(["daemon", "claim-code"]))
        .trim()
        .to_string();
    ok(warren(&dir).args([
        "adopt",
        &addr,
        "--yes",
        "--name",
        "bench",
        "--claim-code",
        &code,
    ]));
    let cfg_text = std::fs::read_to_string(dir.join("config/warren/config.toml")).unwrap();
    let field = |k: &str| {
        cfg_text
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split('"').nth(1))
            .unwrap()
            .to_string()
    };
    let (host_id, fingerprint) = (field("host_id"), field("fingerprint"));
    let key =
        warren_auth::token::OperatorKey::load_or_create(&dir.join("config/warren/operator.key"))
            .unwrap()
            .0;
    let cfg = Arc::new(
        warren_auth::tls::client_config(warren_auth::tls::PinVerifier::new(Some(fingerprint)))
            .unwrap(),
    );
    let socket = dir.join("warren.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (l, r) = rt.block_on(async {
        for _ in 0..WARMUP {
            local(&socket).await;
            remote(&addr, cfg.clone(), &key, &host_id).await;
        }
        let (mut l, mut r) = (Vec::new(), Vec::new());
        // Alternate, so both see the same machine.
        for _ in 0..REQUESTS {
            l.push(local(&socket).await);
            r.push(remote(&addr, cfg.clone(), &key, &host_id).await);
        }
        (l, r)
    });
    println!("\nremote API vs local socket ({REQUESTS} requests each, new connection per request)");
    let lm = stats("local socket", l);
    let rm = stats("remote TLS + token", r);
    println!(
        "overhead ratio (remote/local median): {:.2}",
        rm.as_secs_f64() / lm.as_secs_f64()
    );
    drop(d);
    let _ = Command::new("ip")
        .args(["link", "del", "dev", "wbenchr0"])
        .output();
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", "warren_benchr"])
        .output();
}
