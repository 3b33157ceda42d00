//! A session with one registry for one repository: choosing HTTPS or plain HTTP, answering
//! authentication challenges, following redirects, and reading answers within limits.
//!
//! The scheme is chosen once, by `GET /v2/`: HTTPS first; plain HTTP only for a loopback
//! registry or with `insecure`, and only when the HTTPS attempt failed for another reason
//! than a refused certificate (a registry that speaks TLS with a bad certificate is an error,
//! never a reason to downgrade). Redirects (registries send blob downloads to storage) are
//! followed for at most [`MAX_REDIRECTS`] hops; the `Authorization` header is only sent back
//! to the registry itself, and a redirect from HTTPS to plain HTTP is refused unless plain
//! HTTP is allowed for its host.

use hyper::body::Incoming;
use hyper::header::{
    HeaderName, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, LOCATION, WWW_AUTHENTICATE,
};
use hyper::{Method, Response, StatusCode, Uri};

use crate::auth::{parse_challenges, parse_token_answer, Challenge};
use crate::error::{parse_remote_errors, Answer, RegistryError};
use crate::http::{next_chunk, SendError, Transport};
use crate::reference::{is_loopback_host, Reference};
use crate::PullOptions;

/// Redirect hops followed at most for one request.
pub const MAX_REDIRECTS: usize = 5;
/// Bytes of an error body read for its error codes.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// How requests to the registry are authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    Anonymous,
    Basic(String),
    Bearer(String),
}

impl Auth {
    fn header(&self) -> Option<String> {
        match self {
            Auth::Anonymous => None,
            Auth::Basic(h) => Some(h.clone()),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

/// An answer and the URL that gave it (after redirects).
pub(crate) struct Answered {
    pub response: Response<Incoming>,
    pub url: Uri,
}

/// One registry, one repository. A clone shares nothing mutable: it starts with the same
/// scheme and credentials and renews them on its own when challenged.
#[derive(Clone)]
pub(crate) struct Session<'a> {
    reference: &'a Reference,
    opts: &'a PullOptions,
    transport: Transport,
    /// `https://host:port` or `http://host:port`.
    base: String,
    auth: Auth,
}

impl<'a> Session<'a> {
    /// Reaches the registry (`GET /v2/`), choosing the scheme and answering a challenge.
    pub(crate) async fn open(
        reference: &'a Reference,
        opts: &'a PullOptions,
    ) -> Result<Session<'a>, RegistryError> {
        let registry = reference
            .registry()
            .ok_or_else(|| RegistryError::NoRegistry {
                reference: reference.to_string(),
            })?;
        let transport = Transport::new(&opts.ca_files, opts.timeout).map_err(|message| {
            RegistryError::Options {
                reference: reference.to_string(),
                message,
            }
        })?;
        let mut session = Session {
            reference,
            opts,
            transport,
            base: format!("https://{registry}"),
            auth: Auth::Anonymous,
        };
        let plain_ok = opts.insecure || reference.is_loopback();
        let https_url = format!("https://{registry}/v2/");
        let first = session
            .transport
            .send(Method::GET, &session.uri(&https_url)?, &[])
            .await;
        let response = match first {
            Ok(r) => r,
            Err(e) => {
                let certificate = matches!(
                    e,
                    SendError::Tls {
                        certificate: true,
                        ..
                    }
                );
                if !plain_ok || certificate {
                    let mut err = session.send_error(&https_url, e);
                    if !plain_ok && !certificate {
                        if let RegistryError::Tls { message, .. }
                        | RegistryError::Http { message, .. } = &mut err
                        {
                            message.push_str(
                                " (plain HTTP is only used for a loopback registry or when pulling with insecure)",
                            );
                        }
                    }
                    return Err(err);
                }
                let http_url = format!("http://{registry}/v2/");
                match session
                    .transport
                    .send(Method::GET, &session.uri(&http_url)?, &[])
                    .await
                {
                    Ok(r) => {
                        session.base = format!("http://{registry}");
                        r
                    }
                    Err(e2) => {
                        return Err(RegistryError::Connect {
                            reference: reference.to_string(),
                            url: format!("{registry}/v2/"),
                            message: format!("over HTTPS: {e}; over HTTP: {e2}"),
                        })
                    }
                }
            }
        };
        let url = format!("{}/v2/", session.base);
        match response.status() {
            StatusCode::OK => {
                session.drain(response).await;
                Ok(session)
            }
            StatusCode::UNAUTHORIZED => {
                let challenges = challenge_headers(&response);
                let answer = session.answer(response).await;
                session.authenticate(&url, &challenges, answer).await?;
                Ok(session)
            }
            _ => {
                let answer = session.answer(response).await;
                Err(RegistryError::Status {
                    reference: reference.to_string(),
                    url: format!("{url} (not a registry API v2 endpoint?)"),
                    answer,
                })
            }
        }
    }

    /// The reference, for messages.
    pub(crate) fn reference(&self) -> String {
        self.reference.to_string()
    }

    fn uri(&self, url: &str) -> Result<Uri, RegistryError> {
        Uri::try_from(url).map_err(|e| RegistryError::Http {
            reference: self.reference(),
            url: url.to_string(),
            message: format!("invalid URL: {e}"),
        })
    }

    /// The reference itself.
    pub(crate) fn target(&self) -> &'a Reference {
        self.reference
    }

