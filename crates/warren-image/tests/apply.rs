//! Applying well-formed layers: the merged tree is checked byte for byte, with metadata.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use common::{is_root, node, tree, Entry, LayerTar, Node, MTIME};
use warren_image::{apply_layer, apply_layer_with, ApplyOptions, Compression, Limits, Ownership};

const SU: &[u8] = b"\x7fELF pretend setuid binary";

fn base_layer() -> Vec<u8> {
    LayerTar::entries([
        Entry::dir("./").mode(0o755),
        Entry::dir("etc/"),
        Entry::file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        Entry::file("etc/shadow", b"root:*:19000::::::\n").mode(0o600),
        Entry::dir("bin/"),
        Entry::file("bin/app", b"#!/bin/sh\necho app v1\n").mode(0o755),
        Entry::file("bin/su", SU).mode(0o4755),
        Entry::hardlink("bin/app-link", "bin/app"),
        Entry::dir("usr/"),
        Entry::dir("usr/lib/"),
        Entry::file("usr/lib/libx.so", b"libx"),
        Entry::symlink("lib", "usr/lib"),
        Entry::symlink("etc/alternatives-awk", "/usr/bin/mawk"),
        Entry::dir("home/"),
        Entry::dir("home/user/").mode(0o700).owner(1000, 1000),
        Entry::file("home/user/notes", b"v1 notes")
            .mode(0o600)
            .owner(1000, 1000),
        Entry::dir("var/"),
        Entry::dir("var/cache/"),
        Entry::file("var/cache/a", b"lower a"),
        Entry::dir("var/cache/b/"),
        Entry::file("var/cache/b/c", b"lower c"),
        Entry::dir("old/"),
        Entry::dir("old/deep/"),
        Entry::file("old/deep/file", b"old"),
        Entry::dir("tmp/").mode(0o1777),
        Entry::file("tmp/gone", b"bye"),
    ])
}

fn second_layer() -> Vec<u8> {
    LayerTar::entries([
        Entry::file(".wh.old", b""),
        Entry::dir("tmp/").mode(0o1777),
        Entry::file("tmp/.wh.gone", b""),
        Entry::dir("var/cache/"),
        Entry::file("var/cache/.wh..wh..opq", b""),
        Entry::file("var/cache/new", b"upper new"),
        Entry::file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        ),
        Entry::hardlink("etc/passwd-", "etc/passwd"),
        // Written through the `lib -> usr/lib` link of the lower layer.
        Entry::file("lib/liby.so", b"liby"),
    ])
}

fn third_layer() -> Vec<u8> {
    LayerTar::entries([
        Entry::dir("srv/").mtime(MTIME + 100),
        Entry::dir("srv/data/").owner(1000, 1000).mtime(MTIME + 200),
        Entry::fifo("srv/data/pipe").mode(0o620).owner(1000, 1000),
        Entry::symlink("bin/app", "app2"),
        Entry::file("bin/app2", b"#!/bin/sh\necho app v2\n").mode(0o755),
        Entry::file("home/user/notes", b"v3 notes")
            .mode(0o600)
            .owner(1000, 1000)
            .mtime(MTIME + 300),
    ])
}

fn n(kind: char, mode: u32, owner: u32, content: &[u8], nlink: u64) -> Node {
    Node {
        kind,
        mode,
        uid: owner,
        gid: owner,
        content: content.to_vec(),
        mtime: MTIME as i64,
        nlink,
    }
}

