//! warren's local certificate authority, and checks of operator-supplied certificates.
//!
//! A [`LocalCa`] issues the certificates of domains whose TLS choice is
//! [`Tls::Local`](crate::Tls::Local). An operator trusts it once (`warren ca export` prints
//! [`LocalCa::cert_pem`]) and every local domain then gets a valid HTTPS certificate.
//!
//! # Layout
//!
//! ```text
//! DIR/                          0700, created by LocalCa::load_or_create
//! DIR/ca.crt                    the CA certificate (PEM)
//! DIR/ca.key                    its private key (PKCS#8 PEM, 0600)
//! DIR/certs/                    0700
//! DIR/certs/DOMAIN.crt          leaf certificate followed by the CA certificate (nginx's
//!                               ssl_certificate)
//! DIR/certs/DOMAIN.key          the leaf's private key (PKCS#8 PEM, 0600)
//! ```
//!
//! A wildcard domain `*.home.arpa` is stored as `_wildcard.home.arpa.crt|.key`; domains are
//! checked with [`validate::check_domain`](crate::validate::check_domain) first, so a name never
//! holds `/`, `..` or `_`, and no file name can collide with another domain's.
//!
//! # Keys and certificates
//!
//! All keys are ECDSA P-256 (accepted by every OpenSSL, nginx, curl and browser in use). The CA
//! certificate is self-signed, valid for [`CA_VALIDITY`] (ten years), with
//! `basicConstraints CA:TRUE, pathlen:0` and `keyUsage keyCertSign, cRLSign`; its common name is
//! `warren local CA HOST ID`, with the host's name and a random id so that two CAs (two hosts,
//! or a recreated CA) are told apart in a trust store. A leaf certificate names exactly its
//! domain (subject CN and DNS subject alternative name), has `extendedKeyUsage serverAuth`, and
//! is valid for [`LEAF_VALIDITY`] (90 days). Validity starts one hour before the issuing time
//! to tolerate clients whose clocks are a little behind. Serial numbers are random.
//!
//! # Renewal
//!
//! [`LocalCa::ensure_cert`] (re)issues a domain's certificate when it is missing or unreadable,
//! when its key file is missing or does not match it, when it was not signed by the current CA,
//! when it does not name the domain, when it is not yet valid, or when less than
//! [`RENEW_BEFORE`] (30 days) of its validity remain at `now`. Otherwise it is kept. A daemon
//! schedules the next check at [`renew_at`] of [`cert_not_after`].
//!
//! # Crash safety
//!
//! Every file is written to a temporary file beside it, synced, and renamed into place. The CA
//! key is renamed before the CA certificate, and `ca.crt` decides whether a CA exists: a crash
//! between the two leaves a key without a certificate, which the next load replaces with a new
//! CA. A CA certificate without its key is an error (it may already be trusted by clients, so
//! it is never replaced silently). A leaf's key is renamed before its certificate; a crash in
//! between leaves a pair that does not match, which the next [`LocalCa::ensure_cert`]
//! reissues.
//!
//! One process owns a CA directory at a time (the daemon); concurrent writers are not
//! supported. Everything here is file I/O and computation: nothing is run.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, KeyPair as _};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::validate::check_domain;

/// How long the CA certificate is valid (ten years).
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// How long a leaf certificate is valid (90 days).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// A leaf certificate is renewed when less than this remains of its validity (30 days).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How far before the issuing time a certificate's validity starts (clock-skew margin).
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// File names inside the CA directory.
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const CERTS: &str = "certs";

