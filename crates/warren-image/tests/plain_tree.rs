//! Plain trees (dataset streams, [`unpack_tree`]): ordinary archives unpack exactly, `.wh.`
//! names are content, and hostile archives are refused with nothing outside the target changed.
//! Every refusal here would fail without the check it names.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Entry, LayerTar, Sandbox};
use tar::EntryType;
use warren_image::{unpack_tree, EntryProblem, ImageError, LayerStats, TreeOptions};

fn unpack(s: &Sandbox, tar: &[u8]) -> Result<LayerStats, ImageError> {
    unpack_tree(&s.dest, tar, &TreeOptions::default())
}

/// The entry error's name and problem; the message names the stream `archive`.
fn entry_err(r: Result<LayerStats, ImageError>) -> (String, EntryProblem) {
    match r {
        Err(e @ ImageError::Entry { .. }) => {
            assert!(e.to_string().starts_with("archive: entry `"), "{e}");
            match e {
                ImageError::Entry { entry, problem, .. } => (entry, problem),
                _ => unreachable!(),
            }
        }
        other => panic!("expected an entry error, got {other:?}"),
    }
}

#[test]
fn an_ordinary_tree_unpacks_with_whiteout_names_as_content() {
    let s = Sandbox::new();
    let tar = LayerTar::entries([
        Entry::dir("./"),
        Entry::dir("./etc/"),
        Entry::file("./etc/passwd", b"root:x:0:0").mode(0o640),
        Entry::file("./etc/.wh.passwd", b"not a whiteout"),
        Entry::file("./.wh..wh..opq", b"nor an opaque marker"),
        Entry::symlink("./bin", "/usr/bin"),
        Entry::symlink("./etc/up", "../etc/passwd"),
        Entry::hardlink("./etc/hard", "./etc/passwd"),
        Entry::fifo("./run/fifo"),
    ]);
    let stats = unpack(&s, &tar).unwrap();
    assert_eq!(stats.whiteouts, 0);
    assert_eq!(stats.opaque_dirs, 0);
    assert_eq!(stats.files, 3);
    let read = |p: &str| std::fs::read(s.dest.join(p)).unwrap();
    assert_eq!(read("etc/passwd"), b"root:x:0:0");
    assert_eq!(read("etc/.wh.passwd"), b"not a whiteout");
    assert_eq!(read(".wh..wh..opq"), b"nor an opaque marker");
    assert_eq!(
        std::fs::read_link(s.dest.join("bin")).unwrap(),
        std::path::Path::new("/usr/bin")
    );
    let meta = std::fs::metadata(s.dest.join("etc/passwd")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.nlink(), 2);
    s.assert_outside_untouched();
}

#[test]
fn traversal_and_absolute_names_are_refused() {
    let s = Sandbox::new();
    let tar = LayerTar::entries([Entry::file("a/../../outside/pwned", b"x")]);
    let (entry, problem) = entry_err(unpack(&s, &tar));
    assert_eq!(entry, "a/../../outside/pwned");
    assert!(matches!(problem, EntryProblem::DotDot), "{problem}");
    let abs = format!("{}/pwned", s.outside_str());
    let tar = LayerTar::entries([Entry::file(&abs, b"x")]);
    let (entry, problem) = entry_err(unpack(&s, &tar));
    assert_eq!(entry, abs);
    assert!(matches!(problem, EntryProblem::Absolute), "{problem}");
    s.assert_outside_untouched();
}

#[test]
fn writes_through_symlinks_are_refused_even_inside_the_tree() {
    // To a directory outside, absolute and relative, and to one inside: a layer would resolve
    // each link inside the target; a plain tree never writes through one.
    for target in [None, Some("../outside"), Some("real")] {
        let s = Sandbox::new();
        let target = target.map_or_else(|| s.outside_str(), str::to_string);
        let tar = LayerTar::entries([
            Entry::dir("real/"),
            Entry::symlink("link", &target),
            Entry::file("link/sub/pwned", b"x"),
        ]);
        let r = unpack(&s, &tar);
        if target == "../outside" {
            // Refused already when the link is made: it leads above the root.
            let (entry, problem) = entry_err(r);
            assert_eq!(entry, "link");
            assert!(
                matches!(problem, EntryProblem::SymlinkOutside(ref t) if t == "../outside"),
                "{problem}"
            );
        } else {
            let (entry, problem) = entry_err(r);
            assert_eq!(entry, "link/sub/pwned");
            assert!(
                matches!(problem, EntryProblem::BelowSymlink(ref l) if l == "link"),
                "{problem}"
            );
            assert!(
                problem.to_string().contains("below the symlink"),
                "{problem}"
            );
        }
        assert!(!s.dest.join("real/sub").exists());
        assert!(!s.outside.join("sub/pwned").exists());
        s.assert_outside_untouched();
    }
}

