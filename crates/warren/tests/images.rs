//! Tier-2 tests of OCI images in the daemon: images built here with Debian's `umoci` and
//! converted with `skopeo` are imported (docker-save, oci-archive and an OCI layout
//! directory), run as workloads with their config as defaults, share layers, and are removed
//! and collected; hostile archives are refused with nothing stored.
//!
//! Needs root, runc, btrfs-progs, busybox-static, umoci and skopeo (scripts/install-deps);
//! without them the tests fail saying what is missing.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn have(tool: &str) {
    assert!(
        Command::new(tool).arg("--version").output().is_ok(),
        "{tool} is not installed (apt-get install {tool}; scripts/install-deps installs it)"
    );
}

fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed (scripts/install-deps installs it)")
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-euc", script])
        .current_dir(dir)
        .env("BUSYBOX", busybox())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A two-layer image `L:v1` (busybox base; the upper layer deletes a file, replaces a
/// directory and adds /app) with entrypoint, cmd, env, workdir and user set, also written as a
/// docker-save archive (`app:v1`) and an oci-archive (`app:v2`).
fn build_image(d: &Path) {
    have("umoci");
    have("skopeo");
    sh(
        d,
        r#"
        umoci init --layout L
        umoci new --image L:v1
        umoci unpack --image L:v1 B
        r=B/rootfs
        mkdir -p $r/bin $r/etc $r/opt/old $r/tmp
        cp "$BUSYBOX" $r/bin/busybox
        for a in sh cat echo sleep ls test pwd id; do ln -s busybox $r/bin/$a; done
        echo doomed > $r/etc/doomed
        echo old > $r/opt/old/file
        umoci repack --image L:v1 B
        umoci unpack --image L:v1 B2
        r=B2/rootfs
        rm $r/etc/doomed
        rm -r $r/opt/old
        mkdir -p $r/opt/old $r/app
        echo fresh > $r/opt/old/fresh
        echo hello > $r/app/hello.txt
        umoci repack --image L:v1 B2
        umoci config --image L:v1 --config.entrypoint /bin/sh --config.entrypoint -c \
            --config.cmd 'echo "$GREETING from $(pwd) as $(id -u) $(ls /opt/old) $(test -e /etc/doomed && echo doomed || echo clean)" > /data/out; exec sleep 100000' \
            --config.env GREETING=hi --config.env MODE=prod --config.workingdir /app \
            --config.user 0:0 --config.exposedports 8080/tcp --config.label team=warren
        skopeo --insecure-policy copy oci:L:v1 docker-archive:docker.tar:app:v1
        skopeo --insecure-policy copy oci:L:v1 oci-archive:oci.tar:app:v2
        "#,
    );
}

fn layer_worlds(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.pool_root().join("worlds"))
        .map(|r| {
            r.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("oci-") && !n.contains('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn images(d: &Daemon) -> Vec<serde_json::Value> {
    serde_json::from_str(&d.ok(&["image", "list", "-o", "json"])).unwrap()
}

fn fails(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(!out.status.success(), "warren {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn images_import_run_with_their_config_share_layers_and_are_collected() {
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    build_image(t);
    let path = |n: &str| t.join(n).display().to_string();

    // docker-save: the tag comes from the archive.
    let out = d.ok(&["image", "import", &path("docker.tar")]);
    assert!(out.starts_with("app:v1 ("), "{out}");
    assert!(out.contains("2 layers, 2 new"), "{out}");
    let layers = layer_worlds(&d);
    assert_eq!(layers.len(), 2, "{layers:?}");
    // oci-archive of the same image: stored under its own tag, no layer applied again.
    let out = d.ok(&["image", "import", &path("oci.tar")]);
    assert!(out.starts_with("app:v2 ("), "{out}");
    assert!(out.contains("2 layers, 0 new"), "{out}");
    assert_eq!(layer_worlds(&d), layers);
    // An OCI layout directory whose ref.name is only a tag needs a name.
    let err = fails(&d, &["image", "import", &path("L")]);
    assert!(err.contains("--tag NAME:v1"), "{err}");
    let out = d.ok(&["image", "import", &path("L"), "--tag", "dir:1"]);
    assert!(out.starts_with("dir:1 ("), "{out}");
    // Layer worlds are not worlds an operator manages.
    let worlds = d.ok(&["world", "list"]);
    assert!(!worlds.contains("oci-"), "{worlds}");

    let list = images(&d);
    let refs: Vec<&str> = list
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["app:v1", "app:v2", "dir:1"]);
    let v1 = &list[0];
    assert_eq!(v1["entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(v1["working_dir"], "/app");
    assert_eq!(v1["exposed_ports"], serde_json::json!(["8080/tcp"]));
    assert_eq!(v1["labels"]["team"], "warren");
    assert_eq!(v1["id"], list[1]["id"], "same image, same id");

    // A workload runs the image's entrypoint + cmd with its env, workdir and user; whiteouts
    // removed what the lower layer had.
    d.apply(
        "w.toml",
        "[workload.app]\nimage = \"app:v1\"\nnetwork = \"none\"\n\n\
         [workload.tweaked]\nimage = \"app:v2\"\nnetwork = \"none\"\nenv = { GREETING = \"hey\" }\n\
         command = [\"echo \\\"$GREETING $MODE\\\" > /data/out; exec sleep 100000\"]\n",
    );
    d.wait_running("app");
    d.wait_running("tweaked");
    let data = |w: &str| d.pool_root().join(format!("workloads/{w}/data/out"));
    wait_until(20, "app wrote /data/out", || data("app").exists());
    assert_eq!(
        std::fs::read_to_string(data("app")).unwrap(),
        "hi from /app as 0 fresh clean\n"
    );
    wait_until(20, "tweaked wrote /data/out", || data("tweaked").exists());
    assert_eq!(
        std::fs::read_to_string(data("tweaked")).unwrap(),
        "hey prod\n",
        "command replaces Cmd after the entrypoint; the spec's env wins"
    );
    let list = images(&d);
    assert_eq!(list[0]["used_by"], serde_json::json!(["app"]));

    // In use: refused. Unknown: not found. An image not stored: refused at apply.
    let err = fails(&d, &["image", "rm", "app:v1"]);
    assert!(err.contains("used by app"), "{err}");
    let err = fails(&d, &["image", "rm", "nope:1"]);
    assert!(err.contains("no image nope:1"), "{err}");
    let spec = t.join("missing.toml");
    std::fs::write(&spec, "[workload.x]\nimage = \"ghost:3\"\n").unwrap();
    let err = fails(&d, &["apply", "-f", spec.to_str().unwrap()]);
    assert!(
        err.contains("missing.toml:2:9") && err.contains("image \"ghost:3\" is not stored"),
        "{err}"
    );

    // gc keeps every layer a stored image uses.
    let out = d.ok(&["image", "gc"]);
    assert!(out.contains("deleted 0"), "{out}");
    assert_eq!(layer_worlds(&d), layers);

    // Gone from the spec, the images can go, and then their layers.
    d.ok(&["rm", "app"]);
    d.ok(&["rm", "tweaked"]);
    for r in ["app:v1", "app:v2", "dir:1"] {
        d.ok(&["image", "rm", r]);
    }
    assert!(images(&d).is_empty());
    let out = d.ok(&["image", "gc"]);
    assert!(out.contains("deleted 2"), "{out}");
    assert!(layer_worlds(&d).is_empty());
}

/// A docker-save archive holding one layer whose entry is `entry` (raw name bytes).
fn hostile_archive(dir: &Path, name: &str, entry: &[u8], link: Option<&[u8]>) -> PathBuf {
    use sha2::Digest;
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..entry.len()].copy_from_slice(entry);
    }
    let data = b"pwned\n";
    match link {
        Some(target) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
            h.set_size(0);
        }
        None => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
        }
    }
    h.set_mode(0o644);
    h.set_cksum();
    if link.is_some() {
        layer.append(&h, &[][..]).unwrap();
    } else {
        layer.append(&h, &data[..]).unwrap();
    }
    if link.is_some() {
        // And a file written through the link.
        let mut f = tar::Header::new_old();
        let through = [entry, b"/evil"].concat();
        f.as_old_mut().name[..through.len()].copy_from_slice(&through);
        f.set_entry_type(tar::EntryType::Regular);
        f.set_size(data.len() as u64);
        f.set_mode(0o644);
        f.set_cksum();
        layer.append(&f, &data[..]).unwrap();
    }
    let layer = layer.into_inner().unwrap();
    let diff = hex::encode(sha2::Sha256::digest(&layer));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]}
    })
    .to_string();
    let config_hex = hex::encode(sha2::Sha256::digest(config.as_bytes()));
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["evil:1"],
        "Layers": [format!("{diff}/layer.tar")]
    }])
    .to_string();
    let mut outer = tar::Builder::new(Vec::new());
    for (n, bytes) in [
        ("manifest.json".to_string(), manifest.into_bytes()),
        (format!("{config_hex}.json"), config.into_bytes()),
        (format!("{diff}/layer.tar"), layer),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        outer.append_data(&mut h, n, &bytes[..]).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, outer.into_inner().unwrap()).unwrap();
    path
}

