//! Hostile layers: each is refused (or confined), and nothing outside the target changes.
//! Every test here would fail without the check it names.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Entry, LayerTar, Sandbox};
use tar::EntryType;
use warren_image::{apply_layer, Compression, EntryProblem, ImageError, LimitKind, Limits};

fn apply(s: &Sandbox, layer: &[u8]) -> Result<warren_image::LayerStats, ImageError> {
    apply_layer(&s.dest, layer, Compression::None, &Limits::default())
}

/// The entry error's name and problem.
fn entry_err(r: Result<warren_image::LayerStats, ImageError>) -> (String, EntryProblem) {
    match r {
        Err(ImageError::Entry { entry, problem, .. }) => (entry, problem),
        other => panic!("expected an entry error, got {other:?}"),
    }
}

#[test]
fn dotdot_entry_is_refused_and_named() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::file("../outside/pwned", b"x")]);
    let (entry, problem) = entry_err(apply(&s, &layer));
    assert_eq!(entry, "../outside/pwned");
    assert!(matches!(problem, EntryProblem::DotDot));
    let layer = LayerTar::entries([Entry::file("a/b/../../../outside/pwned", b"x")]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::DotDot
    ));
    s.assert_outside_untouched();
}

#[test]
fn absolute_entry_is_refused_and_named() {
    let s = Sandbox::new();
    let target = format!("{}/pwned", s.outside_str());
    let layer = LayerTar::entries([Entry::file(&target, b"x")]);
    let (entry, problem) = entry_err(apply(&s, &layer));
    assert_eq!(entry, target);
    assert!(matches!(problem, EntryProblem::Absolute));
    // The error message names the entry.
    let msg = apply(&s, &layer).unwrap_err().to_string();
    assert!(msg.contains(&target), "{msg}");
    s.assert_outside_untouched();
}

#[test]
fn symlink_from_a_lower_layer_cannot_redirect_writes_outside() {
    let s = Sandbox::new();
    let lower = LayerTar::entries([
        Entry::symlink("abs", &s.outside_str()),
        Entry::symlink("rel", "../../../../../../../../outside"),
        Entry::symlink("chain", "abs"),
    ]);
    apply(&s, &lower).unwrap();
    let upper = LayerTar::entries([
        Entry::file("abs/pwned", b"x"),
        Entry::file("rel/pwned", b"x"),
        Entry::file("chain/sub/pwned", b"x"),
        Entry::file("abs/sentinel", b"overwritten"),
    ]);
    apply(&s, &upper).unwrap();
    s.assert_outside_untouched();
    // The writes landed inside dest, where the links lead when dest is the root.
    let inside = s.dest.join(s.outside.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inside.join("pwned")).unwrap(), b"x");
    assert_eq!(
        std::fs::read(inside.join("sentinel")).unwrap(),
        b"overwritten"
    );
    assert!(inside.join("sub/pwned").is_file());
    assert!(s.dest.join("outside/pwned").is_file());
}

#[test]
fn symlink_made_earlier_in_the_same_layer_cannot_redirect_writes_outside() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([
        Entry::symlink("escape", "../outside"),
        Entry::file("escape/pwned", b"x"),
        Entry::dir("escape/sub/"),
        Entry::file("escape/sub/file", b"overwrite"),
        Entry::symlink("escape/sentinel", "/etc/passwd"),
    ]);
    apply(&s, &layer).unwrap();
    s.assert_outside_untouched();
    assert!(s.dest.join("outside/pwned").is_file());
}

#[test]
fn directory_entry_over_an_escaping_symlink_replaces_the_link() {
    let s = Sandbox::new();
    apply(
        &s,
        &LayerTar::entries([Entry::symlink("d", &s.outside_str())]),
    )
    .unwrap();
    let upper = LayerTar::entries([
        Entry::dir("d/").mode(0o700),
        Entry::file("d/sentinel", b"x"),
    ]);
    apply(&s, &upper).unwrap();
    s.assert_outside_untouched();
    assert!(std::fs::symlink_metadata(s.dest.join("d"))
        .unwrap()
        .is_dir());
}

