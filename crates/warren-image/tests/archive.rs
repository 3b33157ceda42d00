//! Image archives made in the tests: docker-save (legacy and blobs layouts), OCI layout
//! directories, oci-archive tarballs (plain and compressed), platform selection, and tampered
//! or truncated archives refused before anything is applied.

mod common;

use std::path::Path;

use common::{
    docker_save, docker_save_blobs, oci_finish, oci_layout, oci_manifest, tree, Entry, Files,
    LayerTar, TestImage, TestLayer,
};
use warren_image::{
    open_archive, open_archive_with, ApplyOptions, ArchiveKind, Compression, ImageArchive,
    ImageError, Limits, OpenOptions, Platform,
};

fn layers() -> Vec<Vec<u8>> {
    vec![
        LayerTar::entries([
            Entry::dir("bin/"),
            Entry::file("bin/app", b"#!/bin/sh\necho hi\n").mode(0o755),
            Entry::dir("etc/"),
            Entry::file("etc/gone", b"lower"),
            Entry::dir("srv/"),
        ]),
        LayerTar::entries([
            Entry::file("etc/.wh.gone", b""),
            Entry::file("etc/config", b"key=value\n")
                .mode(0o600)
                .owner(1000, 1000),
        ]),
    ]
}

fn image(tag: &str) -> TestImage {
    let l = layers();
    TestImage::new(
        tag,
        vec![
            TestLayer::plain(l[0].clone()),
            TestLayer::gzip(l[1].clone()),
        ],
    )
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Unpacks the one image of `archive` and checks config and tree.
fn check_image(archive: &ImageArchive, tag: &str) {
    let m = archive
        .find(tag)
        .unwrap_or_else(|| panic!("no {tag} in {:?}", archive.manifests()));
    assert_eq!(m.reference(), Some(tag));
    let c = &m.config;
    assert_eq!(c.entrypoint, ["/bin/app"]);
    assert_eq!(c.cmd, ["--serve"]);
    assert_eq!(c.env, ["PATH=/usr/bin:/bin", "GREETING=hello world"]);
    assert_eq!(c.working_dir.as_deref(), Some("/srv"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.exposed_ports, ["8080/tcp"]);
    assert_eq!(c.labels["org.example.team"], "warren");
    assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", "amd64"));
    assert_eq!(m.layers.len(), 2);
    assert_eq!(m.layers[0].compression, Compression::None);
    assert_eq!(m.layers[1].compression, Compression::Gzip);
    assert_eq!(
        m.layers[0].diff_id.to_string(),
        common::sha256(&layers()[0])
    );
    assert_eq!(
        m.layers[1].diff_id.to_string(),
        common::sha256(&layers()[1])
    );

    let dest = tempfile::tempdir().unwrap();
    let stats = archive
        .unpack(m, dest.path(), &ApplyOptions::default())
        .unwrap();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[1].whiteouts, 1);
    let t = tree(dest.path());
    let names: Vec<&str> = t.keys().map(String::as_str).collect();
    assert_eq!(names, ["bin", "bin/app", "etc", "etc/config", "srv"]);
    assert_eq!(t["bin/app"].content, b"#!/bin/sh\necho hi\n");
    assert_eq!(t["bin/app"].mode, 0o755);
    assert_eq!(t["etc/config"].mode, 0o600);
    if common::is_root() {
        assert_eq!(t["etc/config"].uid, 1000);
    }
}

#[test]
fn docker_save_legacy_with_shared_layer_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut second = image("app:v2");
    second.run["Entrypoint"] = serde_json::json!(["/bin/app"]);
    let files = docker_save(&[image("app:v1"), second]);
    // The second image's layers are symlinks to the first's, as Docker writes them.
    assert_eq!(files.symlinks.len(), 2);
    let path = write(tmp.path(), "app.tar", &files.tar());
    let archive = open_archive(&path, &Limits::default()).unwrap();
    assert_eq!(archive.kind(), ArchiveKind::DockerSave);
    assert_eq!(archive.manifests().len(), 2);
    check_image(&archive, "app:v1");
    check_image(&archive, "app:v2");
    assert!(archive.manifests()[0].digest.is_none());
}

