//! Unit tests of the layer applier's helpers: path splitting, compression detection, the
//! xattr allow-list.

use super::*;

#[test]
fn split_path_rules() {
    let ok = |s: &str| {
        split_path(s.as_bytes(), 100)
            .unwrap()
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ok("./a//b/./c/"), ["a", "b", "c"]);
    assert!(ok("./").is_empty());
    assert!(matches!(
        split_path(b"/etc", 100),
        Err(EntryProblem::Absolute)
    ));
    assert!(matches!(
        split_path(b"a/../../b", 100),
        Err(EntryProblem::DotDot)
    ));
    assert!(matches!(split_path(b"..", 100), Err(EntryProblem::DotDot)));
    assert!(matches!(
        split_path(b"", 100),
        Err(EntryProblem::InvalidPath)
    ));
    assert!(matches!(
        split_path(&[b'a'; 101], 100),
        Err(EntryProblem::PathTooLong { len: 101, .. })
    ));
}

#[test]
fn detects_compression() {
    assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
    assert_eq!(
        Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
        Compression::Zstd
    );
    assert_eq!(Compression::detect(b"etc/"), Compression::None);
}

#[test]
fn xattr_allow_list() {
    assert!(xattr_allowed(b"user.foo"));
    assert!(xattr_allowed(b"security.capability"));
    assert!(!xattr_allowed(b"user.overlay.opaque"));
    assert!(!xattr_allowed(b"trusted.overlay.opaque"));
    assert!(!xattr_allowed(b"security.selinux"));
}
