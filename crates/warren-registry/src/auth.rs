//! Registry authentication: credentials, `WWW-Authenticate` challenges (RFC 7235) and the
//! token endpoint's answer.
//!
//! Registries answer `401` with a challenge. `Basic` means: send the credentials with every
//! request. `Bearer realm="…",service="…",scope="…"` means: get a token from the realm (with the
//! credentials as Basic authentication, or anonymously) for that service and scope, and send it
//! as `Authorization: Bearer <token>`.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl Credentials {
    /// Credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization` header value for HTTP Basic authentication.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased: `basic`, `bearer`...
    pub scheme: String,
    /// The parameters in order, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of a parameter (name compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a `WWW-Authenticate` header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed WWW-Authenticate header at byte {position}: {problem}")]
pub struct ChallengeError {
    /// Byte offset of the problem.
    pub position: usize,
    /// What is wrong.
    pub problem: String,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses a `WWW-Authenticate` header value into its challenges. Quoted values may contain
/// commas, spaces and backslash escapes; several challenges may share one header
/// (`Basic realm="a", Bearer realm="b"`). A scheme without parameters is allowed; a token68
/// (`Negotiate abc==`) is kept as a parameter with an empty name.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let b = header.as_bytes();
    let err = |position: usize, problem: &str| ChallengeError {
        position,
        problem: problem.to_string(),
    };
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        header[start..*i].to_string()
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        // Empty list elements are allowed between challenges.
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let scheme = token(&mut i);
        if scheme.is_empty() {
            return Err(err(i, "expected an authentication scheme"));
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        if i < b.len() && b[i] != b' ' && b[i] != b'\t' && b[i] != b',' {
            return Err(err(i, "unexpected character after the scheme"));
        }
        skip_ws(&mut i);
        // token68: a single value that is not name=value (`Negotiate abc==`).
        {
            let start = i;
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b"-._~+/".contains(&b[j])) {
                j += 1;
            }
            let body_end = j;
            while j < b.len() && b[j] == b'=' {
                j += 1;
            }
            let equals = j - body_end;
            let mut k = j;
            while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
                k += 1;
            }
            let at_end = k >= b.len() || b[k] == b',';
            // `name=` alone is an empty parameter, not a token68.
            let token68 = body_end > start
                && at_end
                && (equals != 1 || header[start..body_end].contains('/'));
            if token68 {
                challenge
                    .params
                    .push((String::new(), header[start..j].to_string()));
                i = k;
                out.push(challenge);
                continue;
            }
        }
        // auth-params
        loop {
            skip_ws(&mut i);
            if i >= b.len() {
                break;
            }
            if b[i] == b',' {
                // Either the next param or the next challenge: look ahead for `name=`.
                let mut j = i;
                while j < b.len() && matches!(b[j], b' ' | b'\t' | b',') {
                    j += 1;
                }
                let name_start = j;
                while j < b.len() && is_tchar(b[j]) {
                    j += 1;
                }
                let name_end = j;
                while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                    j += 1;
                }
                if name_end > name_start && j < b.len() && b[j] == b'=' {
                    i = name_start;
                } else {
                    break;
                }
            }
            let name_start = i;
            let name = token(&mut i);
            if name.is_empty() {
                return Err(err(i, "expected a parameter name"));
            }
            skip_ws(&mut i);
            if i >= b.len() || b[i] != b'=' {
                if challenge.params.is_empty() {
                    // `Basic` followed by another scheme without a comma is not valid.
                    return Err(err(name_start, "expected `=` after the parameter name"));
                }
                return Err(err(i, "expected `=` after the parameter name"));
            }
            i += 1;
            skip_ws(&mut i);
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                loop {
                    if i >= b.len() {
                        return Err(err(i, "unterminated quoted string"));
                    }
                    match b[i] {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' if i + 1 < b.len() => {
                            v.push(b[i + 1]);
                            i += 2;
                        }
                        b'\\' => return Err(err(i, "unterminated quoted string")),
                        c => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                String::from_utf8(v).map_err(|_| err(i, "quoted value is not UTF-8"))?
            } else {
                // Lenient: unquoted values run to the next comma or space, so URLs survive.
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b' ' | b'\t' | b'"') {
                    i += 1;
                }
                if i < b.len() && b[i] == b'"' {
                    return Err(err(i, "quote inside an unquoted value"));
                }
                header[start..i].to_string()
            };
            if challenge
                .params
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(&name))
            {
                return Err(err(name_start, &format!("parameter `{name}` given twice")));
            }
            challenge.params.push((name.to_ascii_lowercase(), value));
            skip_ws(&mut i);
            if i < b.len() && b[i] != b',' {
                return Err(err(i, "expected `,` between parameters"));
            }
        }
        out.push(challenge);
    }
    if out.is_empty() {
        return Err(err(0, "no challenge"));
    }
    Ok(out)
}

