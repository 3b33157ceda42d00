//! Pulls from Debian's real `docker-registry` (anonymous, Basic authentication with a bcrypt
//! htpasswd file, Bearer tokens from a token endpoint whose signing certificate the registry
//! trusts, TLS with a certificate from a given CA file), images built with `umoci` and pushed
//! with `skopeo`; the pulled layout is imported with `warren_image::open_archive`. Misbehaving
//! registries (tampered storage, redirect loops, lying sizes and digests) are refused.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{build_image, require, require_tools, sh, Registry, Reply, TestServer};
use warren_image::{open_archive, ApplyOptions, Limits};
use warren_registry::{
    media, pull, BlobKind, Credentials, Digest, Platform, Progress, PullOptions, Reference,
    RegistryError,
};

/// One progress report: blob, kind, done, total.
type Report = (Digest, BlobKind, u64, u64);

fn opts() -> PullOptions {
    PullOptions {
        timeout: Duration::from_secs(20),
        ..PullOptions::default()
    }
}

fn reference(s: &str) -> Reference {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A registry holding `app:1`, built in `work`.
fn registry_with_image(work: &Path) -> Registry {
    require_tools();
    let reg = Registry::start();
    build_image(work, "v1", "one", None);
    reg.push(&work.join("L"), "v1", "app:1", &[]);
    reg
}

fn partial_files(dir: &Path) -> Vec<String> {
    let out = sh(dir, "find . -name '.partial-*'");
    out.lines().map(str::to_string).collect()
}

fn other_arch() -> &'static str {
    if Platform::host().architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

#[tokio::test]
async fn anonymous_pull_imports_with_open_archive_and_reuses_blobs() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_with_image(work.path());
    let r = reference(&format!("{}/app:1", reg.host()));
    let dest = work.path().join("pulled");
    let reports: Arc<Mutex<Vec<Report>>> = Arc::default();
    let mut o = opts();
    {
        let reports = reports.clone();
        o.progress = Some(Arc::new(move |p: &Progress<'_>| {
            reports
                .lock()
                .unwrap()
                .push((p.digest.clone(), p.kind, p.done, p.total));
        }));
    }
    let pulled = pull(&r, &dest, &o).await.unwrap();
    assert_eq!(pulled.name, format!("{}/app:1", reg.host()));
    assert_eq!(pulled.layers, 2);
    assert_eq!(pulled.index_digest, None);
    assert!(pulled.downloaded > 300_000, "{pulled:?}");
    assert!(pulled.bytes >= pulled.downloaded);

    let archive = open_archive(&dest, &Limits::default()).unwrap();
    let m = archive
        .find(&pulled.name)
        .unwrap_or_else(|| panic!("tag {} not in {:?}", pulled.name, archive.manifests()));
    assert_eq!(m.digest.as_ref(), Some(&pulled.manifest_digest));
    assert_eq!(m.config_digest, pulled.config_digest);
    assert_eq!(m.config.cmd, ["/bin/hello"]);
    assert_eq!(m.layers.len(), 2);
    let root = tempfile::tempdir().unwrap();
    archive
        .unpack(m, root.path(), &ApplyOptions::default())
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/app.conf")).unwrap(),
        "marker=one\n"
    );
    assert_eq!(
        std::fs::metadata(root.path().join("srv/data"))
            .unwrap()
            .len(),
        300_000
    );

    // Every layer was reported to completion, the config once.
    let reports = reports.lock().unwrap().clone();
    for l in &m.layers {
        let last = reports
            .iter()
            .rfind(|(d, k, _, _)| d == &l.digest && *k == BlobKind::Layer)
            .unwrap_or_else(|| panic!("no progress for {}", l.digest));
        assert_eq!((last.2, last.3), (l.size, l.size));
    }
    assert!(reports
        .iter()
        .any(|(d, k, _, _)| d == &pulled.config_digest && *k == BlobKind::Config));

    // Pulling again downloads no layer and keeps one entry for the name.
    let again = pull(&r, &dest, &opts()).await.unwrap();
    assert_eq!(again.downloaded, 0);
    assert_eq!(again.manifest_digest, pulled.manifest_digest);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert!(partial_files(&dest).is_empty());

    // A blob damaged in the layout is noticed and fetched again.
    let blob = dest.join(m.layers[1].digest.blob_path());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let repaired = pull(&r, &dest, &opts()).await.unwrap();
    assert_eq!(repaired.downloaded, m.layers[1].size);
    open_archive(&dest, &Limits::default()).unwrap();
}