    /// `https://host:port/v2/<repo>/<rest>`.
    pub(crate) fn repo_url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.reference.repository())
    }

    /// The idle timeout.
    pub(crate) fn timeout(&self) -> std::time::Duration {
        self.transport.timeout()
    }

    /// GETs a URL of the registry, authenticating when challenged (one retry) and following
    /// redirects. 401 and 403 answers become [`RegistryError::Unauthorized`]; other statuses
    /// are the caller's to judge.
    pub(crate) async fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Answered, RegistryError> {
        let mut challenged = false;
        loop {
            let answered = self.get_following(url, accept).await?;
            let status = answered.response.status();
            if status == StatusCode::UNAUTHORIZED && !challenged && self.same_origin(&answered.url)
            {
                challenged = true;
                let challenges = challenge_headers(&answered.response);
                let answer = self.answer(answered.response).await;
                self.authenticate(url, &challenges, answer).await?;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let answer = self.answer(answered.response).await;
                return Err(self.unauthorized(url, answer));
            }
            return Ok(answered);
        }
    }

    fn same_origin(&self, url: &Uri) -> bool {
        origin(url) == self.base
    }

    fn plain_allowed(&self, host: &str) -> bool {
        self.opts.insecure || is_loopback_host(host.trim_start_matches('[').trim_end_matches(']'))
    }

    async fn get_following(
        &self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Answered, RegistryError> {
        let mut current = self.uri(url)?;
        for hop in 0..=MAX_REDIRECTS {
            let mut headers: Vec<(HeaderName, String)> = Vec::new();
            if let Some(a) = accept {
                headers.push((ACCEPT, a.to_string()));
            }
            if self.same_origin(&current) {
                if let Some(h) = self.auth.header() {
                    headers.push((AUTHORIZATION, h));
                }
            }
            let response = self
                .transport
                .send(Method::GET, &current, &headers)
                .await
                .map_err(|e| self.send_error(&current.to_string(), e))?;
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED
            {
                return Ok(Answered {
                    response,
                    url: current,
                });
            }
            let redirect_err = |message: String| RegistryError::Redirect {
                reference: self.reference(),
                url: current.to_string(),
                message,
            };
            if hop == MAX_REDIRECTS {
                return Err(redirect_err(format!("more than {MAX_REDIRECTS} redirects")));
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    redirect_err(format!("{} without a usable Location", response.status()))
                })?
                .to_string();
            let next = resolve_location(&current, &location)
                .map_err(|m| redirect_err(format!("Location `{location}`: {m}")))?;
            if next.scheme_str() == Some("http") && !self.plain_allowed(next.host().unwrap_or("")) {
                return Err(redirect_err(format!(
                    "refusing to follow a redirect to plain HTTP ({next}); only loopback hosts, or any host with insecure, may be reached without TLS"
                )));
            }
            drop(response);
            current = next;
        }
        unreachable!("the loop returns on its last hop")
    }

    /// Answers a 401: a Bearer challenge gets a token, a Basic one the credentials.
    async fn authenticate(
        &mut self,
        url: &str,
        headers: &[String],
        answer: Answer,
    ) -> Result<(), RegistryError> {
        let mut challenges: Vec<Challenge> = Vec::new();
        for h in headers {
            let parsed = parse_challenges(h).map_err(|e| RegistryError::Challenge {
                reference: self.reference(),
                url: url.to_string(),
                message: format!("{e}: `{}`", h.chars().take(200).collect::<String>()),
            })?;
            challenges.extend(parsed);
        }
        if challenges.is_empty() {
            let mut err = self.unauthorized(url, answer);
            if let RegistryError::Unauthorized { hint, .. } = &mut err {
                hint.push_str(" (the registry sent no WWW-Authenticate challenge)");
            }
            return Err(err);
        }
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.fetch_token(url, bearer).await?;
            self.auth = Auth::Bearer(token);
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match (&self.opts.credentials, &self.auth) {
                (Some(c), Auth::Anonymous | Auth::Bearer(_)) => {
                    self.auth = Auth::Basic(c.basic_header());
                    Ok(())
                }
                _ => Err(self.unauthorized(url, answer)),
            };
        }
        Err(RegistryError::Challenge {
            reference: self.reference(),
            url: url.to_string(),
            message: format!(
                "unsupported authentication scheme(s): {} (Basic and Bearer are supported)",
                challenges
                    .iter()
                    .map(|c| c.scheme.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    fn unauthorized(&self, url: &str, answer: Answer) -> RegistryError {
        let hint = match &self.opts.credentials {
            None => "the registry requires credentials; none were given".to_string(),
            Some(c) => format!(
                "the credentials for user `{}` were rejected or do not allow pulling {}",
                c.username,
                self.reference.repository()
            ),
        };
        RegistryError::Unauthorized {
            reference: self.reference(),
            url: url.to_string(),
            answer,
            hint,
        }
    }

    /// The Bearer token flow: GET the realm with service and scope, with the credentials as
    /// Basic authentication when there are some.
    async fn fetch_token(&self, url: &str, challenge: &Challenge) -> Result<String, RegistryError> {
        let realm = challenge
            .param("realm")
            .ok_or_else(|| RegistryError::Challenge {
                reference: self.reference(),
                url: url.to_string(),
                message: "Bearer challenge without a realm".into(),
            })?;
        let token_err = |message: String| RegistryError::Token {
            reference: self.reference(),
            realm: realm.to_string(),
            message,
        };
        let realm_uri =
            Uri::try_from(realm).map_err(|e| token_err(format!("realm is not a URL: {e}")))?;
        match realm_uri.scheme_str() {
            Some("https") => {}
            Some("http") if self.plain_allowed(realm_uri.host().unwrap_or("")) => {}
            Some("http") => {
                return Err(token_err(
                    "realm is plain HTTP on a host that is not loopback; pull with insecure to allow it".into(),
                ))
            }
            _ => return Err(token_err("realm must be an http:// or https:// URL".into())),
        }
        if realm_uri.host().is_none_or(str::is_empty) {
            return Err(token_err("realm has no host".into()));
        }
        let default_scope = format!("repository:{}:pull", self.reference.repository());
        // Built in its own scope: the serializer is not `Send` and must not live across an
        // await, or the pull future could not be spawned.
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            let scope = challenge.param("scope").unwrap_or(&default_scope);
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                query.append_pair("scope", s);
            }
            query.finish()
        };
        let sep = if realm.contains('?') { '&' } else { '?' };
        let token_url = format!("{realm}{sep}{query}");
        let token_uri =
            Uri::try_from(token_url.as_str()).map_err(|e| token_err(format!("token URL: {e}")))?;
        let mut headers = Vec::new();
        if let Some(c) = &self.opts.credentials {
            headers.push((AUTHORIZATION, c.basic_header()));
        }
        let response = self
            .transport
            .send(Method::GET, &token_uri, &headers)
            .await
            .map_err(|e| token_err(e.to_string()))?;
        match response.status() {
            StatusCode::OK => {
                let max = self.opts.limits.max_json_bytes;
                let body = self
                    .read_limited(response, max, &format!("token answer from {realm}"), realm)
                    .await?;
                parse_token_answer(&body).map_err(token_err)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let answer = self.answer(response).await;
                Err(self.unauthorized(realm, answer))
            }
            _ => {
                let answer = self.answer(response).await;
                Err(token_err(format!("answered {answer}")))
            }
        }
    }

    /// Maps a transport error to the pull's error.
    pub(crate) fn send_error(&self, url: &str, e: SendError) -> RegistryError {
        let reference = self.reference();
        let url = url.to_string();
        match e {
            SendError::Connect(message) => RegistryError::Connect {
                reference,
                url,
                message,
            },
            SendError::Tls { message, .. } => RegistryError::Tls {
                reference,
                url,
                message,
            },
            SendError::Http(message) => RegistryError::Http {
                reference,
                url,
                message,
            },
        }
    }

    /// The status and the registry's error codes of an answer (its body read within a limit).
    pub(crate) async fn answer(&self, response: Response<Incoming>) -> Answer {
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = next_chunk(&mut body, self.transport.timeout()).await {
            buf.extend_from_slice(&chunk);
            if buf.len() as u64 > MAX_ERROR_BODY {
                buf.clear();
                break;
            }
        }
        Answer {
            status,
            errors: parse_remote_errors(&buf),
        }
    }

    async fn drain(&self, response: Response<Incoming>) {
        let mut body = response.into_body();
        let mut read = 0u64;
        while let Ok(Some(chunk)) = next_chunk(&mut body, self.transport.timeout()).await {
            read += chunk.len() as u64;
            if read > MAX_ERROR_BODY {
                break;
            }
        }
    }

    /// Reads a whole body of at most `max` bytes (a manifest, a config, a token answer);
    /// larger ones are refused as soon as they are announced or cross the limit.
    pub(crate) async fn read_limited(
        &self,
        response: Response<Incoming>,
        max: u64,
        what: &str,
        url: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = |size| RegistryError::TooLarge {
            reference: self.reference(),
            what: what.to_string(),
            size,
            max,
        };
        if let Some(len) = content_length(&response) {
            if len > max {
                return Err(too_large(len));
            }
        }
        let mut body = response.into_body();
        let mut buf = Vec::new();
        while let Some(chunk) = next_chunk(&mut body, self.transport.timeout())
            .await
            .map_err(|message| RegistryError::Http {
                reference: self.reference(),
                url: url.to_string(),
                message,
            })?
        {
            if (buf.len() + chunk.len()) as u64 > max {
                return Err(too_large((buf.len() + chunk.len()) as u64));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    }
}

/// The `Content-Length` of an answer, if it sent a valid one.
pub(crate) fn content_length(response: &Response<Incoming>) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn challenge_headers(response: &Response<Incoming>) -> Vec<String> {
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// `scheme://authority` of a URL, lowercased.
fn origin(url: &Uri) -> String {
    format!(
        "{}://{}",
        url.scheme_str().unwrap_or(""),
        url.authority().map(|a| a.as_str()).unwrap_or("")
    )
    .to_ascii_lowercase()
}

/// Resolves a `Location` header against the URL that sent it.
pub(crate) fn resolve_location(base: &Uri, location: &str) -> Result<Uri, String> {
    if location.is_empty() {
        return Err("empty".into());
    }
    let absolute = if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{}://{rest}", base.scheme_str().unwrap_or("https"))
    } else if location.starts_with('/') {
        format!(
            "{}://{}{location}",
            base.scheme_str().unwrap_or("https"),
            base.authority().map(|a| a.as_str()).unwrap_or("")
        )
    } else if location.contains("://") {
        return Err("only http and https URLs are followed".into());
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!(
            "{}://{}{}{location}",
            base.scheme_str().unwrap_or("https"),
            base.authority().map(|a| a.as_str()).unwrap_or(""),
            if dir.is_empty() { "/" } else { dir }
        )
    };
    let uri = Uri::try_from(absolute.as_str()).map_err(|e| e.to_string())?;
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_redirecting_url() {
        let base: Uri = "https://reg.example:5000/v2/app/blobs/sha256:ab?x=1"
            .parse()
            .unwrap();
        let r = |l: &str| resolve_location(&base, l).map(|u| u.to_string());
        assert_eq!(
            r("https://s3.example/bucket/k?sig=1").unwrap(),
            "https://s3.example/bucket/k?sig=1"
        );
        assert_eq!(r("http://127.0.0.1:9/x").unwrap(), "http://127.0.0.1:9/x");
        assert_eq!(r("//cdn.example/x").unwrap(), "https://cdn.example/x");
        assert_eq!(
            r("/other/path").unwrap(),
            "https://reg.example:5000/other/path"
        );
        assert_eq!(
            r("data?y=2").unwrap(),
            "https://reg.example:5000/v2/app/blobs/data?y=2"
        );
        assert!(r("").is_err());
        assert!(r("ftp://x/y").unwrap_err().contains("only http and https"));
        assert!(r("https://").is_err());
        assert!(r("https://a b/").is_err());
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |s: &str| origin(&s.parse::<Uri>().unwrap());
        assert_eq!(
            o("https://Reg.Example:5000/v2/"),
            "https://reg.example:5000"
        );
        assert_ne!(
            o("http://reg.example:5000/"),
            o("https://reg.example:5000/")
        );
        assert_ne!(o("https://reg.example/"), o("https://reg.example:443/"));
    }
}
