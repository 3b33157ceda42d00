//! Tests of copying in and out of trees: round trips, Docker's placement rules, links and
//! mount points resolved as the workload would, hostile archives refused with nothing left,
//! owners mapped through a user namespace.

use super::*;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

fn p(s: &str) -> CopyPath {
    CopyPath::parse(s).unwrap()
}

fn opts(shape: Shape) -> PutOptions {
    PutOptions {
        shape,
        require_dir: false,
        keep_owners: false,
        ids: None,
        owner: None,
        max_bytes: None,
    }
}

/// Every name below `dir`, sorted, to show nothing was left behind.
fn listing(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if !link.is_empty() {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn paths_are_cleaned_and_must_be_absolute() {
    assert_eq!(p("/a/./b/../c").comps, vec!["a", "c"]);
    assert_eq!(p("/../../etc").comps, vec!["etc"]);
    assert!(p("/").contents && p("/x/.").contents && !p("/x").contents);
    assert!(p("/x/").dir && !p("/x/").contents);
    assert!(matches!(CopyPath::parse("x"), Err(CopyError::Relative(_))));
    let m = IdMap {
        host_base: 100000,
        size: 65536,
    };
    assert_eq!(m.to_host(0), Some(100000));
    assert_eq!(m.to_host(65536), None);
    assert_eq!(m.to_workload(100005), 5);
    assert_eq!(m.to_workload(0), OVERFLOW_ID);
}

#[test]
fn a_file_and_a_directory_go_out_and_back_in() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(a.join("etc/app/sub")).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("etc/app/conf"), "x=1").unwrap();
    std::fs::set_permissions(
        a.join("etc/app/conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::hard_link(a.join("etc/app/conf"), a.join("etc/app/sub/again")).unwrap();
    symlink("conf", a.join("etc/app/link")).unwrap();

    // A directory into an existing directory lands inside it.
    let mut t = Vec::new();
    assert_eq!(
        get(&Tree::root(&a), &p("/etc/app"), None, &mut t).unwrap(),
        Shape::Entry
    );
    std::fs::create_dir_all(b.join("srv")).unwrap();
    put(&Tree::root(&b), &p("/srv"), &t[..], &opts(Shape::Entry)).unwrap();
    assert_eq!(
        std::fs::read_to_string(b.join("srv/app/conf")).unwrap(),
        "x=1"
    );
    let m = std::fs::metadata(b.join("srv/app/conf")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(
        m.ino(),
        std::fs::metadata(b.join("srv/app/sub/again"))
            .unwrap()
            .ino()
    );
    assert_eq!(
        std::fs::read_link(b.join("srv/app/link")).unwrap(),
        Path::new("conf")
    );
    // To a missing name it is created under that name.
    put(
        &Tree::root(&b),
        &p("/srv/renamed"),
        &t[..],
        &opts(Shape::Entry),
    )
    .unwrap();
    assert!(b.join("srv/renamed/conf").is_file());
    // A file onto a file replaces it; its contents only, into an existing directory.
    let mut f = Vec::new();
    get(&Tree::root(&a), &p("/etc/app/conf"), None, &mut f).unwrap();
    std::fs::write(b.join("srv/old"), "old").unwrap();
    put(&Tree::root(&b), &p("/srv/old"), &f[..], &opts(Shape::Entry)).unwrap();
    assert_eq!(std::fs::read_to_string(b.join("srv/old")).unwrap(), "x=1");
    let mut c = Vec::new();
    assert_eq!(
        get(&Tree::root(&a), &p("/etc/app/."), None, &mut c).unwrap(),
        Shape::Contents
    );
    std::fs::create_dir_all(b.join("flat")).unwrap();
    put(&Tree::root(&b), &p("/flat"), &c[..], &opts(Shape::Contents)).unwrap();
    assert!(b.join("flat/conf").is_file() && b.join("flat/sub/again").is_file());
    put(&Tree::root(&b), &p("/made"), &c[..], &opts(Shape::Contents)).unwrap();
    assert!(b.join("made/conf").is_file());
    // A directory over a file, or a file over a directory, is refused.
    assert!(matches!(
        put(&Tree::root(&b), &p("/srv/old"), &t[..], &opts(Shape::Entry)),
        Err(CopyError::DirOntoFile(_))
    ));
    std::fs::create_dir_all(b.join("x/conf")).unwrap();
    assert!(matches!(
        put(&Tree::root(&b), &p("/x"), &c[..], &opts(Shape::Contents)),
        Err(CopyError::FileOntoDir(_))
    ));
    assert!(listing(&b).iter().all(|n| !n.contains(".warren-cp")));
    // A missing source, a relative path, a missing parent.
    assert!(matches!(
        get(&Tree::root(&a), &p("/nope"), None, &mut Vec::new()),
        Err(CopyError::NotFound(_))
    ));
    assert!(matches!(
        put(
            &Tree::root(&b),
            &p("/no/such/dir"),
            &f[..],
            &opts(Shape::Entry)
        ),
        Err(CopyError::NotFound(_))
    ));
}

#[test]
fn links_never_lead_outside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("real")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "s").unwrap();
    symlink(&outside, root.join("escape")).unwrap();
    symlink("../../../..", root.join("climb")).unwrap();
    // Reading through the links reads inside the root.
    assert!(matches!(
        get(
            &Tree::root(&root),
            &p("/escape/secret"),
            None,
            &mut Vec::new()
        ),
        Err(CopyError::NotFound(_))
    ));
    assert!(matches!(
        get(
            &Tree::root(&root),
            &p("/climb/outside/secret"),
            None,
            &mut Vec::new()
        ),
        Err(CopyError::NotFound(_))
    ));
    // Writing through them writes inside the root.
    let file = raw_tar(&[("f", tar::EntryType::Regular, "", b"data")]);
    put(
        &Tree::root(&root),
        &p("/climb/real"),
        &file[..],
        &opts(Shape::Entry),
    )
    .unwrap();
    assert!(root.join("real/f").is_file());
    assert!(matches!(
        put(
            &Tree::root(&root),
            &p("/escape/x"),
            &file[..],
            &opts(Shape::Entry)
        ),
        Err(CopyError::NotFound(_))
    ));
    assert_eq!(listing(&outside), vec!["secret"]);
}

#[test]
fn hostile_archives_are_refused_with_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("dst")).unwrap();
    let before = listing(&root);
    let ok: &[u8] = b"ok";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            raw_tar(&[
                ("good", tar::EntryType::Regular, "", ok),
                ("../evil", tar::EntryType::Regular, "", ok),
            ]),
        ),
        (
            "absolute",
            raw_tar(&[
                ("good", tar::EntryType::Regular, "", ok),
                ("/etc/evil", tar::EntryType::Regular, "", ok),
            ]),
        ),
        (
            "symlink out",
            raw_tar(&[
                ("d/", tar::EntryType::Directory, "", b""),
                ("d/up", tar::EntryType::Symlink, "../../..", b""),
            ]),
        ),
        (
            "hardlink out",
            raw_tar(&[
                ("d/", tar::EntryType::Directory, "", b""),
                ("d/h", tar::EntryType::Link, "../../etc/passwd", b""),
            ]),
        ),
        (
            "write through a symlink",
            raw_tar(&[
                ("d/", tar::EntryType::Directory, "", b""),
                ("d/l", tar::EntryType::Symlink, "/", b""),
                ("d/l/etc", tar::EntryType::Regular, "", ok),
            ]),
        ),
        (
            "device",
            raw_tar(&[
                ("d/", tar::EntryType::Directory, "", b""),
                ("d/sda", tar::EntryType::Block, "", b""),
            ]),
        ),
    ];
    for (what, tar) in cases {
        for shape in [Shape::Entry, Shape::Contents] {
            let r = put(&Tree::root(&root), &p("/dst"), &tar[..], &opts(shape));
            assert!(r.is_err(), "{what} accepted");
            assert_eq!(listing(&root), before, "{what} left something");
        }
    }
    // Several top-level entries only go into an existing directory.
    let two = raw_tar(&[
        ("a", tar::EntryType::Regular, "", ok),
        ("b", tar::EntryType::Regular, "", ok),
    ]);
    assert!(matches!(
        put(
            &Tree::root(&root),
            &p("/new"),
            &two[..],
            &opts(Shape::Entry)
        ),
        Err(CopyError::NotOneEntry(2))
    ));
    let mut need_dir = opts(Shape::Contents);
    need_dir.require_dir = true;
    assert!(matches!(
        put(&Tree::root(&root), &p("/new"), &two[..], &need_dir),
        Err(CopyError::NotFound(_))
    ));
    assert_eq!(listing(&root), before);
    put(&Tree::root(&root), &p("/dst"), &two[..], &need_dir).unwrap();
    assert!(root.join("dst/a").is_file() && root.join("dst/b").is_file());
}

