//! Pulling one image into an OCI image layout directory.
//!
//! The manifest named by the reference is fetched (an index is resolved to the wanted
//! platform), then the config and every layer. Every document and blob is checked against
//! its digest and size while it streams in: blobs go to a temporary file beside their final
//! place and are renamed into `blobs/<alg>/<hex>` only once they verified. Blobs already in
//! the layout are hashed again and kept when they still match. `index.json` is written last,
//! so a failed pull never leaves a layout that names missing blobs; entries of other images
//! already in it are kept.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::AsyncWriteExt;
use warren_image::{Algorithm, Digest, REF_NAME_ANNOTATION};

use crate::error::RegistryError;
use crate::http::next_chunk;
use crate::media::{
    classify, manifest_accept, parse_image_manifest, parse_index, select_platform, ConfigPlatform,
    Descriptor, DescriptorPlatform, ImageManifest, ManifestKind, OCI_INDEX,
};
use crate::reference::Reference;
use crate::session::{content_length, Session};
use crate::{BlobKind, Progress, PullOptions, Pulled};

/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: u32 = 4;
/// Manifests fetched at most while resolving an index (a hostile index could list thousands).
const MAX_CANDIDATES: usize = 16;

/// An incremental hash of either algorithm.
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
            _ => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => ("sha256", hex::encode(h.finalize())),
            Hasher::Sha512(h) => ("sha512", hex::encode(h.finalize())),
        };
        format!("{alg}:{hex}")
            .parse()
            .expect("a hash of the right length is a digest")
    }
}

fn digest_of(algorithm: Algorithm, data: &[u8]) -> Digest {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    h.finish()
}

/// A manifest as fetched and verified.
struct Fetched {
    body: Vec<u8>,
    digest: Digest,
    media_type: String,
    kind: ManifestKind,
}

/// The image manifest chosen for the platform, with its config.
struct Resolved {
    manifest: Fetched,
    parsed: ImageManifest,
    config: Vec<u8>,
    platform: ConfigPlatform,
}

/// The destination layout.
struct Layout<'a> {
    root: &'a Path,
    reference: String,
}

impl Layout<'_> {
    fn io(&self, path: &Path, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            reference: self.reference.clone(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn prepare(&self) -> Result<(), RegistryError> {
        if let Ok(meta) = std::fs::metadata(self.root) {
            if !meta.is_dir() {
                return Err(RegistryError::Layout {
                    reference: self.reference.clone(),
                    path: self.root.to_path_buf(),
                    message: "exists and is not a directory".into(),
                });
            }
        }
        let blobs = self.root.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| self.io(&blobs, e))?;
        let layout = self.root.join("oci-layout");
        match std::fs::read(&layout) {
            Ok(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| RegistryError::Layout {
                        reference: self.reference.clone(),
                        path: layout.clone(),
                        message: format!("not JSON: {e}"),
                    })?;
                let version = v.get("imageLayoutVersion").and_then(|v| v.as_str());
                if !version.is_some_and(|v| v.starts_with("1.")) {
                    return Err(RegistryError::Layout {
                        reference: self.reference.clone(),
                        path: layout,
                        message: "imageLayoutVersion is not 1.x".into(),
                    });
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
            }
            Err(e) => Err(self.io(&layout, e)),
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.blob_path())
    }

    /// Whether the blob is already in the layout with the right size and content.
    async fn has_verified(&self, digest: &Digest, size: u64) -> bool {
        let path = self.blob_path(digest);
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || -> bool {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                return false;
            };
            if !meta.is_file() || meta.len() != size {
                return false;
            }
            let Ok(mut f) = std::fs::File::open(&path) else {
                return false;
            };
            let mut h = Hasher::new(digest.algorithm());
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => h.update(&buf[..n]),
                    Err(_) => return false,
                }
            }
            h.finish() == digest
        })
        .await
        .unwrap_or(false)
    }

    /// Writes a file through a temporary file in the same directory and a rename.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), RegistryError> {
        use std::io::Write;
        let dir = path.parent().unwrap_or(self.root);
        std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)
            .map_err(|e| self.io(dir, e))?;
        tmp.write_all(data).map_err(|e| self.io(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| self.io(tmp.path(), e))?;
        tmp.persist(path).map_err(|e| self.io(path, e.error))?;
        Ok(())
    }

    fn write_blob(&self, digest: &Digest, data: &[u8]) -> Result<(), RegistryError> {
        self.write_atomic(&self.blob_path(digest), data)
    }

    /// Adds (or replaces) the entry named `name` in `index.json`, keeping the others.
    fn write_index(&self, entry: &Descriptor, name: &str) -> Result<(), RegistryError> {
        let path = self.root.join("index.json");
        let bad = |message: String| RegistryError::Layout {
            reference: self.reference.clone(),
            path: path.clone(),
            message,
        };
        let mut manifests: Vec<serde_json::Value> = match std::fs::read(&path) {
            Ok(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
                match v.get("manifests") {
                    Some(serde_json::Value::Array(a)) => a.clone(),
                    None => Vec::new(),
                    Some(_) => return Err(bad("`manifests` is not a list".into())),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.io(&path, e)),
        };
        manifests.retain(|m| {
            m.get("annotations")
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .and_then(|n| n.as_str())
                != Some(name)
        });
        manifests.push(serde_json::to_value(entry).expect("a descriptor serializes"));
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec_pretty(&index).expect("JSON serializes");
        self.write_atomic(&path, &bytes)
    }
}

