//! Tier-1 tests of warren's local CA against the real tools: `openssl verify` checks the chains
//! it issues, a real nginx (Debian's `nginx-light` at [`DEFAULT_NGINX`]) serves them, and `curl`
//! connects trusting only the CA. They fail, never skip, when a tool is missing.
//!
//! nginx runs in the foreground with a prefix in a temp dir, listening on free 127.0.0.1
//! ports; a guard ends it by its PID, also when the test fails.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use warren_exec::{Cmd, ExecError, Executor, HostExecutor};
use warren_ingress::{
    cert_not_after, check_operator_pair, render_checked, IngressOptions, LocalCa, Route, Target,
    Tls, TlsError, Validator, DEFAULT_NGINX, LEAF_VALIDITY,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn run(cmd: Cmd) -> Result<String, ExecError> {
    HostExecutor.run(&cmd).map(|o| o.stdout_str())
}

/// `openssl verify -CAfile CA CERT`.
fn openssl_verify(ca: &Path, cert: &Path) -> Result<String, ExecError> {
    run(Cmd::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert))
}

/// `openssl ARGS...` in `dir`'s terms (paths are given whole).
fn openssl(args: &[&str]) {
    run(Cmd::new("openssl").args(args.iter().copied()))
        .unwrap_or_else(|e| panic!("openssl is needed for these tests: {e}"));
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A foreground nginx on a temp prefix, ended by PID on drop.
struct Nginx {
    child: Child,
    stderr: PathBuf,
    prefix: PathBuf,
}

impl Nginx {
    fn error_log(&self) -> String {
        format!(
            "error.log: {}\nstderr: {}",
            fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Renders `routes`, installs them with `nginx -t`, starts nginx and waits for its HTTP port.
fn start_nginx(root: &Path, routes: &[Route], opts: &IngressOptions) -> Nginx {
    assert!(
        Path::new(DEFAULT_NGINX).is_file(),
        "nginx not found at {DEFAULT_NGINX}: these tier-1 tests need a real nginx \
         (apt-get install nginx-light)"
    );
    let validator = Validator::new(DEFAULT_NGINX, &opts.prefix);
    let conf = root.join("nginx.conf");
    let text = render_checked(routes, opts).unwrap();
    validator
        .install(&text, &conf, &HostExecutor)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let stderr = root.join("nginx.stderr");
    let child = validator
        .serve_command(&conf)
        .unwrap()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut nginx = Nginx {
        child,
        stderr,
        prefix: opts.prefix.clone(),
    };
    let addr = SocketAddr::new(LOCALHOST, opts.http_port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = nginx.child.try_wait().unwrap() {
            panic!("nginx exited ({status}) at start\n{}", nginx.error_log());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return nginx;
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {addr} within 10 s\n{}",
            nginx.error_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `curl -sS [--cacert CA] --resolve HOST:PORT:127.0.0.1 https://HOST:PORT/PATH`.
fn curl(ca: Option<&Path>, host: &str, port: u16, path: &str) -> Result<String, ExecError> {
    let mut cmd = Cmd::new("curl").args(["-sS", "--max-time", "10"]);
    if let Some(ca) = ca {
        cmd = cmd.arg("--cacert").arg(ca);
    }
    run(cmd.args([
        "--resolve".to_string(),
        format!("{host}:{port}:127.0.0.1"),
        format!("https://{host}:{port}{path}"),
    ]))
}

#[test]
fn issued_certificates_verify_with_openssl_and_serve_https_through_nginx() {
    let root = tempfile::tempdir().unwrap();
    // nginx's workers drop to an unprivileged user when started by root: let them in to the
    // static site (the CA directory stays 0700; only nginx's master reads certificates).
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let now = SystemTime::now();
    let ca_dir = root.path().join("tls");
    let ca = LocalCa::load_or_create(&ca_dir, now).unwrap();
    let ca_crt = ca_dir.join("ca.crt");
    assert_eq!(ca.cert_path(), ca_crt);
    assert_eq!(fs::read_to_string(&ca_crt).unwrap(), ca.cert_pem());

    let (cert, key, issued) = ca.ensure_cert("app.home.arpa", now).unwrap();
    assert!(issued);
    assert_eq!(cert, ca_dir.join("certs/app.home.arpa.crt"));
    assert_eq!(key, ca_dir.join("certs/app.home.arpa.key"));
    let out = openssl_verify(&ca_crt, &cert).unwrap();
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    // openssl agrees about the name, the purpose and the key.
    let text = run(Cmd::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert))
    .unwrap();
    assert!(text.contains("DNS:app.home.arpa"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    let out = run(Cmd::new("openssl")
        .args([
            "verify",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "app.home.arpa",
        ])
        .arg("-CAfile")
        .arg(&ca_crt)
        .arg(&cert))
    .unwrap();
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    check_operator_pair(&cert, &key).unwrap();

    // A certificate for the same name from a different CA does not verify against ours.
    let other_dir = root.path().join("other-tls");
    let other = LocalCa::load_or_create(&other_dir, now).unwrap();
    let (other_cert, _, _) = other.ensure_cert("app.home.arpa", now).unwrap();
    openssl_verify(&other_dir.join("ca.crt"), &other_cert).unwrap();
    let err = openssl_verify(&ca_crt, &other_cert).unwrap_err();
    assert!(
        matches!(err, ExecError::Failed { .. }),
        "openssl verify accepted another CA's certificate: {err}"
    );
    assert!(
        err.to_string()
            .contains("unable to get local issuer certificate"),
        "{err}"
    );

    // A reloaded CA keeps issuing chains that verify.
    drop(ca);
    let ca = LocalCa::load_or_create(&ca_dir, now).unwrap();
    let (wild_cert, wild_key, issued) = ca.ensure_cert("*.apps.home.arpa", now).unwrap();
    assert!(issued);
    assert_eq!(wild_cert, ca_dir.join("certs/_wildcard.apps.home.arpa.crt"));
    let out = openssl_verify(&ca_crt, &wild_cert).unwrap();
    assert!(out.trim_end().ends_with(": OK"), "{out}");

    // nginx serves both domains with the issued files.
    let site = root.path().join("site");
    fs::create_dir(&site).unwrap();
    fs::write(site.join("index.html"), "hello over tls\n").unwrap();
    let http_port = free_port();
    let mut https_port = free_port();
    while https_port == http_port {
        https_port = free_port();
    }
    let opts = IngressOptions {
        http_port,
        https_port,
        listen: Some(LOCALHOST),
        prefix: root.path().join("prefix"),
        access_log: true,
        worker_processes: Some(1),
        daemon: false,
    };
    let static_site = Target::Static {
        root: site.clone(),
        autoindex: false,
    };
    let routes = vec![
        Route::new("web", "app.home.arpa", static_site.clone()).with_tls(Tls::Local { cert, key }),
        Route::new("apps", "*.apps.home.arpa", static_site).with_tls(Tls::Local {
            cert: wild_cert,
            key: wild_key,
        }),
    ];
    let nginx = start_nginx(root.path(), &routes, &opts);

    let body = curl(Some(&ca_crt), "app.home.arpa", https_port, "/")
        .unwrap_or_else(|e| panic!("{e}\n{}", nginx.error_log()));
    assert_eq!(body, "hello over tls\n");
    let body = curl(Some(&ca_crt), "x.apps.home.arpa", https_port, "/")
        .unwrap_or_else(|e| panic!("{e}\n{}", nginx.error_log()));
    assert_eq!(body, "hello over tls\n");

    // Without the CA (only the system's trust store) the certificate is refused...
    let err = curl(None, "app.home.arpa", https_port, "/").unwrap_err();
    assert!(matches!(err, ExecError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("SSL certificate problem"), "{err}");
    // ...and so it is when trusting another warren CA.
    let err = curl(
        Some(&other_dir.join("ca.crt")),
        "app.home.arpa",
        https_port,
        "/",
    )
    .unwrap_err();
    assert!(err.to_string().contains("SSL certificate problem"), "{err}");
    drop(nginx);
}

#[test]
fn certificates_are_renewed_when_due_and_kept_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = LocalCa::load_or_create(dir.path(), now).unwrap();
    let ca_crt = dir.path().join("ca.crt");

    // Issued 80 days ago: 10 days left, renewed now.
    let (cert, key, issued) = ca.ensure_cert("old.home.arpa", now - 80 * DAY).unwrap();
    assert!(issued);
    let old_pem = fs::read(&cert).unwrap();
    let old_key = fs::read(&key).unwrap();
    let old_after = cert_not_after(&cert).unwrap();
    assert!(old_after < now + 11 * DAY && old_after > now + 9 * DAY);
    let (cert2, key2, issued) = ca.ensure_cert("old.home.arpa", now).unwrap();
    assert!(issued, "a certificate with 10 days left must be renewed");
    assert_eq!((&cert2, &key2), (&cert, &key));
    assert_ne!(fs::read(&cert).unwrap(), old_pem);
    assert_ne!(
        fs::read(&key).unwrap(),
        old_key,
        "a renewal brings a new key"
    );
    let new_after = cert_not_after(&cert).unwrap();
    let expected = now + LEAF_VALIDITY;
    let skew = |a: SystemTime, b: SystemTime| {
        a.duration_since(b)
            .or_else(|_| b.duration_since(a))
            .unwrap()
    };
    assert!(skew(new_after, expected) <= Duration::from_secs(1));
    let out = openssl_verify(&ca_crt, &cert).unwrap();
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    check_operator_pair(&cert, &key).unwrap();

    // Issued 10 days ago: 80 days left, kept byte for byte.
    let (cert, key, issued) = ca.ensure_cert("fresh.home.arpa", now - 10 * DAY).unwrap();
    assert!(issued);
    let pem = fs::read(&cert).unwrap();
    let key_pem = fs::read(&key).unwrap();
    let (_, _, issued) = ca.ensure_cert("fresh.home.arpa", now).unwrap();
    assert!(!issued, "a certificate with 80 days left must be kept");
    assert_eq!(fs::read(&cert).unwrap(), pem);
    assert_eq!(fs::read(&key).unwrap(), key_pem);

    // A certificate left by a previous CA (the CA directory was recreated) is replaced.
    let (_, _, _) = ca.ensure_cert("moved.home.arpa", now).unwrap();
    drop(ca);
    let certs = dir.path().join("certs");
    let keep = tempfile::tempdir().unwrap();
    fs::rename(&certs, keep.path().join("certs")).unwrap();
    fs::remove_file(dir.path().join("ca.crt")).unwrap();
    fs::remove_file(dir.path().join("ca.key")).unwrap();
    let ca = LocalCa::load_or_create(dir.path(), now).unwrap();
    fs::rename(keep.path().join("certs"), &certs).unwrap();
    let (cert, _, issued) = ca.ensure_cert("moved.home.arpa", now).unwrap();
    assert!(issued, "a certificate of the old CA must be reissued");
    let out = openssl_verify(&ca_crt, &cert).unwrap();
    assert!(out.trim_end().ends_with(": OK"), "{out}");
}

#[test]
fn operator_pairs_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let s = |path: &PathBuf| path.to_str().unwrap().to_string();
    let self_signed = |key: &PathBuf, cert: &PathBuf, cn: &str| {
        openssl(&[
            "req",
            "-x509",
            "-key",
            &s(key),
            "-days",
            "30",
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &s(cert),
        ]);
    };

    // PKCS#8 P-256 (what `openssl req -newkey ec` writes).
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &s(&p("ec.key")),
    ]);
    self_signed(&p("ec.key"), &p("ec.crt"), "ec.test");
    // SEC1 P-384 with an EC PARAMETERS block first (`openssl ecparam -genkey`).
    openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "secp384r1",
        "-out",
        &s(&p("sec1.key")),
    ]);
    assert!(fs::read_to_string(p("sec1.key"))
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    self_signed(&p("sec1.key"), &p("sec1.crt"), "sec1.test");
    // RSA in PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    openssl(&["genrsa", "-traditional", "-out", &s(&p("rsa.key")), "2048"]);
    assert!(fs::read_to_string(p("rsa.key"))
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    self_signed(&p("rsa.key"), &p("rsa.crt"), "rsa.test");
    // Ed25519.
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &s(&p("ed.key"))]);
    self_signed(&p("ed.key"), &p("ed.crt"), "ed.test");

    for name in ["ec", "sec1", "rsa", "ed"] {
        let cert = p(&format!("{name}.crt"));
        let key = p(&format!("{name}.key"));
        let not_after = check_operator_pair(&cert, &key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(not_after, cert_not_after(&cert).unwrap());
        let left = not_after.duration_since(SystemTime::now()).unwrap();
        assert!(left > 29 * DAY && left <= 30 * DAY, "{name}: {left:?}");
    }

    // A key that belongs to another certificate is refused, naming both files.
    for (cert, key) in [
        ("ec.crt", "sec1.key"),
        ("rsa.crt", "ec.key"),
        ("ed.crt", "rsa.key"),
    ] {
        let err = check_operator_pair(&p(cert), &p(key)).unwrap_err();
        assert!(
            matches!(err, TlsError::KeyMismatch { .. }),
            "{cert} {key}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&s(&p(cert))) && msg.contains(&s(&p(key))),
            "{msg}"
        );
    }
    // Another P-256 key of the same kind: still refused.
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &s(&p("ec2.key")),
    ]);
    let err = check_operator_pair(&p("ec.crt"), &p("ec2.key")).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

    // An encrypted key cannot be used by nginx.
    openssl(&[
        "pkey",
        "-in",
        &s(&p("ec.key")),
        "-aes256",
        "-passout",
        "pass:secret",
        "-out",
        &s(&p("enc.key")),
    ]);
    let err = check_operator_pair(&p("ec.crt"), &p("enc.key")).unwrap_err();
    assert!(matches!(err, TlsError::Key { .. }), "{err}");
    assert!(err.to_string().contains("encrypted"), "{err}");
    assert!(err.to_string().contains(&s(&p("enc.key"))), "{err}");

    // Files swapped, missing, or not PEM: clear errors naming the file.
    let err = check_operator_pair(&p("ec.key"), &p("ec.crt")).unwrap_err();
    assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
    assert!(err.to_string().contains(&s(&p("ec.key"))), "{err}");
    let err = check_operator_pair(&p("ec.crt"), &p("missing.key")).unwrap_err();
    assert!(matches!(err, TlsError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.key"), "{err}");
    fs::write(p("junk.crt"), "hello").unwrap();
    let err = check_operator_pair(&p("junk.crt"), &p("ec.key")).unwrap_err();
    assert!(err.to_string().contains("junk.crt"), "{err}");
    let err = cert_not_after(&p("junk.crt")).unwrap_err();
    assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
}