#[test]
fn owners_are_mapped_through_the_namespace() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test re-owns files: run it as root");
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("in")).unwrap();
    let ids = IdMap {
        host_base: 200000,
        size: 65536,
    };
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o4755);
    h.set_uid(33);
    h.set_gid(34);
    h.set_size(2);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "tool", &b"ok"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let mut o = opts(Shape::Entry);
    o.keep_owners = true;
    o.ids = Some(ids);
    put(&Tree::root(&root), &p("/in"), &t[..], &o).unwrap();
    let m = std::fs::metadata(root.join("in/tool")).unwrap();
    assert_eq!((m.uid(), m.gid()), (200033, 200034));
    assert_eq!(m.mode() & 0o7777, 0o4755, "chown must not drop setuid");
    // Read back, the owners are the workload's again.
    let mut out = Vec::new();
    get(&Tree::root(&root), &p("/in/tool"), Some(ids), &mut out).unwrap();
    let mut a = tar::Archive::new(&out[..]);
    let e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (33, 34)
    );
    // Without keeping owners, files belong to the workload's root.
    let mut o = opts(Shape::Entry);
    o.owner = Some((ids.host_base, ids.host_base));
    put(&Tree::root(&root), &p("/in/other"), &t[..], &o).unwrap();
    let m = std::fs::metadata(root.join("in/other")).unwrap();
    assert_eq!((m.uid(), m.gid()), (200000, 200000));
    // An owner outside the range is refused.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(70000);
    h.set_size(0);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "far", std::io::empty()).unwrap();
    let t = b.into_inner().unwrap();
    let mut o = opts(Shape::Entry);
    o.keep_owners = true;
    o.ids = Some(ids);
    assert!(matches!(
        put(&Tree::root(&root), &p("/in"), &t[..], &o),
        Err(CopyError::OutsideRange { id: 70000, .. })
    ));
    assert!(!root.join("in/far").exists());
}