/// Layers downloaded at the same time, each over a connection of its own.
pub const PARALLEL_LAYERS: usize = 3;

/// Pulls `reference` into the OCI image layout directory `dest` (created if missing). See
/// the crate documentation.
pub async fn pull(
    reference: &Reference,
    dest: &Path,
    opts: &PullOptions,
) -> Result<Pulled, RegistryError> {
    if reference.registry().is_none() {
        return Err(RegistryError::NoRegistry {
            reference: reference.to_string(),
        });
    }
    let layout = Layout {
        root: dest,
        reference: reference.to_string(),
    };
    layout.prepare()?;
    let mut session = Session::open(reference, opts).await?;
    let wanted = opts.platform.to_string();

    let top = fetch_manifest(
        &mut session,
        reference,
        opts,
        &reference.manifest_reference(),
        reference.digest(),
        None,
    )
    .await?;
    let mut index_digest = None;
    let mut available: Vec<String> = Vec::new();
    let resolved = match top.kind {
        ManifestKind::Image => {
            let r = load_image(&mut session, reference, opts, top).await?;
            if !platform_matches(opts, &r.platform) {
                return Err(RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    wanted,
                    available: vec![r.platform.display()],
                });
            }
            r
        }
        ManifestKind::Index => {
            index_digest = Some(top.digest.clone());
            let mut queue: VecDeque<(Descriptor, u32)> = VecDeque::new();
            expand_index(reference, &top, opts, 1, &mut queue, &mut available)?;
            let mut found = None;
            let mut fetched = 0;
            while let Some((desc, depth)) = queue.pop_front() {
                fetched += 1;
                if fetched > MAX_CANDIDATES {
                    break;
                }
                let m = fetch_manifest(
                    &mut session,
                    reference,
                    opts,
                    &desc.digest.to_string(),
                    Some(&desc.digest),
                    Some(desc.size),
                )
                .await?;
                let said = desc.media_type.as_deref().unwrap_or(&m.media_type);
                if said != m.media_type {
                    return Err(RegistryError::BadManifest {
                        reference: reference.to_string(),
                        what: format!("manifest {}", m.digest),
                        message: format!(
                            "media type `{}` differs from its index entry's `{said}`",
                            m.media_type
                        ),
                    });
                }
                match m.kind {
                    ManifestKind::Index => {
                        if depth >= MAX_INDEX_DEPTH {
                            return Err(RegistryError::BadManifest {
                                reference: reference.to_string(),
                                what: format!("index {}", m.digest),
                                message: "image indexes nested too deeply".into(),
                            });
                        }
                        let mut nested = VecDeque::new();
                        expand_index(reference, &m, opts, depth + 1, &mut nested, &mut available)?;
                        while let Some(n) = nested.pop_back() {
                            queue.push_front(n);
                        }
                    }
                    ManifestKind::Image => {
                        let r = load_image(&mut session, reference, opts, m).await?;
                        if platform_matches(opts, &r.platform) {
                            found = Some(r);
                            break;
                        }
                        let shown = r.platform.display();
                        if !available.contains(&shown) {
                            available.push(shown);
                        }
                    }
                }
            }
            found.ok_or_else(|| RegistryError::NoMatchingPlatform {
                reference: reference.to_string(),
                wanted: wanted.clone(),
                available: available.clone(),
            })?
        }
    };

    // Layers, then the config and manifest blobs, then index.json.
    let max_layer = opts.limits.max_layer_bytes;
    let max_total = opts.limits.max_archive_bytes;
    let mut total: u64 = resolved.config.len() as u64 + resolved.manifest.body.len() as u64;
    for (i, layer) in resolved.parsed.layers.iter().enumerate() {
        let what = format!("layer {i} ({})", layer.digest);
        if layer.size > max_layer {
            return Err(RegistryError::TooLarge {
                reference: reference.to_string(),
                what,
                size: layer.size,
                max: max_layer,
            });
        }
        total = total.saturating_add(layer.size);
        if total > max_total {
            return Err(RegistryError::TooLarge {
                reference: reference.to_string(),
                what: "the image".into(),
                size: total,
                max: max_total,
            });
        }
    }
    // Up to PARALLEL_LAYERS layers at once, each on a session of its own; the first failure
    // drops the downloads still running (their partial files are removed).
    let downloaded: u64 = {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let layout = &layout;
        let downloads: Vec<_> =
            resolved
                .parsed
                .layers
                .iter()
                .enumerate()
                .map(|(i, layer)| {
                    let mut own = session.clone();
                    let what = format!("layer {i} ({})", layer.digest);
                    async move {
                        download_blob(&mut own, layout, opts, layer, &what, BlobKind::Layer).await
                    }
                })
                .collect();
        stream::iter(downloads)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
            .await?
    };
    let config_digest = resolved.parsed.config.digest.clone();
    layout.write_blob(&config_digest, &resolved.config)?;
    if let Some(p) = &opts.progress {
        let n = resolved.config.len() as u64;
        p(&Progress {
            digest: &config_digest,
            kind: BlobKind::Config,
            done: n,
            total: n,
        });
    }
    layout.write_blob(&resolved.manifest.digest, &resolved.manifest.body)?;
    let name = reference.name();
    let entry = Descriptor {
        media_type: Some(resolved.manifest.media_type.clone()),
        digest: resolved.manifest.digest.clone(),
        size: resolved.manifest.body.len() as u64,
        platform: Some(DescriptorPlatform {
            os: resolved.platform.os.clone(),
            architecture: resolved.platform.architecture.clone(),
            variant: resolved.platform.variant.clone(),
        }),
        annotations: [(REF_NAME_ANNOTATION.to_string(), name.clone())]
            .into_iter()
            .collect(),
    };
    layout.write_index(&entry, &name)?;
    Ok(Pulled {
        name,
        manifest_digest: resolved.manifest.digest,
        index_digest,
        config_digest,
        layers: resolved.parsed.layers.len(),
        bytes: total,
        downloaded,
    })
}

