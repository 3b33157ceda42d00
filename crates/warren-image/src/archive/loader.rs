//! The loader behind [`super::open_archive`]: walks the index, manifests and configs of an
//! indexed archive and checks every blob against its digest and size before anything is used.

use super::*;

/// State while loading an archive.
pub(super) struct Loader<'a> {
    pub(super) path: &'a Path,
    pub(super) source: &'a Source,
    pub(super) options: &'a OpenOptions,
    /// Digests of members already hashed.
    pub(super) hashed: HashMap<String, Digest>,
    pub(super) blobs: HashMap<Digest, String>,
    /// Platforms seen but not wanted, for the error message.
    pub(super) skipped: BTreeSet<String>,
}

impl Loader<'_> {
    fn format(&self, member: &str, message: impl Into<String>) -> ImageError {
        ImageError::Format {
            archive: self.path.to_path_buf(),
            member: member.to_string(),
            message: message.into(),
        }
    }

    fn io(&self, source: io::Error) -> ImageError {
        ImageError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn digest(&self, member: &str, value: &str) -> Result<Digest, ImageError> {
        value.parse().map_err(|_| ImageError::InvalidDigest {
            archive: self.path.to_path_buf(),
            member: member.to_string(),
            value: value.to_string(),
        })
    }

    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send + '_>, u64), ImageError> {
        self.source
            .open(name)
            .map_err(|e| self.io(e))?
            .ok_or_else(|| ImageError::MissingBlob {
                archive: self.path.to_path_buf(),
                member: name.to_string(),
            })
    }

    fn check_size(&self, name: &str, expected: Option<u64>, actual: u64) -> Result<(), ImageError> {
        match expected {
            Some(e) if e != actual => Err(ImageError::SizeMismatch {
                archive: self.path.to_path_buf(),
                member: name.to_string(),
                expected: e,
                actual,
            }),
            _ => Ok(()),
        }
    }

    fn check_digest(
        &self,
        name: &str,
        expected: &Digest,
        actual: &Digest,
    ) -> Result<(), ImageError> {
        if expected != actual {
            return Err(ImageError::DigestMismatch {
                archive: self.path.to_path_buf(),
                member: name.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// Reads a JSON member whole (within `max_json_bytes`), verifying size and digest.
    fn json_bytes(
        &self,
        name: &str,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<Vec<u8>, ImageError> {
        let (r, actual_size) = self.open(name)?;
        self.check_size(name, size, actual_size)?;
        let max = self.options.limits.max_json_bytes;
        if actual_size > max {
            return Err(ImageError::LimitExceeded {
                context: format!("{}: {name}", self.path.display()),
                limit: LimitKind::JsonBytes,
                value: actual_size,
                max,
            });
        }
        let mut buf = Vec::with_capacity(actual_size as usize);
        r.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.io(e))?;
        self.check_size(name, Some(actual_size), buf.len() as u64)?;
        if let Some(expected) = expected {
            self.check_digest(name, expected, &expected.of_same_kind(&buf))?;
        }
        Ok(buf)
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<T, ImageError> {
        let bytes = self.json_bytes(name, expected, size)?;
        serde_json::from_slice(&bytes).map_err(|e| self.format(name, e.to_string()))
    }

    /// Hashes a member whole (once), checking its size.
    fn hash(
        &mut self,
        name: &str,
        algorithm: Algorithm,
        size: Option<u64>,
    ) -> Result<(Digest, Compression), ImageError> {
        let (mut r, actual_size) = self.open(name)?;
        self.check_size(name, size, actual_size)?;
        let mut head = [0u8; 4];
        let n = read_head(&mut r, &mut head).map_err(|e| self.io(e))?;
        let compression = Compression::detect(&head[..n]);
        if let Some(d) = self.hashed.get(name) {
            if d.algorithm() == algorithm {
                return Ok((d.clone(), compression));
            }
        }
        let mut h = HashingReader::new(io::Cursor::new(head[..n].to_vec()).chain(r), algorithm);
        io::copy(&mut h, &mut io::sink()).map_err(|e| self.io(e))?;
        let (digest, len) = h.finish();
        if len != actual_size {
            return Err(ImageError::SizeMismatch {
                archive: self.path.to_path_buf(),
                member: name.to_string(),
                expected: actual_size,
                actual: len,
            });
        }
        self.hashed.insert(name.to_string(), digest.clone());
        Ok((digest, compression))
    }

    /// A member name from a document, normalized; names that climb out are refused.
    fn member_name(&self, doc: &str, name: &str) -> Result<String, ImageError> {
        match normalize_member(name.as_bytes()) {
            Some(n) if !n.is_empty() && !name.starts_with('/') => Ok(n),
            _ => Err(self.format(doc, format!("member name `{name}` is outside the archive"))),
        }
    }

    fn platform_ok(&mut self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.options.platform.matches(os, arch, variant) {
            return true;
        }
        let mut p = format!("{os}/{arch}");
        if let Some(v) = variant {
            p.push('/');
            p.push_str(v);
        }
        self.skipped.insert(p);
        false
    }

    pub(super) fn load_docker(&mut self) -> Result<Vec<Manifest>, ImageError> {
        const DOC: &str = "manifest.json";
        let entries: Vec<RawDockerEntry> = self.json(DOC, None, None)?;
        let mut out = Vec::new();
        for entry in entries {
            let config_name = self.member_name(DOC, &entry.config)?;
            let config_digest = digest_from_name(&config_name).ok_or_else(|| {
                self.format(
                    DOC,
                    format!("config `{config_name}` is not named by its digest"),
                )
            })?;
            let raw: RawConfig = self.json(&config_name, Some(&config_digest), None)?;
            let config = raw.image_config();
            if !self.platform_ok(&config.os, &config.architecture, config.variant.as_deref()) {
                continue;
            }
            let diff_ids = self.diff_ids(&config_name, &raw, entry.layers.len())?;
            let mut layers = Vec::new();
            for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
                let name = self.member_name(DOC, name)?;
                let named = digest_from_name(&name);
                let algorithm = named.as_ref().map_or(Algorithm::Sha256, Digest::algorithm);
                let (digest, compression) = self.hash(&name, algorithm, None)?;
                if let Some(named) = &named {
                    if name.starts_with("blobs/") {
                        self.check_digest(&name, named, &digest)?;
                    }
                }
                if compression == Compression::None {
                    // An uncompressed layer's blob is its diff_id.
                    self.check_digest(&name, &diff_id, &digest)?;
                }
                let size = self.open(&name)?.1;
                let media_type = match compression {
                    Compression::None => media::OCI_LAYER,
                    Compression::Gzip => media::OCI_LAYER_GZIP,
                    Compression::Zstd => media::OCI_LAYER_ZSTD,
                };
                self.blobs.insert(digest.clone(), name);
                layers.push(Layer {
                    digest,
                    diff_id,
                    media_type: media_type.into(),
                    compression,
                    size,
                });
            }
            let mut tags: Vec<String> = Vec::new();
            for t in entry.repo_tags.unwrap_or_default() {
                let t = familiar_name(&t);
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            out.push(Manifest {
                tags,
                digest: None,
                config,
                config_digest,
                layers,
            });
        }
        Ok(out)
    }

    fn diff_ids(
        &self,
        config_name: &str,
        raw: &RawConfig,
        layers: usize,
    ) -> Result<Vec<Digest>, ImageError> {
        if raw.rootfs.kind != "layers" {
            return Err(self.format(
                config_name,
                format!("rootfs type `{}` is not `layers`", raw.rootfs.kind),
            ));
        }
        if raw.rootfs.diff_ids.len() != layers {
            return Err(self.format(
                config_name,
                format!(
                    "config lists {} diff_ids for {layers} layers",
                    raw.rootfs.diff_ids.len()
                ),
            ));
        }
        raw.rootfs
            .diff_ids
            .iter()
            .map(|d| self.digest(config_name, d))
            .collect()
    }

    pub(super) fn load_oci(&mut self) -> Result<Vec<Manifest>, ImageError> {
        let layout: RawOciLayout = self.json("oci-layout", None, None)?;
        if !layout.version.starts_with("1.") {
            return Err(self.format(
                "oci-layout",
                format!("unsupported imageLayoutVersion `{}`", layout.version),
            ));
        }
        let index: RawIndex = self.json("index.json", None, None)?;
        let mut out = Vec::new();
        for desc in &index.manifests {
            let mut tags = Vec::new();
            for key in [CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION] {
                if let Some(v) = desc.annotations.get(key) {
                    let v = familiar_name(v);
                    if !v.is_empty() && !tags.contains(&v) {
                        tags.push(v);
                    }
                }
            }
            if let Some(manifest_desc) = self.select(desc, "index.json", 0)? {
                // One image listed under several names is one manifest with several tags.
                let digest = self.digest("index.json", &manifest_desc.digest)?;
                if let Some(seen) = out
                    .iter_mut()
                    .find(|m: &&mut Manifest| m.digest.as_ref() == Some(&digest))
                {
                    for t in tags {
                        if !seen.tags.contains(&t) {
                            seen.tags.push(t);
                        }
                    }
                    continue;
                }
                if let Some(m) = self.load_manifest(&manifest_desc, tags)? {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Resolves a descriptor to an image manifest descriptor for the wanted platform, following
    /// nested indexes; `None` when it is for another platform.
    fn select(
        &mut self,
        desc: &RawDescriptor,
        doc: &str,
        depth: u32,
    ) -> Result<Option<RawDescriptor>, ImageError> {
        if let Some(p) = &desc.platform {
            if !self.platform_ok(&p.os, &p.architecture, p.variant.as_deref()) {
                return Ok(None);
            }
        }
        let digest = self.digest(doc, &desc.digest)?;
        let name = digest.blob_path();
        let media_type = match desc.media_type.as_deref() {
            Some(m) => m.to_string(),
            None => {
                // Older layouts omit it: look at the document itself.
                let v: serde_json::Value = self.json(&name, Some(&digest), Some(desc.size))?;
                if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
                    m.to_string()
                } else if v.get("manifests").is_some() {
                    media::OCI_INDEX.to_string()
                } else {
                    media::OCI_MANIFEST.to_string()
                }
            }
        };
        match media_type.as_str() {
            media::OCI_MANIFEST | media::DOCKER_MANIFEST => Ok(Some(RawDescriptor {
                media_type: Some(media_type),
                ..desc.clone()
            })),
            media::OCI_INDEX | media::DOCKER_LIST => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(self.format(&name, "image indexes nested too deeply"));
                }
                let index: RawIndex = self.json(&name, Some(&digest), Some(desc.size))?;
                for child in &index.manifests {
                    if let Some(found) = self.select(child, &name, depth + 1)? {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            }
            other => Err(ImageError::UnsupportedMediaType {
                archive: self.path.to_path_buf(),
                member: name,
                media_type: other.to_string(),
            }),
        }
    }

    fn load_manifest(
        &mut self,
        desc: &RawDescriptor,
        tags: Vec<String>,
    ) -> Result<Option<Manifest>, ImageError> {
        let digest = self.digest("index.json", &desc.digest)?;
        let name = digest.blob_path();
        let raw: RawManifest = self.json(&name, Some(&digest), Some(desc.size))?;
        if let (Some(doc), Some(said)) = (&raw.media_type, &desc.media_type) {
            if doc != said {
                return Err(self.format(
                    &name,
                    format!("media type `{doc}` differs from its descriptor's `{said}`"),
                ));
            }
        }
        if raw.schema_version.is_some_and(|v| v != 2) {
            return Err(self.format(&name, "schemaVersion is not 2"));
        }
        let config_digest = self.digest(&name, &raw.config.digest)?;
        let config_name = config_digest.blob_path();
        match raw.config.media_type.as_deref() {
            Some(media::OCI_CONFIG | media::DOCKER_CONFIG) | None => {}
            Some(other) => {
                return Err(ImageError::UnsupportedMediaType {
                    archive: self.path.to_path_buf(),
                    member: config_name,
                    media_type: other.to_string(),
                })
            }
        }
        let raw_config: RawConfig =
            self.json(&config_name, Some(&config_digest), Some(raw.config.size))?;
        let config = raw_config.image_config();
        if !self.platform_ok(&config.os, &config.architecture, config.variant.as_deref()) {
            return Ok(None);
        }
        let diff_ids = self.diff_ids(&config_name, &raw_config, raw.layers.len())?;
        let mut layers = Vec::new();
        for (ldesc, diff_id) in raw.layers.iter().zip(diff_ids) {
            let ldigest = self.digest(&name, &ldesc.digest)?;
            let lname = ldigest.blob_path();
            let media_type = ldesc.media_type.clone().unwrap_or_default();
            let compression =
                layer_compression(&media_type).ok_or_else(|| ImageError::UnsupportedMediaType {
                    archive: self.path.to_path_buf(),
                    member: lname.clone(),
                    media_type: media_type.clone(),
                })?;
            let (actual, _) = self.hash(&lname, ldigest.algorithm(), Some(ldesc.size))?;
            self.check_digest(&lname, &ldigest, &actual)?;
            if compression == Compression::None {
                self.check_digest(&lname, &diff_id, &actual)?;
            }
            self.blobs.insert(ldigest.clone(), lname);
            layers.push(Layer {
                digest: ldigest,
                diff_id,
                media_type,
                compression,
                size: ldesc.size,
            });
        }
        Ok(Some(Manifest {
            tags,
            digest: Some(digest),
            config,
            config_digest,
            layers,
        }))
    }
}

/// The digest a member's name carries: `blobs/<alg>/<hex>` or `<64 hex>.json`.
pub(super) fn digest_from_name(name: &str) -> Option<Digest> {
    if let Some(rest) = name.strip_prefix("blobs/") {
        let (alg, hex) = rest.split_once('/')?;
        return format!("{alg}:{hex}").parse().ok();
    }
    let base = name.rsplit('/').next()?;
    let hex = base.strip_suffix(".json").unwrap_or(base);
    let hex = hex.strip_suffix(".tar").unwrap_or(hex);
    format!("sha256:{hex}").parse().ok()
}