#[tokio::test]
async fn pull_by_digest_and_unknown_digest() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_with_image(work.path());
    let first = pull(
        &reference(&format!("{}/app:1", reg.host())),
        &work.path().join("by-tag"),
        &opts(),
    )
    .await
    .unwrap();
    let by_digest = reference(&format!("{}/app@{}", reg.host(), first.manifest_digest));
    let dest = work.path().join("by-digest");
    let pulled = pull(&by_digest, &dest, &opts()).await.unwrap();
    assert_eq!(pulled.manifest_digest, first.manifest_digest);
    assert_eq!(
        pulled.name,
        format!("{}/app@{}", reg.host(), first.manifest_digest)
    );
    let archive = open_archive(&dest, &Limits::default()).unwrap();
    assert!(archive.find(&pulled.name).is_some(), "{archive:?}");

    // Tag and digest: the digest is fetched, the tag names the image.
    let both = reference(&format!(
        "{}/app:pinned@{}",
        reg.host(),
        first.manifest_digest
    ));
    let pulled = pull(&both, &work.path().join("both"), &opts())
        .await
        .unwrap();
    assert_eq!(pulled.name, format!("{}/app:pinned", reg.host()));

    let missing = Digest::sha256(b"no such manifest");
    let err = pull(
        &reference(&format!("{}/app@{missing}", reg.host())),
        &work.path().join("missing"),
        &opts(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{msg}");
    assert!(msg.contains(&format!("manifest {missing}")), "{msg}");
    assert!(msg.contains("404"), "{msg}");
}

#[tokio::test]
async fn missing_tag_repository_and_registry_are_named() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_with_image(work.path());
    let err = pull(
        &reference(&format!("{}/app:nope", reg.host())),
        &work.path().join("d1"),
        &opts(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{msg}");
    assert!(msg.contains("tag `nope`"), "{msg}");
    assert!(msg.contains(&format!("{}/app:nope", reg.host())), "{msg}");
    assert!(msg.contains("404 Not Found: MANIFEST_UNKNOWN"), "{msg}");
    // Nothing was written that names the missing image.
    assert!(!work.path().join("d1/index.json").exists());

    let err = pull(
        &reference(&format!("{}/other/repo:1", reg.host())),
        &work.path().join("d2"),
        &opts(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{msg}");
    assert!(msg.contains("in repository other/repo"), "{msg}");
    assert!(msg.contains("404"), "{msg}");

    let err = pull(&reference("app:1"), &work.path().join("d3"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NoRegistry { .. }));
    assert!(
        err.to_string()
            .contains("name a registry: HOST[:PORT]/REPO:TAG"),
        "{err}"
    );

    // Nothing listens on a port just freed.
    let port = common::free_port();
    let err = pull(
        &reference(&format!("127.0.0.1:{port}/app:1")),
        &work.path().join("d4"),
        &opts(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Connect { .. }), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[tokio::test]
async fn basic_auth_with_htpasswd() {
    require_tools();
    require("htpasswd", "apache2-utils");
    let work = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let htpasswd = secrets.path().join("htpasswd");
    let line = sh(secrets.path(), "htpasswd -Bbn puller 's3cret pass'");
    std::fs::write(&htpasswd, line).unwrap();
    let reg = Registry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: warren-test\n    path: {}\n",
        htpasswd.display()
    ));
    build_image(work.path(), "v1", "basic", None);
    reg.push(
        &work.path().join("L"),
        "v1",
        "app:1",
        &["--dest-creds", "puller:s3cret pass"],
    );
    let r = reference(&format!("{}/app:1", reg.host()));

    let mut o = opts();
    o.credentials = Some(Credentials::new("puller", "s3cret pass"));
    let dest = work.path().join("ok");
    let pulled = pull(&r, &dest, &o).await.unwrap();
    let archive = open_archive(&dest, &Limits::default()).unwrap();
    assert!(archive.find(&pulled.name).is_some());

    let err = pull(&r, &work.path().join("anon"), &opts())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("401 Unauthorized"), "{msg}");
    assert!(msg.contains("none were given"), "{msg}");
    assert!(msg.contains(&r.to_string()), "{msg}");

    let mut wrong = opts();
    wrong.credentials = Some(Credentials::new("puller", "wrong"));
    let err = pull(&r, &work.path().join("wrong"), &wrong)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("401"), "{msg}");
    assert!(msg.contains("user `puller` were rejected"), "{msg}");
    assert!(!msg.contains("wrong"), "the password leaked: {msg}");
}

/// Signs a registry token (ES256 JWT with the certificate in `x5c`).
fn sign_token(key_der: &[u8], cert_der: &[u8], subject: &str, scopes: &[String]) -> String {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key_der, &rng).unwrap();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)],
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({
                "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
            }))
        })
        .collect();
    let claims = serde_json::json!({
        "iss": "warren-test-issuer",
        "sub": subject,
        "aud": "warren-test-service",
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now - 10,
        "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&header).unwrap()),
        b64(&serde_json::to_vec(&claims).unwrap())
    );
    let sig = key.sign(&rng, signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64(sig.as_ref()))
}