fn platform_matches(opts: &PullOptions, p: &ConfigPlatform) -> bool {
    opts.platform
        .matches(&p.os, &p.architecture, p.variant.as_deref())
}

/// Queues the entries of an index for the wanted platform, recording the platforms offered.
fn expand_index(
    reference: &Reference,
    index: &Fetched,
    opts: &PullOptions,
    depth: u32,
    queue: &mut VecDeque<(Descriptor, u32)>,
    available: &mut Vec<String>,
) -> Result<(), RegistryError> {
    let parsed = parse_index(&index.body).map_err(|e| RegistryError::BadManifest {
        reference: reference.to_string(),
        what: format!("index {}", index.digest),
        message: e.to_string(),
    })?;
    match select_platform(&parsed, &opts.platform) {
        Ok(candidates) => queue.extend(candidates.into_iter().map(|d| (d, depth))),
        Err(offered) => {
            for p in offered {
                if !available.contains(&p) {
                    available.push(p);
                }
            }
        }
    }
    Ok(())
}

/// Parses an image manifest and fetches its config.
async fn load_image(
    session: &mut Session<'_>,
    reference: &Reference,
    opts: &PullOptions,
    manifest: Fetched,
) -> Result<Resolved, RegistryError> {
    let parsed = parse_image_manifest(&manifest.body).map_err(|e| RegistryError::BadManifest {
        reference: reference.to_string(),
        what: format!("manifest {}", manifest.digest),
        message: e.to_string(),
    })?;
    let config_desc = parsed.config.clone();
    let what = format!("config {}", config_desc.digest);
    let max = opts.limits.max_json_bytes;
    if config_desc.size > max {
        return Err(RegistryError::TooLarge {
            reference: reference.to_string(),
            what,
            size: config_desc.size,
            max,
        });
    }
    let url = session.repo_url(&format!("blobs/{}", config_desc.digest));
    let answered = session.get(&url, None).await?;
    let status = answered.response.status();
    if status != StatusCode::OK {
        return Err(status_error(session, reference, answered.response, &url, &what).await);
    }
    let config = session
        .read_limited(answered.response, max, &what, &url)
        .await?;
    verify(
        reference,
        &what,
        &config,
        &config_desc.digest,
        config_desc.size,
    )?;
    let platform: ConfigPlatform =
        serde_json::from_slice(&config).map_err(|e| RegistryError::BadManifest {
            reference: reference.to_string(),
            what: what.clone(),
            message: format!("not an image config: {e}"),
        })?;
    Ok(Resolved {
        manifest,
        parsed,
        config,
        platform,
    })
}