#[test]
fn docker_save_with_blobs_and_compressed_outer_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = docker_save_blobs(&image("registry.local:5000/team/app:1.2")).tar();
    for (name, bytes) in [
        ("plain.tar", tar.clone()),
        ("app.tar.gz", common::gzip(&tar)),
        ("app.tar.zst", common::zstd(&tar)),
    ] {
        let path = write(tmp.path(), name, &bytes);
        let archive = open_archive(&path, &Limits::default()).unwrap();
        assert_eq!(archive.kind(), ArchiveKind::DockerSave, "{name}");
        check_image(&archive, "registry.local:5000/team/app:1.2");
    }
}

#[test]
fn oci_layout_directory_and_oci_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let mut zstd_image = image("app:zstd");
    zstd_image.layers[1] = TestLayer::zstd(layers()[1].clone());
    let files = oci_layout(&[image("app:v1"), zstd_image]);
    let dir = tmp.path().join("layout");
    files.write_dir(&dir);
    let path = write(tmp.path(), "app.oci.tar", &files.tar());
    for p in [&dir, &path] {
        let archive = open_archive(p, &Limits::default()).unwrap();
        assert_eq!(archive.kind(), ArchiveKind::OciLayout);
        check_image(&archive, "app:v1");
        let z = archive.find("app:zstd").unwrap();
        assert_eq!(z.layers[1].compression, Compression::Zstd);
        assert!(z.digest.is_some());
        let dest = tempfile::tempdir().unwrap();
        archive
            .unpack(z, dest.path(), &ApplyOptions::default())
            .unwrap();
        assert!(dest.path().join("etc/config").is_file());
    }
}

#[test]
fn archive_from_a_stream() {
    let tar = oci_layout(&[image("app:v1")]).tar();
    let gz = common::gzip(&tar);
    let archive =
        ImageArchive::from_reader(gz.as_slice(), "<stdin>", &OpenOptions::default()).unwrap();
    check_image(&archive, "app:v1");
    assert_eq!(archive.path(), Path::new("<stdin>"));
}

/// An OCI layout whose index.json points at an image index with several platforms.
fn multi_platform() -> (Files, String) {
    let mut files = Files::default();
    let mut descs = Vec::new();
    let mut amd64_digest = String::new();
    for (arch, variant) in [("arm64", Some("v8")), ("amd64", None), ("unknown", None)] {
        let mut img = image("unused");
        img.arch = arch.to_string();
        let m = oci_manifest(&mut files, &img);
        let (digest, size) = files.blob(&m);
        if arch == "amd64" {
            amd64_digest = digest.clone();
        }
        let mut platform = serde_json::json!({"os": if arch == "unknown" {"unknown"} else {"linux"}, "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size, "platform": platform
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descs
    }))
    .unwrap();
    let (digest, size) = files.blob(&index);
    oci_finish(
        &mut files,
        vec![serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": "multi:1"}
        })],
    );
    (files, amd64_digest)
}