#[tokio::test]
async fn bearer_token_flow_against_the_real_registry() {
    require_tools();
    let work = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (cert_pem, _key_pem, key_der, cert_der) = common::self_signed("warren test token issuer");
    let bundle = keys.path().join("token-signer.crt");
    std::fs::write(&bundle, cert_pem).unwrap();
    let expected = Credentials::new("tok-user", "tok-pass").basic_header();
    let token_server = TestServer::start(move |req| {
        if req.path() != "/token" {
            return Reply::new(404, "");
        }
        if req.header("authorization") != Some(expected.as_str()) {
            return Reply::new(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            )
            .header("Content-Type", "application/json");
        }
        if req.query("service") != ["warren-test-service"] {
            return Reply::new(400, "wrong service");
        }
        let token = sign_token(&key_der, &cert_der, "tok-user", &req.query("scope"));
        // The OAuth2 spelling: only access_token.
        Reply::new(
            200,
            serde_json::json!({"access_token": token, "expires_in": 300}).to_string(),
        )
        .header("Content-Type", "application/json")
    });
    let reg = Registry::start_with(&format!(
        "auth:\n  token:\n    realm: http://{}/token\n    service: warren-test-service\n    issuer: warren-test-issuer\n    rootcertbundle: {}\n",
        token_server.host(),
        bundle.display()
    ));
    build_image(work.path(), "v1", "bearer", None);
    reg.push(
        &work.path().join("L"),
        "v1",
        "app:1",
        &["--dest-creds", "tok-user:tok-pass"],
    );
    let r = reference(&format!("{}/app:1", reg.host()));
    let mut o = opts();
    o.credentials = Some(Credentials::new("tok-user", "tok-pass"));
    let dest = work.path().join("ok");
    let pulled = pull(&r, &dest, &o).await.unwrap();
    assert!(open_archive(&dest, &Limits::default())
        .unwrap()
        .find(&pulled.name)
        .is_some());
    let asked: Vec<Vec<String>> = token_server
        .requests()
        .iter()
        .map(|q| q.query("scope"))
        .collect();
    assert!(
        asked
            .iter()
            .any(|s| s == &["repository:app:pull".to_string()]),
        "{asked:?}"
    );

    let err = pull(&r, &work.path().join("anon"), &opts())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("none were given"), "{msg}");
    assert!(msg.contains("UNAUTHORIZED: bad credentials"), "{msg}");

    let mut wrong = opts();
    wrong.credentials = Some(Credentials::new("tok-user", "nope"));
    let err = pull(&r, &work.path().join("wrong"), &wrong)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("user `tok-user` were rejected"), "{msg}");
    assert!(
        msg.contains(&format!("http://{}/token", token_server.host())),
        "{msg}"
    );
}