fn expected() -> BTreeMap<String, Node> {
    let owner = if is_root() {
        1000
    } else {
        nix::unistd::geteuid().as_raw()
    };
    let me = if is_root() { 0 } else { owner };
    let mut t = BTreeMap::new();
    let mut put = |p: &str, node: Node| {
        t.insert(p.to_string(), node);
    };
    let passwd2: &[u8] = b"root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
    put("bin", n('d', 0o755, me, b"", 0));
    put("bin/app", n('l', 0o777, me, b"app2", 1));
    put(
        "bin/app-link",
        n('f', 0o755, me, b"#!/bin/sh\necho app v1\n", 1),
    );
    put(
        "bin/app2",
        n('f', 0o755, me, b"#!/bin/sh\necho app v2\n", 1),
    );
    put("bin/su", n('f', 0o4755, me, SU, 1));
    put("etc", n('d', 0o755, me, b"", 0));
    put(
        "etc/alternatives-awk",
        n('l', 0o777, me, b"/usr/bin/mawk", 1),
    );
    put("etc/passwd", n('f', 0o644, me, passwd2, 2));
    put("etc/passwd-", n('f', 0o644, me, passwd2, 2));
    put("etc/shadow", n('f', 0o600, me, b"root:*:19000::::::\n", 1));
    put("home", n('d', 0o755, me, b"", 0));
    put("home/user", n('d', 0o700, owner, b"", 0));
    let mut notes = n('f', 0o600, owner, b"v3 notes", 1);
    notes.mtime = MTIME as i64 + 300;
    put("home/user/notes", notes);
    put("lib", n('l', 0o777, me, b"usr/lib", 1));
    let mut srv = n('d', 0o755, me, b"", 0);
    srv.mtime += 100;
    put("srv", srv);
    let mut data = n('d', 0o755, owner, b"", 0);
    data.mtime += 200;
    put("srv/data", data);
    put("srv/data/pipe", n('p', 0o620, owner, b"", 1));
    put("tmp", n('d', 0o1777, me, b"", 0));
    put("usr", n('d', 0o755, me, b"", 0));
    put("usr/lib", n('d', 0o755, me, b"", 0));
    put("usr/lib/libx.so", n('f', 0o644, me, b"libx", 1));
    put("usr/lib/liby.so", n('f', 0o644, me, b"liby", 1));
    put("var", n('d', 0o755, me, b"", 0));
    put("var/cache", n('d', 0o755, me, b"", 0));
    put("var/cache/new", n('f', 0o644, me, b"upper new", 1));
    // Directories whose content an upper layer changed without a directory entry of its own
    // keep their earlier times (as with umoci), so every mtime is deterministic.
    t
}

fn assert_tree(actual: &BTreeMap<String, Node>, expected: &BTreeMap<String, Node>) {
    let a: Vec<_> = actual.keys().collect();
    let e: Vec<_> = expected.keys().collect();
    assert_eq!(a, e, "paths differ");
    for (k, v) in expected {
        assert_eq!(&actual[k], v, "{k}");
    }
}

#[test]
fn three_layers_merge_with_whiteouts_opaque_dirs_links_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("rootfs");
    std::fs::create_dir(&dest).unwrap();
    let limits = Limits::default();

    let s1 = apply_layer(&dest, base_layer().as_slice(), Compression::None, &limits).unwrap();
    // The layer root's own entry applies its metadata to dest.
    assert_eq!(node(&dest).mode, 0o755);
    assert_eq!(node(&dest).mtime, MTIME as i64);
    assert_eq!(s1.hardlinks, 1);
    assert_eq!(s1.symlinks, 2);
    assert_eq!(s1.diff_id.to_string(), common::sha256(&base_layer()));

    let gz = common::gzip(&second_layer());
    let s2 = apply_layer(&dest, gz.as_slice(), Compression::Gzip, &limits).unwrap();
    assert_eq!(s2.whiteouts, 2);
    assert_eq!(s2.opaque_dirs, 1);
    assert_eq!(s2.compressed_bytes, gz.len() as u64);
    assert_eq!(s2.diff_id.to_string(), common::sha256(&second_layer()));

    let zs = common::zstd(&third_layer());
    let s3 = apply_layer(&dest, zs.as_slice(), Compression::Zstd, &limits).unwrap();
    // The root was changed by layers 2 and 3 but keeps the time its own entry gave it.
    assert_eq!(node(&dest).mtime, MTIME as i64);
    assert_eq!(s3.fifos, 1);
    assert_eq!(s3.uncompressed_bytes, third_layer().len() as u64);

    assert_tree(&tree(&dest), &expected());
    // The hard link made in layer 2 shares its inode with its target.
    let a = std::fs::metadata(dest.join("etc/passwd")).unwrap();
    let b = std::fs::metadata(dest.join("etc/passwd-")).unwrap();
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn compressions_give_identical_trees() {
    let mut trees = Vec::new();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let tmp = tempfile::tempdir().unwrap();
        for layer in [base_layer(), second_layer(), third_layer()] {
            let blob = match c {
                Compression::None => layer.clone(),
                Compression::Gzip => common::gzip(&layer),
                Compression::Zstd => common::zstd(&layer),
            };
            let stats = apply_layer(tmp.path(), blob.as_slice(), c, &Limits::default()).unwrap();
            assert_eq!(stats.diff_id.to_string(), common::sha256(&layer));
        }
        trees.push(tree(tmp.path()));
    }
    assert_eq!(trees[0], trees[1]);
    assert_eq!(trees[0], trees[2]);
}

