//! Security of warren's remote API, as a library with no I/O beyond key and certificate files.
//!
//! - [`token`]: operator keys (Ed25519) and the request tokens they sign: a compact JWT with
//!   `alg = EdDSA`, the key's fingerprint as `kid`, the host id as audience, a short lifetime
//!   and a unique id. [`token::verify`] checks all of it against the enrolled keys and a
//!   [`token::ReplayCache`] (a token is accepted once).
//! - [`tls`]: the host's identity (a random host id, a P-256 key and a self-signed
//!   certificate, created on first start), the TLS 1.3 server configuration, and client
//!   configurations that either pin a certificate fingerprint (refusing any other with a
//!   message naming both) or, for the first contact of `warren adopt`, record it.
//! - [`claim`]: claim codes and the claim window during which an operator key may be enrolled.
//! - [`ratelimit`]: failed-authentication limits per client address.
//!
//! Everything that decides (verification, windows, limits) takes the current time as an
//! argument, so it is tested without clocks.

pub mod claim;
pub mod ratelimit;
pub mod tls;
pub mod token;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request's token was refused; the reason is for logs, never for the client.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Crypto(String),
}

pub type Result<T, E = AuthError> = std::result::Result<T, E>;

/// Writes `data` to `path` atomically with `mode`.
pub(crate) fn write_private(path: &std::path::Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| AuthError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Equality in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