#[tokio::test]
async fn multi_platform_index_resolves_to_the_host() {
    require_tools();
    let work = tempfile::tempdir().unwrap();
    let host_arch = Platform::host().architecture;
    build_image(work.path(), "here", "here", Some(&host_arch));
    build_image(work.path(), "there", "there", Some(other_arch()));
    // An index over both (the other platform first), added to the layout as `multi`.
    let layout = work.path().join("L");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = |tag: &str| -> serde_json::Value {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone()
    };
    let here = entry("here");
    let there = entry("there");
    let desc = |m: &serde_json::Value, arch: &str| {
        serde_json::json!({
            "mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"],
            "platform": {"os": "linux", "architecture": arch},
        })
    };
    let image_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [desc(&there, other_arch()), desc(&here, &host_arch)],
    }))
    .unwrap();
    let index_digest = Digest::sha256(&image_index);
    std::fs::write(layout.join(index_digest.blob_path()), &image_index).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": media::OCI_INDEX,
            "digest": index_digest.to_string(),
            "size": image_index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let reg = Registry::start();
    reg.push(&layout, "multi", "app:multi", &["--all"]);

    let r = reference(&format!("{}/app:multi", reg.host()));
    let dest = work.path().join("pulled");
    let pulled = pull(&r, &dest, &opts()).await.unwrap();
    assert_eq!(pulled.index_digest, Some(index_digest.clone()));
    assert_eq!(pulled.manifest_digest.to_string(), here["digest"]);
    let archive = open_archive(&dest, &Limits::default()).unwrap();
    let m = archive.find(&pulled.name).unwrap();
    assert_eq!(m.config.architecture, host_arch);
    let root = tempfile::tempdir().unwrap();
    archive
        .unpack(m, root.path(), &ApplyOptions::default())
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/app.conf")).unwrap(),
        "marker=here\n"
    );

    // Asking for the other platform gets the other image.
    let mut o = opts();
    o.platform = Platform {
        os: "linux".into(),
        architecture: other_arch().into(),
        variant: None,
    };
    let other = pull(&r, &work.path().join("other"), &o).await.unwrap();
    assert_eq!(other.manifest_digest.to_string(), there["digest"]);

    // A platform the index does not offer is an error listing what it offers.
    o.platform.architecture = "s390x".into();
    let err = pull(&r, &work.path().join("none"), &o).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{msg}"
    );
    assert!(msg.contains("linux/s390x"), "{msg}");
    assert!(msg.contains(&format!("linux/{host_arch}")), "{msg}");
    assert!(msg.contains(&format!("linux/{}", other_arch())), "{msg}");

    // A single-platform image for another platform is refused by its config.
    let err = pull(
        &reference(&format!(
            "{}/app@{}",
            reg.host(),
            there["digest"].as_str().unwrap()
        )),
        &work.path().join("single"),
        &opts(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { ref available, .. } if available == &[format!("linux/{}", other_arch())]),
        "{err}"
    );
}

