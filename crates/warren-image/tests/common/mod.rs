//! Builders for layers and image archives made inside the tests, and a tree snapshot for
//! comparing results byte for byte and metadata.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_600_000_000;

/// One tar entry, with full control over every field (hostile names included).
#[derive(Clone)]
pub struct Entry {
    pub kind: EntryType,
    pub path: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub pax: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn new(kind: EntryType, path: &str, mode: u32) -> Entry {
        Entry {
            kind,
            path: path.as_bytes().to_vec(),
            link: None,
            data: Vec::new(),
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            pax: Vec::new(),
        }
    }
    pub fn dir(path: &str) -> Entry {
        Entry::new(EntryType::Directory, path, 0o755)
    }
    pub fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            data: data.to_vec(),
            ..Entry::new(EntryType::Regular, path, 0o644)
        }
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            link: Some(target.as_bytes().to_vec()),
            ..Entry::new(EntryType::Symlink, path, 0o777)
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry {
            link: Some(target.as_bytes().to_vec()),
            ..Entry::new(EntryType::Link, path, 0o644)
        }
    }
    pub fn fifo(path: &str) -> Entry {
        Entry::new(EntryType::Fifo, path, 0o600)
    }
    pub fn of_kind(kind: EntryType, path: &str) -> Entry {
        Entry::new(kind, path, 0o644)
    }
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }
    pub fn pax(mut self, key: &str, value: &[u8]) -> Entry {
        self.pax.push((key.to_string(), value.to_vec()));
        self
    }
}

/// A PAX record with its exact length prefix.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + 1 + value.len() + 1;
    let mut len = body_len + 1;
    loop {
        let total = len.to_string().len() + 1 + body_len;
        if total == len {
            break;
        }
        len = total;
    }
    let mut v = format!("{len} {key}=").into_bytes();
    v.extend_from_slice(value);
    v.push(b'\n');
    v
}