/// What the token endpoint answers.
#[derive(Debug, Clone, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Reads the token from a token endpoint's JSON answer: `token`, or `access_token` (OAuth2
/// style) when `token` is absent or empty.
pub fn parse_token_answer(body: &[u8]) -> Result<String, String> {
    let a: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| format!("token answer is not JSON: {e}"))?;
    let token = a
        .token
        .filter(|t| !t.is_empty())
        .or(a.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| "token answer has neither `token` nor `access_token`".to_string())?;
    if token
        .bytes()
        .any(|c| c.is_ascii_control() || c == b' ' || c >= 0x80)
    {
        return Err("token contains characters not allowed in a header".into());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(h: &str) -> Challenge {
        let mut v = parse_challenges(h).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(v.len(), 1, "{h}: {v:?}");
        v.remove(0)
    }

    #[test]
    fn bearer_with_quoted_commas() {
        let c = one(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull,push""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("service"), Some("registry.example"));
        assert_eq!(c.param("scope"), Some("repository:team/app:pull,push"));
        assert_eq!(c.param("REALM"), Some("https://auth.example/token"));
        assert_eq!(c.param("missing"), None);
    }

    #[test]
    fn spacing_case_escapes_and_unquoted_values() {
        let c = one(
            "bEaReR  Realm = \"a\\\"b\\\\c\" ,  service=reg.example , scope=\"x, y\", error=\"insufficient_scope\"",
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("a\"b\\c"));
        assert_eq!(c.param("service"), Some("reg.example"));
        assert_eq!(c.param("scope"), Some("x, y"));
        assert_eq!(c.param("error"), Some("insufficient_scope"));
        let c = one("Bearer realm=http://127.0.0.1:5001/token?x=1,service=s");
        assert_eq!(c.param("realm"), Some("http://127.0.0.1:5001/token?x=1"));
        assert_eq!(c.param("service"), Some("s"));
        let c = one(r#"Basic realm="basic-realm""#);
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("basic-realm"));
        let c = one("Basic");
        assert!(c.params.is_empty());
    }

    #[test]
    fn several_challenges_in_one_header() {
        let v = parse_challenges(
            r#"Basic realm="r, with comma", Bearer realm="https://a/t",service="s", Negotiate"#,
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].scheme, "basic");
        assert_eq!(v[0].param("realm"), Some("r, with comma"));
        assert_eq!(v[1].scheme, "bearer");
        assert_eq!(v[1].param("service"), Some("s"));
        assert_eq!(v[2].scheme, "negotiate");
        let v = parse_challenges("Negotiate abc+/==, Basic realm=x").unwrap();
        assert_eq!(v[0].params, [(String::new(), "abc+/==".to_string())]);
        assert_eq!(v[1].param("realm"), Some("x"));
    }

    #[test]
    fn malformed_headers_are_refused_with_a_position() {
        for (h, needle) in [
            ("", "no challenge"),
            ("   ", "no challenge"),
            (
                r#"Bearer realm="unterminated"#,
                "unterminated quoted string",
            ),
            (r#"Bearer realm="x\"#, "unterminated quoted string"),
            (r#"Bearer realm="a" service="b""#, "expected `,`"),
            (r#"Bearer realm="a",scope x y"#, "expected `=`"),
            (r#"Bearer realm x="b""#, "expected `=`"),
            (r#"Bearer =x"#, "parameter name"),
            (r#"Bearer realm=a"b""#, "quote inside"),
            (r#"Bearer realm="a",realm="b""#, "given twice"),
            (r#""Bearer""#, "scheme"),
            (r#"Bearer/x realm="a""#, "after the scheme"),
        ] {
            let e = parse_challenges(h).unwrap_err();
            assert!(e.to_string().contains(needle), "{h:?}: {e}");
        }
    }

    #[test]
    fn hostile_headers_do_not_panic() {
        for h in [
            "\"",
            "\\",
            ",,,",
            "B \"",
            "B a=\"\\",
            "B a=,",
            "a=b",
            "é",
            "B é=1",
            "B a=\"é\"",
        ] {
            let _ = parse_challenges(h);
        }
        let long = format!("Bearer realm=\"{}\"", "a".repeat(100_000));
        assert_eq!(one(&long).param("realm").unwrap().len(), 100_000);
    }

    #[test]
    fn token_answers() {
        assert_eq!(parse_token_answer(br#"{"token":"abc"}"#).unwrap(), "abc");
        assert_eq!(
            parse_token_answer(br#"{"access_token":"xyz","expires_in":300}"#).unwrap(),
            "xyz"
        );
        assert_eq!(
            parse_token_answer(br#"{"token":"","access_token":"xyz"}"#).unwrap(),
            "xyz"
        );
        assert!(parse_token_answer(br#"{"token":"a\nb"}"#).is_err());
        assert!(parse_token_answer(br#"{}"#)
            .unwrap_err()
            .contains("neither `token` nor `access_token`"));
        assert!(parse_token_answer(b"<html>")
            .unwrap_err()
            .contains("not JSON"));
    }

    #[test]
    fn basic_header_and_redacted_debug() {
        let c = Credentials::new("Aladdin", "open sesame");
        assert_eq!(c.basic_header(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        let d = format!("{c:?}");
        assert!(d.contains("Aladdin") && !d.contains("sesame"), "{d}");
    }
}
