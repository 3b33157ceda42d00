//! Operator keys and request tokens.
//!
//! A token is a compact JWT (`BASE64URL(header).BASE64URL(claims).BASE64URL(signature)`):
//! header `{"alg":"EdDSA","typ":"JWT","kid":FINGERPRINT}`, claims
//! `{"aud":HOST_ID,"iat":SECS,"exp":SECS,"jti":UNIQUE}`, signed with the operator's Ed25519
//! key. [`verify`] refuses, in this order: oversize or malformed tokens, any `alg` but `EdDSA`,
//! unknown `kid`s, bad signatures, another audience, tokens not yet valid or expired (with
//! [`CLOCK_SKEW`] of tolerance), lifetimes above [`MAX_LIFETIME`], bad ids, and ids already
//! seen (the [`ReplayCache`] keeps each id until its token expires).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::{AuthError, Result};

/// Largest token accepted, in bytes.
pub const MAX_TOKEN: usize = 2048;
/// Longest lifetime (`exp - iat`) accepted, in seconds.
pub const MAX_LIFETIME: u64 = 300;
/// Clock difference tolerated between client and host, in seconds.
pub const CLOCK_SKEW: u64 = 30;
/// Lifetime of the tokens the CLI signs, in seconds.
pub const DEFAULT_LIFETIME: u64 = 60;
/// Ids the replay cache holds at most; beyond, requests are refused until ids expire.
pub const REPLAY_CAPACITY: usize = 100_000;

/// An operator's public key (raw Ed25519, 32 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// `SHA256:` and the unpadded base64url of the key's SHA-256, as ssh prints fingerprints.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", B64.encode(sha2::Sha256::digest(self.0)))
    }

    /// The key as unpadded base64url (how it is stored and sent).
    pub fn encode(&self) -> String {
        B64.encode(self.0)
    }

    /// Parses [`PublicKey::encode`]'s form.
    pub fn decode(s: &str) -> Result<PublicKey> {
        let bytes = B64
            .decode(s.trim())
            .map_err(|e| AuthError::Crypto(format!("public key is not base64url: {e}")))?;
        let raw: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            AuthError::Crypto(format!(
                "an Ed25519 public key has 32 bytes, not {}",
                b.len()
            ))
        })?;
        Ok(PublicKey(raw))
    }
}

/// An operator's signing key.
pub struct OperatorKey {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl OperatorKey {
    /// A new random key.
    pub fn generate() -> Result<OperatorKey> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| AuthError::Crypto("cannot generate an Ed25519 key".into()))?;
        OperatorKey::from_pkcs8(doc.as_ref())
    }

    /// A key from its PKCS#8 document.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<OperatorKey> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .map_err(|e| AuthError::Crypto(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(OperatorKey {
            pkcs8: bytes.to_vec(),
            pair,
        })
    }

    /// Reads the key at `path`, creating it (mode 0600) if there is none.
    pub fn load_or_create(path: &std::path::Path) -> Result<(OperatorKey, bool)> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let der = pem_body(&bytes, "PRIVATE KEY").unwrap_or(bytes);
                Ok((OperatorKey::from_pkcs8(&der)?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = OperatorKey::generate()?;
                let pem = format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    base64::engine::general_purpose::STANDARD.encode(&key.pkcs8)
                );
                crate::write_private(path, pem.as_bytes(), 0o600)?;
                Ok((key, true))
            }
            Err(e) => Err(AuthError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    pub fn public(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    /// A token for `audience`, valid from `now` for `lifetime` seconds, with a random id.
    pub fn sign_token(&self, audience: &str, now: u64, lifetime: u64) -> String {
        let mut id = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut id)
            .expect("the system random generator works");
        self.sign_claims(&Claims {
            aud: audience.to_string(),
            iat: now,
            exp: now + lifetime,
            jti: B64.encode(id),
        })
    }

    /// A token carrying exactly `claims` (tests use it to forge bad ones).
    pub fn sign_claims(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            typ: Some("JWT".into()),
            kid: self.public().fingerprint(),
        };
        let signing_input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header).expect("header serializes")),
            B64.encode(serde_json::to_vec(claims).expect("claims serialize"))
        );
        let sig = self.pair.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }
}

/// The body of a PEM block labelled `label`.
fn pem_body(bytes: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let b64: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A token's header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    pub kid: String,
}

/// A token's claims.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

/// Token ids seen and not yet expired.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: HashMap<String, u64>,
}

