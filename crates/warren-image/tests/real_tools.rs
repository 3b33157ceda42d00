//! Interoperability with Debian's `umoci` and `skopeo` (installed by scripts/install-deps):
//! images they produce import to the same tree `umoci unpack` makes, and images this test
//! suite builds are accepted by them and unpack identically.
//!
//! Without the tools (or without root, which `umoci unpack` needs) the tests fail and say what
//! is missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::{docker_save, tree, Entry, LayerTar, TestImage, TestLayer};
use warren_image::{open_archive, ApplyOptions, ArchiveKind, ImageArchive, Limits};

fn have(tool: &str) -> bool {
    assert!(
        Command::new(tool).arg("--version").output().is_ok(),
        "{tool} is not installed (apt-get install {tool}; scripts/install-deps installs it)"
    );
    true
}

fn run(dir: &Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh(dir: &Path, script: &str) {
    run(dir, &["sh", "-euc", script]);
}

/// Unpacks `tag` from `archive` into a fresh directory and returns its tree.
fn ours(archive: &ImageArchive, tag: &str) -> common::TreeMap {
    let m = archive
        .find(tag)
        .unwrap_or_else(|| panic!("no {tag} in {:?}", archive.manifests()));
    let dest = tempfile::tempdir().unwrap();
    archive
        .unpack(m, dest.path(), &ApplyOptions::default())
        .unwrap();
    tree(dest.path())
}

fn assert_same(ours: &common::TreeMap, reference: &common::TreeMap, what: &str) {
    let a: Vec<_> = ours.keys().collect();
    let b: Vec<_> = reference.keys().collect();
    assert_eq!(a, b, "{what}: paths differ");
    for (k, v) in reference {
        assert_eq!(&ours[k], v, "{what}: {k}");
    }
}

#[test]
fn umoci_built_layout_and_skopeo_archives_import_like_umoci_unpack() {
    assert!(
        common::is_root(),
        "umoci unpack needs root: run the test suite as root"
    );
    assert!(have("umoci") && have("skopeo"));
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sh(
        d,
        r#"
        umoci init --layout L
        umoci new --image L:v1
        umoci unpack --image L:v1 B
        r=B/rootfs
        mkdir -p $r/bin $r/etc $r/home/user $r/olddir/sub $r/srv $r/var/cache/lower
        printf '#!/bin/sh\necho hi\n' > $r/bin/app
        chmod 755 $r/bin/app
        cp $r/bin/app $r/bin/su
        chmod 4755 $r/bin/su
        ln $r/bin/app $r/bin/app-hard
        ln -s app $r/bin/app-sym
        ln -s /etc/outside-abs $r/etc/abs-link
        echo gone > $r/etc/gone
        echo old > $r/olddir/sub/f
        echo lower > $r/var/cache/lower/f
        echo notes > $r/home/user/notes
        chmod 600 $r/home/user/notes
        chmod 700 $r/home/user
        chown -R 1000:1000 $r/home/user
        mkfifo -m 640 $r/etc/fifo
        touch -d 2001-02-03T04:05:06 $r/etc/gone $r/bin/app
        umoci repack --image L:v1 B
        umoci config --image L:v1 --config.entrypoint /bin/app --config.cmd --serve \
            --config.env FOO=bar --config.workingdir /srv --config.user 1000:1000 \
            --config.exposedports 8080/tcp --config.label team=warren
        umoci unpack --image L:v1 B2
        r=B2/rootfs
        rm $r/etc/gone
        rm -r $r/olddir $r/var/cache
        mkdir -p $r/var/cache
        echo upper > $r/var/cache/upper
        echo new > $r/etc/new
        echo replaced > $r/bin/su
        umoci repack --image L:v1 B2
        umoci unpack --image L:v1 REF
        skopeo --insecure-policy copy oci:L:v1 docker-archive:docker.tar:app:v1
        skopeo --insecure-policy copy oci:L:v1 oci-archive:oci.tar:app:v1
        "#,
    );
    let reference = tree(&d.join("REF/rootfs"));
    assert!(reference.contains_key("var/cache/upper"));
    assert!(!reference.contains_key("etc/gone"));

    let layout = open_archive(&d.join("L"), &Limits::default()).unwrap();
    assert_eq!(layout.kind(), ArchiveKind::OciLayout);
    let m = layout.find("v1").unwrap();
    assert_eq!(m.config.entrypoint, ["/bin/app"]);
    assert_eq!(m.config.cmd, ["--serve"]);
    assert!(m.config.env.contains(&"FOO=bar".to_string()));
    assert_eq!(m.config.working_dir.as_deref(), Some("/srv"));
    assert_eq!(m.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(m.config.exposed_ports, ["8080/tcp"]);
    assert_eq!(m.config.labels["team"], "warren");
    assert_same(&ours(&layout, "v1"), &reference, "umoci layout");

    let docker = open_archive(&d.join("docker.tar"), &Limits::default()).unwrap();
    assert_eq!(docker.kind(), ArchiveKind::DockerSave);
    assert_eq!(docker.manifests()[0].config.entrypoint, ["/bin/app"]);
    assert_same(
        &ours(&docker, "app:v1"),
        &reference,
        "skopeo docker-archive",
    );

    let oci = open_archive(&d.join("oci.tar"), &Limits::default()).unwrap();
    assert_eq!(oci.kind(), ArchiveKind::OciLayout);
    assert_same(&ours(&oci, "app:v1"), &reference, "skopeo oci-archive");
}

#[test]
fn images_built_here_are_accepted_by_skopeo_and_unpack_like_umoci() {
    assert!(
        common::is_root(),
        "umoci unpack needs root: run the test suite as root"
    );
    assert!(have("umoci") && have("skopeo"));
    let base = LayerTar::entries([
        Entry::dir("etc/"),
        Entry::file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        Entry::file("etc/gone", b"x"),
        Entry::dir("bin/"),
        Entry::file("bin/tool", b"tool").mode(0o4755),
        Entry::hardlink("bin/tool2", "bin/tool"),
        Entry::dir("cache/"),
        Entry::file("cache/lower", b"lower"),
        Entry::dir("cache/keep/"),
        Entry::file("cache/keep/lower", b"lower"),
        Entry::dir("home/"),
        Entry::dir("home/u/").owner(1000, 1000).mode(0o700),
        Entry::file("home/u/f", b"u").owner(1000, 1000).mode(0o600),
    ]);
    let upper = LayerTar::entries([
        Entry::file("etc/.wh.gone", b""),
        Entry::dir("cache/"),
        Entry::file("cache/.wh..wh..opq", b""),
        Entry::file("cache/upper", b"upper"),
        Entry::symlink("etc/link", "/etc/passwd"),
        Entry::file("bin/tool", b"new tool").mode(0o755),
    ]);
    let image = TestImage::new(
        "built:1",
        vec![TestLayer::plain(base), TestLayer::gzip(upper)],
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("ours.tar"), docker_save(&[image]).tar()).unwrap();
    sh(
        d,
        r#"
        skopeo --insecure-policy copy docker-archive:ours.tar:built:1 oci:L:built
        umoci unpack --image L:built REF
        "#,
    );
    let ours_archive = open_archive(&d.join("ours.tar"), &Limits::default()).unwrap();
    let reference = tree(&d.join("REF/rootfs"));
    assert!(reference.contains_key("cache/upper"));
    assert!(!reference.contains_key("cache/lower"));
    assert_same(&ours(&ours_archive, "built:1"), &reference, "our archive");
    // And skopeo's re-encoding of it imports the same.
    let layout = open_archive(&d.join("L"), &Limits::default()).unwrap();
    assert_same(&ours(&layout, "built"), &reference, "skopeo's copy");
}