#[test]
fn opaque_marker_after_this_layers_entries_keeps_them_and_prunes_lower_content() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = LayerTar::entries([
        Entry::dir("d/"),
        Entry::file("d/lower", b"x"),
        Entry::dir("d/sub/"),
        Entry::file("d/sub/lower", b"x"),
    ]);
    // Out of the recommended order: the marker comes last.
    let upper = LayerTar::entries([
        Entry::dir("d/"),
        Entry::dir("d/sub/"),
        Entry::file("d/sub/upper", b"y"),
        Entry::file("d/upper", b"y"),
        Entry::file("d/.wh..wh..opq", b""),
    ]);
    apply_layer(
        tmp.path(),
        lower.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    apply_layer(
        tmp.path(),
        upper.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    let names: Vec<String> = tree(tmp.path()).into_keys().collect();
    assert_eq!(names, ["d", "d/sub", "d/sub/upper", "d/upper"]);
}

#[test]
fn whiteout_never_removes_an_entry_of_its_own_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = LayerTar::entries([Entry::file("a", b"lower"), Entry::file("b", b"lower")]);
    let upper = LayerTar::entries([
        Entry::file(".wh.a", b""),
        Entry::file("a", b"upper a"),
        Entry::file("b", b"upper b"),
        Entry::file(".wh.b", b""),
    ]);
    apply_layer(
        tmp.path(),
        lower.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    apply_layer(
        tmp.path(),
        upper.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(tmp.path().join("a")).unwrap(), b"upper a");
    assert_eq!(std::fs::read(tmp.path().join("b")).unwrap(), b"upper b");
}

#[test]
fn upper_layer_replaces_lower_directory_with_file_and_file_with_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = LayerTar::entries([
        Entry::dir("x/"),
        Entry::file("x/inner", b"x"),
        Entry::file("y", b"file"),
        Entry::symlink("z", "/etc"),
    ]);
    let upper = LayerTar::entries([
        Entry::file("x", b"now a file"),
        Entry::dir("y/"),
        Entry::file("y/inner", b"now a dir"),
        // A directory entry over a symlink replaces the link (the link is not followed).
        Entry::dir("z/"),
    ]);
    apply_layer(
        tmp.path(),
        lower.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    apply_layer(
        tmp.path(),
        upper.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    let t = tree(tmp.path());
    assert_eq!(t["x"].content, b"now a file");
    assert_eq!(t["y"].kind, 'd');
    assert_eq!(t["y/inner"].content, b"now a dir");
    assert_eq!(t["z"].kind, 'd');
    assert!(!t.contains_key("x/inner"));
}

#[test]
fn replacing_a_file_does_not_write_through_a_lower_hard_link() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = LayerTar::entries([Entry::file("a", b"shared"), Entry::hardlink("b", "a")]);
    let upper = LayerTar::entries([Entry::file("a", b"new a")]);
    apply_layer(
        tmp.path(),
        lower.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    apply_layer(
        tmp.path(),
        upper.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(tmp.path().join("a")).unwrap(), b"new a");
    assert_eq!(std::fs::read(tmp.path().join("b")).unwrap(), b"shared");
}

#[test]
fn duplicate_file_entries_last_one_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = LayerTar::entries([
        Entry::file("f", b"first").mode(0o600),
        Entry::file("f", b"second").mode(0o640),
        Entry::dir("d/").mode(0o700),
        Entry::dir("d/").mode(0o750),
    ]);
    apply_layer(
        tmp.path(),
        layer.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    let t = tree(tmp.path());
    assert_eq!(t["f"].content, b"second");
    assert_eq!(t["f"].mode, 0o640);
    assert_eq!(t["d"].mode, 0o750);
}

#[test]
fn long_names_pax_records_and_missing_parents() {
    let tmp = tempfile::tempdir().unwrap();
    let long_dir = "a".repeat(150);
    let long = format!("{long_dir}/{}", "b".repeat(120));
    let layer = LayerTar::entries([
        Entry::file(&long, b"gnu long name"),
        Entry::file("short", b"pax named")
            .pax("path", b"pax/renamed/file")
            .pax("mtime", b"1700000000.25")
            .pax("uid", b"1000")
            .pax("gid", b"1000"),
        Entry::symlink("longlink", &format!("/{}", "c".repeat(200))),
    ]);
    apply_layer(
        tmp.path(),
        layer.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    let t = tree(tmp.path());
    assert_eq!(t[&long].content, b"gnu long name");
    let pax = &t["pax/renamed/file"];
    assert_eq!(pax.content, b"pax named");
    assert_eq!(pax.mtime, 1_700_000_000);
    if is_root() {
        assert_eq!((pax.uid, pax.gid), (1000, 1000));
    }
    // Missing parents are created 0755.
    assert_eq!(t["pax"].mode, 0o755);
    assert_eq!(t["longlink"].content.len(), 201);
}

#[test]
fn ownership_can_be_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = LayerTar::entries([Entry::file("f", b"x").owner(1234, 5678).mode(0o4755)]);
    let opts = ApplyOptions {
        ownership: Ownership::Ignore,
        ..ApplyOptions::default()
    };
    apply_layer_with(tmp.path(), layer.as_slice(), Compression::None, &opts).unwrap();
    let me = nix::unistd::geteuid().as_raw();
    let f = node(&tmp.path().join("f"));
    assert_eq!(f.uid, me);
    assert_eq!(f.mode, 0o4755);
}

#[test]
fn allowed_xattrs_are_applied_and_others_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = tmp.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    assert!(
        xattr::set(&probe, "user.probe", b"1").is_ok(),
        "the temporary directory ({}) must support user xattrs for this test",
        tmp.path().display()
    );
    std::fs::remove_file(&probe).unwrap();
    let layer = LayerTar::entries([
        Entry::file("f", b"x")
            .pax("SCHILY.xattr.user.comment", b"bin\nary\0value")
            .pax("SCHILY.xattr.trusted.overlay.opaque", b"y")
            .pax("SCHILY.xattr.user.overlay.redirect", b"/etc"),
        Entry::dir("d/").pax("SCHILY.xattr.user.dir", b"yes"),
    ]);
    let stats = apply_layer(
        tmp.path(),
        layer.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        xattr::get(tmp.path().join("f"), "user.comment").unwrap(),
        Some(b"bin\nary\0value".to_vec())
    );
    assert_eq!(
        xattr::get(tmp.path().join("d"), "user.dir").unwrap(),
        Some(b"yes".to_vec())
    );
    assert_eq!(
        xattr::get(tmp.path().join("f"), "user.overlay.redirect").unwrap(),
        None
    );
    assert_eq!(stats.xattrs_skipped, 2);
}

#[test]
fn directory_mtimes_survive_their_children_being_written() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = LayerTar::entries([
        Entry::dir("d/").mtime(1000),
        Entry::dir("d/e/").mtime(2000),
        Entry::file("d/e/f", b"x").mtime(3000),
        Entry::file("d/g", b"x").mtime(4000),
    ]);
    apply_layer(
        tmp.path(),
        layer.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    let t = tree(tmp.path());
    assert_eq!(t["d"].mtime, 1000);
    assert_eq!(t["d/e"].mtime, 2000);
    assert_eq!(t["d/e/f"].mtime, 3000);
}

#[test]
fn a_layer_without_end_blocks_and_with_trailing_data_is_hashed_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = LayerTar::new();
    t.add(Entry::file("f", b"x"));
    let mut bytes = t.finish();
    bytes.extend_from_slice(&[0u8; 4096]);
    let stats = apply_layer(
        tmp.path(),
        bytes.as_slice(),
        Compression::None,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(stats.diff_id.to_string(), common::sha256(&bytes));
    assert_eq!(stats.uncompressed_bytes, bytes.len() as u64);
}