fn raw_header(kind: EntryType, name: &[u8], link: &[u8], size: u64) -> Header {
    let mut h = Header::new_gnu();
    {
        let old = h.as_old_mut();
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        old.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h
}

/// Builds a layer tar by hand, so names are written exactly as given.
pub struct LayerTar {
    out: Vec<u8>,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar { out: Vec::new() }
    }

    fn block(&mut self, header: &Header, data: &[u8]) {
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    /// A raw header with any type and size and exactly `data` after it.
    pub fn raw(&mut self, kind: EntryType, name: &[u8], link: &[u8], size: u64, data: &[u8]) {
        let mut h = raw_header(kind, name, link, size);
        h.set_cksum();
        self.block(&h, data);
    }

    pub fn add(&mut self, e: Entry) -> &mut Self {
        if !e.pax.is_empty() {
            let data: Vec<u8> = e.pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            self.raw(
                EntryType::XHeader,
                b"PaxHeaders/x",
                b"",
                data.len() as u64,
                &data,
            );
        }
        if e.path.len() > 100 {
            let mut name = e.path.clone();
            name.push(0);
            self.raw(
                EntryType::GNULongName,
                b"././@LongLink",
                b"",
                name.len() as u64,
                &name,
            );
        }
        let link = e.link.clone().unwrap_or_default();
        if link.len() > 100 {
            let mut l = link.clone();
            l.push(0);
            self.raw(
                EntryType::GNULongLink,
                b"././@LongLink",
                b"",
                l.len() as u64,
                &l,
            );
        }
        let mut h = raw_header(e.kind, &e.path, &link, e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_cksum();
        self.block(&h, &e.data);
        self
    }

    pub fn entries(entries: impl IntoIterator<Item = Entry>) -> Vec<u8> {
        let mut t = LayerTar::new();
        for e in entries {
            t.add(e);
        }
        t.finish()
    }

    /// The archive with its two zero end blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }

    /// The archive without end blocks (for truncation tests).
    pub fn unterminated(self) -> Vec<u8> {
        self.out
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn hex_of(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A layer as it goes into an archive.
#[derive(Clone)]
pub struct TestLayer {
    pub tar: Vec<u8>,
    pub blob: Vec<u8>,
    pub media_type: &'static str,
}

impl TestLayer {
    pub fn plain(tar: Vec<u8>) -> TestLayer {
        TestLayer {
            blob: tar.clone(),
            tar,
            media_type: "application/vnd.oci.image.layer.v1.tar",
        }
    }
    pub fn gzip(tar: Vec<u8>) -> TestLayer {
        TestLayer {
            blob: gzip(&tar),
            tar,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }
    pub fn zstd(tar: Vec<u8>) -> TestLayer {
        TestLayer {
            blob: zstd(&tar),
            tar,
            media_type: "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// An image to put in an archive.
#[derive(Clone)]
pub struct TestImage {
    pub tag: Option<String>,
    pub arch: String,
    pub layers: Vec<TestLayer>,
    /// The `config` object of the image config.
    pub run: serde_json::Value,
}

impl TestImage {
    pub fn new(tag: &str, layers: Vec<TestLayer>) -> TestImage {
        TestImage {
            tag: Some(tag.to_string()),
            arch: "amd64".into(),
            layers,
            run: serde_json::json!({
                "Entrypoint": ["/bin/app"],
                "Cmd": ["--serve"],
                "Env": ["PATH=/usr/bin:/bin", "GREETING=hello world"],
                "WorkingDir": "/srv",
                "User": "1000:1000",
                "ExposedPorts": {"8080/tcp": {}},
                "Labels": {"org.example.team": "warren"}
            }),
        }
    }

    pub fn config_json(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| sha256(&l.tar)).collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": self.arch,
            "os": "linux",
            "config": self.run,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": []
        }))
        .unwrap()
    }
}

/// Archive members by name (regular files) plus symlinks.
#[derive(Default, Clone)]
pub struct Files {
    pub files: BTreeMap<String, Vec<u8>>,
    pub symlinks: BTreeMap<String, String>,
}

impl Files {
    pub fn put(&mut self, name: &str, data: Vec<u8>) {
        self.files.insert(name.to_string(), data);
    }

    pub fn blob(&mut self, data: &[u8]) -> (String, usize) {
        let digest = sha256(data);
        self.put(&format!("blobs/sha256/{}", hex_of(data)), data.to_vec());
        (digest, data.len())
    }

    /// An outer tar with directories, files and symlinks.
    pub fn tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::BTreeSet::new();
        for name in self.files.keys().chain(self.symlinks.keys()) {
            let mut acc = String::new();
            let parts: Vec<&str> = name.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                acc.push_str(p);
                acc.push('/');
                dirs.insert(acc.clone());
            }
        }
        for d in &dirs {
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, d, std::io::empty()).unwrap();
        }
        for (name, data) in &self.files {
            let mut h = Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        for (name, target) in &self.symlinks {
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// The same members as a directory.
    pub fn write_dir(&self, dir: &Path) {
        for (name, data) in &self.files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        for (name, target) in &self.symlinks {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
        }
    }
}

/// The manifest JSON of an image in OCI form, its config blob added to `files`.
pub fn oci_manifest(files: &mut Files, image: &TestImage) -> Vec<u8> {
    let (config_digest, config_size) = files.blob(&image.config_json());
    let layers: Vec<serde_json::Value> = image
        .layers
        .iter()
        .map(|l| {
            let (digest, size) = files.blob(&l.blob);
            serde_json::json!({"mediaType": l.media_type, "digest": digest, "size": size})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size
        },
        "layers": layers
    }))
    .unwrap()
}

/// An OCI layout holding `images`, each listed in index.json with its ref name.
pub fn oci_layout(images: &[TestImage]) -> Files {
    let mut files = Files::default();
    let mut manifests = Vec::new();
    for image in images {
        let m = oci_manifest(&mut files, image);
        let (digest, size) = files.blob(&m);
        let mut desc = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
        });
        if let Some(tag) = &image.tag {
            desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        }
        manifests.push(desc);
    }
    oci_finish(&mut files, manifests);
    files
}

pub fn oci_finish(files: &mut Files, manifests: Vec<serde_json::Value>) {
    files.put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    files.put(
        "index.json",
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests
        }))
        .unwrap(),
    );
}