#[tokio::test]
async fn tampered_registry_storage_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_with_image(work.path());
    let r = reference(&format!("{}/app:1", reg.host()));
    let good = pull(&r, &work.path().join("good"), &opts()).await.unwrap();
    let archive = open_archive(&work.path().join("good"), &Limits::default()).unwrap();
    let layer = archive.find(&good.name).unwrap().layers[1].clone();
    drop(archive);

    // Same size, one byte flipped: the digest catches it.
    let data = reg.blob_data(layer.digest.hex());
    let original = std::fs::read(&data).unwrap();
    let mut bytes = original.clone();
    bytes[100] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let dest = work.path().join("flipped");
    let err = pull(&r, &dest, &opts()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&format!("layer 1 ({})", layer.digest)),
        "{msg}"
    );
    assert!(msg.contains(&r.to_string()), "{msg}");
    assert!(!dest.join("index.json").exists());
    assert!(!dest.join(layer.digest.blob_path()).exists());
    assert!(
        partial_files(&dest).is_empty(),
        "{:?}",
        partial_files(&dest)
    );

    // Truncated: the size catches it.
    std::fs::write(&data, &original[..original.len() - 7]).unwrap();
    let err = pull(&r, &work.path().join("short"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");

    // Restored, it pulls again.
    std::fs::write(&data, &original).unwrap();
    pull(&r, &dest, &opts()).await.unwrap();
    open_archive(&dest, &Limits::default()).unwrap();
}

#[tokio::test]
async fn tls_registry_trusts_only_given_certificates() {
    let work = tempfile::tempdir().unwrap();
    require_tools();
    let keys = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem, _, _) = common::self_signed("warren test registry");
    let cert = keys.path().join("registry.crt");
    let key = keys.path().join("registry.key");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let reg = Registry::start_full(
        "",
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
    );
    build_image(work.path(), "v1", "tls", None);
    reg.push(&work.path().join("L"), "v1", "app:1", &[]);

    for host in [reg.host(), format!("localhost:{}", reg.port)] {
        let r = reference(&format!("{host}/app:1"));
        let mut o = opts();
        o.ca_files = vec![cert.clone()];
        let dest = work.path().join(format!("ok-{}", host.replace(':', "-")));
        let pulled = pull(&r, &dest, &o).await.unwrap();
        assert!(open_archive(&dest, &Limits::default())
            .unwrap()
            .find(&pulled.name)
            .is_some());

        // Without the certificate: a TLS error, not a fallback to plain HTTP.
        let err = pull(&r, &work.path().join("untrusted"), &opts())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::Tls { .. }), "{msg}");
        assert!(msg.contains("certificate"), "{msg}");
        assert!(msg.contains(&format!("https://{host}/v2/")), "{msg}");
    }

    // A CA file that holds no certificate is refused up front.
    let mut o = opts();
    o.ca_files = vec![key.clone()];
    let err = pull(
        &reference(&format!("{}/app:1", reg.host())),
        &work.path().join("bad-ca"),
        &o,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn redirects_are_followed_within_a_limit() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_with_image(work.path());
    let target = format!("http://localhost:{}", reg.port);
    let front = TestServer::start(move |req| {
        let path = req.path().to_string();
        if path == "/v2/" {
            Reply::new(200, "{}")
        } else if path.starts_with("/v2/app/blobs/") {
            // Relative first, then absolute to another origin.
            Reply::new(302, "").header("Location", &format!("/hop{path}"))
        } else if let Some(rest) = path.strip_prefix("/hop") {
            Reply::new(307, "").header("Location", &format!("{target}{rest}"))
        } else {
            Reply::new(307, "").header("Location", &format!("{target}{path}"))
        }
    });
    let r = reference(&format!("{}/app:1", front.host()));
    let dest = work.path().join("redirected");
    let pulled = pull(&r, &dest, &opts()).await.unwrap();
    assert!(open_archive(&dest, &Limits::default())
        .unwrap()
        .find(&pulled.name)
        .is_some());
    assert!(front
        .requests()
        .iter()
        .any(|q| q.path().starts_with("/hop/v2/app/blobs/")));

    // A redirect to plain HTTP on a host that is not loopback is not followed (nothing is
    // sent to it).
    let downgrade = TestServer::start(|req| {
        if req.path() == "/v2/" {
            Reply::new(200, "{}")
        } else {
            Reply::new(307, "").header("Location", "http://storage.example.invalid/blob")
        }
    });
    let err = pull(
        &reference(&format!("{}/app:1", downgrade.host())),
        &work.path().join("downgrade"),
        &opts(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Redirect { .. }), "{msg}");
    assert!(
        msg.contains("refusing to follow a redirect to plain HTTP"),
        "{msg}"
    );

    let looping = TestServer::start(|req| {
        if req.path() == "/v2/" {
            Reply::new(200, "{}")
        } else {
            Reply::new(302, "").header("Location", req.path())
        }
    });
    let err = pull(
        &reference(&format!("{}/app:1", looping.host())),
        &work.path().join("loop"),
        &opts(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Redirect { .. }), "{msg}");
    assert!(msg.contains("more than 5 redirects"), "{msg}");
    let hops = looping.requests().len();
    assert_eq!(hops, 1 + 6, "ping plus six tries");
}