/// A failure of the local CA or of a certificate check. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds no usable certificate: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("{path} holds no usable private key: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error(
        "the CA certificate {cert} exists but its key {key} is missing; restore the key, or \
         remove both files to create a new CA (clients must then trust the new one)"
    )]
    CaKeyMissing { cert: PathBuf, key: PathBuf },
    #[error("{path} is not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotCa { path: PathBuf },
    #[error(
        "the local CA {path} expired on {not_after}; remove ca.crt and ca.key to create a new \
         one (clients must then trust the new one)"
    )]
    CaExpired { path: PathBuf, not_after: String },
    #[error("domain {domain:?} cannot have a certificate: {reason}")]
    Domain { domain: String, reason: String },
    #[error("could not {action}")]
    Generate {
        action: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// warren's local certificate authority: its directory, certificate and key.
#[derive(Debug)]
pub struct LocalCa {
    dir: PathBuf,
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl LocalCa {
    /// Loads the CA kept in `dir`, or creates it there on first use (see the module
    /// documentation for the layout). `now` is the creation time of a new CA, and a loaded CA
    /// that expired before `now` is refused.
    ///
    /// Fails, naming the file, when `ca.crt` is not a readable CA certificate, when `ca.key` is
    /// missing, unreadable or not the certificate's key.
    pub fn load_or_create(dir: &Path, now: SystemTime) -> Result<LocalCa, TlsError> {
        create_private_dir(dir)?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        match fs::read(&cert_path) {
            Ok(bytes) => Self::load(dir, &cert_path, &key_path, &bytes, now),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Self::create(dir, &cert_path, &key_path, now)
            }
            Err(source) => Err(TlsError::Io {
                action: "read",
                path: cert_path,
                source,
            }),
        }
    }

    fn load(
        dir: &Path,
        cert_path: &Path,
        key_path: &Path,
        cert_bytes: &[u8],
        now: SystemTime,
    ) -> Result<LocalCa, TlsError> {
        let cert_der = first_certificate(cert_path, cert_bytes)?;
        let cert_err = |reason: String| TlsError::Certificate {
            path: cert_path.to_path_buf(),
            reason,
        };
        let x509 = parse_der(&cert_der).map_err(cert_err)?;
        if !x509
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca)
        {
            return Err(TlsError::NotCa {
                path: cert_path.to_path_buf(),
            });
        }
        let not_after = asn1_to_system(x509.validity().not_after.timestamp());
        if not_after <= now {
            return Err(TlsError::CaExpired {
                path: cert_path.to_path_buf(),
                not_after: format_time(not_after),
            });
        }
        let key_text = match fs::read(key_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(TlsError::CaKeyMissing {
                    cert: cert_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(TlsError::Io {
                    action: "read",
                    path: key_path.to_path_buf(),
                    source,
                })
            }
        };
        let key_err = |reason: String| TlsError::Key {
            path: key_path.to_path_buf(),
            reason,
        };
        let key_text = std::str::from_utf8(&key_text)
            .map_err(|_| key_err("it is not a text (PEM) file".into()))?;
        let key = KeyPair::from_pem(key_text)
            .map_err(|e| key_err(format!("not a PKCS#8 PEM private key ({e})")))?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(TlsError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)
            .map_err(|e| cert_err(e.to_string()))?;
        Ok(LocalCa {
            dir: dir.to_path_buf(),
            cert_pem: pem_encode("CERTIFICATE", &cert_der),
            cert_der,
            issuer,
        })
    }

    fn create(
        dir: &Path,
        cert_path: &Path,
        key_path: &Path,
        now: SystemTime,
    ) -> Result<LocalCa, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
            TlsError::Generate {
                action: "generate the CA key",
                source,
            }
        })?;
        let serial = random_serial();
        let id: String = serial.to_bytes()[1..5]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("warren local CA {} {id}", short_host_name()),
        );
        dn.push(DnType::OrganizationName, "warren");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + CA_VALIDITY).into();
        params.serial_number = Some(serial);
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                action: "sign the CA certificate",
                source,
            })?;
        let cert_pem = cert.pem();
        // The key first: ca.crt appearing is what makes the CA exist.
        write_atomic(key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(cert_path, cert_pem.as_bytes(), 0o644)?;
        Ok(LocalCa {
            dir: dir.to_path_buf(),
            cert_pem,
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate in PEM, for an operator to add to a trust store (`warren ca export`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate's file (`DIR/ca.crt`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// Where `domain`'s certificate chain and key are kept: `DIR/certs/NAME.crt` and
    /// `DIR/certs/NAME.key` (see [`cert_file_stem`]). Checks the domain; touches no file.
    pub fn leaf_paths(&self, domain: &str) -> Result<(PathBuf, PathBuf), TlsError> {
        let stem = cert_file_stem(domain)?;
        let certs = self.dir.join(CERTS);
        Ok((
            certs.join(format!("{stem}.crt")),
            certs.join(format!("{stem}.key")),
        ))
    }

    /// Makes sure `domain` has a current certificate from this CA, issuing or renewing it if
    /// needed (see the module documentation for when). Returns the certificate chain file (the
    /// leaf followed by the CA certificate, for nginx's `ssl_certificate`), the key file, and
    /// whether a certificate was issued now.
    pub fn ensure_cert(
        &self,
        domain: &str,
        now: SystemTime,
    ) -> Result<(PathBuf, PathBuf, bool), TlsError> {
        let (cert_path, key_path) = self.leaf_paths(domain)?;
        if self
            .renewal_reason(&cert_path, &key_path, domain, now)
            .is_none()
        {
            return Ok((cert_path, key_path, false));
        }
        create_private_dir(&self.dir.join(CERTS))?;
        let (chain, key_pem) = self.issue(domain, now)?;
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_path, chain.as_bytes(), 0o644)?;
        Ok((cert_path, key_path, true))
    }

    /// A new leaf certificate for `domain` issued at `now`: the PEM chain and the PEM key.
    fn issue(&self, domain: &str, now: SystemTime) -> Result<(String, String), TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
            TlsError::Generate {
                action: "generate a certificate key",
                source,
            }
        })?;
        let generate_err = |source| TlsError::Generate {
            action: "sign a certificate",
            source,
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, domain);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName(
            domain.to_string().try_into().map_err(generate_err)?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + LEAF_VALIDITY).into();
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer).map_err(generate_err)?;
        let mut chain = cert.pem();
        if !chain.ends_with('\n') {
            chain.push('\n');
        }
        chain.push_str(&self.cert_pem);
        Ok((chain, key.serialize_pem()))
    }

    /// Why the certificate at `cert_path` (with `key_path`) must be (re)issued for `domain` at
    /// `now`, or `None` if it is fine.
    fn renewal_reason(
        &self,
        cert_path: &Path,
        key_path: &Path,
        domain: &str,
        now: SystemTime,
    ) -> Option<Renewal> {
        let bytes = match fs::read(cert_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(Renewal::Missing),
            Err(e) => return Some(Renewal::Unreadable(e.to_string())),
        };
        let der = match first_certificate(cert_path, &bytes) {
            Ok(d) => d,
            Err(e) => return Some(Renewal::Unreadable(e.to_string())),
        };
        let leaf = match parse_der(&der) {
            Ok(c) => c,
            Err(e) => return Some(Renewal::Unreadable(e)),
        };
        let ca = parse_der(&self.cert_der).expect("the CA certificate was parsed when loaded");
        if leaf.issuer().as_raw() != ca.subject().as_raw()
            || leaf.verify_signature(Some(ca.public_key())).is_err()
        {
            return Some(Renewal::OtherIssuer);
        }
        if !covers(&leaf, domain) {
            return Some(Renewal::DomainNotCovered);
        }
        let validity = leaf.validity();
        if let Some(r) = time_renewal(
            asn1_to_system(validity.not_before.timestamp()),
            asn1_to_system(validity.not_after.timestamp()),
            now,
        ) {
            return Some(r);
        }
        match read_private_key(key_path) {
            Ok(public) if public == leaf.public_key().subject_public_key.data.as_ref() => None,
            Ok(_) => Some(Renewal::KeyMismatch),
            Err(e) => Some(Renewal::Unreadable(e.to_string())),
        }
    }
}