#[test]
fn hostile_archives_are_refused_with_nothing_stored() {
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    /// Archive name, the entry's name, a symlink target, and what the error must say.
    type Case = (
        &'static str,
        &'static [u8],
        Option<&'static [u8]>,
        &'static str,
    );
    let cases: [Case; 3] = [
        ("dotdot.tar", b"../../escaped", None, ".."),
        ("absolute.tar", b"/etc/escaped", None, "absolute"),
        ("symlink.tar", b"up", Some(b"../../../../tmp"), ""),
    ];
    for (name, entry, link, expect) in cases {
        let path = hostile_archive(tmp.path(), name, entry, link);
        let out = d.cli(&["image", "import", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if link.is_some() {
            // A link leading out is kept inside the layer's root: the file lands inside.
            assert!(out.status.success(), "{name}: {err}");
            assert!(!Path::new("/tmp/evil").exists(), "{name} escaped");
            d.ok(&["image", "rm", "evil:1"]);
            d.ok(&["image", "gc"]);
            continue;
        }
        assert!(!out.status.success(), "{name} was imported");
        assert!(err.contains("image import refused"), "{name}: {err}");
        assert!(err.contains(expect), "{name}: {err}");
        assert!(images(&d).is_empty(), "{name} stored an image");
        assert!(layer_worlds(&d).is_empty(), "{name} left a layer world");
    }
    assert!(!Path::new("/escaped").exists() && !Path::new("/etc/escaped").exists());
    // Not an archive at all; a truncated one.
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive at all").unwrap();
    let err = fails(&d, &["image", "import", junk.to_str().unwrap()]);
    assert!(err.contains("image import refused"), "{err}");
    let good = hostile_archive(tmp.path(), "fine.tar", b"ok.txt", None);
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&d, &["image", "import", cut.to_str().unwrap()]);
    assert!(err.contains("image import refused"), "{err}");
    assert!(images(&d).is_empty());
    assert!(layer_worlds(&d).is_empty());
    // A bad --tag is refused before anything is read.
    let err = fails(
        &d,
        &[
            "image",
            "import",
            good.to_str().unwrap(),
            "--tag",
            "Bad:Name",
        ],
    );
    assert!(err.contains("invalid image reference"), "{err}");
}

/// A `docker-registry serve` on a loopback port (optionally with an htpasswd file), killed by
/// PID on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(htpasswd: Option<&Path>) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed (scripts/install-deps installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: warren-test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: warren-test\n{auth}",
            dir.path().join("store").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until(20, "docker-registry listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    fn push(&self, layout: &Path, tag: &str, repo_tag: &str, creds: Option<&str>) {
        let mut c = Command::new("skopeo");
        c.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
        if let Some(cr) = creds {
            c.args(["--dest-creds", cr]);
        }
        let out = c
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{repo_tag}", self.port))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn images_are_pulled_from_registries_by_cli_and_at_apply() {
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    build_image(t);
    let reg = Registry::start(None);
    reg.push(&t.join("L"), "v1", "app:1", None);
    reg.push(&t.join("L"), "v1", "app:2", None);
    let r1 = format!("127.0.0.1:{}/app:1", reg.port);
    let out = d.ok(&["image", "pull", &r1]);
    assert!(out.starts_with(&format!("{r1} (")), "{out}");
    assert!(out.contains("2 layers, 2 new"), "{out}");
    // The same layers from an archive are not applied again.
    let out = d.ok(&["image", "import", t.join("docker.tar").to_str().unwrap()]);
    assert!(out.contains("2 layers, 0 new"), "{out}");
    // A missing tag is named.
    let err = fails(
        &d,
        &["image", "pull", &format!("127.0.0.1:{}/app:nope", reg.port)],
    );
    assert!(err.contains("nope"), "{err}");
    // Applying a registry reference that is not stored pulls it, then runs it.
    let r2 = format!("127.0.0.1:{}/app:2", reg.port);
    d.apply(
        "w.toml",
        &format!("[workload.pulled]\nimage = \"{r2}\"\nnetwork = \"none\"\n"),
    );
    d.wait_running("pulled");
    let out = d.pool_root().join("workloads/pulled/data/out");
    wait_until(20, "pulled wrote /data/out", || out.exists());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hi from /app as 0 fresh clean\n"
    );
    let refs: Vec<String> = images(&d)
        .iter()
        .map(|i| i["reference"].as_str().unwrap().to_string())
        .collect();
    assert!(refs.contains(&r1) && refs.contains(&r2), "{refs:?}");
    // An unreachable registry at apply: a diagnostic naming the field, nothing stored.
    let spec = t.join("gone.toml");
    std::fs::write(
        &spec,
        format!(
            "[workload.gone]\nimage = \"127.0.0.1:{}/app:1\"\n",
            free_port()
        ),
    )
    .unwrap();
    let err = fails(&d, &["apply", "-f", spec.to_str().unwrap()]);
    assert!(
        err.contains("gone.toml:2:9") && err.contains("workload.gone.image"),
        "{err}"
    );
    assert!(d.list().iter().all(|w| w["name"] != "gone"));

    // Basic auth: refused without credentials, pulled with them (password on stdin).
    let secrets = tempfile::tempdir().unwrap();
    let line = Command::new("htpasswd")
        .args(["-Bbn", "puller", "s3cret"])
        .output()
        .expect("htpasswd is not installed (apache2-utils; scripts/install-deps installs it)");
    std::fs::write(secrets.path().join("htpasswd"), &line.stdout).unwrap();
    let private = Registry::start(Some(&secrets.path().join("htpasswd")));
    private.push(&t.join("L"), "v1", "team/app:1", Some("puller:s3cret"));
    let rp = format!("127.0.0.1:{}/team/app:1", private.port);
    let err = fails(&d, &["image", "pull", &rp]);
    assert!(err.contains("401"), "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "image",
            "pull",
            &rp,
            "--username",
            "puller",
            "--password-stdin",
        ])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&rp));
}

/// A pull, build or upload cut short by a killed daemon leaves its scratch files under
/// `<state>/tmp`; the next daemon removes them before it serves anything.
#[test]
fn scratch_left_by_a_killed_daemon_is_removed_at_start() {
    let mut d = Daemon::start(&[]);
    d.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    let tmp = d.state_dir().join("tmp");
    let pull = tmp.join("pull-4242-0/blobs/sha256");
    std::fs::create_dir_all(&pull).unwrap();
    std::fs::write(pull.join("partial"), vec![7u8; 4096]).unwrap();
    std::fs::create_dir_all(tmp.join("build-4242-1")).unwrap();
    std::fs::write(tmp.join("stray"), b"x").unwrap();
    d.spawn();
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "scratch left after restart: {left:?}");
    assert!(d.log().contains("left by an earlier daemon"), "{}", d.log());
}
