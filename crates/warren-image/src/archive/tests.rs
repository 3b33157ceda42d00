//! Tests of [`super`].
use super::*;

#[test]
fn member_names() {
    assert_eq!(normalize_member(b"./a//b/./c").as_deref(), Some("a/b/c"));
    assert_eq!(normalize_member(b"a/../b").as_deref(), Some("b"));
    assert_eq!(normalize_member(b"../x"), None);
}

#[test]
fn names_carrying_digests() {
    let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let d = Digest::sha256(b"");
    assert_eq!(digest_from_name(&format!("{hex}.json")), Some(d.clone()));
    assert_eq!(
        digest_from_name(&format!("blobs/sha256/{hex}")),
        Some(d.clone())
    );
    assert_eq!(digest_from_name(&format!("{hex}.tar")), Some(d));
    assert_eq!(digest_from_name("abc/layer.tar"), None);
}

#[test]
fn member_links_resolve_and_stay_inside() {
    let mut raw = HashMap::new();
    raw.insert(
        "a/layer.tar".to_string(),
        RawMember::File(Member {
            offset: 512,
            size: 10,
        }),
    );
    raw.insert(
        "b/layer.tar".to_string(),
        RawMember::Symlink(b"../a/layer.tar".to_vec()),
    );
    raw.insert(
        "c/layer.tar".to_string(),
        RawMember::Hardlink(b"b/layer.tar".to_vec()),
    );
    raw.insert(
        "d/layer.tar".to_string(),
        RawMember::Symlink(b"../../../etc/shadow".to_vec()),
    );
    raw.insert("loop".to_string(), RawMember::Symlink(b"loop".to_vec()));
    assert_eq!(resolve_member(&raw, "b/layer.tar").unwrap().offset, 512);
    assert_eq!(resolve_member(&raw, "c/layer.tar").unwrap().offset, 512);
    assert!(resolve_member(&raw, "d/layer.tar").is_none());
    assert!(resolve_member(&raw, "loop").is_none());
}

#[test]
fn familiar_names() {
    assert_eq!(familiar_name("docker.io/library/app:v1"), "app:v1");
    assert_eq!(familiar_name("docker.io/team/app:v1"), "team/app:v1");
    assert_eq!(familiar_name("index.docker.io/library/busybox"), "busybox");
    assert_eq!(
        familiar_name("localhost:5000/app:1.2"),
        "localhost:5000/app:1.2"
    );
    assert_eq!(familiar_name("v1"), "v1");
}

#[test]
fn platform_matching() {
    let p = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    assert!(p.matches("linux", "amd64", None));
    assert!(p.matches("", "", None));
    assert!(!p.matches("linux", "arm64", Some("v8")));
    assert!(!p.matches("unknown", "unknown", None));
    assert_eq!(p.to_string(), "linux/amd64");
}
