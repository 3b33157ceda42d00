//! The image configuration (what a workload gets as defaults) and the JSON documents of the
//! OCI image specification and Docker's formats that this crate reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An image's run-time defaults and platform, from its config blob (OCI
/// `application/vnd.oci.image.config.v1+json` or Docker's container config, same fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `NAME=value` strings in order.
    pub env: Vec<String>,
    /// `WorkingDir`, when set and non-empty.
    pub working_dir: Option<String>,
    /// `User` (`name`, `uid`, `uid:gid`...), when set and non-empty.
    pub user: Option<String>,
    /// `ExposedPorts` keys (`80/tcp`), sorted.
    pub exposed_ports: Vec<String>,
    /// `Volumes` keys, sorted.
    pub volumes: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`, when set.
    pub stop_signal: Option<String>,
    /// `os` (`linux`).
    pub os: String,
    /// `architecture` (`amd64`, `arm64`...).
    pub architecture: String,
    /// `variant` (`v8`...), when set.
    pub variant: Option<String>,
}

/// The raw config document: only the fields this crate uses.
#[derive(Debug, Deserialize)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<RawRunConfig>,
    pub rootfs: RawRootfs,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRunConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "ExposedPorts", default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Volumes", default)]
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "StopSignal", default)]
    stop_signal: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawRootfs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl RawConfig {
    pub(crate) fn image_config(&self) -> ImageConfig {
        let c = self.config.as_ref();
        let non_empty = |s: &Option<String>| s.as_ref().filter(|s| !s.is_empty()).cloned();
        ImageConfig {
            entrypoint: c.and_then(|c| c.entrypoint.clone()).unwrap_or_default(),
            cmd: c.and_then(|c| c.cmd.clone()).unwrap_or_default(),
            env: c.and_then(|c| c.env.clone()).unwrap_or_default(),
            working_dir: c.and_then(|c| non_empty(&c.working_dir)),
            user: c.and_then(|c| non_empty(&c.user)),
            exposed_ports: c
                .and_then(|c| c.exposed_ports.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
            volumes: c
                .and_then(|c| c.volumes.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
            labels: c.and_then(|c| c.labels.clone()).unwrap_or_default(),
            stop_signal: c.and_then(|c| non_empty(&c.stop_signal)),
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: non_empty(&self.variant),
        }
    }
}

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<RawPlatform>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawPlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image index (`index.json`, a nested index, or a Docker manifest list).
#[derive(Debug, Deserialize)]
pub(crate) struct RawIndex {
    pub manifests: Vec<RawDescriptor>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Deserialize)]
pub(crate) struct RawManifest {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: RawDescriptor,
    pub layers: Vec<RawDescriptor>,
}

/// One image of a docker-save `manifest.json`.
#[derive(Debug, Deserialize)]
pub(crate) struct RawDockerEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// The `oci-layout` file.
#[derive(Debug, Deserialize)]
pub(crate) struct RawOciLayout {
    #[serde(rename = "imageLayoutVersion")]
    pub version: String,
}

pub(crate) mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
}

/// The compression a layer media type implies; `None` for media types that are not layers
/// this crate can apply (encrypted layers, artifacts).
pub(crate) fn layer_compression(media_type: &str) -> Option<crate::Compression> {
    use crate::Compression;
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields_and_nulls() {
        let raw: RawConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux",
                "config":{"Entrypoint":["/app"],"Cmd":null,"Env":["A=1","PATH=/bin"],
                          "WorkingDir":"/srv","User":"","ExposedPorts":{"80/tcp":{},"53/udp":{}},
                          "Labels":{"a":"b"}},
                "rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let c = raw.image_config();
        assert_eq!(c.entrypoint, ["/app"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.env, ["A=1", "PATH=/bin"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user, None);
        assert_eq!(c.exposed_ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", "amd64"));
    }

    #[test]
    fn config_without_run_section() {
        let raw: RawConfig =
            serde_json::from_str(r#"{"os":"linux","rootfs":{"type":"layers"}}"#).unwrap();
        assert_eq!(raw.image_config().entrypoint, Vec::<String>::new());
    }
}
