//! Media types and the manifest documents a pull reads: OCI image manifests and indexes, Docker
//! schema 2 manifests and manifest lists, and choosing an index entry for a platform.
//!
//! Everything here is pure: documents in, decisions out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warren_image::{Digest, Platform};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker manifest list (schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker schema 1 manifests, which are not supported (they carry no content digests for
/// their config).
pub const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Layer media types an image may use (the ones `warren-image` can apply).
pub const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// The `Accept` header sent for manifests: every manifest and index type this client reads.
pub fn manifest_accept() -> String {
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ")
}

/// What a manifest document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2): config and layers.
    Image,
    /// An index (OCI image index or Docker manifest list): manifests per platform.
    Index,
}

/// Why a manifest document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// A type this client does not read.
    #[error("unsupported manifest media type `{0}` (expected an OCI or Docker schema 2 image manifest or index)")]
    Unsupported(String),
    /// Docker's old schema 1.
    #[error("Docker schema 1 manifests (`{0}`) are not supported; push the image again with a current tool")]
    Schema1(String),
    /// The document is not JSON of the expected shape.
    #[error("{0}")]
    Malformed(String),
}

/// Classifies a manifest by media type. `content_type` is the HTTP `Content-Type` (parameters
/// ignored); the document's own `mediaType` field wins when present, and a document that has
/// neither is recognised by its shape (`manifests` means an index).
pub fn classify(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(ManifestKind, String), MediaError> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
        #[serde(rename = "fsLayers")]
        fs_layers: Option<serde_json::Value>,
    }
    let peek: Peek = serde_json::from_slice(body)
        .map_err(|e| MediaError::Malformed(format!("manifest is not a JSON object: {e}")))?;
    let header = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let media = match (peek.media_type, header) {
        (Some(m), _) => m,
        (None, Some(h)) => h,
        (None, None) => {
            if peek.fs_layers.is_some() || peek.schema_version == Some(1) {
                DOCKER_SCHEMA1[0].to_string()
            } else if peek.manifests.is_some() {
                OCI_INDEX.to_string()
            } else if peek.layers.is_some() {
                OCI_MANIFEST.to_string()
            } else {
                return Err(MediaError::Malformed(
                    "manifest has no mediaType and neither `manifests` nor `layers`".into(),
                ));
            }
        }
    };
    if DOCKER_SCHEMA1.contains(&media.as_str()) || peek.schema_version == Some(1) {
        return Err(MediaError::Schema1(media));
    }
    match media.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok((ManifestKind::Image, media)),
        OCI_INDEX | DOCKER_LIST => Ok((ManifestKind::Index, media)),
        _ => Err(MediaError::Unsupported(media)),
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Digest of the content.
    pub digest: Digest,
    /// Size of the content in bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorPlatform {
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// `amd64`, `arm64`...
    #[serde(default)]
    pub architecture: String,
    /// `v7`, `v8`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl DescriptorPlatform {
    fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An image index or manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    /// The entries.
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    /// `schemaVersion`, 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, lowest first.
    pub layers: Vec<Descriptor>,
}

/// The fields of an image config that say what platform it is for.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigPlatform {
    /// `os`.
    #[serde(default)]
    pub os: String,
    /// `architecture`.
    #[serde(default)]
    pub architecture: String,
    /// `variant`.
    #[serde(default)]
    pub variant: Option<String>,
}

impl ConfigPlatform {
    /// `os/arch[/variant]`.
    pub fn display(&self) -> String {
        DescriptorPlatform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
        .display()
    }
}

/// Parses an index document.
pub fn parse_index(body: &[u8]) -> Result<Index, MediaError> {
    serde_json::from_slice(body).map_err(|e| MediaError::Malformed(format!("image index: {e}")))
}

/// Parses an image manifest and checks the config and layer media types.
pub fn parse_image_manifest(body: &[u8]) -> Result<ImageManifest, MediaError> {
    let m: ImageManifest = serde_json::from_slice(body)
        .map_err(|e| MediaError::Malformed(format!("image manifest: {e}")))?;
    if m.schema_version != 2 {
        return Err(MediaError::Malformed(format!(
            "image manifest: schemaVersion is {}, not 2",
            m.schema_version
        )));
    }
    match m.config.media_type.as_deref() {
        Some(OCI_CONFIG | DOCKER_CONFIG) | None => {}
        Some(other) => {
            return Err(MediaError::Malformed(format!(
                "not a container image: config media type `{other}` (expected `{OCI_CONFIG}` or `{DOCKER_CONFIG}`)"
            )))
        }
    }
    for (i, l) in m.layers.iter().enumerate() {
        let t = l.media_type.as_deref().unwrap_or("");
        if !LAYER_TYPES.contains(&t) {
            return Err(MediaError::Malformed(format!(
                "layer {i} ({}) has unsupported media type `{t}`",
                l.digest
            )));
        }
    }
    Ok(m)
}

