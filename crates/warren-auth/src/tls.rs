//! The host's identity and the TLS configurations of the remote API.
//!
//! On first start the daemon creates, in its `remote/` directory: `host-id` (16 random bytes,
//! hex; the audience of every token), `host.key` (P-256, 0600) and `host.crt` (self-signed,
//! ten years, names `localhost`, the host name and `warren-<host id>`). Clients never use
//! the Web PKI for it: they pin the certificate's SHA-256 fingerprint on first use
//! (`warren adopt`) and refuse any other certificate afterwards, naming both fingerprints.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, SanType, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SecureRandom;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;

use crate::{AuthError, Result};

const HOST_ID: &str = "host-id";
const HOST_KEY: &str = "host.key";
const HOST_CERT: &str = "host.crt";

/// `sha256:` and the lowercase hex of a DER certificate's SHA-256.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(der)))
}

/// The daemon's remote identity.
pub struct HostIdentity {
    pub host_id: String,
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
    pub dir: PathBuf,
}

impl HostIdentity {
    /// Reads the identity from `dir`, creating what is missing (a lost key and certificate
    /// are replaced; clients that pinned the old one then refuse the host). Returns whether
    /// the host id was created, i.e. whether this is the host's first start.
    pub fn load_or_create(dir: &Path, host_name: &str) -> Result<(HostIdentity, bool)> {
        let file_err = |p: &Path, e: String| AuthError::File {
            path: p.display().to_string(),
            message: e,
        };
        let id_path = dir.join(HOST_ID);
        let (key_path, cert_path) = (dir.join(HOST_KEY), dir.join(HOST_CERT));
        let mut created = false;
        let host_id = match std::fs::read_to_string(&id_path) {
            Ok(s) if s.trim().len() == 32 && s.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
                s.trim().to_string()
            }
            Ok(_) => return Err(file_err(&id_path, "not a host id (32 hex digits)".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut raw = [0u8; 16];
                ring::rand::SystemRandom::new()
                    .fill(&mut raw)
                    .map_err(|_| AuthError::Crypto("no randomness".into()))?;
                let id = hex::encode(raw);
                crate::write_private(&id_path, format!("{id}\n").as_bytes(), 0o644)?;
                created = true;
                id
            }
            Err(e) => return Err(file_err(&id_path, e.to_string())),
        };
        if key_path.exists() && cert_path.exists() {
            let key_der = pem_der(
                &std::fs::read(&key_path).map_err(|e| file_err(&key_path, e.to_string()))?,
                "PRIVATE KEY",
            )
            .ok_or_else(|| file_err(&key_path, "not a PEM private key".into()))?;
            let cert_der = pem_der(
                &std::fs::read(&cert_path).map_err(|e| file_err(&cert_path, e.to_string()))?,
                "CERTIFICATE",
            )
            .ok_or_else(|| file_err(&cert_path, "not a PEM certificate".into()))?;
            return Ok((
                HostIdentity {
                    host_id,
                    cert_der,
                    key_der,
                    dir: dir.to_path_buf(),
                },
                created,
            ));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| AuthError::Crypto(format!("generating the host key: {e}")))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("warren {host_name} {}", &host_id[..8]),
        );
        dn.push(DnType::OrganizationName, "warren");
        params.distinguished_name = dn;
        let mut names = vec!["localhost".to_string(), format!("warren-{host_id}")];
        if !host_name.is_empty() && host_name != "localhost" {
            names.push(host_name.to_string());
        }
        params.subject_alt_names = names
            .into_iter()
            .filter_map(|n| n.try_into().ok().map(SanType::DnsName))
            .collect();
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(3600)).into();
        params.not_after = (now + std::time::Duration::from_secs(10 * 365 * 86400)).into();
        let cert = params
            .self_signed(&key)
            .map_err(|e| AuthError::Crypto(format!("signing the host certificate: {e}")))?;
        crate::write_private(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        crate::write_private(&cert_path, cert.pem().as_bytes(), 0o644)?;
        Ok((
            HostIdentity {
                host_id,
                cert_der: cert.der().to_vec(),
                key_der: key.serialize_der(),
                dir: dir.to_path_buf(),
            },
            created,
        ))
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// TLS 1.3 only, no client certificates (clients authenticate per request).
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| AuthError::Crypto(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .map_err(|e| AuthError::Crypto(format!("the host key and certificate: {e}")))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

fn pem_der(bytes: &[u8], label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(bytes).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let b64: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly the certificate whose fingerprint is pinned (or, with none pinned, any
/// certificate, recording its fingerprint for the caller to show and pin). The handshake's
/// signatures are always verified, so the server proves it holds the certificate's key.
#[derive(Debug)]
pub struct PinVerifier {
    pinned: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinVerifier {
    pub fn new(pinned: Option<String>) -> Arc<PinVerifier> {
        Arc::new(PinVerifier {
            pinned,
            seen: Mutex::new(None),
            provider: provider(),
        })
    }

    /// The fingerprint the server presented (after a handshake).
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The message a changed certificate produces.
pub fn mismatch_message(pinned: &str, presented: &str) -> String {
    format!(
        "the server's certificate changed: pinned {pinned}, presented {presented}; if the host was reinstalled on purpose, adopt it again"
    )
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp.clone());
        match &self.pinned {
            Some(p) if !crate::constant_time_eq(p.as_bytes(), fp.as_bytes()) => {
                Err(rustls::Error::General(mismatch_message(p, &fp)))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS 1.3 client configuration checking the server with `verifier`.
pub fn client_config(verifier: Arc<PinVerifier>) -> Result<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AuthError::Crypto(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (a, created) = HostIdentity::load_or_create(t.path(), "box").unwrap();
        assert!(created);
        assert_eq!(a.host_id.len(), 32);
        let mode = std::fs::metadata(t.path().join(HOST_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, created) = HostIdentity::load_or_create(t.path(), "box").unwrap();
        assert!(!created);
        assert_eq!(
            (a.host_id.as_str(), a.fingerprint()),
            (b.host_id.as_str(), b.fingerprint())
        );
        b.server_config().unwrap();
        std::fs::write(t.path().join(HOST_ID), "junk").unwrap();
        assert!(HostIdentity::load_or_create(t.path(), "box").is_err());
    }

    #[test]
    fn fingerprints_and_mismatch_messages() {
        let fp = fingerprint(b"cert");
        assert!(fp.starts_with("sha256:") && fp.len() == 7 + 64);
        let m = mismatch_message("sha256:aa", "sha256:bb");
        assert!(m.contains("sha256:aa") && m.contains("sha256:bb"));
    }
}