fn verify(
    reference: &Reference,
    what: &str,
    data: &[u8],
    digest: &Digest,
    size: u64,
) -> Result<(), RegistryError> {
    if data.len() as u64 != size {
        return Err(RegistryError::SizeMismatch {
            reference: reference.to_string(),
            what: what.to_string(),
            expected: size,
            actual: data.len() as u64,
        });
    }
    let actual = digest_of(digest.algorithm(), data);
    if &actual != digest {
        return Err(RegistryError::DigestMismatch {
            reference: reference.to_string(),
            what: what.to_string(),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Fetches a manifest by tag or digest and verifies it: against `expected` (and `size`) when
/// given, else against the registry's `Docker-Content-Digest` header when it sent one.
async fn fetch_manifest(
    session: &mut Session<'_>,
    reference: &Reference,
    opts: &PullOptions,
    target: &str,
    expected: Option<&Digest>,
    size: Option<u64>,
) -> Result<Fetched, RegistryError> {
    let what = match expected {
        Some(d) => format!("manifest {d}"),
        None => format!("manifest for tag `{target}`"),
    };
    let max = opts.limits.max_json_bytes;
    if let Some(s) = size {
        if s > max {
            return Err(RegistryError::TooLarge {
                reference: reference.to_string(),
                what,
                size: s,
                max,
            });
        }
    }
    let url = session.repo_url(&format!("manifests/{target}"));
    let answered = session.get(&url, Some(&manifest_accept())).await?;
    let response = answered.response;
    if response.status() != StatusCode::OK {
        let not_found_what = match expected {
            Some(d) => format!("manifest {d}"),
            None => format!("tag `{target}`"),
        };
        return Err(status_error(session, reference, response, &url, &not_found_what).await);
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let header_digest = response
        .headers()
        .get("docker-content-digest")
        .map(HeaderValue::to_str)
        .and_then(Result::ok)
        .map(str::to_string);
    let body = session.read_limited(response, max, &what, &url).await?;
    let digest = match expected {
        Some(d) => {
            verify(
                reference,
                &what,
                &body,
                d,
                size.unwrap_or(body.len() as u64),
            )?;
            d.clone()
        }
        None => {
            let computed = digest_of(Algorithm::Sha256, &body);
            match header_digest.as_deref().map(str::parse::<Digest>) {
                Some(Ok(said)) => {
                    let actual = digest_of(said.algorithm(), &body);
                    if actual != said {
                        return Err(RegistryError::DigestMismatch {
                            reference: reference.to_string(),
                            what: format!("{what} (Docker-Content-Digest)"),
                            expected: said.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                    said
                }
                Some(Err(_)) => {
                    return Err(RegistryError::BadManifest {
                        reference: reference.to_string(),
                        what,
                        message: format!(
                            "invalid Docker-Content-Digest header `{}`",
                            header_digest.unwrap_or_default()
                        ),
                    })
                }
                None => computed,
            }
        }
    };
    let (kind, media_type) =
        classify(content_type.as_deref(), &body).map_err(|e| RegistryError::BadManifest {
            reference: reference.to_string(),
            what: what.clone(),
            message: e.to_string(),
        })?;
    Ok(Fetched {
        body,
        digest,
        media_type,
        kind,
    })
}

/// The error for an unexpected status: [`RegistryError::NotFound`] for 404.
async fn status_error(
    session: &Session<'_>,
    reference: &Reference,
    response: hyper::Response<hyper::body::Incoming>,
    url: &str,
    what: &str,
) -> RegistryError {
    let status = response.status();
    let answer = session.answer(response).await;
    if status == StatusCode::NOT_FOUND {
        let what = if answer.has_code("NAME_UNKNOWN") {
            format!("{what} (the repository itself)")
        } else {
            what.to_string()
        };
        return RegistryError::NotFound {
            reference: reference.to_string(),
            what,
            repository: reference.repository().to_string(),
            answer,
        };
    }
    RegistryError::Status {
        reference: reference.to_string(),
        url: url.to_string(),
        answer,
    }
}

/// Streams a blob into the layout, verifying size and digest; returns the bytes downloaded
/// (0 when the layout already had it).
async fn download_blob(
    session: &mut Session<'_>,
    layout: &Layout<'_>,
    opts: &PullOptions,
    desc: &Descriptor,
    what: &str,
    kind: BlobKind,
) -> Result<u64, RegistryError> {
    let reference = session.reference();
    let report = |done: u64| {
        if let Some(p) = &opts.progress {
            p(&Progress {
                digest: &desc.digest,
                kind,
                done,
                total: desc.size,
            });
        }
    };
    if layout.has_verified(&desc.digest, desc.size).await {
        report(desc.size);
        return Ok(0);
    }
    let url = session.repo_url(&format!("blobs/{}", desc.digest));
    let answered = session.get(&url, None).await?;
    let response = answered.response;
    let source_url = answered.url.to_string();
    if response.status() != StatusCode::OK {
        return Err(status_error(session, session.target(), response, &source_url, what).await);
    }
    if let Some(len) = content_length(&response) {
        if len != desc.size {
            return Err(RegistryError::SizeMismatch {
                reference,
                what: what.to_string(),
                expected: desc.size,
                actual: len,
            });
        }
    }
    let final_path = layout.blob_path(&desc.digest);
    let dir = final_path.parent().unwrap_or(layout.root).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| layout.io(&dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(&dir)
        .map_err(|e| layout.io(&dir, e))?;
    let std_file = tmp.reopen().map_err(|e| layout.io(tmp.path(), e))?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut hasher = Hasher::new(desc.digest.algorithm());
    let mut done: u64 = 0;
    let mut body = response.into_body();
    let timeout = session.timeout();
    report(0);
    while let Some(chunk) =
        next_chunk(&mut body, timeout)
            .await
            .map_err(|message| RegistryError::Http {
                reference: reference.clone(),
                url: source_url.clone(),
                message,
            })?
    {
        done += chunk.len() as u64;
        if done > desc.size {
            return Err(RegistryError::SizeMismatch {
                reference,
                what: what.to_string(),
                expected: desc.size,
                actual: done,
            });
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| layout.io(tmp.path(), e))?;
        report(done);
    }
    if done != desc.size {
        return Err(RegistryError::SizeMismatch {
            reference,
            what: what.to_string(),
            expected: desc.size,
            actual: done,
        });
    }
    let actual = hasher.finish();
    if actual != desc.digest {
        return Err(RegistryError::DigestMismatch {
            reference,
            what: what.to_string(),
            expected: desc.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    file.flush().await.map_err(|e| layout.io(tmp.path(), e))?;
    file.sync_all()
        .await
        .map_err(|e| layout.io(tmp.path(), e))?;
    drop(file);
    tmp.persist(&final_path)
        .map_err(|e| layout.io(&final_path, e.error))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_of_both_algorithms() {
        assert_eq!(digest_of(Algorithm::Sha256, b""), Digest::sha256(b""));
        let d = digest_of(Algorithm::Sha512, b"abc");
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert!(d.hex().starts_with("ddaf35a193617aba"));
    }
}