/// Why a leaf certificate is (re)issued.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Renewal {
    Missing,
    Unreadable(String),
    OtherIssuer,
    DomainNotCovered,
    NotYetValid,
    ExpiresSoon,
    KeyMismatch,
}

/// The renewal decision from a certificate's validity alone.
fn time_renewal(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> Option<Renewal> {
    if now < not_before {
        Some(Renewal::NotYetValid)
    } else if now >= renew_at(not_after) {
        Some(Renewal::ExpiresSoon)
    } else {
        None
    }
}

/// When a certificate valid until `not_after` is due for renewal: [`RENEW_BEFORE`] earlier.
pub fn renew_at(not_after: SystemTime) -> SystemTime {
    not_after.checked_sub(RENEW_BEFORE).unwrap_or(UNIX_EPOCH)
}

/// The file name (without extension) of `domain`'s certificate and key: the domain itself,
/// with a leading `*` spelled `_wildcard` (`*.home.arpa` → `_wildcard.home.arpa`). Refuses
/// anything [`check_domain`] refuses, so the name never holds `/` or `..`.
pub fn cert_file_stem(domain: &str) -> Result<String, TlsError> {
    check_domain(domain).map_err(|reason| TlsError::Domain {
        domain: domain.to_string(),
        reason,
    })?;
    Ok(match domain.strip_prefix("*.") {
        Some(rest) => format!("_wildcard.{rest}"),
        None => domain.to_string(),
    })
}

/// The end of the validity of the first certificate in the PEM file at `path`.
pub fn cert_not_after(path: &Path) -> Result<SystemTime, TlsError> {
    let bytes = read(path)?;
    let der = first_certificate(path, &bytes)?;
    let cert = parse_der(&der).map_err(|reason| TlsError::Certificate {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(asn1_to_system(cert.validity().not_after.timestamp()))
}

/// Checks an operator's certificate and key for nginx: `cert` holds a PEM certificate (the
/// first one is the server's; a chain may follow), `key` an unencrypted PEM private key
/// (PKCS#8, SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`; RSA, P-256, P-384 or Ed25519)
/// whose public key is the certificate's. Returns the certificate's not-after time.
pub fn check_operator_pair(cert: &Path, key: &Path) -> Result<SystemTime, TlsError> {
    let bytes = read(cert)?;
    let der = first_certificate(cert, &bytes)?;
    let x509 = parse_der(&der).map_err(|reason| TlsError::Certificate {
        path: cert.to_path_buf(),
        reason,
    })?;
    let public = read_private_key(key)?;
    if public != x509.public_key().subject_public_key.data.as_ref() {
        return Err(TlsError::KeyMismatch {
            key: key.to_path_buf(),
            cert: cert.to_path_buf(),
        });
    }
    Ok(asn1_to_system(x509.validity().not_after.timestamp()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// The DER of the first `CERTIFICATE` block of a PEM file.
fn first_certificate(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, TlsError> {
    let err = |reason: String| TlsError::Certificate {
        path: path.to_path_buf(),
        reason,
    };
    for block in Pem::iter_from_buffer(bytes) {
        let block = block.map_err(|e| err(format!("invalid PEM ({e})")))?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
    }
    Err(err("no PEM CERTIFICATE block".into()))
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after the certificate".into()),
        Err(e) => Err(format!("invalid X.509 certificate ({e})")),
    }
}

/// Whether `cert` names `domain` among its DNS subject alternative names.
fn covers(cert: &X509Certificate<'_>, domain: &str) -> bool {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::DNSName(d) if d.eq_ignore_ascii_case(domain)))
}

/// Reads the private key in the PEM file at `path` and returns its public key, in the form of
/// a certificate's `subjectPublicKey` bit string.
fn read_private_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = read(path)?;
    let err = |reason: String| TlsError::Key {
        path: path.to_path_buf(),
        reason,
    };
    for block in Pem::iter_from_buffer(&bytes) {
        let block = block.map_err(|e| err(format!("invalid PEM ({e})")))?;
        // Skip what may share a file with the key (`openssl ecparam -genkey` writes the
        // parameters first; some files hold the certificate too).
        if matches!(block.label.as_str(), "CERTIFICATE" | "EC PARAMETERS") {
            continue;
        }
        return public_key_of(&block.label, &block.contents).map_err(err);
    }
    Err(err("no PEM private key block".into()))
}

/// DER of the object identifiers of `ecPublicKey`, P-256 and P-384.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// The public key of a private key given as a PEM block's label and contents.
fn public_key_of(label: &str, der: &[u8]) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    let ec = |pkcs8: &[u8]| {
        [
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        ]
        .into_iter()
        .find_map(|alg| signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rng).ok())
        .map(|k| k.public_key().as_ref().to_vec())
    };
    let unsupported = "not a supported key: expected an RSA (2048 to 8192 bits), ECDSA P-256 or \
                       P-384, or Ed25519 key";
    match label {
        "PRIVATE KEY" => ec(der)
            .or_else(|| {
                signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .ok()
                    .map(|k| k.public_key().as_ref().to_vec())
            })
            .or_else(|| {
                signature::RsaKeyPair::from_pkcs8(der)
                    .ok()
                    .map(|k| k.public_key().as_ref().to_vec())
            })
            .ok_or_else(|| unsupported.to_string()),
        "EC PRIVATE KEY" => [OID_P256, OID_P384]
            .into_iter()
            .find_map(|curve| ec(&sec1_to_pkcs8(der, curve)))
            .ok_or_else(|| unsupported.to_string()),
        "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(der)
            .map(|k| k.public_key().as_ref().to_vec())
            .map_err(|e| format!("{unsupported} ({e})")),
        "ENCRYPTED PRIVATE KEY" => {
            Err("the key is encrypted; nginx needs it without a passphrase".into())
        }
        other => Err(format!(
            "found a PEM {other:?} block where a private key was expected"
        )),
    }
}

/// Wraps a SEC1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo` for the curve `curve_oid`.
fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    let mut alg = OID_EC_PUBLIC_KEY.to_vec();
    alg.extend_from_slice(curve_oid);
    let mut body = der_tlv(0x02, &[0]);
    body.extend(der_tlv(0x30, &alg));
    body.extend(der_tlv(0x04, sec1));
    der_tlv(0x30, &body)
}

/// One DER tag-length-value.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A random positive 16-byte serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    // Positive, and its leading byte non-zero so the encoding keeps all 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// The host's name up to its first dot, reduced to letters, digits and `-` (at most 32).
fn short_host_name() -> String {
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_default();
    let short: String = name
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    if short.is_empty() {
        "host".to_string()
    } else {
        short
    }
}

fn asn1_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn format_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is left as is.
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Io {
            action: "create directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `data` to `path` atomically: a temporary file beside it, created with `mode`,
/// synced, renamed over `path`; then the directory is synced. On failure `path` is untouched
/// and the temporary file removed.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let name = path.file_name().expect("warren's TLS files have names");
    let dir = path
        .parent()
        .expect("warren's TLS files are in a directory");
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io {
            action,
            path,
            source,
        }
    };
    // A leftover from a crash may have another mode: start afresh.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp)(e)),
    }
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename a new file onto", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