/// The index entries to try for `platform`, best first: entries whose platform matches, then
/// entries that name no platform (their config decides). Attestation and other non-image
/// entries (`unknown/unknown`) are never chosen. `Err` carries the platforms the index offers.
pub fn select_platform(index: &Index, platform: &Platform) -> Result<Vec<Descriptor>, Vec<String>> {
    let mut matching = Vec::new();
    let mut unnamed = Vec::new();
    let mut available = Vec::new();
    for d in &index.manifests {
        match &d.platform {
            Some(p) if p.os == "unknown" || p.architecture == "unknown" => {}
            Some(p) => {
                let shown = p.display();
                if !available.contains(&shown) {
                    available.push(shown);
                }
                if !p.os.is_empty()
                    && !p.architecture.is_empty()
                    && platform.matches(&p.os, &p.architecture, p.variant.as_deref())
                {
                    matching.push(d.clone());
                }
            }
            None => unnamed.push(d.clone()),
        }
    }
    matching.extend(unnamed);
    if matching.is_empty() {
        Err(available)
    } else {
        Ok(matching)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const D: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

    fn linux(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn accept_lists_all_manifest_types() {
        let a = manifest_accept();
        for t in [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST] {
            assert!(a.contains(t), "{t}");
        }
    }

    #[test]
    fn classify_by_field_header_or_shape() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(classify(None, oci).unwrap().0, ManifestKind::Image);
        // The document's own field wins over the header.
        assert_eq!(
            classify(Some(OCI_INDEX), oci).unwrap(),
            (ManifestKind::Image, OCI_MANIFEST.to_string())
        );
        let bare = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            classify(
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
                bare
            )
            .unwrap(),
            (ManifestKind::Image, DOCKER_MANIFEST.to_string())
        );
        assert_eq!(
            classify(Some("application/json"), bare).unwrap(),
            (ManifestKind::Image, OCI_MANIFEST.to_string())
        );
        let list = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(classify(None, list).unwrap().0, ManifestKind::Index);
        assert_eq!(
            classify(Some(DOCKER_LIST), list).unwrap(),
            (ManifestKind::Index, DOCKER_LIST.to_string())
        );
    }

    #[test]
    fn classify_refuses_schema1_unknown_and_garbage() {
        let s1 = br#"{"schemaVersion":1,"name":"app","fsLayers":[]}"#;
        assert!(matches!(classify(None, s1), Err(MediaError::Schema1(_))));
        assert!(matches!(
            classify(Some(DOCKER_SCHEMA1[1]), br#"{"schemaVersion":1}"#),
            Err(MediaError::Schema1(_))
        ));
        let helm = br#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart.v1+json"}"#;
        let e = classify(None, helm).unwrap_err();
        assert!(
            e.to_string()
                .contains("application/vnd.cncf.helm.chart.v1+json"),
            "{e}"
        );
        assert!(matches!(
            classify(None, b"not json"),
            Err(MediaError::Malformed(_))
        ));
        assert!(matches!(
            classify(None, b"[1,2]"),
            Err(MediaError::Malformed(_))
        ));
        assert!(matches!(
            classify(None, b"{}"),
            Err(MediaError::Malformed(_))
        ));
    }

    #[test]
    fn image_manifest_checks_types() {
        let good = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{A}","size":3}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{B}","size":5}}]}}"#
        );
        let m = parse_image_manifest(good.as_bytes()).unwrap();
        assert_eq!(m.layers[0].size, 5);
        let bad_layer = good.replace("rootfs.diff.tar.gzip", "rootfs.diff.tar.bz2");
        let e = parse_image_manifest(bad_layer.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("layer 0"), "{e}");
        let artifact = good.replace(DOCKER_CONFIG, "application/vnd.cncf.helm.config.v1+json");
        let e = parse_image_manifest(artifact.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("not a container image"), "{e}");
        let bad_digest = good.replace(A, "sha256:1234");
        assert!(parse_image_manifest(bad_digest.as_bytes()).is_err());
        let v3 = good.replace("\"schemaVersion\":2", "\"schemaVersion\":3");
        assert!(parse_image_manifest(v3.as_bytes()).is_err());
    }

    fn index() -> Index {
        parse_index(
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{A}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{B}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{C}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}},
              "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}
            ]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn index_resolves_to_the_platform() {
        let idx = index();
        let pick = |p: &Platform| select_platform(&idx, p).map(|v| v[0].digest.to_string());
        assert_eq!(pick(&linux("amd64", None)).unwrap(), C);
        assert_eq!(pick(&linux("arm64", None)).unwrap(), B);
        assert_eq!(pick(&linux("arm", Some("v7"))).unwrap(), A);
        assert_eq!(
            select_platform(&idx, &linux("amd64", None)).unwrap().len(),
            1
        );
        let err = pick(&linux("riscv64", None)).unwrap_err();
        assert_eq!(err, ["linux/arm/v7", "linux/arm64/v8", "linux/amd64"]);
        let err = pick(&linux("arm", Some("v6"))).unwrap_err();
        assert!(err.contains(&"linux/arm/v7".to_string()));
        // The attestation entry is never chosen, even for a platform it would "match".
        let unknown = Platform {
            os: "unknown".into(),
            architecture: "unknown".into(),
            variant: None,
        };
        assert!(pick(&unknown).is_err());
    }

    #[test]
    fn entries_without_platform_come_last() {
        let idx = parse_index(
            format!(
                r#"{{"manifests":[{{"digest":"{A}","size":1}},
                {{"digest":"{B}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let got = select_platform(&idx, &linux("amd64", None)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].digest.to_string(), B);
        assert_eq!(got[1].digest.to_string(), A);
        assert!(parse_index(b"{\"manifests\":[{\"digest\":\"sha256:00\",\"size\":1}]}").is_err());
    }
}