#[test]
fn whiteouts_through_a_symlink_cannot_delete_outside() {
    let s = Sandbox::new();
    apply(
        &s,
        &LayerTar::entries([Entry::symlink("evil", &s.outside_str())]),
    )
    .unwrap();
    let upper = LayerTar::entries([
        Entry::file("evil/.wh.sentinel", b""),
        Entry::file("evil/.wh..wh..opq", b""),
        Entry::file("evil/sub/.wh..wh..opq", b""),
    ]);
    apply(&s, &upper).unwrap();
    s.assert_outside_untouched();
}

#[test]
fn removing_a_lower_tree_does_not_follow_its_links() {
    let s = Sandbox::new();
    let lower = LayerTar::entries([
        Entry::dir("d/"),
        Entry::symlink("d/out", &s.outside_str()),
        Entry::symlink("d/rel", "../../outside"),
    ]);
    apply(&s, &lower).unwrap();
    apply(&s, &LayerTar::entries([Entry::file(".wh.d", b"")])).unwrap();
    assert!(!s.dest.join("d").exists());
    s.assert_outside_untouched();
}

#[test]
fn symlink_loops_are_refused() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([
        Entry::symlink("a", "b"),
        Entry::symlink("b", "a"),
        Entry::file("a/x", b"x"),
    ]);
    let (entry, problem) = entry_err(apply(&s, &layer));
    assert_eq!(entry, "a/x");
    assert!(matches!(problem, EntryProblem::SymlinkLoop));
    s.assert_outside_untouched();
}

#[test]
fn hardlink_with_dotdot_or_absolute_target_is_refused() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::hardlink("stolen", "../outside/sentinel")]);
    let (entry, problem) = entry_err(apply(&s, &layer));
    assert_eq!(entry, "stolen");
    assert!(matches!(problem, EntryProblem::HardlinkOutside(_)));
    let abs = format!("{}/sentinel", s.outside_str());
    let layer = LayerTar::entries([Entry::hardlink("stolen", &abs)]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::HardlinkOutside(_)
    ));
    assert_eq!(
        std::fs::metadata(s.outside.join("sentinel"))
            .unwrap()
            .nlink(),
        1
    );
    s.assert_outside_untouched();
}

#[test]
fn hardlink_through_an_escaping_symlink_is_refused() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([
        Entry::symlink("evil", &s.outside_str()),
        Entry::hardlink("stolen", "evil/sentinel"),
    ]);
    let (entry, problem) = entry_err(apply(&s, &layer));
    assert_eq!(entry, "stolen");
    assert!(matches!(problem, EntryProblem::HardlinkTarget { .. }));
    let layer = LayerTar::entries([
        Entry::symlink("rel", "../outside"),
        Entry::hardlink("stolen", "rel/sentinel"),
    ]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::HardlinkTarget { .. }
    ));
    // A hard link to a symlink that points outside links the symlink, never its target.
    let layer = LayerTar::entries([
        Entry::symlink("ptr", &format!("{}/sentinel", s.outside_str())),
        Entry::hardlink("ptr2", "ptr"),
    ]);
    apply(&s, &layer).unwrap();
    assert!(std::fs::symlink_metadata(s.dest.join("ptr2"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::metadata(s.outside.join("sentinel"))
            .unwrap()
            .nlink(),
        1
    );
    s.assert_outside_untouched();
}

#[test]
fn hardlink_to_a_directory_or_missing_target_is_refused() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::dir("d/"), Entry::hardlink("l", "d")]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::HardlinkTarget {
            why: "is a directory",
            ..
        }
    ));
    let layer = LayerTar::entries([Entry::hardlink("l", "nothing")]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::HardlinkTarget {
            why: "does not exist",
            ..
        }
    ));
}

