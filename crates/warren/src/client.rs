//! The CLI's API client: HTTP/1.1 over the daemon's Unix socket, JSON requests and responses,
//! NDJSON streams and upgraded frame streams. Every request is a [`routes::Call`] of a route
//! declared in [`routes`].

pub mod routes;

use crate::wire::{ErrorBody, ARGS_HEADER, STREAM_PROTOCOL};
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use routes::Call;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;

/// A connection target: the daemon's local socket, or a remote daemon over pinned TLS.
#[derive(Clone)]
pub struct Client {
    pub socket: PathBuf,
    pub remote: Option<Remote>,
}

/// A remote daemon: its address, pinned certificate, host id and the operator's key.
#[derive(Clone)]
pub struct Remote {
    pub addr: String,
    pub host_id: String,
    pub fingerprint: String,
    pub key: std::sync::Arc<warren_auth::token::OperatorKey>,
}

/// Connects to `addr` over TLS 1.3, checking the server's certificate with `verifier`.
pub async fn tls_connect(
    addr: &str,
    verifier: std::sync::Arc<warren_auth::tls::PinVerifier>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| anyhow!("connecting to {addr}: timed out"))?
    .with_context(|| format!("connecting to {addr}"))?;
    let cfg = warren_auth::tls::client_config(verifier)?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    // The certificate is pinned, not checked against a name.
    let name = rustls::pki_types::ServerName::try_from("warren").expect("a valid name");
    connector.connect(name, tcp).await.map_err(|e| {
        let msg = e.to_string();
        match msg.split_once("the server's certificate changed") {
            Some((_, rest)) => anyhow!("refusing {addr}: the server's certificate changed{rest}"),
            None => anyhow!("TLS with {addr}: {msg}"),
        }
    })
}

/// Decodes the NDJSON lines of `body` as they arrive, handing each value to `f`.
async fn read_ndjson<T: DeserializeOwned>(
    body: Incoming,
    mut f: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    use futures_util::{StreamExt, TryStreamExt};
    let data = body.into_data_stream().map_err(std::io::Error::other);
    let mut lines = tokio_util::codec::FramedRead::new(
        tokio_util::io::StreamReader::new(data),
        crate::ndjson::NdjsonCodec::<T>::new(),
    );
    while let Some(v) = lines.next().await {
        f(v.context("reading the daemon's stream")?)?;
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An error reported by the daemon (non-2xx), with diagnostics when a file was invalid.
#[derive(Debug)]
pub struct ApiFailure {
    pub body: ErrorBody,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.body.error)
    }
}

impl std::error::Error for ApiFailure {}

impl Client {
    async fn send<B>(&self, req: Request<B>) -> Result<Response<Incoming>>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut req = req;
        if let Some(r) = &self.remote {
            let tls = tls_connect(
                &r.addr,
                warren_auth::tls::PinVerifier::new(Some(r.fingerprint.clone())),
            )
            .await?;
            let token =
                r.key
                    .sign_token(&r.host_id, unix_now(), warren_auth::token::DEFAULT_LIFETIME);
            req.headers_mut().insert(
                hyper::header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("a valid header"),
            );
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .with_context(|| format!("talking to {}", r.addr))?;
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
            return sender
                .send_request(req)
                .await
                .with_context(|| format!("talking to {}", r.addr));
        }
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => anyhow!(
                    "the warren daemon is not running (no one listening on {}); start it with `warren daemon`",
                    self.socket.display()
                ),
                std::io::ErrorKind::PermissionDenied => anyhow!(
                    "permission denied on {}: the local socket is for root",
                    self.socket.display()
                ),
                _ => anyhow!("connecting to {}: {e}", self.socket.display()),
            }
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("talking to the daemon")?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender
            .send_request(req)
            .await
            .context("talking to the daemon")
    }

    fn request(method: Method, path: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(format!("http://warren{path}"))
            .header("host", "warren")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request builds")
    }

    async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>> {
        if resp.status().is_success() || resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            error: format!(
                "daemon answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            ),
            diagnostics: vec![],
        });
        Err(ApiFailure { body }.into())
    }

    /// A JSON call.
    pub async fn call<T: DeserializeOwned>(
        &self,
        call: &Call,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let body = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let resp = Self::check(
            self.send(Self::request(call.method(), call.path(), body))
                .await?,
        )
        .await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "unexpected answer from the daemon: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    /// A JSON call without a request body.
    pub async fn get<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        self.call(call, None::<&()>).await
    }

    /// A JSON call with a JSON request body.
    pub async fn post<T: DeserializeOwned>(&self, call: &Call, body: &impl Serialize) -> Result<T> {
        self.call(call, Some(body)).await
    }

    /// A streamed response body (NDJSON lines), each line decoded and handed to `f` (an empty
    /// request body).
    pub async fn stream_lines<T: DeserializeOwned>(
        &self,
        call: &Call,
        f: impl FnMut(T) -> Result<()>,
    ) -> Result<()> {
        let resp = Self::check(
            self.send(Self::request(call.method(), call.path(), vec![]))
                .await?,
        )
        .await?;
        read_ndjson(resp.into_body(), f).await
    }

    /// A raw streamed response body (export archives).
    pub async fn get_stream(&self, call: &Call) -> Result<Incoming> {
        let resp = Self::check(
            self.send(Self::request(call.method(), call.path(), vec![]))
                .await?,
        )
        .await?;
        Ok(resp.into_body())
    }

    /// POSTs a streamed request body and hands each decoded line of the NDJSON answer to `f`.
    pub async fn post_stream_lines<T: DeserializeOwned, B>(
        &self,
        call: &Call,
        body: B,
        f: impl FnMut(T) -> Result<()>,
    ) -> Result<()>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let req = Request::builder()
            .method(call.method())
            .uri(format!("http://warren{}", call.path()))
            .header("host", "warren")
            .header("content-type", "application/octet-stream")
            .body(body)
            .expect("request builds");
        let resp = Self::check(self.send(req).await?).await?;
        read_ndjson(resp.into_body(), f).await
    }

    /// POSTs a streamed request body and decodes the JSON answer.
    pub async fn post_stream<T, B>(&self, call: &Call, body: B) -> Result<T>
    where
        T: DeserializeOwned,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let req = Request::builder()
            .method(call.method())
            .uri(format!("http://warren{}", call.path()))
            .header("host", "warren")
            .header("content-type", "application/octet-stream")
            .body(body)
            .expect("request builds");
        let resp = Self::check(self.send(req).await?).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "unexpected answer from the daemon: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    /// Opens an upgraded frame stream.
    pub async fn upgrade(
        &self,
        call: &Call,
        args: &impl Serialize,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let req = Request::builder()
            .method(call.method())
            .uri(format!("http://warren{}", call.path()))
            .header("host", "warren")
            .header("connection", "upgrade")
            .header("upgrade", STREAM_PROTOCOL)
            .header(ARGS_HEADER, serde_json::to_string(args)?)
            .body(Full::new(Bytes::new()))
            .expect("request builds");
        let resp = Self::check(self.send(req).await?).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            bail!("daemon did not switch protocols ({})", resp.status());
        }
        let io = hyper::upgrade::on(resp)
            .await
            .context("upgrading the connection")?;
        Ok(TokioIo::new(io))
    }
}