#[test]
fn image_index_resolves_to_the_host_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, amd64) = multi_platform();
    let path = write(tmp.path(), "multi.tar", &files.tar());
    let opts = OpenOptions {
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        ..OpenOptions::default()
    };
    let archive = open_archive_with(&path, &opts).unwrap();
    assert_eq!(archive.manifests().len(), 1);
    let m = archive.find("multi:1").unwrap();
    assert_eq!(m.digest.as_ref().unwrap().to_string(), amd64);
    assert_eq!(m.config.architecture, "amd64");

    let riscv = OpenOptions {
        platform: Platform {
            os: "linux".into(),
            architecture: "riscv64".into(),
            variant: None,
        },
        ..OpenOptions::default()
    };
    match open_archive_with(&path, &riscv) {
        Err(ImageError::NoMatchingPlatform { available, .. }) => {
            assert_eq!(
                available,
                ["linux/amd64", "linux/arm64/v8", "unknown/unknown"]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn host_platform_is_linux() {
    let p = Platform::host();
    assert_eq!(p.os, "linux");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(p.architecture, "amd64");
    }
}

// ---- tampered archives: refused by open_archive, so nothing can be applied ----

fn open_bytes(bytes: &[u8]) -> Result<ImageArchive, ImageError> {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "x.tar", bytes);
    open_archive(&path, &Limits::default())
}

/// Replaces the content of a member, keeping its name (and so its claimed digest).
fn tamper(files: &mut Files, name_part: &str, f: impl Fn(&mut Vec<u8>)) {
    let name = files
        .files
        .keys()
        .find(|k| k.contains(name_part))
        .unwrap()
        .clone();
    f(files.files.get_mut(&name).unwrap());
}

fn blob_of(data: &[u8]) -> String {
    format!("blobs/sha256/{}", common::hex_of(data))
}

#[test]
fn layer_blob_digest_mismatch_is_refused() {
    let img = image("app:v1");
    let mut files = oci_layout(std::slice::from_ref(&img));
    tamper(&mut files, &blob_of(&img.layers[1].blob), |d| {
        let last = d.len() - 1;
        d[last] ^= 0xff;
    });
    match open_bytes(&files.tar()) {
        Err(ImageError::DigestMismatch { member, .. }) => {
            assert_eq!(member, blob_of(&img.layers[1].blob))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn config_and_manifest_digest_mismatches_are_refused() {
    let img = image("app:v1");
    let config = img.config_json();
    let mut files = oci_layout(std::slice::from_ref(&img));
    tamper(&mut files, &blob_of(&config), |d| {
        let s = String::from_utf8(d.clone())
            .unwrap()
            .replace("/bin/app", "/bin/evl");
        *d = s.into_bytes();
    });
    assert!(matches!(
        open_bytes(&files.tar()),
        Err(ImageError::DigestMismatch { .. })
    ));

    let mut files = oci_layout(std::slice::from_ref(&img));
    let manifest_name = {
        let index: serde_json::Value = serde_json::from_slice(&files.files["index.json"]).unwrap();
        let d = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))
    };
    tamper(&mut files, &manifest_name, |d| {
        let s = String::from_utf8(d.clone())
            .unwrap()
            .replace("\"size\"", "\"size\" ");
        *d = s.into_bytes();
    });
    match open_bytes(&files.tar()) {
        Err(
            ImageError::DigestMismatch { member, .. } | ImageError::SizeMismatch { member, .. },
        ) => {
            assert_eq!(member, manifest_name)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn docker_save_tampering_is_refused() {
    // An uncompressed legacy layer must hash to its diff_id.
    let mut files = docker_save(&[image("app:v1")]);
    let first = files
        .files
        .keys()
        .find(|k| k.ends_with("layer.tar"))
        .unwrap()
        .clone();
    let mut data = files.files[&first].clone();
    data[600] ^= 1;
    files.files.insert(first.clone(), data);
    match open_bytes(&files.tar()) {
        Err(ImageError::DigestMismatch { member, .. }) => assert!(member.ends_with("layer.tar")),
        other => panic!("{other:?}"),
    }
    // The config must hash to its name.
    let mut files = docker_save(&[image("app:v1")]);
    tamper(&mut files, ".json", |d| d.push(b' '));
    assert!(matches!(
        open_bytes(&files.tar()),
        Err(ImageError::DigestMismatch { .. })
    ));
    // Members named outside the archive.
    let mut files = docker_save(&[image("app:v1")]);
    let mut m: serde_json::Value = serde_json::from_slice(&files.files["manifest.json"]).unwrap();
    m[0]["Layers"][0] = "../../../../etc/passwd".into();
    files.put("manifest.json", serde_json::to_vec(&m).unwrap());
    assert!(matches!(
        open_bytes(&files.tar()),
        Err(ImageError::Format { .. })
    ));
}

#[test]
fn size_mismatch_missing_blob_and_invalid_digest_are_refused() {
    let img = image("app:v1");
    let files = oci_layout(std::slice::from_ref(&img));
    let edit_index = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut files = files.clone();
        let mut index: serde_json::Value =
            serde_json::from_slice(&files.files["index.json"]).unwrap();
        f(&mut index);
        files.put("index.json", serde_json::to_vec(&index).unwrap());
        open_bytes(&files.tar())
    };
    let r = edit_index(&|i| {
        let size = i["manifests"][0]["size"].as_u64().unwrap();
        i["manifests"][0]["size"] = (size + 1).into();
    });
    assert!(matches!(r, Err(ImageError::SizeMismatch { .. })), "{r:?}");
    let r = edit_index(&|i| {
        i["manifests"][0]["digest"] = "sha256:../../../../../../etc/passwd".into();
    });
    assert!(matches!(r, Err(ImageError::InvalidDigest { .. })), "{r:?}");
    let r = edit_index(&|i| {
        i["manifests"][0]["digest"] = common::sha256(b"absent").into();
    });
    assert!(matches!(r, Err(ImageError::MissingBlob { .. })), "{r:?}");

    let mut missing = files.clone();
    missing.files.remove(&blob_of(&img.layers[0].blob));
    match open_bytes(&missing.tar()) {
        Err(ImageError::MissingBlob { member, .. }) => {
            assert_eq!(member, blob_of(&img.layers[0].blob))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_archives_are_refused() {
    let files = oci_layout(&[image("app:v1")]);
    let tar = files.tar();
    // Cut at many points: every prefix is refused, whatever it happens to cut.
    for cut in [100, 1024, tar.len() / 3, tar.len() / 2, tar.len() - 1536] {
        let r = open_bytes(&tar[..cut]);
        assert!(r.is_err(), "a {cut}-byte prefix was accepted");
    }
    let gz = common::gzip(&tar);
    assert!(matches!(
        open_bytes(&gz[..gz.len() / 2]),
        Err(ImageError::BadArchive { .. })
    ));
    assert!(matches!(
        open_bytes(b"not an archive at all, not even close"),
        Err(ImageError::BadArchive { .. } | ImageError::NotAnImage { .. })
    ));
}

#[test]
fn wrong_diff_id_is_caught_while_applying() {
    // A compressed layer's blob digest is right but the config lists another diff_id.
    let mut img = image("app:v1");
    let config = {
        let mut c: serde_json::Value = serde_json::from_slice(&img.config_json()).unwrap();
        c["rootfs"]["diff_ids"][1] = common::sha256(b"something else").into();
        c
    };
    img.run = config["config"].clone();
    let mut files = Files::default();
    let (config_digest, config_size) = files.blob(&serde_json::to_vec(&config).unwrap());
    let layer_descs: Vec<_> = img
        .layers
        .iter()
        .map(|l| {
            let (d, s) = files.blob(&l.blob);
            serde_json::json!({"mediaType": l.media_type, "digest": d, "size": s})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layer_descs
    }))
    .unwrap();
    let (md, ms) = files.blob(&manifest);
    oci_finish(
        &mut files,
        vec![
            serde_json::json!({"digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "x"}}),
        ],
    );
    let archive = open_bytes(&files.tar()).unwrap();
    let m = &archive.manifests()[0];
    let dest = tempfile::tempdir().unwrap();
    archive
        .apply_layer(&m.layers[0], dest.path(), &ApplyOptions::default())
        .unwrap();
    match archive.apply_layer(&m.layers[1], dest.path(), &ApplyOptions::default()) {
        Err(ImageError::DiffIdMismatch { layer, .. }) => {
            assert_eq!(layer, m.layers[1].digest.to_string())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn layer_errors_name_the_layer_digest() {
    let bad = LayerTar::entries([Entry::file("../escape", b"x")]);
    let img = TestImage::new("bad:1", vec![TestLayer::gzip(bad)]);
    let archive = open_bytes(&oci_layout(std::slice::from_ref(&img)).tar()).unwrap();
    let m = &archive.manifests()[0];
    let dest = tempfile::tempdir().unwrap();
    let err = archive
        .unpack(m, dest.path(), &ApplyOptions::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&m.layers[0].digest.to_string()), "{msg}");
    assert!(msg.contains("../escape"), "{msg}");
}

#[test]
fn not_an_image() {
    let mut files = Files::default();
    files.put("hello.txt", b"hi".to_vec());
    assert!(matches!(
        open_bytes(&files.tar()),
        Err(ImageError::NotAnImage { .. })
    ));
}

#[test]
fn one_image_under_two_names_is_one_manifest() {
    let img = image("app:v1");
    let mut files = oci_layout(std::slice::from_ref(&img));
    let mut index: serde_json::Value = serde_json::from_slice(&files.files["index.json"]).unwrap();
    let mut second = index["manifests"][0].clone();
    second["annotations"]["org.opencontainers.image.ref.name"] =
        "docker.io/library/app:latest".into();
    index["manifests"].as_array_mut().unwrap().push(second);
    files.put("index.json", serde_json::to_vec(&index).unwrap());
    let archive = open_bytes(&files.tar()).unwrap();
    assert_eq!(archive.manifests().len(), 1);
    assert_eq!(archive.manifests()[0].tags, ["app:v1", "app:latest"]);
    assert!(archive.find("docker.io/library/app:latest").is_some());
}

#[test]
fn archives_can_be_shared_between_threads() {
    fn check<T: Send + Sync>() {}
    check::<ImageArchive>();
    check::<warren_image::Manifest>();
}
