//! Tier-2 tests of Warrenfile recipes: a two-level chain builds on the busybox world, caches on
//! rebuild, rebuilds the child when the parent changes, and runs as a workload that follows
//! the newest matching build; failing scripts and bad recipes leave nothing.
//!
//! Needs root, runc, btrfs-progs and busybox-static (scripts/install-deps).

mod common;

use common::*;
use std::path::Path;

fn write(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn build(d: &Daemon, dir: &Path, version: Option<&str>) -> (bool, String, String) {
    let mut args = vec!["build", dir.to_str().unwrap()];
    if let Some(v) = version {
        args.extend(["--version", v]);
    }
    let out = d.cli(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn built(d: &Daemon, dir: &Path, version: Option<&str>) -> (String, String) {
    let (ok, out, err) = build(d, dir, version);
    assert!(
        ok,
        "build of {} failed: {out}{err}\n{}",
        dir.display(),
        d.log()
    );
    (out, err)
}

fn recipe_worlds(d: &Daemon) -> usize {
    std::fs::read_dir(d.pool_root().join("worlds"))
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("rcp-") && !n.contains('.')
        })
        .count()
}

#[test]
fn recipe_chain_builds_caches_rebuilds_and_runs() {
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let child = tmp.path().join("child");
    write(
        &base,
        &[
            (
                "Warrenfile",
                "# the base layer\nname test/base\nversion 1.0\nworld busybox\ncopy /opt/base\n---\n\
                 echo \"base $(cat /opt/base/greeting.txt)\" > /etc/base-marker\necho building-base\n",
            ),
            ("greeting.txt", "hello"),
        ],
    );
    write(
        &child,
        &[(
            "Warrenfile",
            "name test/child\nfrom test/base 1\n---\ncat /etc/base-marker > /etc/child-marker\necho child >> /etc/child-marker\n",
        )],
    );
    let (out, err) = built(&d, &base, None);
    assert_eq!(out, "test/base 1.0 built (world busybox)\n");
    assert!(
        err.contains("building-base"),
        "script output not shown: {err}"
    );
    assert!(
        err.contains("copying the recipe directory to /opt/base"),
        "{err}"
    );
    let (out, _) = built(&d, &child, Some("2.0"));
    assert_eq!(out, "test/child 2.0 built (recipe test/base 1.0)\n");
    // Unchanged recipe, unchanged parent: a cache hit.
    let (out, err) = built(&d, &child, Some("2.0"));
    assert_eq!(
        out, "test/child 2.0 cached (recipe test/base 1.0)\n",
        "{err}"
    );
    assert_eq!(recipe_worlds(&d), 2);

    d.apply(
        "w.toml",
        "[workload.app]\nrecipe = \"test/child 2\"\nnetwork = \"none\"\n\
         command = [\"sh\", \"-c\", \"cat /etc/child-marker > /data/out; exec sleep 100000\"]\n",
    );
    d.wait_running("app");
    let out = d.pool_root().join("workloads/app/data/out");
    wait_until(20, "app wrote /data/out", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s == "base hello\nchild\n")
    });

    // The parent changes (a new version): the child is rebuilt on it, and the workload, which
    // follows the newest build matching `2`, is provisioned again from it.
    write(&base, &[("greeting.txt", "hi")]);
    let (out, _) = built(&d, &base, Some("1.1"));
    assert_eq!(out, "test/base 1.1 built (world busybox)\n");
    let (out, _) = built(&d, &child, Some("2.1"));
    assert_eq!(out, "test/child 2.1 built (recipe test/base 1.1)\n");
    wait_until(40, "app reprovisioned from test/child 2.1", || {
        std::fs::read_to_string(out_path(&d)).is_ok_and(|s| s == "base hi\nchild\n")
    });
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["recipe", "list", "-o", "json"])).unwrap();
    let versions: Vec<String> = list
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["name"].as_str().unwrap(),
                b["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            "test/base 1.0",
            "test/base 1.1",
            "test/child 2.0",
            "test/child 2.1"
        ]
    );
    // Recipe builds are not worlds an operator manages.
    let worlds = d.ok(&["world", "list"]);
    assert!(!worlds.contains("rcp-"), "{worlds}");

    // A failing script discards its build.
    let failing = tmp.path().join("failing");
    write(
        &failing,
        &[(
            "Warrenfile",
            "name test/failing\nworld busybox\n---\necho about to fail\nexit 3\n",
        )],
    );
    let before = recipe_worlds(&d);
    let (ok, _, err) = build(&d, &failing, None);
    assert!(!ok);
    assert!(err.contains("about to fail"), "{err}");
    assert!(err.contains("the recipe's script failed"), "{err}");
    assert_eq!(recipe_worlds(&d), before, "a failed build left a world");

    // A bad recipe: line-numbered errors, nothing built.
    let bad = tmp.path().join("bad");
    write(
        &bad,
        &[(
            "Warrenfile",
            "name test/bad\nverison 1\nfrom test/base 9\n---\ntrue\n",
        )],
    );
    let (ok, _, err) = build(&d, &bad, None);
    assert!(!ok);
    assert!(
        err.contains("Warrenfile:2:1: unknown directive `verison`; did you mean `version`?"),
        "{err}"
    );
    let bad2 = tmp.path().join("bad2");
    write(
        &bad2,
        &[("Warrenfile", "name test/bad\nfrom test/base 9\n---\ntrue\n")],
    );
    let (ok, _, err) = build(&d, &bad2, None);
    assert!(!ok);
    assert!(err.contains("no build matching version 9"), "{err}");
    // A workload naming a recipe that was never built is refused at apply.
    let spec = tmp.path().join("none.toml");
    std::fs::write(&spec, "[workload.x]\nrecipe = \"test/none\"\n").unwrap();
    let out = d.cli(&["apply", "-f", spec.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("none.toml:2:10") && err.contains("recipe test/none has no builds"),
        "{err}"
    );
}