#[test]
fn device_nodes_are_refused_and_fifos_created() {
    let s = Sandbox::new();
    for kind in [EntryType::Char, EntryType::Block] {
        let layer = LayerTar::entries([Entry::of_kind(kind, "dev/sda")]);
        let (entry, problem) = entry_err(apply(&s, &layer));
        assert_eq!(entry, "dev/sda");
        assert!(matches!(problem, EntryProblem::Device));
    }
    assert!(!s.dest.join("dev/sda").exists());
    apply(&s, &LayerTar::entries([Entry::fifo("run/fifo")])).unwrap();
    s.assert_outside_untouched();
}

#[test]
fn gzip_bomb_is_stopped_by_the_ratio_limit() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::file("zeros", &vec![0u8; 40 << 20])]);
    let blob = common::gzip(&layer);
    assert!(blob.len() < 100_000);
    let limits = Limits {
        max_ratio: Some(100),
        ..Limits::default()
    };
    match apply_layer(&s.dest, blob.as_slice(), Compression::Gzip, &limits) {
        Err(ImageError::LimitExceeded { limit, .. }) => assert_eq!(limit, LimitKind::Ratio),
        other => panic!("{other:?}"),
    }
    // Stopped early: far less than the whole file reached the disk.
    let written = std::fs::metadata(s.dest.join("zeros"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written < 20 << 20, "{written}");
    s.assert_outside_untouched();
}

#[test]
fn zstd_bomb_is_stopped_by_the_size_limit() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::file("zeros", &vec![0u8; 64 << 20])]);
    let blob = common::zstd(&layer);
    let limits = Limits {
        max_layer_bytes: 8 << 20,
        max_ratio: None,
        ..Limits::default()
    };
    match apply_layer(&s.dest, blob.as_slice(), Compression::Zstd, &limits) {
        Err(ImageError::LimitExceeded { limit, max, .. }) => {
            assert_eq!(limit, LimitKind::LayerBytes);
            assert_eq!(max, 8 << 20);
        }
        other => panic!("{other:?}"),
    }
    let written = std::fs::metadata(s.dest.join("zeros"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= 8 << 20);
    // The default ratio limit stops it too.
    let s2 = Sandbox::new();
    match apply_layer(
        &s2.dest,
        blob.as_slice(),
        Compression::Zstd,
        &Limits::default(),
    ) {
        Err(ImageError::LimitExceeded { limit, .. }) => assert_eq!(limit, LimitKind::Ratio),
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_many_entries_are_refused() {
    let s = Sandbox::new();
    let layer = LayerTar::entries((0..200).map(|i| Entry::file(&format!("f{i}"), b"")));
    let limits = Limits {
        max_entries: 100,
        ..Limits::default()
    };
    match apply_layer(&s.dest, layer.as_slice(), Compression::None, &limits) {
        Err(ImageError::LimitExceeded { limit, .. }) => assert_eq!(limit, LimitKind::Entries),
        other => panic!("{other:?}"),
    }
}

#[test]
fn overlong_paths_are_refused() {
    let s = Sandbox::new();
    let limits = Limits {
        max_path_len: 200,
        ..Limits::default()
    };
    let name = "d/".repeat(150);
    let layer = LayerTar::entries([Entry::file(&format!("{name}f"), b"")]);
    let r = apply_layer(&s.dest, layer.as_slice(), Compression::None, &limits);
    assert!(matches!(
        entry_err(r).1,
        EntryProblem::MetadataTooLarge { .. } | EntryProblem::PathTooLong { .. }
    ),);
    let layer = LayerTar::entries([Entry::symlink("l", &"x/".repeat(150))]);
    let r = apply_layer(&s.dest, layer.as_slice(), Compression::None, &limits);
    assert!(matches!(
        entry_err(r).1,
        EntryProblem::MetadataTooLarge { .. } | EntryProblem::PathTooLong { .. }
    ));
    assert!(!s.dest.join("d").exists());
}

#[test]
fn huge_long_name_and_pax_headers_are_refused_before_buffering() {
    let s = Sandbox::new();
    // A 512 MiB "file name": refused from its header's size, never read into memory.
    let mut t = LayerTar::new();
    t.raw(
        EntryType::GNULongName,
        b"././@LongLink",
        b"",
        512 << 20,
        b"",
    );
    let r = apply(&s, &t.unterminated());
    assert!(matches!(
        entry_err(r).1,
        EntryProblem::MetadataTooLarge {
            what: "GNU long name",
            ..
        }
    ));
    let mut t = LayerTar::new();
    let pax = vec![b'a'; 2 << 20];
    t.raw(EntryType::XHeader, b"pax", b"", pax.len() as u64, &pax);
    let r = apply(&s, &t.finish());
    assert!(matches!(
        entry_err(r).1,
        EntryProblem::MetadataTooLarge {
            what: "PAX header",
            ..
        }
    ));
}

#[test]
fn pax_size_override_and_sparse_entries_are_refused() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::file("f", b"abc").pax("size", b"1000")]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::Pax(_)
    ));
    let mut t = LayerTar::new();
    t.raw(EntryType::GNUSparse, b"sparse", b"", 0, b"");
    assert!(matches!(
        entry_err(apply(&s, &t.finish())).1,
        EntryProblem::UnsupportedType(_)
    ));
}