/// A fake registry for answers the real one never gives; the client must refuse them all.
#[tokio::test]
async fn hostile_answers_are_refused() {
    let arch = Platform::host().architecture;
    let layer = b"layer".to_vec();
    let layer_digest = Digest::sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
    }))
    .unwrap();
    let config_digest = Digest::sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let (m, c, cd, l, ld) = (
        manifest.clone(),
        config.clone(),
        config_digest.clone(),
        layer.clone(),
        layer_digest.clone(),
    );
    let server = TestServer::start(move |req| {
        let p = req.path();
        let json = |status, body: &str| {
            Reply::new(status, body.to_string()).header("Content-Type", "application/json")
        };
        match p {
            "/v2/" => json(200, "{}"),
            "/v2/big/manifests/1" => {
                let mut r = json(200, "{}");
                r.content_length = Some(9 << 20);
                r
            }
            "/v2/liar/manifests/1" => Reply::new(200, m.clone())
                .header("Content-Type", media::OCI_MANIFEST)
                .header(
                    "Docker-Content-Digest",
                    &Digest::sha256(b"other").to_string(),
                ),
            "/v2/html/manifests/1" => {
                Reply::new(200, "<html>hello</html>").header("Content-Type", "text/html")
            }
            "/v2/schema1/manifests/1" => json(
                200,
                r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#,
            ),
            "/v2/gone/manifests/1" => json(
                404,
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            ),
            "/v2/broken/manifests/1" => {
                json(500, r#"{"errors":[{"code":"UNKNOWN","message":"boom"}]}"#)
            }
            "/v2/long/manifests/1" | "/v2/good/manifests/1" => {
                Reply::new(200, m.clone()).header("Content-Type", media::OCI_MANIFEST)
            }
            _ if p.ends_with(&format!("/blobs/{cd}")) => Reply::new(200, c.clone()),
            _ if p == format!("/v2/long/blobs/{ld}") => {
                // More bytes than the descriptor says.
                let mut body = l.clone();
                body.extend_from_slice(b"-and-more");
                Reply::new(200, body)
            }
            _ if p == format!("/v2/good/blobs/{ld}") => Reply::new(200, l.clone()),
            _ => json(
                404,
                r#"{"errors":[{"code":"NOT_FOUND","message":"nothing here"}]}"#,
            ),
        }
    });
    let work = tempfile::tempdir().unwrap();
    let try_pull = |repo: &str| {
        let r = reference(&format!("{}/{repo}:1", server.host()));
        let dest = work.path().join(repo);
        async move { pull(&r, &dest, &opts()).await }
    };
    let err = try_pull("big").await.unwrap_err();
    assert!(matches!(err, RegistryError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("over the limit of 8388608"),
        "{err}"
    );

    let err = try_pull("liar").await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("Docker-Content-Digest"), "{err}");

    let err = try_pull("html").await.unwrap_err();
    assert!(matches!(err, RegistryError::BadManifest { .. }), "{err}");

    let err = try_pull("schema1").await.unwrap_err();
    assert!(err.to_string().contains("schema 1"), "{err}");

    let err = try_pull("gone").await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("(the repository itself)"), "{err}");
    assert!(err.to_string().contains("NAME_UNKNOWN"), "{err}");

    let err = try_pull("broken").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("500 Internal Server Error: UNKNOWN: boom"),
        "{err}"
    );

    let err = try_pull("long").await.unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
    assert!(partial_files(&work.path().join("long")).is_empty());

    // The same image served honestly is pulled and imports.
    let pulled = try_pull("good").await.unwrap();
    assert_eq!(pulled.manifest_digest, Digest::sha256(&manifest));
    let archive = open_archive(&work.path().join("good"), &Limits::default()).unwrap();
    assert!(archive.find(&pulled.name).is_some());

    // Limits are the caller's: a manifest over the JSON limit is refused as it is announced.
    let mut small = opts();
    small.limits.max_json_bytes = 64;
    let err = pull(
        &reference(&format!("{}/good:1", server.host())),
        &work.path().join("small"),
        &small,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RegistryError::TooLarge { .. }), "{err}");
}