fn out_path(d: &Daemon) -> std::path::PathBuf {
    d.pool_root().join("workloads/app/data/out")
}

/// `from image REF`: a recipe builds on an imported OCI image's root filesystem.
#[test]
fn recipes_build_on_imported_images() {
    for tool in ["umoci", "skopeo"] {
        assert!(
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok(),
            "{tool} is not installed (scripts/install-deps installs it)"
        );
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed");
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .args([
            "-euc",
            r#"
            umoci init --layout L
            umoci new --image L:v1
            umoci unpack --image L:v1 B
            mkdir -p B/rootfs/bin B/rootfs/etc
            cp "$BUSYBOX" B/rootfs/bin/busybox
            for a in sh cat echo sleep; do ln -s busybox B/rootfs/bin/$a; done
            echo image-content > B/rootfs/etc/from-image
            umoci repack --image L:v1 B
            skopeo --insecure-policy copy oci:L:v1 docker-archive:img.tar:rimg:1
            "#,
        ])
        .current_dir(tmp.path())
        .env("BUSYBOX", busybox)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.ok(&[
        "image",
        "import",
        tmp.path().join("img.tar").to_str().unwrap(),
    ]);
    let dir = tmp.path().join("onimage");
    write(
        &dir,
        &[(
            "Warrenfile",
            "name test/onimage\nversion 1\nfrom image rimg:1\n---\ncat /etc/from-image > /etc/derived\necho built-on-image >> /etc/derived\n",
        )],
    );
    let (out, _) = built(&d, &dir, None);
    assert_eq!(out, "test/onimage 1 built (image rimg:1)\n");
    d.apply(
        "w.toml",
        "[workload.derived]\nrecipe = \"test/onimage\"\nnetwork = \"none\"\n\
         command = [\"sh\", \"-c\", \"cat /etc/derived > /data/out; exec sleep 100000\"]\n",
    );
    d.wait_running("derived");
    let file = d.pool_root().join("workloads/derived/data/out");
    wait_until(20, "derived wrote /data/out", || {
        std::fs::read_to_string(&file).is_ok_and(|s| s == "image-content\nbuilt-on-image\n")
    });
    // The image is in use by a recipe build only: removing it is allowed (the build keeps its
    // own world), and the workload keeps running from the build.
    d.ok(&["image", "rm", "rimg:1"]);
    d.ok(&["image", "gc"]);
    assert_eq!(d.get("derived")["state"], "running");
}