#[test]
fn duplicate_entry_changing_directory_to_file_is_refused() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([
        Entry::dir("x/"),
        Entry::file("x/inner", b"content of this layer"),
        Entry::file("x", b"replaces the directory"),
    ]);
    let (entry, problem) = entry_err(apply(&s, &layer));
    assert_eq!(entry, "x");
    assert!(matches!(
        problem,
        EntryProblem::DuplicateTypeChange {
            earlier: "directory",
            ..
        }
    ));
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::file("y", b"file"), Entry::dir("y/")]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::DuplicateTypeChange {
            earlier: "non-directory",
            ..
        }
    ));
    // Implicitly created parents count as this layer's directories.
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::file("p/q", b""), Entry::symlink("p", "/")]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::DuplicateTypeChange { .. }
    ));
}

#[test]
fn malformed_whiteouts_are_refused() {
    let s = Sandbox::new();
    for bad in [".wh.", "a/.wh..", ".wh.dir/file"] {
        let layer = LayerTar::entries([Entry::file(bad, b"")]);
        let (entry, problem) = entry_err(apply(&s, &layer));
        assert_eq!(entry, bad);
        assert!(matches!(problem, EntryProblem::BadWhiteout), "{bad}");
    }
    // `.wh...` names ".." relative to nothing: refused as a path first.
    let layer = LayerTar::entries([Entry::file("../.wh.sentinel", b"")]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::DotDot
    ));
    s.assert_outside_untouched();
}

#[test]
fn layer_root_cannot_be_replaced_by_a_link() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::symlink("./", &s.outside_str())]);
    assert!(matches!(
        entry_err(apply(&s, &layer)).1,
        EntryProblem::RootNotDirectory
    ));
    assert!(s.dest.is_dir());
    s.assert_outside_untouched();
}

#[test]
fn truncated_layers_are_refused() {
    let s = Sandbox::new();
    let layer = LayerTar::entries([Entry::file("f", &vec![7u8; 10_000])]);
    let cut = &layer[..3000];
    assert!(matches!(apply(&s, cut), Err(ImageError::BadLayer { .. })));
    let gz = common::gzip(&layer);
    let r = apply_layer(
        &s.dest,
        &gz[..gz.len() / 2],
        Compression::Gzip,
        &Limits::default(),
    );
    assert!(matches!(r, Err(ImageError::BadLayer { .. })), "{r:?}");
    let zs = common::zstd(&layer);
    let r = apply_layer(
        &s.dest,
        &zs[..zs.len() - 4],
        Compression::Zstd,
        &Limits::default(),
    );
    assert!(matches!(r, Err(ImageError::BadLayer { .. })), "{r:?}");
    // Garbage that is not a tar at all.
    let r = apply(&s, &[0x55u8; 1024]);
    assert!(matches!(r, Err(ImageError::BadLayer { .. })), "{r:?}");
}