#[test]
fn links_cross_mount_points_as_in_the_workload() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    let data = tmp.path().join("data");
    let ro = tmp.path().join("ro");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(rootfs.join("etc/hostname"), "box").unwrap();
    std::fs::write(rootfs.join("data/hidden"), "under the mount").unwrap();
    std::fs::write(data.join("file"), "data").unwrap();
    symlink("/etc", data.join("etc-link")).unwrap();
    symlink("../data/file", rootfs.join("etc/to-data")).unwrap();
    symlink("/ro", data.join("ro-link")).unwrap();
    let trees = vec![
        Tree {
            at: Vec::new(),
            source: Some(rootfs.clone()),
            readonly: false,
        },
        Tree {
            at: vec!["data".into()],
            source: Some(data.clone()),
            readonly: false,
        },
        Tree {
            at: vec!["ro".into()],
            source: Some(ro.clone()),
            readonly: true,
        },
        Tree {
            at: vec!["proc".into()],
            source: None,
            readonly: false,
        },
        Tree {
            at: vec!["etc".into(), "hosts".into()],
            source: Some(tmp.path().join("hosts")),
            readonly: false,
        },
    ];
    std::fs::write(tmp.path().join("hosts"), "10.0.0.1 web").unwrap();
    std::fs::write(rootfs.join("etc/hosts"), "shadowed").unwrap();
    std::fs::create_dir_all(rootfs.join("proc/1")).unwrap();
    let read = |path: &str| {
        let mut out = Vec::new();
        get(&trees, &p(path), None, &mut out).map(|_| {
            let mut a = tar::Archive::new(&out[..]);
            let mut e = a.entries().unwrap().next().unwrap().unwrap();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            s
        })
    };
    assert_eq!(read("/data/etc-link/hostname").unwrap(), "box");
    assert!(read("/etc/to-data/").is_err());
    assert_eq!(read("/data/file").unwrap(), "data");
    assert!(matches!(read("/data/hidden"), Err(CopyError::NotFound(_))));
    assert!(matches!(
        read("/proc/1/environ"),
        Err(CopyError::NoHostDirectory(_))
    ));
    // A file bound over a file is read from its source, and never written.
    assert_eq!(read("/etc/hosts").unwrap(), "10.0.0.1 web");
    // A whole tree: each mount point shows its own tree, the kernel's are left out.
    let mut out = Vec::new();
    assert_eq!(
        get(&trees, &p("/"), None, &mut out).unwrap(),
        Shape::Contents
    );
    let mut seen = std::collections::BTreeMap::new();
    for e in tar::Archive::new(&out[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut e, &mut body).unwrap();
        seen.insert(name, body);
    }
    assert_eq!(
        seen.get("data/file").map(String::as_str),
        Some("data"),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("etc/hosts").map(String::as_str),
        Some("10.0.0.1 web")
    );
    assert!(!seen.contains_key("data/hidden"), "{seen:?}");
    assert!(!seen.keys().any(|k| k.starts_with("proc")), "{seen:?}");
    let file = raw_tar(&[("f", tar::EntryType::Regular, "", b"x")]);
    // Through a link in one mount into another; onto a mount point.
    put(&trees, &p("/data/etc-link"), &file[..], &opts(Shape::Entry)).unwrap();
    assert!(rootfs.join("etc/f").is_file());
    put(&trees, &p("/data"), &file[..], &opts(Shape::Entry)).unwrap();
    assert!(data.join("f").is_file() && !rootfs.join("data/f").exists());
    assert!(matches!(
        put(&trees, &p("/data/ro-link"), &file[..], &opts(Shape::Entry)),
        Err(CopyError::ReadOnly(_))
    ));
    assert!(matches!(
        put(&trees, &p("/proc"), &file[..], &opts(Shape::Entry)),
        Err(CopyError::NoHostDirectory(_))
    ));
    assert!(matches!(
        put(&trees, &p("/etc/hosts"), &file[..], &opts(Shape::Entry)),
        Err(CopyError::ReadOnly(_))
    ));
    // A tree placed over a mount point would land under it, hidden: refused.
    let over = raw_tar(&[
        ("./", tar::EntryType::Directory, "", b""),
        ("data/", tar::EntryType::Directory, "", b""),
        ("data/x", tar::EntryType::Regular, "", b"x"),
    ]);
    assert!(matches!(
        put(&trees, &p("/"), &over[..], &opts(Shape::Contents)),
        Err(CopyError::CrossesMount(_))
    ));
    assert!(!rootfs.join("data/x").exists() && !data.join("x").exists());
    assert_eq!(listing(&ro), Vec::<String>::new());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("hosts")).unwrap(),
        "10.0.0.1 web"
    );
}