#[test]
fn hard_links_out_of_the_tree_are_refused() {
    let s = Sandbox::new();
    for target in [
        "../outside/sentinel".to_string(),
        format!("{}/sentinel", s.outside_str()),
    ] {
        let tar = LayerTar::entries([Entry::hardlink("stolen", &target)]);
        let (entry, problem) = entry_err(unpack(&s, &tar));
        assert_eq!(entry, "stolen");
        assert!(
            matches!(problem, EntryProblem::HardlinkOutside(_)),
            "{problem}"
        );
    }
    // Through a symlink (absolute: kept as a link, but never followed for the target).
    let tar = LayerTar::entries([
        Entry::symlink("evil", &s.outside_str()),
        Entry::hardlink("stolen", "evil/sentinel"),
    ]);
    let (entry, problem) = entry_err(unpack(&s, &tar));
    assert_eq!(entry, "stolen");
    assert!(
        matches!(problem, EntryProblem::BelowSymlink(ref l) if l == "evil"),
        "{problem}"
    );
    assert_eq!(
        std::fs::metadata(s.outside.join("sentinel"))
            .unwrap()
            .nlink(),
        1
    );
    assert!(!s.dest.join("stolen").exists());
    s.assert_outside_untouched();
}

#[test]
fn device_nodes_are_refused() {
    let s = Sandbox::new();
    for kind in [EntryType::Char, EntryType::Block] {
        let tar = LayerTar::entries([Entry::of_kind(kind, "dev/sda")]);
        let (entry, problem) = entry_err(unpack(&s, &tar));
        assert_eq!(entry, "dev/sda");
        assert!(matches!(problem, EntryProblem::Device), "{problem}");
    }
    assert!(!s.dest.join("dev/sda").exists());
}

#[test]
fn truncated_streams_are_refused() {
    let s = Sandbox::new();
    let mut t = LayerTar::new();
    t.add(Entry::file("f", &[7u8; 2000]));
    t.add(Entry::file("g", b"x"));
    let whole = t.unterminated();
    let terminated = {
        let mut v = whole.clone();
        v.extend_from_slice(&[0u8; 1024]);
        v
    };
    // Without the end marker, inside a header, inside file data, and empty.
    for cut in [whole.len(), whole.len() - 600, 100, 1000, 0] {
        let d = tempfile::tempdir().unwrap();
        let err = unpack_tree(d.path(), &terminated[..cut], &TreeOptions::default()).unwrap_err();
        assert!(
            matches!(err, ImageError::Truncated { .. }),
            "cut {cut}: {err:?}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }
    // One zero block ends the archive, as for tar.
    unpack(&s, &terminated[..whole.len() + 512]).unwrap();
    assert_eq!(std::fs::read(s.dest.join("g")).unwrap(), b"x");
}

#[test]
fn limits_are_the_callers() {
    let s = Sandbox::new();
    let tar = LayerTar::entries([Entry::file("big", &[1u8; 64 * 1024])]);
    let err = unpack_tree(
        &s.dest,
        &tar[..],
        &TreeOptions {
            max_bytes: Some(16 * 1024),
            ..TreeOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, ImageError::LimitExceeded { ref context, .. } if context == "archive"),
        "{err:?}"
    );
    let err = unpack_tree(
        &s.dest,
        &LayerTar::entries([Entry::file("a", b""), Entry::file("b", b"")])[..],
        &TreeOptions {
            max_entries: Some(1),
            ..TreeOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::LimitExceeded { .. }), "{err:?}");
    // Without limits set, the same stream goes through.
    let s = Sandbox::new();
    unpack(&s, &tar).unwrap();
    assert_eq!(
        std::fs::metadata(s.dest.join("big")).unwrap().len(),
        64 * 1024
    );
}
