//! The HTTP/1.1 transport: one connection per request over TCP, or TLS (rustls with the ring
//! provider, trusting the system's certificates plus any given CA files), with timeouts on
//! connecting, the handshake, the answer's head and every chunk of its body.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, HOST, USER_AGENT};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The `User-Agent` sent with every request.
pub(crate) const AGENT: &str = concat!("warren/", env!("CARGO_PKG_VERSION"));

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub(crate) enum SendError {
    /// TCP connection (or name resolution) failed.
    Connect(String),
    /// The TLS handshake failed; `certificate` when the server's certificate was refused
    /// (as opposed to the server not speaking TLS at all).
    Tls { message: String, certificate: bool },
    /// The exchange broke or timed out.
    Http(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(m) | SendError::Http(m) => f.write_str(m),
            SendError::Tls { message, .. } => f.write_str(message),
        }
    }
}

/// The client side of HTTP/1.1 with TLS.
#[derive(Clone)]
pub(crate) struct Transport {
    tls: Arc<rustls::ClientConfig>,
    roots: usize,
    timeout: Duration,
}

impl Transport {
    /// A transport trusting the system's certificates and the PEM certificates in `ca_files`.
    pub(crate) fn new(ca_files: &[PathBuf], timeout: Duration) -> Result<Transport, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // Certificates the system store holds but rustls cannot use are skipped.
            let _ = roots.add(cert);
        }
        for file in ca_files {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("CA file {}: {e}", file.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CA file {}: {e}", file.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "CA file {} holds no PEM certificate",
                    file.display()
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("CA file {}: {e}", file.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Transport {
            tls: Arc::new(config),
            roots: roots.len(),
            timeout,
        })
    }

    /// The idle timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one request without a body and returns the answer's head; the body is read by the
    /// caller with [`next_chunk`].
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &Uri,
        headers: &[(HeaderName, String)],
    ) -> Result<Response<Incoming>, SendError> {
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => {
                return Err(SendError::Http(format!(
                    "unsupported URL scheme {}",
                    other.unwrap_or("(none)")
                )))
            }
        };
        let authority = url
            .authority()
            .ok_or_else(|| SendError::Http("URL has no host".into()))?
            .clone();
        let host = authority.host();
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect((bare.as_str(), port)))
            .await
            .map_err(|_| SendError::Connect(format!("timed out after {:?}", self.timeout)))?
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let path = url
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, authority.as_str())
            .header(USER_AGENT, AGENT);
        for (name, value) in headers {
            let v = HeaderValue::from_str(value)
                .map_err(|_| SendError::Http(format!("header {name} has invalid characters")))?;
            req = req.header(name, v);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| SendError::Http(e.to_string()))?;
        if https {
            let name = ServerName::try_from(bare.clone()).map_err(|e| SendError::Tls {
                message: format!("`{bare}` is not a valid TLS server name: {e}"),
                certificate: true,
            })?;
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            let tls = tokio::time::timeout(self.timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| SendError::Tls {
                    message: format!("handshake timed out after {:?}", self.timeout),
                    certificate: false,
                })?
                .map_err(|e| self.tls_error(e))?;
            self.exchange(tls, req).await
        } else {
            self.exchange(tcp, req).await
        }
    }

    fn tls_error(&self, e: std::io::Error) -> SendError {
        let inner = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .cloned();
        let certificate = matches!(
            inner,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        );
        let mut message = match &inner {
            Some(r) => r.to_string(),
            None => e.to_string(),
        };
        if certificate && self.roots == 0 {
            message.push_str(
                " (no trusted certificates were found on this system: install ca-certificates)",
            );
        }
        SendError::Tls {
            message,
            certificate,
        }
    }

    async fn exchange<S>(
        &self,
        stream: S,
        req: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, SendError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Http(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when the answer has been read and the sender dropped, or on error; errors
            // surface through the response future or the body.
            let _ = conn.await;
        });
        tokio::time::timeout(self.timeout, sender.send_request(req))
            .await
            .map_err(|_| SendError::Http(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| SendError::Http(describe_hyper(&e)))
    }
}

/// The next data chunk of a body; `None` at its end. Each chunk must arrive within `timeout`.
pub(crate) async fn next_chunk(
    body: &mut Incoming,
    timeout: Duration,
) -> Result<Option<Bytes>, String> {
    loop {
        let frame = tokio::time::timeout(timeout, body.frame())
            .await
            .map_err(|_| format!("no data for {timeout:?}"))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(describe_hyper(&e)),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

fn describe_hyper(e: &hyper::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
