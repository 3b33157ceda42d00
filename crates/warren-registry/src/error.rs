//! The errors of a pull, each naming the reference being pulled and, for answers from the
//! registry, the HTTP status and the registry's error codes.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::reference::ReferenceError;

/// One entry of the distribution specification's error body,
/// `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteError {
    /// `MANIFEST_UNKNOWN`, `UNAUTHORIZED`, `BLOB_UNKNOWN`...
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
}

/// Parses a distribution error body; anything else gives an empty list.
pub fn parse_remote_errors(body: &[u8]) -> Vec<RemoteError> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<RemoteError>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => b
            .errors
            .into_iter()
            .filter(|e| !e.code.is_empty() || !e.message.is_empty())
            .take(8)
            .map(|e| RemoteError {
                code: clip(&e.code, 64),
                message: clip(&e.message, 300),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn clip(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let mut out: String = clean.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// An HTTP status with the registry's error codes, shown as
/// `404 Not Found: MANIFEST_UNKNOWN: manifest unknown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The registry's errors from the body, if it sent the distribution error JSON.
    pub errors: Vec<RemoteError>,
}

impl Answer {
    /// Whether the registry named this error code.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match hyper::StatusCode::from_u16(self.status) {
            Ok(s) => write!(f, "{s}")?,
            Err(_) => write!(f, "{}", self.status)?,
        }
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => write!(f, "{}: {}", e.code, e.message)?,
                (false, true) => f.write_str(&e.code)?,
                _ => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The reference names no registry, and there is no default one.
    #[error("cannot pull `{reference}`: the reference names no registry; name a registry: HOST[:PORT]/REPO:TAG")]
    NoRegistry {
        /// The reference.
        reference: String,
    },
    /// Options that cannot work (an unreadable CA file...).
    #[error("pulling {reference}: {message}")]
    Options {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// The registry (or a host it sent us to) could not be reached.
    #[error("pulling {reference}: cannot connect to {url}: {message}")]
    Connect {
        /// The reference.
        reference: String,
        /// What was being fetched.
        url: String,
        /// Why.
        message: String,
    },
    /// The TLS handshake failed (an untrusted or mismatched certificate...).
    #[error("pulling {reference}: TLS with {url} failed: {message}")]
    Tls {
        /// The reference.
        reference: String,
        /// What was being fetched.
        url: String,
        /// Why.
        message: String,
    },
    /// The HTTP exchange broke (reset, timeout, malformed answer).
    #[error("pulling {reference}: {url}: {message}")]
    Http {
        /// The reference.
        reference: String,
        /// What was being fetched.
        url: String,
        /// Why.
        message: String,
    },
    /// The registry refused access (401/403), after authenticating if it asked to.
    #[error("pulling {reference}: access denied by {url} ({answer}): {hint}")]
    Unauthorized {
        /// The reference.
        reference: String,
        /// What was being fetched.
        url: String,
        /// The status and registry errors.
        answer: Answer,
        /// Whether credentials were missing, rejected, or not enough.
        hint: String,
    },
    /// The tag, digest or repository does not exist.
    #[error("pulling {reference}: {what} not found in repository {repository} ({answer})")]
    NotFound {
        /// The reference.
        reference: String,
        /// `tag `v1``, `manifest sha256:…`, `blob sha256:…`.
        what: String,
        /// The repository.
        repository: String,
        /// The status and registry errors.
        answer: Answer,
    },
    /// Any other unexpected status.
    #[error("pulling {reference}: {url} answered {answer}")]
    Status {
        /// The reference.
        reference: String,
        /// What was being fetched.
        url: String,
        /// The status and registry errors.
        answer: Answer,
    },
    /// A `WWW-Authenticate` challenge that cannot be followed.
    #[error("pulling {reference}: cannot authenticate with {url}: {message}")]
    Challenge {
        /// The reference.
        reference: String,
        /// The request that was challenged.
        url: String,
        /// Why.
        message: String,
    },
    /// The token endpoint failed.
    #[error("pulling {reference}: token endpoint {realm}: {message}")]
    Token {
        /// The reference.
        reference: String,
        /// The realm.
        realm: String,
        /// Why.
        message: String,
    },
    /// Content does not match its digest.
    #[error("pulling {reference}: {what} does not match its digest: expected {expected}, received content hashes to {actual}")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// `manifest`, `config sha256:…`, `layer 2 sha256:…`.
        what: String,
        /// The expected digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// Content is not the size its descriptor says.
    #[error("pulling {reference}: {what} is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        /// The reference.
        reference: String,
        /// What.
        what: String,
        /// Size from the descriptor.
        expected: u64,
        /// Size that arrived (or was announced), at least.
        actual: u64,
    },
    /// Content over a limit.
    #[error("pulling {reference}: {what} is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// The reference.
        reference: String,
        /// What.
        what: String,
        /// Its size (or the size reached when the limit was crossed).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A manifest or config that cannot be used.
    #[error("pulling {reference}: {what}: {message}")]
    BadManifest {
        /// The reference.
        reference: String,
        /// `manifest`, `manifest sha256:…`, `config sha256:…`.
        what: String,
        /// Why.
        message: String,
    },
    /// No image of an index (or the single image) is for the wanted platform.
    #[error("pulling {reference}: no image for platform {wanted}; available: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoMatchingPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms offered.
        available: Vec<String>,
    },
    /// A redirect that cannot be followed (too many, a downgrade to plain HTTP, malformed).
    #[error("pulling {reference}: redirect from {url}: {message}")]
    Redirect {
        /// The reference.
        reference: String,
        /// The URL that redirected.
        url: String,
        /// Why it was not followed.
        message: String,
    },
    /// The destination layout already holds something that is not an OCI layout.
    #[error("pulling {reference}: destination {}: {message}", path.display())]
    Layout {
        /// The reference.
        reference: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing the destination failed.
    #[error("pulling {reference}: {}: {source}", path.display())]
    Io {
        /// The reference.
        reference: String,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_parsed_and_shown() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        let a = Answer {
            status: 404,
            errors: parse_remote_errors(body),
        };
        assert!(a.has_code("MANIFEST_UNKNOWN"));
        assert_eq!(
            a.to_string(),
            "404 Not Found: MANIFEST_UNKNOWN: manifest unknown"
        );
        let two = br#"{"errors":[{"code":"UNAUTHORIZED"},{"message":"try again"}]}"#;
        let a = Answer {
            status: 401,
            errors: parse_remote_errors(two),
        };
        assert_eq!(a.to_string(), "401 Unauthorized: UNAUTHORIZED; try again");
        for junk in [&b"<html>nope</html>"[..], b"", b"{\"errors\":7}", b"[]"] {
            assert!(parse_remote_errors(junk).is_empty());
        }
        let a = Answer {
            status: 599,
            errors: vec![],
        };
        assert_eq!(a.to_string(), "599 <unknown status code>");
    }

    #[test]
    fn hostile_error_bodies_are_clipped_and_cleaned() {
        let long = format!(
            r#"{{"errors":[{{"code":"X","message":"{}\u001b[31m"}}]}}"#,
            "m".repeat(5000)
        );
        let e = parse_remote_errors(long.as_bytes());
        assert!(e[0].message.chars().count() <= 301);
        assert!(!e[0].message.contains('\u{1b}'));
        let many = format!(
            r#"{{"errors":[{}]}}"#,
            vec![r#"{"code":"A"}"#; 100].join(",")
        );
        assert_eq!(parse_remote_errors(many.as_bytes()).len(), 8);
    }
}