impl ReplayCache {
    pub fn new() -> ReplayCache {
        ReplayCache::default()
    }

    /// Records `jti` (valid until `exp`); false if it was seen already or the cache is full.
    fn admit(&mut self, jti: &str, exp: u64, now: u64) -> bool {
        if self.seen.len() >= REPLAY_CAPACITY / 2 {
            self.seen.retain(|_, e| *e + CLOCK_SKEW >= now);
        }
        if self.seen.len() >= REPLAY_CAPACITY || self.seen.contains_key(jti) {
            return false;
        }
        self.seen.insert(jti.to_string(), exp);
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signing key's fingerprint.
    pub kid: String,
    pub claims: Claims,
}

fn refuse<T>(why: impl Into<String>) -> Result<T> {
    Err(AuthError::Unauthorized(why.into()))
}

fn part<T: serde::de::DeserializeOwned>(b64: &str, what: &str) -> Result<T> {
    let bytes = B64
        .decode(b64)
        .map_err(|_| AuthError::Unauthorized(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AuthError::Unauthorized(format!("{what} is not valid: {e}")))
}

/// Verifies `token` for `audience` at `now`; `key_of` finds an enrolled key by fingerprint.
/// On success the token's id is recorded in `replay`.
pub fn verify(
    token: &str,
    audience: &str,
    now: u64,
    key_of: &dyn Fn(&str) -> Option<PublicKey>,
    replay: &mut ReplayCache,
) -> Result<Verified> {
    if token.len() > MAX_TOKEN {
        return refuse("token too long");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return refuse("a token has three dot-separated parts");
    };
    let header: Header = part(h, "token header")?;
    if header.alg != "EdDSA" {
        return refuse(format!("algorithm {:?} is not accepted", header.alg));
    }
    let Some(key) = key_of(&header.kid) else {
        return refuse(format!("key {} is not enrolled", header.kid));
    };
    let sig = B64
        .decode(s)
        .map_err(|_| AuthError::Unauthorized("signature is not base64url".into()))?;
    let signing_input = &token[..h.len() + 1 + c.len()];
    if UnparsedPublicKey::new(&ED25519, key.0)
        .verify(signing_input.as_bytes(), &sig)
        .is_err()
    {
        return refuse("bad signature");
    }
    let claims: Claims = part(c, "token claims")?;
    if claims.aud != audience {
        return refuse(format!("token is for {:?}, not this host", claims.aud));
    }
    if claims.iat > now + CLOCK_SKEW {
        return refuse("token issued in the future");
    }
    if claims.exp + CLOCK_SKEW <= now || claims.exp <= claims.iat {
        return refuse("token expired");
    }
    if claims.exp - claims.iat > MAX_LIFETIME {
        return refuse("token lifetime too long");
    }
    let id_ok = (16..=128).contains(&claims.jti.len())
        && claims
            .jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return refuse("bad token id");
    }
    if !replay.admit(&claims.jti, claims.exp, now) {
        return refuse("token already used");
    }
    Ok(Verified {
        kid: header.kid,
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "host-1";
    const NOW: u64 = 1_800_000_000;

    fn setup() -> (OperatorKey, impl Fn(&str) -> Option<PublicKey>) {
        let key = OperatorKey::generate().unwrap();
        let public = key.public();
        let fp = public.fingerprint();
        (key, move |kid: &str| (kid == fp).then(|| public.clone()))
    }

    #[test]
    fn a_fresh_token_verifies_once() {
        let (key, keys) = setup();
        let mut replay = ReplayCache::new();
        let t = key.sign_token(HOST, NOW, DEFAULT_LIFETIME);
        let v = verify(&t, HOST, NOW + 1, &keys, &mut replay).unwrap();
        assert_eq!(v.kid, key.public().fingerprint());
        let e = verify(&t, HOST, NOW + 2, &keys, &mut replay).unwrap_err();
        assert!(e.to_string().contains("already used"), "{e}");
    }

    fn refused(t: &str, keys: &dyn Fn(&str) -> Option<PublicKey>, why: &str) {
        let e = verify(t, HOST, NOW, keys, &mut ReplayCache::new()).unwrap_err();
        assert!(e.to_string().contains(why), "{t}: {e}");
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let (key, keys) = setup();
        let claims = |aud: &str, iat: u64, exp: u64, jti: &str| Claims {
            aud: aud.into(),
            iat,
            exp,
            jti: jti.into(),
        };
        let id = "AAAAAAAAAAAAAAAAAAAAAA";
        refused(
            &key.sign_claims(&claims(HOST, NOW - 200, NOW - 100, id)),
            &keys,
            "expired",
        );
        refused(
            &key.sign_claims(&claims("other", NOW, NOW + 60, id)),
            &keys,
            "not this host",
        );
        refused(
            &key.sign_claims(&claims(HOST, NOW + 100, NOW + 160, id)),
            &keys,
            "future",
        );
        refused(
            &key.sign_claims(&claims(HOST, NOW, NOW + 3600, id)),
            &keys,
            "lifetime",
        );
        refused(
            &key.sign_claims(&claims(HOST, NOW, NOW + 60, "short")),
            &keys,
            "token id",
        );
        refused(
            &key.sign_claims(&claims(HOST, NOW, NOW + 60, "bad id with spaces!!")),
            &keys,
            "token id",
        );
        // An unknown key, even with a good signature.
        let other = OperatorKey::generate().unwrap();
        refused(&other.sign_token(HOST, NOW, 60), &keys, "not enrolled");
        // A signature by another key under this key's kid.
        let good = key.sign_token(HOST, NOW, 60);
        let forged = other.sign_token(HOST, NOW, 60);
        let mut p: Vec<&str> = good.split('.').collect();
        let q: Vec<&str> = forged.split('.').collect();
        p[2] = q[2];
        refused(&p.join("."), &keys, "bad signature");
        // Changed claims under the original signature.
        let mut p: Vec<String> = good.split('.').map(String::from).collect();
        p[1] = B64.encode(serde_json::to_vec(&claims(HOST, NOW, NOW + 299, id)).unwrap());
        refused(&p.join("."), &keys, "bad signature");
        // alg none / HS256, whatever the rest says.
        for alg in ["none", "HS256", "eddsa"] {
            let h = B64.encode(format!(
                r#"{{"alg":"{alg}","kid":"{}"}}"#,
                key.public().fingerprint()
            ));
            let rest: Vec<&str> = good.split('.').collect();
            refused(
                &format!("{h}.{}.{}", rest[1], rest[2]),
                &keys,
                "not accepted",
            );
        }
        refused("a.b", &keys, "three");
        refused("a.b.c.d", &keys, "three");
        refused("!!.b.c", &keys, "base64url");
        refused(&"x".repeat(MAX_TOKEN + 1), &keys, "too long");
    }

    #[test]
    fn keys_round_trip_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("sub/operator.key");
        let (k1, created) = OperatorKey::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (k2, created) = OperatorKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.public(), k2.public());
        let enc = k1.public().encode();
        assert_eq!(PublicKey::decode(&enc).unwrap(), k1.public());
        assert!(PublicKey::decode("abc").is_err());
        assert!(k1.public().fingerprint().starts_with("SHA256:"));
    }

    proptest::proptest! {
        /// Arbitrary input never verifies and never panics.
        #[test]
        fn garbage_never_verifies(s in "\\PC{0,300}", dots in proptest::collection::vec("[A-Za-z0-9_-]{0,60}", 0..5)) {
            let (_key, keys) = setup();
            let mut replay = ReplayCache::new();
            proptest::prop_assert!(verify(&s, HOST, NOW, &keys, &mut replay).is_err());
            proptest::prop_assert!(verify(&dots.join("."), HOST, NOW, &keys, &mut replay).is_err());
        }

        /// Any single-byte change of a valid token is refused.
        #[test]
        fn tampered_tokens_never_verify(pos in 0usize..400, byte in 0u8..128) {
            let (key, keys) = setup();
            let t = key.sign_token(HOST, NOW, 60);
            let mut b = t.clone().into_bytes();
            let pos = pos % b.len();
            proptest::prop_assume!(b[pos] != byte);
            b[pos] = byte;
            let tampered = String::from_utf8_lossy(&b).to_string();
            let r = verify(&tampered, HOST, NOW, &keys, &mut ReplayCache::new());
            // Base64url has several encodings of the last character's spare bits only in
            // the signature; a decoder that accepts them still sees the same bytes.
            if let Ok(v) = r {
                proptest::prop_assert_eq!(v.claims.aud, HOST);
                let orig: Vec<&str> = t.split('.').collect();
                let new: Vec<&str> = tampered.split('.').collect();
                proptest::prop_assert_eq!(orig[0], new[0]);
                proptest::prop_assert_eq!(orig[1], new[1]);
            }
        }
    }
}
