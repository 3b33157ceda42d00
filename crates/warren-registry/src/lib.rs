//! A client for the OCI distribution protocol that pulls one image from a registry into a
//! local OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), which
//! [`warren_image::open_archive`] then imports unchanged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), warren_registry::RegistryError> {
//! use warren_registry::{pull, PullOptions, Reference};
//! let reference: Reference = "registry.example:5000/team/app:1.2".parse()?;
//! let pulled = pull(&reference, std::path::Path::new("/tmp/app"), &PullOptions::default()).await?;
//! println!("{} is {} ({} layers)", pulled.name, pulled.manifest_digest, pulled.layers);
//! # Ok(()) }
//! ```
//!
//! - **References** ([`Reference`]) always name their registry: there is no default one.
//! - **Transport**: HTTP/1.1 on tokio and hyper; HTTPS through rustls (ring) trusting the
//!   system's certificates and [`PullOptions::ca_files`]. Plain HTTP only for a loopback
//!   registry (`localhost`, 127.0.0.0/8, `::1`) or with [`PullOptions::insecure`], and only
//!   when HTTPS could not be spoken at all (a refused certificate is an error, never a reason
//!   to downgrade). Redirects are followed, at most [`MAX_REDIRECTS`] hops; credentials are
//!   only sent back to the registry itself.
//! - **Authentication**: anonymous, HTTP Basic, and the Bearer token flow, driven by the
//!   registry's `WWW-Authenticate` challenges ([`parse_challenges`]).
//! - **Manifests**: OCI image manifests and indexes, Docker schema 2 manifests and manifest
//!   lists; an index is resolved to [`PullOptions::platform`] (the host's by default), with
//!   an error listing the platforms it offers when none matches.
//! - **Never trusting the registry**: every manifest, config and layer is verified against its
//!   digest and size while it streams in; JSON documents are refused over
//!   [`Limits::max_json_bytes`], layers over [`Limits::max_layer_bytes`], the whole image over
//!   [`Limits::max_archive_bytes`]. Blobs are written to a temporary file and renamed into
//!   place once verified; blobs already in the layout are verified again and reused. Up to
//!   [`PARALLEL_LAYERS`] layers download at once, each over its own connection.
//! - **Errors** ([`RegistryError`]) name the reference, and for registry answers the HTTP
//!   status and the registry's error codes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod auth;
mod error;
mod http;
pub mod media;
mod pull;
mod reference;
mod session;

pub use auth::{parse_challenges, parse_token_answer, Challenge, ChallengeError, Credentials};
pub use error::{parse_remote_errors, Answer, RegistryError, RemoteError};
pub use pull::{pull, PARALLEL_LAYERS};
pub use reference::{Reference, ReferenceError, DEFAULT_TAG};
pub use session::MAX_REDIRECTS;
pub use warren_image::{Digest, Limits, Platform};

/// Which blob a [`Progress`] report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// The image config.
    Config,
    /// A layer.
    Layer,
}

/// Progress of one blob: reported when its download starts (`done` 0), after every chunk,
/// and once with `done == total` for a blob the layout already had.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The blob.
    pub digest: &'a Digest,
    /// Config or layer.
    pub kind: BlobKind,
    /// Bytes received (or found) so far.
    pub done: u64,
    /// The blob's size.
    pub total: u64,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress<'_>) + Send + Sync>;

/// How to pull.
#[derive(Clone)]
pub struct PullOptions {
    /// The platform an index is resolved to, and the image must be for. Default: the host's.
    pub platform: Platform,
    /// Credentials for Basic authentication or for the token endpoint. Default: none
    /// (anonymous).
    pub credentials: Option<Credentials>,
    /// Allow plain HTTP to a registry that is not on this machine (after HTTPS failed).
    pub insecure: bool,
    /// Size limits (JSON documents, layers, the whole image).
    pub limits: Limits,
    /// Called as blobs arrive.
    pub progress: Option<ProgressFn>,
    /// PEM files of certificate authorities trusted besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Longest wait for connecting, a TLS handshake, an answer, or the next chunk of a body.
    /// Default 60 s.
    pub timeout: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            credentials: None,
            insecure: false,
            limits: Limits::default(),
            progress: None,
            ca_files: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("credentials", &self.credentials)
            .field("insecure", &self.insecure)
            .field("limits", &self.limits)
            .field("progress", &self.progress.as_ref().map(|_| "<callback>"))
            .field("ca_files", &self.ca_files)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a pull wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The name given to the image in the layout's `index.json`
    /// (`org.opencontainers.image.ref.name`): `HOST/REPO:TAG`, or `HOST/REPO@DIGEST` for a
    /// reference by digest alone. [`warren_image::ImageArchive::find`] finds it by this name.
    pub name: String,
    /// The digest of the image manifest (for the platform, when the reference named an index).
    pub manifest_digest: Digest,
    /// The digest of the index the reference named, if it named one.
    pub index_digest: Option<Digest>,
    /// The digest of the image config (the image id).
    pub config_digest: Digest,
    /// Number of layers.
    pub layers: usize,
    /// Bytes of the image as stored: manifest, config and layers.
    pub bytes: u64,
    /// Bytes of layers downloaded by this pull (layers already in the layout are not counted).
    pub downloaded: u64,
}

/// The pull future can be spawned on a multi-threaded runtime (checked at compile time).
#[allow(dead_code)]
fn pull_is_send(reference: &Reference, dest: &std::path::Path, opts: &PullOptions) {
    fn send<T: Send>(_: &T) {}
    send(&pull(reference, dest, opts));
}
