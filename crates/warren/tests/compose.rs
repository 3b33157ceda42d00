//! Tier-2 test of compose files: `warren apply -f docker-compose.yml` with a `.env` next to
//! it converts and applies a two-service file (an image imported here from a busybox tree
//! built with Debian's `umoci`): the web service waits for the database's health check, then
//! serves a page from a named volume on a published port of 127.0.0.1. A file with a key that
//! cannot be converted is refused with its location and changes nothing.
//!
//! Needs root, runc, btrfs-progs, busybox-static and umoci (scripts/install-deps).

mod common;

use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// An image `bb:1`: a static busybox with the applets the services use.
fn import_busybox_image(d: &Daemon, dir: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed (scripts/install-deps installs it)");
    let out = Command::new("sh")
        .args([
            "-euc",
            r#"
            umoci init --layout L
            umoci new --image L:v1
            umoci unpack --image L:v1 B
            r=B/rootfs
            mkdir -p $r/bin $r/tmp $r/srv
            cp "$BUSYBOX" $r/bin/busybox
            for a in sh test touch sleep httpd echo cat; do ln -s busybox $r/bin/$a; done
            umoci repack --image L:v1 B
            "#,
        ])
        .current_dir(dir)
        .env("BUSYBOX", busybox)
        .output()
        .expect("umoci is not installed (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "building the image failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = dir.join("L");
    d.ok(&["image", "import", layout.to_str().unwrap(), "--tag", "bb:1"]);
}

fn http_get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The id of the first event of `workload` matching `pred`.
fn event_id(
    events: &[serde_json::Value],
    workload: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<i64> {
    events
        .iter()
        .filter(|e| e["workload"] == workload && pred(&e["event"]))
        .map(|e| e["id"].as_i64().unwrap())
        .min()
}

#[test]
fn a_compose_file_applies_with_health_gated_start_a_volume_and_a_published_port() {
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    import_busybox_image(&d, dir);
    let port = free_port();
    std::fs::write(dir.join(".env"), format!("WEB_PORT={port}\n")).unwrap();
    let compose = dir.join("docker-compose.yml");
    std::fs::write(
        &compose,
        r#"services:
  db:
    image: bb:1
    command: ["/bin/sh", "-c", "sleep 3; touch /tmp/ready; exec sleep 100000"]
    healthcheck:
      test: ["CMD", "/bin/test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 1s
      retries: 30
  web:
    image: bb:1
    command: /bin/sh -c 'echo hello-compose > /srv/index.html && exec httpd -f -p 8080 -h /srv'
    ports:
      - "127.0.0.1:${WEB_PORT:?}:8080"
    volumes:
      - site:/srv
    depends_on:
      db:
        condition: service_healthy
    container_name: web-1
volumes:
  site:
"#,
    )
    .unwrap();
    let file = compose.to_str().unwrap();

    // The conversion alone, as the operator would look at it first.
    let toml = d.ok(&["compose", "import", file]);
    assert!(
        toml.contains(&format!("ports = [\"127.0.0.1:{port}:8080\"]")),
        "{toml}"
    );
    assert!(
        toml.contains("after = [{ name = \"db\", wait = \"healthy\" }]"),
        "{toml}"
    );

    let out = d.cli(&["apply", "-f", file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}\n{}", d.log());
    assert!(
        stderr.contains("docker-compose.yml:20:5: services.web.container_name: dropped"),
        "{stderr}"
    );
    assert!(
        stdout.contains("+ db (create)") && stdout.contains("+ web (create)"),
        "{stdout}"
    );

    d.wait_running("db");
    d.wait_for("db", 40, "healthy", |v| v["health"] == "healthy");
    d.wait_running("web");
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        if let Some(body) = http_get(port) {
            if body.contains("hello-compose") {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "web never answered on 127.0.0.1:{port}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.starts_with("HTTP/1."), "{page}");

    // web started only after db was healthy.
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["events", "-n", "500", "-o", "json"])).unwrap();
    let healthy = event_id(&events, "db", |e| {
        e["type"] == "health" && e["status"] == "healthy"
    })
    .unwrap_or_else(|| panic!("no healthy event for db: {events:#?}"));
    let started = event_id(&events, "web", |e| e["type"] == "started")
        .unwrap_or_else(|| panic!("no started event for web: {events:#?}"));
    assert!(
        healthy < started,
        "web started (event {started}) before db was healthy (event {healthy})"
    );

    // The page lives in the named volume.
    let volumes = d.ok(&["volume", "list"]);
    assert!(volumes.contains("site"), "{volumes}");
    let from_volume = d.ok(&["exec", "web", "--", "/bin/cat", "/srv/index.html"]);
    assert_eq!(from_volume.trim(), "hello-compose");

    // A file with a key warren cannot express is refused with its location; nothing changes.
    let before = d.ok(&["list", "-o", "json"]);
    let bad = dir.join("bad-compose.yml");
    std::fs::write(
        &bad,
        "services:\n  extra:\n    image: bb:1\n    privileged: true\n  web:\n    image: bb:2\n",
    )
    .unwrap();
    let out = d.cli(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-compose.yml:4:5: services.extra.privileged: cannot be converted"),
        "{err}"
    );
    let names = |json: &str| -> Vec<String> {
        let v: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
        v.iter()
            .map(|w| w["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&d.ok(&["list", "-o", "json"])), names(&before));
    let web = d.get("web").to_string();
    assert!(web.contains("bb:1") && !web.contains("bb:2"), "{web}");
}
