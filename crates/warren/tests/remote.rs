//! Tier-2 tests of the remote API: TLS 1.3 on loopback, claim-code enrolment, per-request
//! EdDSA tokens (missing, expired, wrong audience, replayed, revoked, unknown: 401 and nothing
//! changes), rate limiting, a changed certificate refused by the CLI, and two contexts managing
//! two daemons. Raw requests go through curl (scripts/install-deps installs it).

mod common;

use common::*;
use std::process::{Command, Output, Stdio};
use warren_auth::token::{Claims, OperatorKey};

struct Operator {
    config: tempfile::TempDir,
}

impl Operator {
    fn new() -> Operator {
        Operator {
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// The CLI with this operator's config dir (and no state dir: remote only).
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(args)
            .env("XDG_CONFIG_HOME", self.config.path())
            .env("WARREN_STATE_DIR", "/nonexistent-warren-state")
            .env_remove("WARREN_HOST")
            .env_remove("WARREN_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "warren {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "warren {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    fn key(&self) -> OperatorKey {
        let path = self.config.path().join("warren/operator.key");
        OperatorKey::load_or_create(&path).unwrap().0
    }

    fn host_id(&self, ctx: &str) -> String {
        let text = std::fs::read_to_string(self.config.path().join("warren/config.toml")).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        v["context"][ctx]["host_id"].as_str().unwrap().to_string()
    }
}

fn claim_code(d: &Daemon) -> String {
    d.ok(&["daemon", "claim-code"]).trim().to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `curl` against the remote API; returns the HTTP status.
fn curl(port: u16, method: &str, path: &str, token: Option<&str>) -> u16 {
    let mut c = Command::new("curl");
    c.args([
        "-sk",
        "--tlsv1.3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        method,
    ]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = c
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl is not installed (scripts/install-deps installs it)");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

fn remote_daemon() -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::start(&["--listen", &format!("127.0.0.1:{port}")]);
    wait_until(20, "the remote API listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (d, port)
}

#[test]
fn remote_requests_need_fresh_tokens_from_enrolled_keys() {
    let (mut d, port) = remote_daemon();
    let host = format!("127.0.0.1:{port}");
    let op = Operator::new();
    let code = claim_code(&d);
    assert_eq!(code.len(), 17, "{code}");

    // Enrolment: a wrong code is refused, then the right one is accepted once.
    let err = op.fails(&["adopt", &host, "--yes", "--claim-code", "AAAAA-AAAAA-AAAAA"]);
    assert!(err.contains("wrong claim code"), "{err}");
    let out = op.ok(&[
        "adopt",
        &host,
        "--yes",
        "--claim-code",
        &code,
        "--name",
        "lab",
    ]);
    assert!(out.contains("as context lab"), "{out}");
    let other = Operator::new();
    let err = other.fails(&["adopt", &host, "--yes", "--claim-code", &code]);
    assert!(err.contains("claim window is closed"), "{err}");
    let err = d.cli(&["daemon", "claim-code"]);
    assert!(
        !err.status.success(),
        "the window closed with the enrolment"
    );

    // The context manages the daemon, streams included.
    op.ok(&["--context", "lab", "world", "create", "busybox"]);
    let spec = op.config.path().join("w.toml");
    std::fs::write(
        &spec,
        "[workload.w]\nworld = \"busybox\"\nnetwork = \"none\"\ncommand = [\"sh\", \"-c\", \"echo hello-remote; exec sleep 100000\"]\n",
    )
    .unwrap();
    op.ok(&["--context", "lab", "apply", "-f", spec.to_str().unwrap()]);
    d.wait_running("w");
    let out = op.ok(&["--context", "lab", "exec", "w", "--", "echo", "via-tls"]);
    assert_eq!(out, "via-tls\n");
    wait_until(10, "logs over TLS", || {
        op.ok(&["--context", "lab", "logs", "w"])
            .contains("hello-remote")
    });
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["list"])
        .env("XDG_CONFIG_HOME", op.config.path())
        .env("WARREN_HOST", &host)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains('w'),
        "WARREN_HOST selects the context"
    );

    // Bad tokens: 401, and nothing changes.
    let key = op.key();
    let aud = op.host_id("lab");
    let t = now();
    let claims = |aud: &str, iat: u64, exp: u64, jti: &str| Claims {
        aud: aud.into(),
        iat,
        exp,
        jti: jti.into(),
    };
    let stop = "/v1/workloads/w/stop";
    assert_eq!(curl(port, "POST", stop, None), 401, "no token");
    assert_eq!(
        curl(port, "GET", "/v1/openapi.json", None),
        200,
        "the document is open"
    );
    let expired = key.sign_claims(&claims(&aud, t - 600, t - 500, "expired-token-0001"));
    assert_eq!(curl(port, "POST", stop, Some(&expired)), 401, "expired");
    let wrong_aud = key.sign_claims(&claims(
        "0123456789abcdef0123456789abcdef",
        t,
        t + 60,
        "wrong-audience-001",
    ));
    assert_eq!(
        curl(port, "POST", stop, Some(&wrong_aud)),
        401,
        "wrong audience"
    );
    let stranger = OperatorKey::generate().unwrap();
    assert_eq!(
        curl(port, "POST", stop, Some(&stranger.sign_token(&aud, t, 60))),
        401,
        "unknown key"
    );
    let good = key.sign_token(&aud, t, 60);
    assert_eq!(curl(port, "GET", "/v1/workloads", Some(&good)), 200);
    assert_eq!(curl(port, "POST", stop, Some(&good)), 401, "replayed");
    // A second operator's key: added, used, revoked.
    let second = OperatorKey::generate().unwrap();
    op.ok(&[
        "--context",
        "lab",
        "key",
        "add",
        &second.public().encode(),
        "--name",
        "bob",
    ]);
    assert_eq!(
        curl(
            port,
            "GET",
            "/v1/workloads",
            Some(&second.sign_token(&aud, t, 60))
        ),
        200
    );
    op.ok(&[
        "--context",
        "lab",
        "key",
        "revoke",
        &second.public().fingerprint(),
    ]);
    assert_eq!(
        curl(port, "POST", stop, Some(&second.sign_token(&aud, t, 60))),
        401,
        "revoked"
    );
    let keys = op.ok(&["--context", "lab", "key", "list"]);
    assert!(!keys.contains("bob"), "{keys}");
    assert_eq!(
        d.get("w")["state"],
        "running",
        "a refused request changed something"
    );
    // The local-only routes are not on the remote API, even with a valid token.
    assert_eq!(
        curl(
            port,
            "GET",
            "/v1/auth/claim-code",
            Some(&key.sign_token(&aud, t, 60))
        ),
        404
    );

    // reset-auth reopens the window; adopting from elsewhere works again.
    let code = d.ok(&["daemon", "reset-auth"]).trim().to_string();
    other.ok(&[
        "adopt",
        &host,
        "--yes",
        "--claim-code",
        &code,
        "--name",
        "lab",
    ]);
    other.ok(&["--context", "lab", "list"]);

    // Repeated failures from one address are refused for a while.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(curl(port, "GET", "/v1/workloads", Some("x.y.z")));
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    // A changed certificate: the CLI refuses, naming both fingerprints.
    let before: String = std::fs::read_to_string(op.config.path().join("warren/config.toml"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("fingerprint"))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_string();
    d.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let remote_dir = d.state_dir().join("remote");
    std::fs::remove_file(remote_dir.join("host.crt")).unwrap();
    std::fs::remove_file(remote_dir.join("host.key")).unwrap();
    d.spawn();
    wait_until(20, "the remote API listens again", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let err = op.fails(&["--context", "lab", "list"]);
    assert!(err.contains("certificate changed"), "{err}");
    assert!(
        err.contains(&before),
        "the pinned fingerprint is named: {err}"
    );
    let presented = err
        .split("presented ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("");
    assert!(
        presented.starts_with("sha256:") && presented != before,
        "{err}"
    );
}

#[test]
fn two_contexts_manage_two_daemons() {
    let (a, pa) = remote_daemon();
    let (b, pb) = remote_daemon();
    let op = Operator::new();
    op.ok(&[
        "adopt",
        &format!("127.0.0.1:{pa}"),
        "--yes",
        "--claim-code",
        &claim_code(&a),
        "--name",
        "a",
    ]);
    op.ok(&[
        "adopt",
        &format!("127.0.0.1:{pb}"),
        "--yes",
        "--claim-code",
        &claim_code(&b),
        "--name",
        "b",
    ]);
    let contexts = op.ok(&["context", "list"]);
    assert!(
        contexts.contains(&format!("127.0.0.1:{pa}"))
            && contexts.contains(&format!("127.0.0.1:{pb}"))
    );
    for (ctx, name) in [("a", "only-on-a"), ("b", "only-on-b")] {
        op.ok(&["--context", ctx, "world", "create", "busybox"]);
        let spec = op.config.path().join(format!("{ctx}.toml"));
        std::fs::write(
            &spec,
            format!("[workload.{name}]\nworld = \"busybox\"\nnetwork = \"none\"\ncommand = [\"sleep\", \"100000\"]\n"),
        )
        .unwrap();
        op.ok(&["--context", ctx, "apply", "-f", spec.to_str().unwrap()]);
    }
    a.wait_running("only-on-a");
    b.wait_running("only-on-b");
    let on_a = op.ok(&["--context", "a", "list"]);
    let on_b = op.ok(&["--context", "b", "list"]);
    assert!(
        on_a.contains("only-on-a") && !on_a.contains("only-on-b"),
        "{on_a}"
    );
    assert!(
        on_b.contains("only-on-b") && !on_b.contains("only-on-a"),
        "{on_b}"
    );
    let err = op.fails(&["--context", "c", "list"]);
    assert!(err.contains("no context \"c\""), "{err}");
    // The local socket still works for root on each host.
    assert!(a.ok(&["list"]).contains("only-on-a"));
}