/// A legacy docker-save archive: `<id>/layer.tar` (a layer already written for an earlier image
/// becomes a symlink to it, as Docker does), `<hex>.json`, `manifest.json`.
pub fn docker_save(images: &[TestImage]) -> Files {
    let mut files = Files::default();
    let mut manifest = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (i, image) in images.iter().enumerate() {
        let config = image.config_json();
        let config_name = format!("{}.json", hex_of(&config));
        files.put(&config_name, config);
        let mut layer_names = Vec::new();
        for (j, l) in image.layers.iter().enumerate() {
            let id = hex_of(format!("{i}-{j}").as_bytes());
            let name = format!("{id}/layer.tar");
            match seen.get(&hex_of(&l.blob)) {
                Some(first) => {
                    files.symlinks.insert(name.clone(), format!("../{first}"));
                }
                None => {
                    files.put(&name, l.blob.clone());
                    files.put(&format!("{id}/VERSION"), b"1.0".to_vec());
                    seen.insert(hex_of(&l.blob), name.clone());
                }
            }
            layer_names.push(name);
        }
        manifest.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": image.tag.iter().collect::<Vec<_>>(),
            "Layers": layer_names,
        }));
    }
    files.put("manifest.json", serde_json::to_vec(&manifest).unwrap());
    files
}

/// Docker 25+ style: blobs/sha256 members referenced from manifest.json.
pub fn docker_save_blobs(image: &TestImage) -> Files {
    let mut files = Files::default();
    let config = image.config_json();
    let (config_digest, _) = files.blob(&config);
    let layers: Vec<String> = image
        .layers
        .iter()
        .map(|l| {
            files.blob(&l.blob);
            format!("blobs/sha256/{}", hex_of(&l.blob))
        })
        .collect();
    let manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", config_digest.trim_start_matches("sha256:")),
        "RepoTags": image.tag.iter().collect::<Vec<_>>(),
        "Layers": layers,
    }]);
    files.put("manifest.json", serde_json::to_vec(&manifest).unwrap());
    files
}

/// A snapshot of one file-system object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// File content or symlink target.
    pub content: Vec<u8>,
    /// Modification time (seconds); for directories too.
    pub mtime: i64,
    pub nlink: u64,
}

pub type TreeMap = BTreeMap<String, Node>;

/// Every object below `root` (not `root` itself), without following links.
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub fn node(path: &Path) -> Node {
    let md = std::fs::symlink_metadata(path).unwrap();
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let (kind, content) = if ft.is_dir() {
        ('d', Vec::new())
    } else if ft.is_symlink() {
        (
            'l',
            std::fs::read_link(path)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes(),
        )
    } else if ft.is_fifo() {
        ('p', Vec::new())
    } else {
        ('f', std::fs::read(path).unwrap())
    };
    Node {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        content,
        mtime: md.mtime(),
        nlink: if ft.is_dir() { 0 } else { md.nlink() },
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let n = node(&p);
        let is_dir = n.kind == 'd';
        out.insert(rel, n);
        if is_dir {
            walk(root, &p, out);
        }
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temporary directory holding an empty `dest` and an `outside` directory with a sentinel
/// file; [`Sandbox::assert_outside_untouched`] checks that everything but `dest` is as before.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub dest: PathBuf,
    pub outside: PathBuf,
    before: BTreeMap<String, Node>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&dest).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("sentinel"), b"keep me").unwrap();
        std::fs::create_dir(outside.join("sub")).unwrap();
        std::fs::write(outside.join("sub/file"), b"keep me too").unwrap();
        let mut s = Sandbox {
            tmp,
            dest,
            outside,
            before: BTreeMap::new(),
        };
        s.before = s.outside_state();
        s
    }

    fn outside_state(&self) -> BTreeMap<String, Node> {
        let mut t = tree(self.tmp.path());
        t.retain(|k, _| k != "dest" && !k.starts_with("dest/"));
        // The directory's own mtime changes when dest is written; its content must not.
        t.insert("<outside>".into(), node(&self.outside));
        t
    }

    pub fn assert_outside_untouched(&self) {
        assert_eq!(
            self.outside_state(),
            self.before,
            "something outside dest changed"
        );
    }

    /// Absolute path of `outside` as text.
    pub fn outside_str(&self) -> String {
        self.outside.to_str().unwrap().to_string()
    }
}