/// Challenges that cannot be followed are refused before anything is sent anywhere else.
#[tokio::test]
async fn unusable_challenges_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"Bearer realm="http://auth.example.invalid/token",service="s""#,
            "realm is plain HTTP",
        ),
        (r#"Bearer service="s""#, "Bearer challenge without a realm"),
        (
            r#"Bearer realm="ftp://x/token""#,
            "realm must be an http:// or https:// URL",
        ),
        (
            "Negotiate abc==",
            "unsupported authentication scheme(s): negotiate",
        ),
        (
            r#"Bearer realm="unterminated"#,
            "unterminated quoted string",
        ),
        ("", "no WWW-Authenticate challenge"),
    ];
    for (i, (challenge, needle)) in cases.into_iter().enumerate() {
        let server = TestServer::start(move |_| {
            let r = Reply::new(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
            if challenge.is_empty() {
                r
            } else {
                r.header("WWW-Authenticate", challenge)
            }
        });
        let err = pull(
            &reference(&format!("{}/app:1", server.host())),
            &work.path().join(i.to_string()),
            &opts(),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(needle), "{challenge}: {msg}");
        // Only the registry itself was asked (its ping), never the realm.
        assert_eq!(server.requests().len(), 1, "{challenge}");
    }
}

/// Layers download over several connections at once, never more than
/// `PARALLEL_LAYERS`: each blob answer waits (up to 5 s) until that many have been in flight
/// together, so a client fetching one at a time would only ever have one in flight.
#[tokio::test]
async fn layers_download_in_parallel_within_the_limit() {
    let arch = Platform::host().architecture;
    let layers: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("layer number {i}").into_bytes())
        .collect();
    let digests: Vec<Digest> = layers.iter().map(|l| Digest::sha256(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": digests.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_digest = Digest::sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().zip(&digests).map(|(l, d)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": l.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let in_flight = Arc::new(Mutex::new((0usize, 0usize))); // (now, most at once)
    let flight = in_flight.clone();
    let server = TestServer::start_concurrent(move |req| {
        let p = req.path().to_string();
        if p == "/v2/" {
            return Reply::new(200, "{}");
        }
        if p == "/v2/app/manifests/1" {
            return Reply::new(200, manifest.clone()).header("Content-Type", media::OCI_MANIFEST);
        }
        if p == format!("/v2/app/blobs/{config_digest}") {
            return Reply::new(200, config.clone());
        }
        let Some(i) = digests
            .iter()
            .position(|d| p == format!("/v2/app/blobs/{d}"))
        else {
            return Reply::new(404, "{}");
        };
        {
            let mut f = flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let wanted = warren_registry::PARALLEL_LAYERS.min(digests.len());
        while flight.lock().unwrap().1 < wanted && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let reply = Reply::new(200, layers[i].clone());
        flight.lock().unwrap().0 -= 1;
        reply
    });
    let work = tempfile::tempdir().unwrap();
    let r = reference(&format!("{}/app:1", server.host()));
    let pulled = pull(&r, &work.path().join("app"), &opts()).await.unwrap();
    assert_eq!(pulled.layers, 5);
    let most = in_flight.lock().unwrap().1;
    assert_eq!(
        most,
        warren_registry::PARALLEL_LAYERS,
        "layers in flight at once"
    );
    assert!(open_archive(&work.path().join("app"), &Limits::default())
        .unwrap()
        .find(&pulled.name)
        .is_some());
}
